//! Replica placement as a cluster grows from 3 to 5 nodes on loopback, under load. One user
//! per shard receives messages (so every group holds data and takes writes); a prober per
//! group keeps sending to that group's user (each message retried with its client id until
//! acknowledged) and records the longest wait for an acknowledgement. Reported: disk per node
//! with 3 nodes and with 5 (each should hold about R/N of the data), the time each new node
//! took to take its share, the longest write pause of each group that moved, and the history
//! checker's figures over every prober's messages.
//!
//!     cargo build --release --bins
//!     cargo run --release -p telex-testkit --example placement-bench -- --messages 20000

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use telex_testkit::client::{login, Device};
use telex_testkit::cluster::{archive, Sender};
use telex_testkit::history::check;
use telex_testkit::{data_dir, Telexd};
use telex_types::{shard, UserJid};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 16)]
    shards: u32,
    /// Messages loaded before the cluster grows (1 KiB each).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Nodes at the end (starting from 3).
    #[arg(long, default_value_t = 5)]
    nodes: u64,
}

fn disk(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(p) else { return 0 };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shards = args.shards.to_string();
    let extra = ["--shards", shards.as_str()];
    let mut dirs = Vec::new();
    let mut nodes: Vec<Telexd> = Vec::new();
    for id in 1..=3u64 {
        let (tmp, dir) = data_dir();
        let seed = nodes.first().map(|n| n.addrs.node);
        nodes.push(Telexd::start_member(&dir, id, seed, &extra));
        dirs.push((tmp, dir));
    }
    // One recipient per shard.
    let mut owners: BTreeMap<u32, String> = BTreeMap::new();
    for i in 0.. {
        let name = format!("u{i}@localhost");
        let g = shard::shard_of(&UserJid::parse(&name)?, args.shards);
        if owners.contains_key(&g) {
            continue;
        }
        nodes[0].cli(&["user", "add", &name, "--password", "pw"]).success();
        owners.insert(g, name);
        if owners.len() == args.shards as usize {
            break;
        }
    }
    nodes[0].cli(&["user", "add", "alice@localhost", "--password", "pw"]).success();
    nodes[0]
        .cli(&["tenant", "limits", "localhost", "--sends-per-second", "100000", "--sessions-per-user", "100"])
        .success();
    let alice = UserJid::parse("alice@localhost")?;
    println!("alice (every message's sender) is on shard {}", shard::shard_of(&alice, args.shards));
    let urls: Vec<String> = nodes.iter().map(|n| n.client_url()).collect();

    // The data: 1 KiB messages spread over the recipients, from 16 devices at once (each
    // waits for its send's acknowledgement, so this is bound by latency).
    let body = "x".repeat(1024);
    let started = Instant::now();
    let loaders = (0..16).map(|k| {
        let (url, owners, body) = (urls[k % urls.len()].clone(), owners.clone(), body.clone());
        let count = args.messages / 16;
        tokio::spawn(async move {
            let token = login(&url, "alice@localhost", "pw", &format!("loader{k}")).await;
            let mut d = Device::open(&url, &token).await.expect("loader session");
            let to: Vec<String> = owners.into_values().collect();
            for i in 0..count {
                let id = format!("l{k}-{i}");
                d.send(&to[i % to.len()], &id, &body).await;
                let r = d.result(&id).await;
                assert!(r.error.is_empty(), "load send failed: {r:?}");
            }
        })
    });
    for l in futures_join(loaders).await {
        l?;
    }
    println!("loaded {} messages in {:?}", args.messages, started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: Vec<u64> = dirs.iter().map(|(_, d)| disk(d)).collect();
    for (i, b) in before.iter().enumerate() {
        println!("3 nodes: node {} holds {}", i + 1, mib(*b));
    }

    // A prober per group: sends to the group's user one message at a time.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut probers = Vec::new();
    for (g, owner) in &owners {
        let token = login(&urls[0], "alice@localhost", "pw", &format!("probe{g}")).await;
        let (owner, urls, stop) = (owner.clone(), urls.clone(), stop_rx.clone());
        let g = *g;
        probers.push(tokio::spawn(async move {
            let mut s = Sender::new(urls, token);
            let (mut longest, mut i) = (Duration::ZERO, 0);
            while !*stop.borrow() {
                let t = Instant::now();
                let deadline = t + Duration::from_secs(60);
                assert!(s.send_acked(&owner, &format!("p{g}-{i}"), deadline).await, "probe of group {g} stuck");
                if t.elapsed() > Duration::from_secs(1) {
                    println!("group {g}: message {i} took {:?}", t.elapsed());
                }
                longest = longest.max(t.elapsed());
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (g, owner, longest, s.events)
        }));
    }
    let probing = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    for id in 4..=args.nodes {
        let (tmp, dir) = data_dir();
        let t = Instant::now();
        let n = Telexd::start_member(&dir, id, Some(nodes[0].addrs.node), &extra);
        println!("node {id} took its share in {:?} ({:?} after the probers began)", t.elapsed(), probing.elapsed());
        nodes.push(n);
        dirs.push((tmp, dir));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true)?;
    let placement = nodes[0].cli(&["cluster", "placement"]).success();
    println!("{placement}");

    let mut events = Vec::new();
    let mut archives = BTreeMap::new();
    let mut pauses = Vec::new();
    for p in probers {
        let (g, owner, longest, e) = p.await?;
        pauses.push((g, longest));
        // The loaded messages are not the probers': only these are checked.
        let probed: Vec<String> =
            archive(&nodes[0], &owner).await.into_iter().filter(|id| id.starts_with('p')).collect();
        archives.insert(owner.clone(), probed);
        events.extend(e);
    }
    pauses.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    let worst: Vec<String> = pauses.iter().map(|(g, d)| format!("group {g}: {} ms", d.as_millis())).collect();
    println!("longest wait for an acknowledgement per group: {}", worst.join(", "));
    let figures = check(&events, &archives);
    println!("history checker over the probers: {figures}");
    let after: Vec<u64> = dirs.iter().map(|(_, d)| disk(d)).collect();
    for (i, a) in after.iter().enumerate() {
        println!("{} nodes: node {} holds {}", args.nodes, i + 1, mib(*a));
    }
    let (sum_before, sum_after): (u64, u64) = (before.iter().sum(), after.iter().sum());
    println!("total {} with 3 nodes, {} with {}", mib(sum_before), mib(sum_after), args.nodes);
    anyhow::ensure!(figures.promise_kept(), "the delivery promise was broken: {figures}");
    Ok(())
}

async fn futures_join<T>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await);
    }
    out
}
