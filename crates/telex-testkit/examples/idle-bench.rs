//! Server memory per idle connected session: opens `--sessions` device sessions (10 devices per
//! user) against one telexd, lets them idle, and reports the growth of the server's resident
//! memory divided by the session count. Kernel socket buffers are not in RSS.
//!
//!     cargo build --release --bins
//!     cargo run --release -p telex-testkit --example idle-bench -- --sessions 10000

use std::time::{Duration, Instant};

use clap::Parser;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use telex_testkit::client::authed;
use telex_testkit::{data_dir, Telexd};
use tokio_stream::wrappers::ReceiverStream;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    #[arg(long, default_value_t = 64)]
    shards: u32,
}

const DEVICES: usize = 10;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", &args.shards.to_string()]);
    let url = node.client_url();
    let users = args.sessions.div_ceil(DEVICES);
    let mut admin = telex_testkit::admin_client(node.admin_url()).await?;
    let api = ClientClient::connect(url.clone()).await?;
    let started = Instant::now();
    let mut tokens = Vec::new();
    for u in 0..users {
        let jid = format!("idle{u}@localhost");
        admin.add_user(pb::AddUserRequest { jid: jid.clone(), password: "pw".into() }).await?;
        for d in 0..DEVICES.min(args.sessions - u * DEVICES) {
            let req = pb::LoginRequest { jid: jid.clone(), password: "pw".into(), device: format!("d{d}") };
            tokens.push(api.clone().login(req).await?.into_inner().token);
        }
    }
    eprintln!("{users} users, {} logins in {:.1?}", tokens.len(), started.elapsed());
    // Settle, then the baseline: the node with its users, actors not yet started.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_kib(node.pid());
    // Open 32 at a time; each device has its own connection, as real clients do.
    let opened = Instant::now();
    let mut held = Vec::with_capacity(tokens.len());
    for chunk in tokens.chunks(32) {
        let mut opening = tokio::task::JoinSet::new();
        for token in chunk {
            let (url, token) = (url.clone(), token.clone());
            opening.spawn(async move {
                let (up, rx) = tokio::sync::mpsc::channel::<pb::ClientFrame>(4);
                let c = ClientClient::connect(url).await?;
                let down = c.clone().session(authed(ReceiverStream::new(rx), &token)).await?.into_inner();
                let p = pb::SetPresence { show: "available".into(), ..Default::default() };
                up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(p)) }).await?;
                anyhow::Ok((up, down, c))
            });
        }
        while let Some(r) = opening.join_next().await {
            held.push(r??);
        }
        if held.len() % 2000 < 32 {
            eprintln!("{} sessions open, server RSS {} MiB", held.len(), rss_kib(node.pid()) / 1024);
        }
    }
    eprintln!("opened in {:.1?}", opened.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(node.pid());
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / held.len() as f64;
    println!(
        "| {} idle sessions ({} users × {DEVICES} devices) | server RSS {:.1} MiB → {:.1} MiB | {:.0} bytes ({:.2} KiB) per session |",
        held.len(),
        users,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per,
        per / 1024.0
    );
    drop(held);
    drop(node);
    Ok(())
}
