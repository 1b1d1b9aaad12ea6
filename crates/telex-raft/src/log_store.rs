//! The Raft log of one group in the shared store. Appends are buffered writes made durable by
//! the store's group commit; openraft is told through the flush callback. The newest entries
//! are also kept in memory (`LogCache`), where applying and replicating read them back.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, Vote};
use telex_store::{group_key, Batch, Cf, Durability, Store};
use telex_types::GroupId;

use crate::codec::{decode, encode, io_err, read_err, write_err};
use crate::log_cache::LogCache;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// Reads served by one call are capped so a follower far behind is fed in bounded pieces.
const MAX_READ: usize = 4096;
/// Raft metadata keys of the log (under the group prefix, in the `raft` column family).
pub(crate) const VOTE: &str = "vote";
pub(crate) const PURGED: &str = "purged";

#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
    group: GroupId,
    cache: LogCache,
}

impl LogStore {
    pub fn new(store: Arc<Store>, group: GroupId) -> Self {
        LogStore { store, group, cache: LogCache::default() }
    }

    fn log_key(&self, index: u64) -> Vec<u8> {
        group_key(self.group, &index.to_be_bytes())
    }

    fn meta_key(&self, name: &str) -> Vec<u8> {
        group_key(self.group, name.as_bytes())
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StorageError> {
        match self.store.get(Cf::Raft, &self.meta_key(name)).map_err(read_err)? {
            Some(bytes) => Ok(Some(decode(&bytes, ErrorSubject::Store)?)),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end_index = match range.end_bound() {
            Bound::Included(&e) => Some(e + 1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        if let Some(entries) = end_index.and_then(|end| self.cache.get(start, end)) {
            metrics::counter!("telex_raft_log_cache_hits_total").increment(1);
            return Ok(entries);
        }
        metrics::counter!("telex_raft_log_cache_misses_total").increment(1);
        let end = match end_index {
            Some(e) => self.log_key(e),
            None => group_key(self.group + 1, b""),
        };
        let rows = self.store.scan(Cf::Log, &self.log_key(start), &end, MAX_READ).map_err(read_err)?;
        rows.iter().map(|(_, v)| decode(v, ErrorSubject::Logs)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(PURGED)?;
        let last = self.store.last_in(Cf::Log, &self.log_key(0), &group_key(self.group + 1, b"")).map_err(read_err)?;
        let last_log_id = match last {
            Some((_, v)) => Some(decode::<Entry>(&v, ErrorSubject::Logs)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.put(Cf::Raft, self.meta_key(VOTE), encode(vote));
        self.store.write(b, Durability::Synced).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(VOTE)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut b = Batch::new();
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = encode(&entry);
            let size = bytes.len();
            b.put(Cf::Log, self.log_key(entry.log_id.index), bytes);
            appended.push((entry, size));
        }
        let n = appended.len() as u64;
        self.store.write(b, Durability::Buffered).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        // Cached only once written: the cache never holds what the store does not.
        for (entry, size) in &appended {
            self.cache.push(entry, *size);
        }
        metrics::counter!("telex_raft_log_appended_entries_total").increment(n);
        self.store.sync_then(move |r| callback.log_io_completed(r));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache.truncate(log_id.index);
        let mut b = Batch::new();
        b.delete_range(Cf::Log, self.log_key(log_id.index), group_key(self.group + 1, b""));
        self.store.write(b, Durability::Synced).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Applied state is written without fsync; make it durable before dropping the log
        // entries that could otherwise be needed to re-apply it after a crash.
        self.store.sync().map_err(write_err)?;
        self.cache.purge(log_id.index);
        let mut b = Batch::new();
        b.put(Cf::Raft, self.meta_key(PURGED), encode(&log_id));
        b.delete_range(Cf::Log, self.log_key(0), self.log_key(log_id.index + 1));
        self.store.write(b, Durability::Synced).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
