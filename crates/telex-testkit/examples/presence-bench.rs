//! Presence fan-out throughput of one telexd: every user has `--contacts` mutual (`both`)
//! subscriptions and one online device; users change presence open-loop at `--rate` changes/s in
//! total, and every contact's device counts the updates it receives.
//!
//!     cargo build --release --bins
//!     cargo run --release -p telex-testkit --example presence-bench -- --users 2000 --rate 5000

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use telex_testkit::client::{authed, login};
use telex_testkit::{data_dir, Telexd};
use tokio::sync::{Mutex, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 2000)]
    users: usize,
    /// Contacts per user (even: each user pairs with the next contacts/2 users on a ring).
    #[arg(long, default_value_t = 20)]
    contacts: usize,
    /// Presence changes per second, all users together.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    shards: u32,
}

fn jid(i: usize) -> String {
    format!("p{i}@localhost")
}

async fn roster(c: &ClientClient<Channel>, token: &str, op: pb::roster_update::Op) -> anyhow::Result<()> {
    c.clone().update_roster(authed(pb::RosterUpdate { op: Some(op) }, token)).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (tmp, dir) = data_dir();
    let config = tmp.path().join("bench.toml");
    std::fs::write(&config, "[limits]\nsends_per_second = 1000000\nsend_burst = 1000000\n")?;
    let shards = args.shards.to_string();
    let node = Telexd::start(&dir, &["--shards", &shards, "--config", config.to_str().unwrap()]);
    let url = node.client_url();
    let setup = Instant::now();
    let mut admin = telex_testkit::admin_client(node.admin_url()).await?;
    let mut tokens = Vec::new();
    for i in 0..args.users {
        admin.add_user(pb::AddUserRequest { jid: jid(i), password: "pw".into() }).await?;
        tokens.push(login(&url, &jid(i), "pw", "bench").await);
    }
    let tokens = Arc::new(tokens);
    // The subscription dance for every pair on the ring, 64 pairs at a time.
    let channel = Channel::from_shared(url.clone())?.connect().await?;
    let api = ClientClient::new(channel);
    let permits = Arc::new(Semaphore::new(64));
    let mut dances = tokio::task::JoinSet::new();
    for i in 0..args.users {
        for k in 1..=args.contacts / 2 {
            let j = (i + k) % args.users;
            let (api, tokens, permit) = (api.clone(), tokens.clone(), permits.clone().acquire_owned().await?);
            dances.spawn(async move {
                use pb::roster_update::Op;
                let add = |to: usize| Op::Add(pb::RosterAdd { jid: jid(to), ..Default::default() });
                roster(&api, &tokens[i], add(j)).await?;
                roster(&api, &tokens[j], Op::Approve(jid(i))).await?;
                roster(&api, &tokens[j], add(i)).await?;
                roster(&api, &tokens[i], Op::Approve(jid(j))).await?;
                drop(permit);
                anyhow::Ok(())
            });
        }
    }
    while let Some(r) = dances.join_next().await {
        r??;
    }
    let items = api.clone().get_roster(authed(pb::GetRosterRequest {}, &tokens[0])).await?.into_inner().items;
    assert_eq!(items.iter().filter(|i| i.subscription == "both").count(), args.contacts, "{items:?}");
    eprintln!("set up {} users with {} contacts each in {:.1?}", args.users, args.contacts, setup.elapsed());

    // One device per user, each on its own connection, announced available.
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for token in tokens.iter() {
        let (up, rx) = tokio::sync::mpsc::channel::<pb::ClientFrame>(64);
        let c = ClientClient::connect(url.clone()).await?;
        let down = c.clone().session(authed(ReceiverStream::new(rx), token)).await?.into_inner();
        let p = pb::SetPresence { show: "available".into(), ..Default::default() };
        up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(p)) }).await?;
        ups.push(up);
        downs.push(down);
    }
    let start = Instant::now() + Duration::from_secs(2);
    let measure_from = start + Duration::from_secs(2);
    let end = measure_from + Duration::from_secs(args.seconds);
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut down in downs {
        let (hist, received) = (hist.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new(3).unwrap();
            let stop = end + Duration::from_secs(2);
            while let Ok(Ok(Some(f))) =
                tokio::time::timeout(stop.saturating_duration_since(Instant::now()), down.message()).await
            {
                let Some(pb::server_frame::Frame::Presence(p)) = f.frame else { continue };
                let Some(us) = p.status.strip_prefix('t').and_then(|t| t.parse::<u64>().ok()) else { continue };
                let intended = start + Duration::from_micros(us);
                if intended >= measure_from && intended < end {
                    local.record(intended.elapsed().as_micros() as u64).unwrap();
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            hist.lock().await.add(local).unwrap();
        }));
    }
    // Each user changes presence every users/rate seconds, offsets spread evenly.
    let interval = Duration::from_secs_f64(args.users as f64 / args.rate as f64);
    let changes = Arc::new(AtomicU64::new(0));
    for (i, up) in ups.into_iter().enumerate() {
        let changes = changes.clone();
        let offset = interval.mul_f64(i as f64 / args.users as f64);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let at = offset + interval.mul_f64(n as f64);
                if start + at >= end {
                    break;
                }
                tokio::time::sleep_until((start + at).into()).await;
                let show = if n.is_multiple_of(2) { "away" } else { "available" };
                let p =
                    pb::SetPresence { show: show.into(), status: format!("t{}", at.as_micros()), ..Default::default() };
                if up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(p)) }).await.is_err() {
                    break;
                }
                if start + at >= measure_from {
                    changes.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            tokio::time::sleep_until((end + Duration::from_secs(3)).into()).await;
            drop(up);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let h = hist.lock().await;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let secs = args.seconds as f64;
    let changed = changes.load(Ordering::Relaxed) as f64;
    let got = received.load(Ordering::Relaxed) as f64;
    println!(
        "| {} users × {} contacts | changes {:.0}/s | deliveries {:.0}/s ({:.1}% of {:.0} expected) | p50 {:.1} ms | p99 {:.1} ms | max {:.1} ms |",
        args.users,
        args.contacts,
        changed / secs,
        got / secs,
        100.0 * got / (changed * args.contacts as f64).max(1.0),
        changed * args.contacts as f64 / secs,
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0,
    );
    drop(node);
    Ok(())
}
