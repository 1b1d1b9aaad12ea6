//! Room fan-out of one telexd (or a cluster on this machine): a room of `--members` members of
//! whom `--online` have a native device connected; `--senders` of those say `--rate` messages/s
//! in total, open-loop. Every online device (senders included) receives every message; the
//! figure is the time from a message's intended send to its *last* delivery, p50/p99, and the
//! room messages/s sustained.
//!
//!     cargo build --release --bins
//!     cargo run --release -p telex-testkit --example room-bench -- --members 10000 --online 1000 --rate 50
//!     cargo run --release -p telex-testkit --example room-bench -- --members 100 --online 100 --rate 1000

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use telex_proto::v1::rooms_client::RoomsClient;
use telex_testkit::client::{authed, login};
use telex_testkit::{cpu_time, data_dir, Telexd};
use tokio::sync::Semaphore;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    #[arg(long, default_value_t = 1_000)]
    online: usize,
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Room messages per second, all senders together.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    shards: u32,
    /// Nodes in the cluster (on this machine); devices are spread over them.
    #[arg(long, default_value_t = 1)]
    nodes: u64,
}

const ROOM: &str = "bench@conference.localhost";

fn jid(i: usize) -> String {
    format!("m{i}@localhost")
}

/// Runs `f` for every index with at most `parallel` at a time.
async fn each<F, Fut>(n: usize, parallel: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let job = f(i);
        tasks.spawn(async move {
            let r = job.await;
            drop(permit);
            r
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.online <= args.members && args.senders <= args.online, "senders ≤ online ≤ members");
    let (tmp, dir) = data_dir();
    let config = tmp.path().join("bench.toml");
    std::fs::write(
        &config,
        "[limits]\nsends_per_second = 1000000\nsend_burst = 1000000\nroom_messages_per_second = 100000\nroom_message_burst = 100000\n",
    )?;
    let shards = args.shards.to_string();
    let flags = ["--shards", shards.as_str(), "--config", config.to_str().unwrap()];
    let mut nodes = vec![Telexd::start_member(&dir, 1, None, &flags)];
    let mut dirs = Vec::new();
    for id in 2..=args.nodes {
        let (tmp, dir) = data_dir();
        nodes.push(Telexd::start_member(&dir, id, Some(nodes[0].addrs.node), &flags));
        dirs.push(tmp);
    }
    if args.nodes > 1 {
        nodes[0].cli(&["cluster", "rebalance"]).success();
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.client_url()).collect();
    let setup = Instant::now();
    let admin = telex_testkit::admin_client(nodes[0].admin_url()).await?;
    each(args.members, 16, |i| {
        let mut admin = admin.clone();
        async move {
            admin.add_user(pb::AddUserRequest { jid: jid(i), password: "pw".into() }).await?;
            Ok(())
        }
    })
    .await?;
    let owner = login(&urls[0], &jid(0), "pw", "owner").await;
    let rooms = RoomsClient::connect(urls[0].clone()).await?;
    let mut config =
        pb::RoomConfig { public: true, persistent: true, max_members: args.members as u32, ..Default::default() };
    config.invite = "members".into();
    config.anonymity = "semi".into();
    config.history_on_join = 20;
    config.private_messages = true;
    rooms.clone().create(authed(pb::CreateRoomRequest { room: ROOM.into(), config: Some(config) }, &owner)).await?;
    each(args.members - 1, 16, |i| {
        let (mut rooms, owner) = (rooms.clone(), owner.clone());
        async move {
            let req = pb::SetAffiliationRequest { room: ROOM.into(), jid: jid(i + 1), affiliation: "member".into() };
            rooms.set_affiliation(authed(req, &owner)).await?;
            Ok(())
        }
    })
    .await?;
    eprintln!("set up {} users in a room in {:.1?}", args.members, setup.elapsed());

    // The online members' devices, each on its own connection, spread over the nodes.
    let mut tokens = Vec::new();
    let mut downs = Vec::new();
    let mut ups = Vec::new();
    for i in 0..args.online {
        let url = &urls[i % urls.len()];
        let token = login(url, &jid(i), "pw", "bench").await;
        let (up, rx) = tokio::sync::mpsc::channel::<pb::ClientFrame>(16);
        let c = ClientClient::connect(url.clone()).await?;
        downs.push(c.clone().session(authed(ReceiverStream::new(rx), &token)).await?.into_inner());
        ups.push(up);
        tokens.push(token);
    }
    eprintln!("{} devices online", args.online);
    let start = Instant::now() + Duration::from_secs(2);
    let measure_from = start + Duration::from_secs(2);
    let end = measure_from + Duration::from_secs(args.seconds);
    let mut receivers = Vec::new();
    for mut down in downs {
        receivers.push(tokio::spawn(async move {
            // (message number, µs from its intended send to arrival)
            let mut got: Vec<(u64, u64)> = Vec::new();
            let stop = end + Duration::from_secs(5);
            while let Ok(Ok(Some(f))) =
                tokio::time::timeout(stop.saturating_duration_since(Instant::now()), down.message()).await
            {
                let Some(pb::server_frame::Frame::Room(ev)) = f.frame else { continue };
                let Some(pb::room_event::Event::Entry(e)) = ev.event else { continue };
                let Some((n, us)) = e.body.split_once(' ').and_then(|(n, t)| Some((n.parse().ok()?, t.parse().ok()?)))
                else {
                    continue;
                };
                let intended = start + Duration::from_micros(us);
                got.push((n, intended.elapsed().as_micros() as u64));
            }
            got
        }));
    }
    let cpu_before = nodes.iter().map(|n| cpu_time(n.pid()).as_secs_f64()).sum::<f64>();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut sent = Vec::new();
    // One connection per sender, reused for all its sends.
    let mut clients = Vec::new();
    for who in 0..args.senders {
        clients.push(RoomsClient::connect(urls[who % urls.len()].clone()).await?);
    }
    let mut n = 0u64;
    let mut said = tokio::task::JoinSet::new();
    loop {
        let at = interval.mul_f64(n as f64);
        if start + at >= end {
            break;
        }
        tokio::time::sleep_until((start + at).into()).await;
        let who = n as usize % args.senders;
        let token = tokens[who].clone();
        let mut c = clients[who].clone();
        let body = format!("{n} {}", at.as_micros());
        let measured = start + at >= measure_from;
        said.spawn(async move {
            let req = pb::SayRequest { room: ROOM.into(), client_id: format!("s{n}"), body, subject: false };
            (n, measured, c.say(authed(req, &token)).await.is_ok())
        });
        n += 1;
    }
    while let Some(r) = said.join_next().await {
        sent.push(r?);
    }
    let cpu = nodes.iter().map(|n| cpu_time(n.pid()).as_secs_f64()).sum::<f64>() - cpu_before;
    drop(ups);
    let measured: Vec<u64> = sent.iter().filter(|(_, m, ok)| *m && *ok).map(|(n, _, _)| *n).collect();
    let in_window: std::collections::HashSet<u64> = measured.iter().copied().collect();
    let mut last: HashMap<u64, (u64, usize)> = HashMap::new();
    let mut per_delivery = Histogram::<u64>::new(3)?;
    for r in receivers {
        for (n, us) in r.await?.into_iter().filter(|(n, _)| in_window.contains(n)) {
            let e = last.entry(n).or_insert((0, 0));
            e.0 = e.0.max(us);
            e.1 += 1;
            per_delivery.record(us)?;
        }
    }
    let refused = sent.iter().filter(|(_, _, ok)| !ok).count();
    let mut last_h = Histogram::<u64>::new(3)?;
    let mut missing = 0usize;
    for n in &measured {
        match last.get(n) {
            Some((us, count)) => {
                last_h.record(*us)?;
                missing += args.online - count.min(&args.online);
            }
            None => missing += args.online,
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {} members, {} online, {} node(s) | {:.0} msg/s | deliveries {:.0}/s | last delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | each delivery p99 {:.1} ms | missing {} | refused {} | server CPU {:.2} cores |",
        args.members,
        args.online,
        args.nodes,
        measured.len() as f64 / args.seconds as f64,
        per_delivery.len() as f64 / args.seconds as f64,
        ms(&last_h, 0.5),
        ms(&last_h, 0.99),
        last_h.max() as f64 / 1000.0,
        ms(&per_delivery, 0.99),
        missing,
        refused,
        cpu / (args.seconds as f64 + 2.0),
    );
    drop(nodes);
    drop(dirs);
    Ok(())
}
