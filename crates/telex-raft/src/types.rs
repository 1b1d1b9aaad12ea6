use std::io::Cursor;

openraft::declare_raft_types!(
    /// Raft types of every Telex group: domain commands in, domain responses out.
    pub TypeConfig:
        D = telex_types::Command,
        R = telex_types::Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
