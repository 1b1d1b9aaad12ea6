//! One run: provision users, log them in at the scenario's rate, offer messages on schedule
//! (open loop: each at its intended time, whatever happened to the ones before), measure,
//! report.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::scenario::Scenario;
use crate::stats::Stats;
use crate::xmpp::{self, Conn, Outgoing};

/// Wall-clock time in µs (shared by every worker process on the machine: a message's send
/// time is written by one process and read by another), and when sending starts.
#[derive(Clone)]
pub struct Clock {
    /// Sending starts here (Unix µs); seconds are counted from it.
    sending_from_us: Arc<AtomicU64>,
}

pub fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

impl Clock {
    pub fn now_us(&self) -> u64 {
        unix_us()
    }

    /// The second of the sending phase that `us` falls in.
    pub fn second(&self, us: u64) -> usize {
        (us.saturating_sub(self.sending_from_us.load(Ordering::Relaxed)) / 1_000_000) as usize
    }
}

/// A measurement from a connection.
pub enum Event {
    Delivered { sec: usize, latency_us: u64 },
    Acked { sec: usize, latency_us: u64 },
    Error { sec: usize, kind: String },
}

pub struct Options {
    pub server: SocketAddr,
    /// Telex admin API for provisioning (`None`: users exist already).
    pub admin: Option<String>,
    pub history: Option<PathBuf>,
    /// This process's share: connections `i` with `i % of == index`, and `1/of` of the rate.
    pub slice: (usize, usize),
    /// Local address connections are made from (several 127.0.0.x spread the port space).
    pub source: Option<std::net::IpAddr>,
    /// When sending starts (Unix µs), so that worker processes start together.
    pub start_at_us: Option<u64>,
}

async fn provision(admin: &str, s: &Scenario) -> anyhow::Result<()> {
    use telex_proto::v1::admin_client::AdminClient;
    use telex_proto::v1::AddUserRequest;
    let mut client =
        AdminClient::connect(format!("http://{admin}")).await.with_context(|| format!("admin API {admin}"))?;
    for u in 0..s.users {
        let req = AddUserRequest { jid: format!("lt{u}@{}", s.domain), password: s.password.clone() };
        match client.add_user(req).await {
            Ok(_) => {}
            Err(e) if e.code() == tonic::Code::AlreadyExists => {}
            Err(e) => anyhow::bail!("provisioning lt{u}@{}: {}", s.domain, e.message()),
        }
    }
    Ok(())
}

pub async fn run(s: &Scenario, o: &Options) -> anyhow::Result<Stats> {
    if let Some(admin) = &o.admin {
        provision(admin, s).await?;
        eprintln!("provisioned {} users", s.users);
    }
    let clock = Clock { sending_from_us: Arc::new(AtomicU64::new(u64::MAX)) };
    let (index, of) = o.slice;
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut stats = Stats::default();

    // Log in at the scenario's rate.
    let login_start = Instant::now();
    let mut conns: Vec<Conn> = Vec::new();
    let mut logging_in = tokio::task::JoinSet::new();
    let total = s.online_users() * s.devices;
    for (k, i) in (0..total).filter(|i| i % of == index).enumerate() {
        let due = login_start + Duration::from_secs_f64(k as f64 * of as f64 / s.login_rate);
        tokio::time::sleep_until(due.into()).await;
        let (user, device) = (i / s.devices, i % s.devices);
        let (domain, password, tx) = (s.domain.clone(), s.password.clone(), tx.clone());
        let (server, source, clock) = (o.server, o.source, clock.clone());
        logging_in
            .spawn(async move { xmpp::connect(server, source, &domain, user, device, &password, clock, tx).await });
    }
    while let Some(c) = logging_in.join_next().await {
        match c? {
            Ok(c) => conns.push(c),
            Err(e) => {
                *stats.errors.entry(format!("login: {e:#}")).or_default() += 1;
            }
        }
    }
    stats.logins = conns.len() as u64;
    stats.login_secs = login_start.elapsed().as_secs_f64();
    anyhow::ensure!(!conns.is_empty(), "no connection logged in: {:?}", stats.errors);
    eprintln!(
        "{} connections in {:.1} s ({:.0}/s)",
        conns.len(),
        stats.login_secs,
        stats.logins as f64 / stats.login_secs
    );
    conns.sort_by_key(|c| c.user);

    // Send on schedule.
    let sending_from_us = o.start_at_us.unwrap_or_else(unix_us);
    clock.sending_from_us.store(sending_from_us, Ordering::Relaxed);
    let sending_secs = s.ramp_up_secs + s.warm_up_secs + s.duration_secs;
    let send_start = Instant::now() + Duration::from_micros(sending_from_us.saturating_sub(unix_us()));
    let body_pad = "x".repeat(s.message_bytes.saturating_sub(24));
    let mut history = Vec::new();
    let mut n: u64 = 0;
    let mut next_at = 0.0_f64;
    let mut last_progress = 0;
    while s.message_rate > 0.0 && next_at < sending_secs as f64 {
        let due = send_start + Duration::from_secs_f64(next_at);
        // Take measurements while waiting.
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => break,
                Some(e) = rx.recv() => record(&mut stats, e),
            }
        }
        let sec = next_at as usize;
        if sec > last_progress {
            last_progress = sec;
            progress(&stats, sec - 1, conns.len());
        }
        let c = &conns[(n as usize) % conns.len()];
        let to = s.contact(c.user, (n as usize / conns.len()) % s.contacts);
        let intended_us = sending_from_us + (next_at * 1e6) as u64;
        let id = format!("lt-{n}");
        let xml = format!(
            "<message to='lt{to}@{}' id='{id}' type='chat'><body>t{intended_us} {body_pad}</body></message>",
            s.domain
        );
        stats.sent(sec);
        match c.out.try_send(Outgoing { xml, intended_us: Some(intended_us) }) {
            Ok(()) => history.push((format!("lt{to}@{}", s.domain), id)),
            Err(_) => stats.error(sec, "client backlog (connection not keeping up)"),
        }
        n += 1;
        let rate = s.rate_at(next_at) / of as f64;
        next_at += if rate > 0.0 { 1.0 / rate } else { sending_secs as f64 };
    }
    // Let the last deliveries and acknowledgements arrive.
    let drain_until = Instant::now() + Duration::from_secs(3);
    while let Ok(Some(e)) = tokio::time::timeout_at(drain_until.into(), rx.recv()).await {
        record(&mut stats, e);
    }
    progress(&stats, sending_secs.saturating_sub(1) as usize, conns.len());
    drop(conns);
    if let Some(path) = &o.history {
        write_history(path, &history)?;
    }
    Ok(stats)
}

