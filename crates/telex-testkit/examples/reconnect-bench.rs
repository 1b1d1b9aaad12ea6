//! Time until the sessions of a killed node are served again, on a 3-node cluster.
//!
//! `--sessions` users each connect one device to node 3 (leaderships rebalanced first, so node
//! 3 leads some groups). Node 3 is killed with `kill -9`; every device notices its session
//! broke, reconnects to a surviving node (half to each), and sends a message, retrying
//! refusals with the same client id. A session counts as served again when that send is
//! acknowledged. Reported: the time from the kill until each session was served (p50, p99)
//! and until all were.
//!
//!     cargo build --release --bins
//!     cargo run --release -p telex-testkit --example reconnect-bench -- --sessions 1000

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use telex_proto::v1 as pb;
use telex_testkit::client::{login, Device};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    #[arg(long, default_value_t = 8)]
    shards: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shards = args.shards.to_string();
    let flags = ["--shards", shards.as_str()];
    let (_dirs, mut nodes) = telex_testkit::cluster::start_cluster(3, &flags);
    let rebalanced = nodes[0].cli(&["cluster", "rebalance"]).success();
    eprintln!("{rebalanced}");
    let mut admin = telex_testkit::admin_client(nodes[0].admin_url()).await?;
    admin.add_user(pb::AddUserRequest { jid: "sink@localhost".into(), password: "pw".into() }).await?;
    let victim_url = nodes[2].client_url();
    let survivors = [nodes[0].client_url(), nodes[1].client_url()];
    let mut devices = Vec::new();
    for i in 0..args.sessions {
        let jid = format!("u{i}@localhost");
        admin.add_user(pb::AddUserRequest { jid: jid.clone(), password: "pw".into() }).await?;
        let token = login(&victim_url, &jid, "pw", "phone").await;
        devices.push((Device::open(&victim_url, &token).await.map_err(|s| anyhow::anyhow!("{s}"))?, token));
    }
    eprintln!("{} sessions on node 3; killing it", devices.len());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Duration>(devices.len());
    let start = tokio::sync::watch::channel(None::<Instant>);
    for (i, (mut device, token)) in devices.into_iter().enumerate() {
        let url = survivors[i % 2].clone();
        let done = done_tx.clone();
        let mut killed_at = start.1.clone();
        tokio::spawn(async move {
            device.ended().await;
            let killed = *killed_at.wait_for(Option::is_some).await.expect("kill time").as_ref().unwrap();
            let id = format!("back{i}");
            loop {
                let Ok(mut d) = Device::open(&url, &token).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                loop {
                    if !d.try_send("sink@localhost", &id, "back").await {
                        break;
                    }
                    match d.try_result(&id, Duration::from_secs(30)).await {
                        Some(r) if r.error.is_empty() => {
                            let _ = done.send(killed.elapsed()).await;
                            return;
                        }
                        Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        None => break,
                    }
                }
            }
        });
    }
    drop(done_tx);
    start.0.send_replace(Some(Instant::now()));
    nodes[2].kill9();
    let mut hist = Histogram::<u64>::new(3)?;
    while let Some(took) = tokio::time::timeout(Duration::from_secs(120), done_rx.recv()).await? {
        hist.record(took.as_micros() as u64)?;
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {} sessions of a killed node (3 nodes, {} shards) | served again p50 {:.0} ms | p99 {:.0} ms | all {:.0} ms |",
        hist.len(),
        args.shards,
        ms(0.5),
        ms(0.99),
        hist.max() as f64 / 1000.0
    );
    Ok(())
}
