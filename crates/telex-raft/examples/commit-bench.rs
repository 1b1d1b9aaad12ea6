//! Durable commit throughput of one node through openraft with fsync on.
//!
//! Many concurrent writers propose `CreateAccount` commands to the shard of each new user; a
//! write counts once it is committed (synced to disk) and applied. Latency is measured per write.
//!
//!     cargo run --release -p telex-raft --example commit-bench -- --writers 512 --seconds 20

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use telex_raft::{Groups, GroupsConfig};
use telex_store::{Store, StoreOptions};
use telex_types::records::{Credentials, ScramKeys};
use telex_types::{Command, Response, UserJid};

#[derive(Parser)]
struct Args {
    /// Concurrent writers.
    #[arg(long, default_value_t = 512)]
    writers: usize,
    /// Measured seconds (after 3 s of warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    shards: u32,
    /// Where to put the store (default: a temp dir under /var/tmp, on disk).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn creds() -> Credentials {
    let k = ScramKeys { salt: vec![7; 16], iterations: 4096, stored_key: vec![1; 32], server_key: vec![2; 32] };
    Credentials { sha256: k.clone(), sha1: ScramKeys { stored_key: vec![3; 20], server_key: vec![4; 20], ..k } }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp =
        tempfile::Builder::new().prefix("telex-bench").tempdir_in(args.dir.clone().unwrap_or("/var/tmp".into()))?;
    let store = Store::open(tmp.path(), &StoreOptions::default())?;
    let groups = Groups::start(store, GroupsConfig { shards: args.shards, ..GroupsConfig::default() }).await?;
    groups.bootstrap_single_node().await?;
    anyhow::ensure!(groups.wait_for_leaders(Duration::from_secs(30)).await, "groups did not elect leaders");

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let (groups, measuring, stop) = (groups.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let jid = UserJid::parse(&format!("w{w}u{i}@bench.example")).unwrap();
                i += 1;
                let group = groups.shard_of(&jid);
                let started = Instant::now();
                let r = groups.write(group, Command::CreateAccount { jid, credentials: creds(), at: 1 }).await;
                assert_eq!(r.expect("write"), Response::Done);
                if measuring.load(Ordering::Relaxed) {
                    hist.record(started.elapsed().as_micros() as u64).unwrap();
                }
            }
            hist
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new(3).unwrap();
    for t in tasks {
        all.add(t.await?).unwrap();
    }
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {} writers | {} shards | {:.0} committed entries/s | p50 {:.2} ms | p90 {:.2} ms | p99 {:.2} ms | max {:.2} ms |",
        args.writers,
        args.shards,
        all.len() as f64 / elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        all.max() as f64 / 1000.0
    );
    groups.shutdown().await;
    Ok(())
}
