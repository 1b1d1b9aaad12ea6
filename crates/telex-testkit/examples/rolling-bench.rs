//! A rolling restart of the Helm chart's StatefulSet under load, as three containers of the
//! image (see `telex_testkit::containers`): `--sessions` devices stay connected, spread over
//! the pods, each reconnecting to the next pod whenever its session ends; one sender sends
//! steadily (each message retried with its client id until acknowledged). Every pod is then
//! stopped as the kubelet would (SIGTERM, the chart's grace period) and started again on its
//! volume, highest ordinal first, each ready before the next. Reported: per pod the stop and
//! ready times; sessions that had to reconnect and the most in any one second; sends refused
//! (retried); and the history checker's figures.
//!
//!     cargo build --release --bins
//!     cargo run --release -p telex-testkit --example rolling-bench -- --sessions 300

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use telex_proto::v1 as pb;
use telex_testkit::client::{login, Device};
use telex_testkit::cluster::{archive_at, steady_load};
use telex_testkit::containers::{build_image, render, Deployment};
use telex_testkit::history::{check, Outcome};

#[derive(Parser)]
struct Args {
    /// Devices kept connected during the restart.
    #[arg(long, default_value_t = 300)]
    sessions: usize,
    /// The pods' terminationGracePeriodSeconds (the chart's default is 60).
    #[arg(long, default_value_t = 60)]
    grace: u64,
    #[arg(long, default_value_t = 16)]
    shards: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("{}", build_image("telex:rolling-bench"));
    let values = serde_json::json!({
        "image": { "repository": "telex", "tag": "rolling-bench", "pullPolicy": "Never" },
        "replicas": 3,
        "bootstrapTenant": "localhost",
        "terminationGracePeriodSeconds": args.grace,
        "raft": { "shards": args.shards, "replicas": 3 },
        "config": { "limits": { "sends_per_second": 1000, "send_burst": 1000 } },
        "admin": { "enabled": true, "token": telex_testkit::ADMIN_TOKEN },
    });
    let d = Deployment::from_chart(&render(&values));
    d.start(Duration::from_secs(90));
    eprintln!("{}", d.exec(0, &["cluster", "rebalance"]));
    let urls = d.urls();
    let mut admin = telex_testkit::admin_client(format!("http://{}", d.pods[0].admin)).await?;
    for u in ["alice", "bob"] {
        admin.add_user(pb::AddUserRequest { jid: format!("{u}@localhost"), password: "pw".into() }).await?;
    }

    // Devices that reconnect (to the next pod) whenever their session ends.
    let began = Instant::now();
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let stop_devices = tokio::sync::watch::channel(false);
    for i in 0..args.sessions {
        let jid = format!("u{i}@localhost");
        admin.add_user(pb::AddUserRequest { jid: jid.clone(), password: "pw".into() }).await?;
        let token = login(&urls[i % urls.len()], &jid, "pw", "phone").await;
        let (urls, ended, mut stop) = (urls.clone(), ended_tx.clone(), stop_devices.1.clone());
        tokio::spawn(async move {
            let mut next = i;
            loop {
                let Ok(mut device) = Device::open(&urls[next % urls.len()], &token).await else {
                    next += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                tokio::select! {
                    _ = device.ended() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let _ = ended.send(began.elapsed());
                next += 1;
            }
        });
    }
    eprintln!("{} devices connected over {} pods", args.sessions, urls.len());

    let token = login(&urls[0], "alice@localhost", "pw", "load").await;
    let (stop_load, load) = steady_load(urls.clone(), token);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rows = Vec::new();
    for i in (0..d.pods.len()).rev() {
        let at = began.elapsed();
        let (stopped, ready) = tokio::task::block_in_place(|| d.restart(i));
        rows.push((d.pods[i].name.clone(), at, stopped, ready));
        eprintln!("{} restarted: stopped in {stopped:.1?}, ready after {ready:.1?}", d.pods[i].name);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_load.send(true)?;
    let events = load.await?;
    let _ = stop_devices.0.send(true);

    let mut reconnects = Vec::new();
    while let Ok(t) = ended_rx.try_recv() {
        reconnects.push(t);
    }
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for t in &reconnects {
        *per_second.entry(t.as_secs()).or_default() += 1;
    }
    let peak = per_second.values().copied().max().unwrap_or(0);
    let refused = events.iter().filter(|e| e.outcome != Outcome::Ok).count();
    let mut archives = BTreeMap::new();
    archives.insert("bob@localhost".to_string(), archive_at(&urls[0], "bob@localhost").await);
    let figures = check(&events, &archives);

    println!("| pod | stop (SIGTERM → exit) | stop → ready again |");
    println!("|---|---:|---:|");
    for (name, _, stopped, ready) in &rows {
        println!("| {name} | {:.1} s | {:.1} s |", stopped.as_secs_f64(), ready.as_secs_f64());
    }
    println!();
    println!(
        "devices {}: sessions that reconnected {} (most in one second: {peak}); sends {} acked {} refused and retried {refused}",
        args.sessions,
        reconnects.len(),
        figures.sends,
        figures.acked
    );
    println!("history: {figures}");
    anyhow::ensure!(figures.promise_kept(), "delivery promise broken");
    Ok(())
}
