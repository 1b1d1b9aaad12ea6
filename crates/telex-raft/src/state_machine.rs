//! The state machine of one group: applies commands to the group's key range in the shared store.
//!
//! **Invariant:** the state changes of a batch of entries, the last applied log id and the last
//! membership are written in one atomic batch. They are not fsynced on their own: the log is
//! durable, so a crash re-applies from the last applied id; `LogStore::purge` syncs before it
//! drops the entries that would be needed for that.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StoredMembership,
};
use telex_store::{group_key, group_range, Batch, Cf, Durability, KeyValue, Store};
use telex_types::{Command, GroupId, Response};

use crate::apply::{apply, BaseRead, Txn};
use crate::codec::{decode, encode, io_err, read_err, write_err};
use crate::registry::{AppendHook, Applied};
use crate::schema::prefix_end;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

pub(crate) const APPLIED: &[u8] = b"applied";
pub(crate) const MEMBERSHIP: &[u8] = b"membership";
pub(crate) const SNAP_META: &[u8] = b"snap_meta";
pub(crate) const SNAP_DATA: &[u8] = b"snap_data";

#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    group: GroupId,
    appended: AppendHook,
}

/// The committed state of one group, as the base of an apply transaction.
struct GroupBase<'a> {
    store: &'a Store,
    group: GroupId,
}

impl BaseRead for GroupBase<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.store.get(Cf::State, &group_key(self.group, key)).map_err(|e| e.to_string())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, String> {
        let from = group_key(self.group, prefix);
        let to = prefix_end(&from);
        let rows = self.store.scan(Cf::State, &from, &to, usize::MAX).map_err(|e| e.to_string())?;
        Ok(rows.into_iter().map(|(k, v)| (k[4..].to_vec(), v)).collect())
    }
}

impl StateMachine {
    pub fn new(store: Arc<Store>, group: GroupId) -> Self {
        StateMachine { store, group, appended: AppendHook::default() }
    }

    pub(crate) fn with_append_hook(mut self, hook: AppendHook) -> Self {
        self.appended = hook;
        self
    }

    fn raft_key(&self, name: &[u8]) -> Vec<u8> {
        group_key(self.group, name)
    }

