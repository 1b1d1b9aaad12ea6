//! XMPP gateway figures on one node, over plain c2s on loopback (PLAIN auth, allowed there):
//!
//! - `--idle N`: server memory per idle XMPP session (N sessions, 10 resources per user,
//!   each bound with initial presence), as growth of the server's RSS divided by N;
//! - `--rate R --seconds S --pairs P`: P senders each write to their own receiver, open loop,
//!   R messages/s in total; reports messages delivered per second and the latency from the
//!   intended send time to arrival at the receiver.
//!
//! ```text
//! cargo build --release --bins
//!     cargo run --release -p telex-testkit --example xmpp-bench -- --idle 10000
//!     cargo run --release -p telex-testkit --example xmpp-bench -- --rate 5000 --seconds 15

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use clap::Parser;
use hdrhistogram::Histogram;
use telex_proto::v1 as pb;
use telex_testkit::{cpu_time, data_dir, Telexd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Measure idle memory with this many sessions (instead of throughput).
    #[arg(long)]
    idle: Option<usize>,
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    #[arg(long, default_value_t = 64)]
    shards: u32,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

const OPEN: &str = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// A bound XMPP session, split for reading and writing.
struct Conn {
    r: OwnedReadHalf,
    w: OwnedWriteHalf,
    got: String,
}

impl Conn {
    async fn expect(&mut self, needle: &str) -> anyhow::Result<()> {
        let mut buf = [0u8; 4096];
        while !self.got.contains(needle) {
            let n = tokio::time::timeout(Duration::from_secs(60), self.r.read(&mut buf)).await??;
            anyhow::ensure!(n > 0, "closed while waiting for {needle}: {}", self.got);
            self.got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let at = self.got.find(needle).unwrap() + needle.len();
        self.got.drain(..at);
        Ok(())
    }

    async fn login(addr: SocketAddr, user: &str, resource: &str) -> anyhow::Result<Conn> {
        let (r, w) = TcpStream::connect(addr).await?.into_split();
        let mut c = Conn { r, w, got: String::new() };
        c.w.write_all(OPEN.as_bytes()).await?;
        c.expect("</stream:features>").await?;
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"));
        let auth = format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>");
        c.w.write_all(auth.as_bytes()).await?;
        c.expect("<success").await?;
        c.w.write_all(OPEN.as_bytes()).await?;
        c.expect("</stream:features>").await?;
        let bind = format!("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq><presence/>");
        c.w.write_all(bind.as_bytes()).await?;
        c.expect("</iq>").await?;
        Ok(c)
    }
}

async fn add_users(node: &Telexd, names: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut admin = telex_testkit::admin_client(node.admin_url()).await?;
    for n in names {
        admin.add_user(pb::AddUserRequest { jid: format!("{n}@localhost"), password: "pw".into() }).await?;
    }
    Ok(())
}

async fn idle(node: &Telexd, sessions: usize) -> anyhow::Result<()> {
    const RESOURCES: usize = 10;
    let users = sessions.div_ceil(RESOURCES);
    add_users(node, (0..users).map(|u| format!("idle{u}"))).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_kib(node.pid());
    let started = Instant::now();
    let mut held = Vec::with_capacity(sessions);
    for chunk in (0..sessions).collect::<Vec<_>>().chunks(32) {
        let mut opening = tokio::task::JoinSet::new();
        for &i in chunk {
            let addr = node.addrs.xmpp;
            opening.spawn(async move {
                Conn::login(addr, &format!("idle{}", i / RESOURCES), &format!("r{}", i % RESOURCES)).await
            });
        }
        while let Some(c) = opening.join_next().await {
            held.push(c??);
        }
        if held.len() % 2000 < 32 {
            eprintln!("{} XMPP sessions, server RSS {} MiB", held.len(), rss_kib(node.pid()) / 1024);
        }
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(node.pid());
    let per = (after.saturating_sub(before)) * 1024 / sessions as u64;
    println!(
        "{sessions} idle XMPP sessions ({users} users x {RESOURCES} resources): opened in {opened:.1?} ({:.0}/s); \
         server RSS {} MiB -> {} MiB: {per} bytes ({:.1} KiB) per session",
        sessions as f64 / opened.as_secs_f64(),
        before / 1024,
        after / 1024,
        per as f64 / 1024.0
    );
    drop(held);
    Ok(())
}

async fn throughput(node: &Telexd, args: &Args) -> anyhow::Result<()> {
    let pairs = args.pairs;
    add_users(node, (0..pairs).flat_map(|i| [format!("s{i}"), format!("r{i}")])).await?;
    let mut senders = Vec::new();
    let received = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    for i in 0..pairs {
        senders.push(Conn::login(node.addrs.xmpp, &format!("s{i}"), "bench").await?);
        let r = Conn::login(node.addrs.xmpp, &format!("r{i}"), "bench").await?;
        let (received, finished) = (received.clone(), finished.clone());
        readers.spawn(async move {
            // The whole connection: dropping its write half would end the stream.
            let mut r = r;
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let mut buf = vec![0u8; 16384];
            let mut pending = std::mem::take(&mut r.got);
            let mut idle = 0;
            loop {
                let n = match tokio::time::timeout(Duration::from_secs(1), r.r.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => n,
                    Err(_) => {
                        // Done once the senders are and nothing came for a while.
                        idle = if finished.load(Ordering::Relaxed) { idle + 1 } else { 0 };
                        if idle >= 3 {
                            break;
                        }
                        continue;
                    }
                };
                idle = 0;
                pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                // Each message body is "t<intended send time in ms>".
                while let Some(at) = pending.find("<body>t") {
                    let Some(end) = pending[at..].find("</body>") else { break };
                    let sent: u64 = pending[at + 7..at + end].parse().unwrap_or(0);
                    let _ = hist.record(now_ms().saturating_sub(sent).max(1));
                    received.fetch_add(1, Ordering::Relaxed);
                    pending.drain(..at + end);
                }
            }
            hist
        });
    }
    eprintln!("{pairs} sender/receiver pairs bound; sending {} msg/s for {} s", args.rate, args.seconds);
    let per_sender = args.rate as f64 / pairs as f64;
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    let total = per_sender as u64 * args.seconds;
    let start = Instant::now();
    let start_ms = now_ms();
    let mut writers = tokio::task::JoinSet::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        let offset = interval.mul_f64(i as f64 / pairs as f64);
        writers.spawn(async move {
            let mut buf = vec![0u8; 8192];
            for k in 0..total {
                // Open loop: the intended send time, not when the last write finished.
                let due = offset + interval.mul_f64(k as f64);
                tokio::time::sleep_until((start + due).into()).await;
                let intended = start_ms + due.as_millis() as u64;
                let m =
                    format!("<message to='r{i}@localhost' id='m{k}' type='chat'><body>t{intended}</body></message>");
                s.w.write_all(m.as_bytes()).await?;
                // Drain what the server sends back (errors, if any) without blocking.
                while let Ok(Ok(n)) = tokio::time::timeout(Duration::ZERO, s.r.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                    anyhow::ensure!(!String::from_utf8_lossy(&buf[..n]).contains("type='error'"), "a send was refused");
                }
            }
            anyhow::Ok(s)
        });
    }
    let cpu_before = cpu_time(node.pid());
    let mut kept = Vec::new();
    while let Some(w) = writers.join_next().await {
        kept.push(w??);
    }
    let sending = start.elapsed();
    let server_cpu = cpu_time(node.pid()) - cpu_before;
    finished.store(true, Ordering::Relaxed);
    let sent = total * pairs as u64;
    let mut hist = Histogram::<u64>::new(3).unwrap();
    while let Some(h) = readers.join_next().await {
        hist.add(h?).unwrap();
    }
    let elapsed = sending.as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    println!(
        "XMPP 1:1 on one node: offered {} msg/s, sent {sent}, delivered {got} ({:.0} msg/s over the {:.1} s of sending); \
         latency intended-send -> delivered p50 {} ms, p99 {} ms, max {} ms; server CPU {:.0} µs/msg",
        args.rate,
        got as f64 / elapsed,
        elapsed,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max(),
        server_cpu.as_micros() as f64 / sent.max(1) as f64
    );
    anyhow::ensure!(got == sent, "{} messages were not delivered", sent - got);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", &args.shards.to_string()]);
    match args.idle {
        Some(n) => idle(&node, n).await,
        None => throughput(&node, &args).await,
    }
}
