//! Group commit: one thread turns many "tell me when it is durable" requests into one fsync.
//! Syncs start at least `interval` apart, so under load each one carries many commits (an
//! fsync costs the same CPU however much it writes); idle, a request is synced at once.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::{DBWithThreadMode, MultiThreaded};

type Waiter = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Bound on queued waiters; Raft's own pipelines keep it far below this.
const QUEUE: usize = 1 << 16;

pub(crate) struct Syncer {
    tx: Option<SyncSender<Waiter>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    pub(crate) fn start(db: Arc<DBWithThreadMode<MultiThreaded>>, interval: Duration) -> Syncer {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("telex-wal-sync".into())
            .spawn(move || run(db, rx, interval))
            .expect("spawn wal sync thread");
        Syncer { tx: Some(tx), thread: Some(thread) }
    }

    pub(crate) fn enqueue(&self, waiter: Waiter) {
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.send(waiter) {
                (e.0)(Err(std::io::Error::other("store is closing")));
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(db: Arc<DBWithThreadMode<MultiThreaded>>, rx: Receiver<Waiter>, interval: Duration) {
    let mut batch: Vec<Waiter> = Vec::new();
    let mut last: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        batch.push(first);
        if let Some(wait) = last.and_then(|l| interval.checked_sub(l.elapsed())) {
            std::thread::sleep(wait);
        }
        batch.extend(rx.try_iter());
        let started = Instant::now();
        last = Some(started);
        let result = db.flush_wal(true);
        metrics::histogram!("telex_store_wal_sync_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("telex_store_wal_sync_batch_size").record(batch.len() as f64);
        if let Err(e) = &result {
            tracing::error!(error = %e, "wal sync failed");
        }
        for w in batch.drain(..) {
            w(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        }
    }
}