    fn get_raft<T: serde::de::DeserializeOwned>(&self, name: &[u8]) -> Result<Option<T>, StorageError> {
        match self.store.get(Cf::Raft, &self.raft_key(name)).map_err(read_err)? {
            Some(b) => Ok(Some(decode(&b, ErrorSubject::StateMachine)?)),
            None => Ok(None),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let subject = || ErrorSubject::Snapshot(None);
        let (meta, data) = {
            let view = self.store.read_view();
            let get = |name: &[u8]| view.get(Cf::Raft, &self.raft_key(name)).map_err(read_err);
            let applied: Option<LogId> = match get(APPLIED)? {
                Some(b) => decode(&b, subject())?,
                None => None,
            };
            let membership: Membership = match get(MEMBERSHIP)? {
                Some(b) => decode(&b, subject())?,
                None => Membership::default(),
            };
            let range = group_range(self.group);
            let rows = view.scan(Cf::State, &range.start, &range.end, usize::MAX).map_err(read_err)?;
            let pairs: Vec<KeyValue> = rows.into_iter().map(|(k, v)| (k[4..].to_vec(), v)).collect();
            let snapshot_id = match applied {
                Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, now_nanos()),
                None => format!("0-0-{}", now_nanos()),
            };
            let meta = Meta { last_log_id: applied, last_membership: membership, snapshot_id };
            (meta, encode(&pairs))
        };
        let mut b = Batch::new();
        b.put(Cf::Raft, self.raft_key(SNAP_META), encode(&meta));
        b.put(Cf::Raft, self.raft_key(SNAP_DATA), data.clone());
        self.store.write(b, Durability::Buffered).map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
        metrics::counter!("telex_raft_snapshots_built_total").increment(1);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// What `cmd` changes that actors cache or wait for.
fn changes(cmd: &Command, out: &mut Vec<Applied>) {
    match cmd {
        Command::AppendArchive { owner, .. } => out.push(Applied::Archive(owner.clone())),
        Command::AppendRoom { room, .. } => out.push(Applied::Room(room.clone())),
        Command::CreateRoom(record) => out.push(Applied::RoomChanged(record.room.clone())),
        Command::ChangeRoom { room, .. } | Command::DestroyRoom { room } => {
            out.push(Applied::RoomChanged(room.clone()))
        }
        Command::RosterPut { owner, .. } | Command::RosterDelete { owner, .. } | Command::SetBlocked { owner, .. } => {
            out.push(Applied::Social(owner.clone()))
        }
        Command::SetUserAttributes { user, .. } => out.push(Applied::Directory(user.domain().clone())),
        Command::PutGroup(record) => out.push(Applied::Directory(record.tenant.clone())),
        Command::RemoveGroup { tenant, .. }
        | Command::SetGroupMember { tenant, .. }
        | Command::SetPolicy { tenant, .. } => out.push(Applied::Directory(tenant.clone())),
        Command::Batch(cmds) => cmds.iter().for_each(|c| changes(c, out)),
        _ => {}
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let applied = self.get_raft::<Option<LogId>>(APPLIED)?.flatten();
        let membership = self.get_raft(MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let base = GroupBase { store: &self.store, group: self.group };
        let mut txn = Txn::new(&base);
        let mut responses = Vec::new();
        let mut last: Option<LogId> = None;
        let mut membership: Option<Membership> = None;
        let mut owners = Vec::new();
        for entry in entries {
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(Response::Done),
                EntryPayload::Normal(cmd) => {
                    if self.appended.get().is_some() {
                        changes(&cmd, &mut owners);
                    }
                    let r = apply(cmd, &mut txn)
                        .map_err(|e| io_err(ErrorSubject::Apply(entry.log_id), ErrorVerb::Read, e))?;
                    responses.push(r);
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    responses.push(Response::Done);
                }
            }
        }
        let Some(last) = last else { return Ok(responses) };
        let mut b = Batch::new();
        for (k, v) in txn.into_writes() {
            let key = group_key(self.group, &k);
            match v {
                Some(v) => b.put(Cf::State, key, v),
                None => b.delete(Cf::State, key),
            }
        }
        b.put(Cf::Raft, self.raft_key(APPLIED), encode(&Some(last)));
        if let Some(m) = membership {
            b.put(Cf::Raft, self.raft_key(MEMBERSHIP), encode(&m));
        }
        self.store.write(b, Durability::Buffered).map_err(write_err)?;
        metrics::counter!("telex_raft_applied_entries_total").increment(responses.len() as u64);
        if let Some(hook) = self.appended.get() {
            for change in &owners {
                hook(change);
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let data = snapshot.into_inner();
        let pairs: Vec<KeyValue> = decode(&data, subject())?;
        let range = group_range(self.group);
        let mut b = Batch::new();
        b.delete_range(Cf::State, range.start, range.end);
        for (k, v) in pairs {
            b.put(Cf::State, group_key(self.group, &k), v);
        }
        b.put(Cf::Raft, self.raft_key(APPLIED), encode(&meta.last_log_id));
        b.put(Cf::Raft, self.raft_key(MEMBERSHIP), encode(&meta.last_membership));
        b.put(Cf::Raft, self.raft_key(SNAP_META), encode(meta));
        b.put(Cf::Raft, self.raft_key(SNAP_DATA), data);
        self.store.write(b, Durability::Synced).map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
        metrics::counter!("telex_raft_snapshots_installed_total").increment(1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(meta) = self.get_raft::<Meta>(SNAP_META)? else { return Ok(None) };
        let data = self.store.get(Cf::Raft, &self.raft_key(SNAP_DATA)).map_err(read_err)?.unwrap_or_default();
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// A fingerprint of one group's applied state, to tell whether replicas hold the same data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateDigest {
    pub applied_index: u64,
    pub keys: u64,
    /// xxh3-64 over every (key, value) of the group's state, in key order.
    pub hash: u64,
}

/// Reads the group's state at one point in time (state and applied index agree: they are
/// written in one batch).
pub fn state_digest(store: &Store, group: GroupId) -> Result<StateDigest, telex_store::StoreError> {
    let view = store.read_view();
    let applied: Option<LogId> = match view.get(Cf::Raft, &group_key(group, APPLIED))? {
        Some(b) => decode(&b, ErrorSubject::StateMachine).ok().flatten(),
        None => None,
    };
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut keys = 0;
    let range = group_range(group);
    // The meta group's record of the cluster itself (replica placement, nodes) is left out: it
    // describes these machines, not the data, and a cluster restored from a backup differs.
    let bookkeeping = [
        group_key(telex_types::META_GROUP, crate::schema::PLACEMENTS),
        group_key(telex_types::META_GROUP, crate::schema::NODES),
    ];
    view.visit(Cf::State, &range.start, &range.end, |k, v| {
        if group == telex_types::META_GROUP && bookkeeping.iter().any(|p| k.starts_with(p)) {
            return;
        }
        keys += 1;
        for part in [k, v] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    })?;
    Ok(StateDigest { applied_index: applied.map_or(0, |l| l.index), keys, hash: hasher.digest() })
}
