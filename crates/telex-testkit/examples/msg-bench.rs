//! Durable 1:1 message throughput and latency of one telexd, driven open-loop over gRPC.
//!
//! Starts a release `telexd` (separate process), creates `--pairs` sender/receiver pairs, and
//! sends at `--rate` messages/s in total on a fixed schedule. Ack latency is measured from the
//! *intended* send time (so a slow server cannot hide it); delivery latency from the server's
//! accept time to arrival at the receiving device.
//!
//!     cargo build --release --bins
//!     cargo run --release -p telex-testkit --example msg-bench -- --rate 10000 --seconds 20

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use telex_proto::v1 as pb;
use telex_testkit::client::{authed, client, login, Device};
use telex_testkit::{cpu_time, data_dir, Telexd};
use tokio::sync::Mutex;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Parser)]
struct Args {
    /// Total offered rate, messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    #[arg(long, default_value_t = 64)]
    shards: u32,
    /// Nodes in the cluster (all on this machine); sessions are spread over them, each
    /// receiver on another node than its sender.
    #[arg(long, default_value_t = 1)]
    nodes: u64,
    /// Keep every group led by node 1 (a fresh cluster) instead of spreading the leaders.
    #[arg(long)]
    no_rebalance: bool,
    /// Give the tenant a realistic directory and policy first: the senders and receivers in
    /// 50 departments, 20 more groups, 10 information barriers and 90 deny rules that the
    /// benchmark's messages pass (so each send evaluates them all).
    #[arg(long)]
    policy: bool,
}