/// Runs the scenario in `n` worker processes (connections and rate shared out, each from its
/// own source address), all sending from the same instant, and merges their figures.
pub async fn workers(
    s: &Scenario,
    server: SocketAddr,
    admin: Option<&str>,
    n: usize,
    sources: &[std::net::IpAddr],
) -> anyhow::Result<Stats> {
    if let Some(admin) = admin {
        provision(admin, s).await?;
        eprintln!("provisioned {} users", s.users);
    }
    // Everyone logs in first (at the scenario's rate, generously), then sends together.
    let login_secs = (s.online_users() * s.devices) as f64 / s.login_rate;
    let start_at_us = unix_us() + ((login_secs * 1.5 + 3.0) * 1e6) as u64;
    let exe = std::env::current_exe()?;
    let json = serde_json::to_string(s)?;
    let mut children = Vec::new();
    for i in 0..n {
        let source = match sources {
            [] => std::net::IpAddr::from([127, 0, 0, 2 + (i % 250) as u8]),
            list => list[i % list.len()],
        };
        let mut command = std::process::Command::new(&exe);
        command
            .args(["worker", "--scenario-json", &json, "--server", &server.to_string()])
            .args(["--index", &i.to_string(), "--of", &n.to_string(), "--source", &source.to_string()])
            .args(["--start-at-us", &start_at_us.to_string()])
            .stdout(std::process::Stdio::piped());
        // Waiting for a process blocks: on the blocking pool.
        children.push(tokio::task::spawn_blocking(move || command.output()));
    }
    let mut stats = Stats::default();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.await?.context("running a worker")?;
        anyhow::ensure!(out.status.success(), "worker {i} failed ({})", out.status);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("a worker's figures")?;
        stats.merge_json(&v)?;
    }
    Ok(stats)
}

fn record(stats: &mut Stats, e: Event) {
    match e {
        Event::Delivered { sec, latency_us } => stats.delivered(sec, latency_us),
        Event::Acked { sec, latency_us } => stats.acked(sec, latency_us),
        Event::Error { sec, kind } => stats.error(sec, &kind),
    }
}

/// The live progress line for second `sec`.
fn progress(stats: &Stats, sec: usize, conns: usize) {
    let Some(s) = stats.seconds.get(sec) else { return };
    let p99 = if s.delivery.is_empty() { 0.0 } else { s.delivery.value_at_quantile(0.99) as f64 / 1000.0 };
    eprintln!(
        "[{sec:>4}s] sent {:>6}/s  acked {:>6}/s  delivered {:>6}/s  p99 {p99:>8.1} ms  errors {:>4}  connections {conns}",
        s.sent, s.acked, s.delivered, s.errors
    );
}

/// JSON lines in the history checker's terms: every message the tool tried to send, with its
/// recipient (the archive owner) and client id; whether it was acknowledged is in the
/// summary, per message only for the checker's own runs.
fn write_history(path: &PathBuf, sent: &[(String, String)]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (owner, id) in sent {
        writeln!(f, "{}", serde_json::json!({ "owner": owner, "client_id": id, "outcome": "info" }))?;
    }
    Ok(())
}
