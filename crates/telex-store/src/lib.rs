//! The node's storage: one RocksDB per node, shared by every Raft group.
//!
//! This is the only crate that links RocksDB; nothing in its API exposes a RocksDB type. Keys of
//! every column family start with the 4-byte big-endian group id, so a group's data is one key
//! range (scanned for snapshots, deleted on install). Writes are buffered into the WAL and made
//! durable by [`Store::sync_then`], which batches many waiters onto one fsync (group commit).

mod batch;
mod keys;
mod lock;
mod store;
mod syncer;

pub use batch::Batch;
pub use keys::{group_key, group_prefix, group_range};
pub use store::{Cf, Durability, ReadView, Store, StoreOptions};

/// A key and its value, as scans return them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Storage failures. All are fatal for the operation; none are retryable by the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {dir} is in use by another telexd ({holder}); stop it or pick another --data-dir")]
    Locked { dir: String, holder: String },
    #[error("cannot use data directory {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error("rocksdb: {0}")]
    Rocks(String),
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Rocks(e.into_string())
    }
}
