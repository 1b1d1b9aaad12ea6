//! The newest entries of one group's log, kept in memory as they are appended.
//!
//! openraft 0.9 applies committed entries (and feeds followers) by reading them back through
//! `try_get_log_entries`; under load those are almost always entries appended moments ago.
//! Serving them from here saves a RocksDB scan and a decode per entry. The cache holds a run
//! of consecutive indexes only, so a range is either wholly inside it or read from the store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::types::Entry;

/// Most entries kept per group, and about the most (encoded) bytes: entries are needed here
/// only until they are applied and sent to followers, moments after they are appended, and a
/// node has one cache per group.
const MAX_ENTRIES: usize = 256;
const MAX_BYTES: usize = 1 << 20;

#[derive(Clone, Default)]
pub(crate) struct LogCache {
    inner: Arc<Mutex<Run>>,
}

#[derive(Default)]
struct Run {
    /// Consecutive entries, oldest first, with their approximate sizes.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Run {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn next(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index + 1)
    }

    fn pop_front(&mut self) {
        if let Some((_, n)) = self.entries.pop_front() {
            self.bytes -= n;
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, n)) = self.entries.pop_back() {
            self.bytes -= n;
        }
    }
}

impl LogCache {
    fn run(&self) -> std::sync::MutexGuard<'_, Run> {
        // Nothing panics while holding the lock; should it, the run is still consecutive.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an appended entry of `size` encoded bytes. An entry that does not follow the
    /// newest one starts a new run.
    pub fn push(&self, entry: &Entry, size: usize) {
        let mut run = self.run();
        if run.next() != Some(entry.log_id.index) {
            run.entries.clear();
            run.bytes = 0;
        }
        run.entries.push_back((entry.clone(), size));
        run.bytes += size;
        while run.entries.len() > MAX_ENTRIES || (run.bytes > MAX_BYTES && run.entries.len() > 1) {
            run.pop_front();
        }
    }

    /// The entries `start..end`, if all of them are here.
    pub fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let run = self.run();
        let (first, next) = (run.first()?, run.next()?);
        if start < first || end > next || start > end {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end - first).ok()?;
        Some(run.entries.range(from..to).map(|(e, _)| e.clone()).collect())
    }

    /// Forgets entries from `index` on (the log is truncated there).
    pub fn truncate(&self, index: u64) {
        let mut run = self.run();
        while run.next().is_some_and(|n| n > index) {
            run.pop_back();
        }
    }

    /// Forgets entries up to and including `index` (purged from the log).
    pub fn purge(&self, index: u64) {
        let mut run = self.run();
        while run.first().is_some_and(|f| f <= index) {
            run.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<(u64, u64)>> {
        v.map(|v| v.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect())
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let c = LogCache::default();
        for i in 5..10 {
            c.push(&entry(1, i), 10);
        }
        assert_eq!(indexes(c.get(6, 8)), Some(vec![(1, 6), (1, 7)]));
        assert_eq!(indexes(c.get(5, 10)).map(|v| v.len()), Some(5));
        assert_eq!(indexes(c.get(9, 9)), Some(vec![]));
        assert!(c.get(4, 6).is_none(), "before the run");
        assert!(c.get(8, 11).is_none(), "past the newest");
    }

    #[test]
    fn a_gap_starts_a_new_run_and_truncation_drops_the_tail() {
        let c = LogCache::default();
        for i in 1..6 {
            c.push(&entry(1, i), 10);
        }
        c.truncate(4);
        assert!(c.get(4, 5).is_none());
        // The new leader's entries replace the truncated ones.
        c.push(&entry(2, 4), 10);
        assert_eq!(indexes(c.get(3, 5)), Some(vec![(1, 3), (2, 4)]));
        c.push(&entry(2, 9), 10);
        assert!(c.get(3, 5).is_none());
        assert_eq!(indexes(c.get(9, 10)), Some(vec![(2, 9)]));
        c.truncate(1);
        assert!(c.get(9, 10).is_none());
    }

    #[test]
    fn purging_and_bounds_drop_the_oldest() {
        let c = LogCache::default();
        for i in 1..=(MAX_ENTRIES as u64 + 10) {
            c.push(&entry(1, i), 1);
        }
        assert!(c.get(10, 12).is_none());
        assert!(c.get(11, 13).is_some());
        c.purge(20);
        assert!(c.get(20, 21).is_none());
        assert!(c.get(21, 22).is_some());
        let big = LogCache::default();
        big.push(&entry(1, 1), MAX_BYTES);
        big.push(&entry(1, 2), MAX_BYTES);
        assert!(big.get(1, 2).is_none());
        assert!(big.get(2, 3).is_some(), "the newest stays however big");
    }
}