/// The directory and policy of `--policy`.
async fn realistic_policy(url: String, pairs: usize) -> anyhow::Result<()> {
    use telex_proto::v1::directory_client::DirectoryClient;
    let mut d = DirectoryClient::new(telex_testkit::admin_channel(url).await?);
    let group = |name: String| pb::PutGroupRequest { tenant: "localhost".into(), name, ..Default::default() };
    let member =
        |group: String, jid: String| pb::GroupMemberRequest { tenant: "localhost".into(), group, jid, member: true };
    for g in 0..50 {
        d.put_group(group(format!("dept{g}"))).await?;
    }
    for h in 0..20 {
        d.put_group(group(format!("team{h}"))).await?;
        for k in 0..5 {
            d.set_group_member(member(format!("team{h}"), format!("x{h}-{k}@localhost"))).await?;
        }
    }
    for i in 0..pairs {
        d.set_group_member(member(format!("dept{}", i % 50), format!("s{i}@localhost"))).await?;
        d.set_group_member(member(format!("dept{}", (i + 25) % 50), format!("r{i}@localhost"))).await?;
    }
    let mut text = String::new();
    for b in 0..10 {
        text += &format!(
            "[[barrier]]\nname = \"wall{b}\"\nbetween = [\"group:team{}\", \"group:team{}\"]\ndescription = \"kept apart\"\n\n",
            2 * b,
            2 * b + 1
        );
    }
    for r in 0..90 {
        text += &format!(
            "[[rule]]\nname = \"rule{r}\"\neffect = \"deny\"\nactions = [\"message\"]\nfrom = [\"group:team{}\"]\nexcept_from = [\"attr:title=Manager\"]\nto = [\"group:dept{}\", \"attr:department=Board\"]\ndescription = \"no\"\n\n",
            r % 20,
            r % 50
        );
    }
    let req = pb::SetPolicyRequest { tenant: "localhost".into(), text, comment: "msg-bench".into(), dry_run: false };
    let v = d.set_policy(req).await?.into_inner().version;
    eprintln!("policy version {v}: 10 barriers, 90 rules over 70 groups");
    // Each node compiles it from its replica just after the write.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (tmp, dir) = data_dir();
    // The per-user send limit would otherwise refuse the bursts an overloaded run produces.
    let config = tmp.path().join("bench.toml");
    std::fs::write(&config, "[limits]\nsends_per_second = 1000000\nsend_burst = 1000000\n")?;
    let shards = args.shards.to_string();
    let flags = ["--shards", shards.as_str(), "--config", config.to_str().unwrap()];
    let mut nodes = vec![Telexd::start_member(&dir, 1, None, &flags)];
    let mut dirs = Vec::new();
    for id in 2..=args.nodes {
        let (tmp, dir) = data_dir();
        nodes.push(Telexd::start_member(&dir, id, Some(nodes[0].addrs.node), &flags));
        dirs.push(tmp);
    }
    let mut admin = telex_testkit::admin_client(nodes[0].admin_url()).await?;
    // Every group replicated on every node (up to 3) before the clock starts.
    let want = args.nodes.min(3) as usize;
    loop {
        let s = admin.node_status(pb::NodeStatusRequest {}).await?.into_inner();
        if s.groups.iter().all(|g| g.voters.len() == want && g.leader != 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if args.nodes > 1 && !args.no_rebalance {
        let r = admin.rebalance(pb::RebalanceRequest {}).await?.into_inner();
        let after: Vec<String> = r.after.iter().map(|c| format!("node {}: {}", c.node_id, c.groups)).collect();
        eprintln!("group leaders: {}", after.join(", "));
    }
    for i in 0..args.pairs {
        for side in ["s", "r"] {
            let req = pb::AddUserRequest { jid: format!("{side}{i}@localhost"), password: "pw".into() };
            admin.add_user(req).await?;
        }
    }
    if args.policy {
        realistic_policy(nodes[0].admin_url(), args.pairs).await?;
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.client_url()).collect();
    let ack_hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let deliver_hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let per_sender = args.rate as f64 / args.pairs as f64;
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    let warmup = Duration::from_secs(3);
    // Every session is open before the schedule starts.
    let mut sessions = Vec::new();
    for i in 0..args.pairs {
        let (url, rx_url) = (&urls[i % urls.len()], &urls[(i + 1) % urls.len()]);
        let rx = Device::open(rx_url, &login(rx_url, &format!("r{i}@localhost"), "pw", "bench").await).await?;
        let token = login(url, &format!("s{i}@localhost"), "pw", "bench").await;
        let (up, up_rx) = tokio::sync::mpsc::channel::<pb::ClientFrame>(4096);
        let down = client(url).await.session(authed(ReceiverStream::new(up_rx), &token)).await?.into_inner();
        sessions.push((rx, up, down));
    }
    let start = Instant::now() + Duration::from_millis(500);
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs(args.seconds);
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid()).collect();
    let cpu_window = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let first: Duration = pids.iter().map(|p| cpu_time(*p)).sum();
        tokio::time::sleep_until(end.into()).await;
        pids.iter().map(|p| cpu_time(*p)).sum::<Duration>() - first
    });
    let mut tasks = Vec::new();
    for (i, (mut rx, up, mut down)) in sessions.into_iter().enumerate() {
        let (deliver_hist, delivered) = (deliver_hist.clone(), delivered.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new(3).unwrap();
            while let Some(m) = rx.message(Duration::from_secs(5)).await {
                if Instant::now() >= measure_from && Instant::now() < end {
                    local.record(now_ms().saturating_sub(m.sent_at_ms) * 1000).unwrap();
                    delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                rx.ack(m.position).await;
            }
            deliver_hist.lock().await.add(local).unwrap();
        }));
        // Sender: the send schedule and the result reader run apart, so a slow result never
        // delays the next send.
        let ack_hist = ack_hist.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new(3).unwrap();
            while let Ok(Some(f)) = down.message().await {
                let Some(pb::server_frame::Frame::Sent(r)) = f.frame else { continue };
                assert!(r.error.is_empty(), "{r:?}");
                let intended_us: u64 = r.client_id.split(':').nth(1).unwrap().parse().unwrap();
                let intended = start + Duration::from_micros(intended_us);
                if intended >= measure_from && intended < end {
                    local.record(intended.elapsed().as_micros() as u64).unwrap();
                }
                if Instant::now() > end + Duration::from_secs(10) {
                    break;
                }
            }
            ack_hist.lock().await.add(local).unwrap();
        }));
        let offset = interval.mul_f64(i as f64 / args.pairs as f64);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let at = offset + interval.mul_f64(n as f64);
                if start + at >= end {
                    break;
                }
                tokio::time::sleep_until((start + at).into()).await;
                let send = pb::SendMessage {
                    client_id: format!("{n}:{}", at.as_micros()),
                    to: format!("r{i}@localhost"),
                    body: "benchmark message body of modest size".into(),
                    ..Default::default()
                };
                if up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(send)) }).await.is_err() {
                    break;
                }
                n += 1;
            }
            // Keep the stream open until the results are in.
            tokio::time::sleep_until((end + Duration::from_secs(3)).into()).await;
            drop(up);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let server_cpu = cpu_window.await?;
    let acks = ack_hist.lock().await;
    let del = deliver_hist.lock().await;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| offered {}/s | acked {:.0}/s | ack p50 {:.2} ms | p99 {:.2} ms | p99.9 {:.2} ms | max {:.2} ms | delivered {:.0}/s | delivery p50 {:.1} ms | p99 {:.1} ms | server CPU {:.0} µs/msg |",
        args.rate,
        acks.len() as f64 / args.seconds as f64,
        ms(&acks, 0.5),
        ms(&acks, 0.99),
        ms(&acks, 0.999),
        acks.max() as f64 / 1000.0,
        delivered.load(std::sync::atomic::Ordering::Relaxed) as f64 / args.seconds as f64,
        ms(&del, 0.5),
        ms(&del, 0.99),
        server_cpu.as_micros() as f64 / acks.len().max(1) as f64,
    );
    Ok(())
}
