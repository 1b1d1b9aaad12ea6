use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, IteratorMode, MultiThreaded, Options, ReadOptions,
    WriteBatch, WriteOptions,
};

use crate::batch::Op;
use crate::syncer::Syncer;
use crate::{Batch, KeyValue, StoreError};

type Db = DBWithThreadMode<MultiThreaded>;

/// Column families. Every key in each starts with its group id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cf {
    /// Raft log entries: `group ‖ index (u64 BE)`.
    Log,
    /// Raft metadata: vote, purged id, applied id, membership, current snapshot.
    Raft,
    /// State-machine data of each group.
    State,
}

impl Cf {
    const ALL: [Cf; 3] = [Cf::Log, Cf::Raft, Cf::State];
    fn name(self) -> &'static str {
        match self {
            Cf::Log => "log",
            Cf::Raft => "raft",
            Cf::State => "state",
        }
    }
}

/// Whether a write must be on disk before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// In RocksDB's in-memory WAL buffer (the WAL is flushed by hand); written and fsynced by
    /// the next sync (see [`Store::sync_then`]).
    Buffered,
    /// fsynced before returning. For rare writes that must not wait for a batch (votes,
    /// truncations, purges, snapshot installs).
    Synced,
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub block_cache_bytes: usize,
    /// The least time between the starts of two group-commit fsyncs. Under load, waiters that
    /// arrive meanwhile share the next one: fewer, fuller fsyncs for at most this much more
    /// commit latency. Zero syncs as soon as the previous sync is done.
    pub sync_interval: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { block_cache_bytes: 64 << 20, sync_interval: std::time::Duration::from_millis(2) }
    }
}

/// One RocksDB per node. Cheap to share behind an `Arc`.
pub struct Store {
    db: Arc<Db>,
    syncer: Syncer,
    dir: std::path::PathBuf,
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, taking an exclusive lock on it.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Arc<Store>, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { dir: dir.display().to_string(), source })?;
        let lock = crate::lock::lock_dir(dir)?;

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        // WAL records stay in RocksDB's buffer until the group-commit thread flushes and syncs
        // them: one write(2) and one fsync per batch instead of a write(2) per put.
        db_opts.set_manual_wal_flush(true);
        // Old WAL files are reused: overwriting one in place does not change its size, so an
        // fdatasync need not write the inode as well as the data.
        db_opts.set_recycle_log_file_num(4);
        let cache = rocksdb::Cache::new_lru_cache(opts.block_cache_bytes);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            // Most point reads on the send path find nothing (no block, no retry, no cursor
            // yet): Bloom filters answer those without searching, in files and the memtable.
            table.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&table);
            o.set_memtable_whole_key_filtering(true);
            o.set_memtable_prefix_bloom_ratio(0.02);
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = Arc::new(Db::open_cf_descriptors(&db_opts, dir.join("db"), cfs)?);
        let syncer = Syncer::start(db.clone(), opts.sync_interval);
        Ok(Arc::new(Store { db, syncer, dir: dir.to_path_buf(), _lock: lock }))
    }

    fn cf(&self, cf: Cf) -> Arc<BoundColumnFamily<'_>> {
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(&self.cf(cf), key)?)
    }

    /// Applies `batch` atomically.
    pub fn write(&self, batch: Batch, durability: Durability) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put(cf, k, v) => wb.put_cf(&self.cf(cf), k, v),
                Op::Delete(cf, k) => wb.delete_cf(&self.cf(cf), k),
                Op::DeleteRange(cf, from, to) => wb.delete_range_cf(&self.cf(cf), from, to),
            }
        }
        self.db.write_opt(wb, &WriteOptions::default())?;
        if durability == Durability::Synced {
            self.db.flush_wal(true)?;
        }
        Ok(())
    }

    /// Calls `done` once every write made before this call is on disk. Many callers share one
    /// fsync: this is the group commit of the whole node, across all Raft groups.
    pub fn sync_then(&self, done: impl FnOnce(std::io::Result<()>) + Send + 'static) {
        self.syncer.enqueue(Box::new(done));
    }

    /// Makes every earlier write durable now.
    pub fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.flush_wal(true)?)
    }

    /// The data directory this store was opened in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A consistent copy of the whole database as it is now, in `dir` (which must not exist),
    /// laid out as a data directory `Store::open` accepts (`dir/db`). Files are hard-linked
    /// where the file system allows, so it costs little.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { dir: dir.display().to_string(), source })?;
        // With manual WAL flushing, buffered records would be missing from the copy.
        self.db.flush_wal(true)?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir.join("db"))?;
        Ok(())
    }

    /// Compacts `[from, to)` of `cf`, so the space of keys deleted there is given back to the
    /// file system now rather than at some later compaction. Blocking: call off the runtime.
    pub fn compact_range(&self, cf: Cf, from: &[u8], to: &[u8]) {
        self.db.compact_range_cf(&self.cf(cf), Some(from), Some(to));
    }

    /// Key-value pairs in `[from, to)`, in key order, at most `limit`.
    pub fn scan(&self, cf: Cf, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        scan_with(&self.db, &self.cf(cf), ReadOptions::default(), from, to, limit)
    }

    /// Key-value pairs in `[from, to)`, in reverse key order, at most `limit`.
    pub fn scan_rev(&self, cf: Cf, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(from.to_vec());
        ro.set_iterate_upper_bound(to.to_vec());
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(&self.cf(cf), ro, IteratorMode::End).take(limit) {
            let (k, v) = item?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// The last key-value pair in `[from, to)`.
    pub fn last_in(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(from.to_vec());
        ro.set_iterate_upper_bound(to.to_vec());
        let mut it = self.db.iterator_cf_opt(&self.cf(cf), ro, IteratorMode::End);
        match it.next() {
            Some(Ok((k, v))) => Ok(Some((k.into_vec(), v.into_vec()))),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// A consistent point-in-time view, for reads that must agree with each other (snapshots).
    pub fn read_view(&self) -> ReadView<'_> {
        ReadView { store: self, snap: self.db.snapshot() }
    }
}

/// A point-in-time view of the store.
pub struct ReadView<'a> {
    store: &'a Store,
    snap: rocksdb::SnapshotWithThreadMode<'a, Db>,
}

impl ReadView<'_> {
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.snap.get_cf(&self.store.cf(cf), key)?)
    }

    pub fn scan(&self, cf: Cf, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snap);
        scan_with(&self.store.db, &self.store.cf(cf), ro, from, to, limit)
    }

    /// Calls `f` on every key-value pair in `[from, to)`, in key order, without collecting them.
    pub fn visit(&self, cf: Cf, from: &[u8], to: &[u8], mut f: impl FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snap);
        ro.set_iterate_lower_bound(from.to_vec());
        ro.set_iterate_upper_bound(to.to_vec());
        for item in self.store.db.iterator_cf_opt(&self.store.cf(cf), ro, IteratorMode::Start) {
            let (k, v) = item?;
            f(&k, &v);
        }
        Ok(())
    }
}

