//! Write unavailability after `kill -9` of a shard leader, on a 3-node cluster on this machine.
//!
//! Each round: a device on a surviving node has just had a send acknowledged; the node leading
//! the recipient's shard is killed; the device sends (retrying with the same client id on
//! refusals) until a send is acknowledged again. The time from the kill to that ack is the
//! round's unavailability. The node is restarted and the cluster healed before the next round.
//!
//!     cargo build --release --bins
//!     cargo run --release -p telex-testkit --example failover-bench -- --kills 20

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use telex_proto::v1 as pb;
use telex_testkit::client::{login, Device};
use telex_testkit::Telexd;
use telex_types::{shard, UserJid};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20)]
    kills: usize,
    #[arg(long, default_value_t = 8)]
    shards: u32,
}

async fn leader_of(node: &Telexd, group: u32) -> anyhow::Result<u64> {
    let mut admin = telex_testkit::admin_client(node.admin_url()).await?;
    loop {
        let s = admin.node_status(pb::NodeStatusRequest {}).await?.into_inner();
        let g = &s.groups[group as usize];
        if g.leader != 0 && g.voters.len() == 3 && s.groups.iter().all(|g| g.leader != 0) {
            return Ok(g.leader);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shards = args.shards.to_string();
    let flags = ["--shards", shards.as_str()];
    let (_dirs, mut nodes) = telex_testkit::cluster::start_cluster(3, &flags);
    nodes[0].cli(&["user", "add", "alice@localhost", "--password", "pw"]).success();
    nodes[0].cli(&["user", "add", "bob@localhost", "--password", "pw"]).success();
    let group = shard::shard_of(&UserJid::parse("bob@localhost")?, args.shards);
    let token = login(&nodes[0].client_url(), "alice@localhost", "pw", "bench").await;
    let mut hist = Histogram::<u64>::new(3)?;
    let mut n = 0u64;
    for round in 0..args.kills {
        let leader = leader_of(&nodes[0], group).await? as usize;
        let victim = leader - 1;
        let client_node = (victim + 1) % 3;
        let url = nodes[client_node].client_url();
        let mut alice = Device::open(&url, &token).await?;
        // Warm: one acknowledged send through the surviving node.
        n += 1;
        alice.send("bob@localhost", &format!("w{n}"), "warm").await;
        assert!(alice.result(&format!("w{n}")).await.error.is_empty());
        nodes[victim].kill9();
        let killed = Instant::now();
        n += 1;
        let id = format!("k{n}");
        loop {
            alice.send("bob@localhost", &id, "after kill").await;
            match alice.try_result(&id, Duration::from_secs(30)).await {
                Some(r) if r.error.is_empty() => break,
                Some(r) if r.retryable => tokio::time::sleep(Duration::from_millis(20)).await,
                other => anyhow::bail!("round {round}: unexpected result {other:?}"),
            }
        }
        let outage = killed.elapsed();
        hist.record(outage.as_micros() as u64)?;
        eprintln!("round {round}: killed node {leader} (leader of group {group}); writes back after {outage:?}");
        nodes[victim].restart();
        leader_of(&nodes[client_node], group).await?;
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {} leader kills (3 nodes, {} shards) | unavailability p50 {:.0} ms | p90 {:.0} ms | p99 {:.0} ms | max {:.0} ms |",
        args.kills,
        args.shards,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        hist.max() as f64 / 1000.0
    );
    Ok(())
}