fn scan_with(
    db: &Db,
    cf: &Arc<BoundColumnFamily<'_>>,
    mut ro: ReadOptions,
    from: &[u8],
    to: &[u8],
    limit: usize,
) -> Result<Vec<KeyValue>, StoreError> {
    ro.set_iterate_lower_bound(from.to_vec());
    ro.set_iterate_upper_bound(to.to_vec());
    let mut out = Vec::new();
    for item in db.iterator_cf_opt(cf, ro, IteratorMode::Start).take(limit) {
        let (k, v) = item?;
        out.push((k.into_vec(), v.into_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group_key;

    #[test]
    fn writes_scans_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            let mut b = Batch::new();
            for i in 0u8..10 {
                b.put(Cf::State, group_key(1, &[i]), vec![i]);
            }
            b.put(Cf::State, group_key(2, b"x"), b"other".to_vec());
            store.write(b, Durability::Buffered).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            store.sync_then(move |r| tx.send(r.is_ok()).unwrap());
            assert!(rx.recv().unwrap());
            let got = store.scan(Cf::State, &group_key(1, &[3]), &group_key(1, &[7]), 100).unwrap();
            assert_eq!(got.iter().map(|(_, v)| v[0]).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
            let last = store.last_in(Cf::State, &group_key(1, b""), &group_key(2, b"")).unwrap();
            assert_eq!(last.unwrap().1, vec![9]);
            let mut d = Batch::new();
            d.delete_range(Cf::State, group_key(1, &[0]), group_key(1, &[5]));
            store.write(d, Durability::Synced).unwrap();
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let all = store.scan(Cf::State, &group_key(1, b""), &group_key(3, b""), 100).unwrap();
        assert_eq!(all.len(), 6, "5 left in group 1 and 1 in group 2");
    }

    #[test]
    fn second_open_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let err = Store::open(dir.path(), &StoreOptions::default()).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains("in use by another telexd"), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
    }
}
