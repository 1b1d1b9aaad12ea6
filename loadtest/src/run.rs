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

use crate::driver::{Action, Conn, Event, Login};
use crate::scenario::Scenario;
use crate::stats::Stats;

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

pub struct Options {
    /// Servers to connect to, connections spread over them in turn (the nodes of a cluster).
    pub servers: Vec<SocketAddr>,
    /// Telex admin API for provisioning (`None`: users exist already).
    pub admin: Option<String>,
    pub history: Option<PathBuf>,
    /// This process's share: connections `i` with `i % of == index`, and `1/of` of the rates.
    pub slice: (usize, usize),
    /// Local address connections are made from (several 127.0.0.x spread the port space).
    pub source: Option<std::net::IpAddr>,
    /// When sending starts (Unix µs), so that worker processes start together.
    pub start_at_us: Option<u64>,
    /// Names this run in message ids (`lt-<run>-<worker>-<n>`): servers deduplicate by id, so
    /// a run must not reuse the ids of one before it.
    pub run_id: String,
}

/// A run id unlikely to repeat: the start time in milliseconds, base 36.
pub fn new_run_id() -> String {
    let mut n = unix_us() / 1000;
    let mut id = Vec::new();
    while n > 0 {
        id.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    id.reverse();
    String::from_utf8(id).expect("ascii")
}

async fn provision(admin: &str, s: &Scenario) -> anyhow::Result<()> {
    use telex_proto::v1::admin_client::AdminClient;
    use telex_proto::v1::AddUserRequest;
    let mut client =
        AdminClient::connect(format!("http://{admin}")).await.with_context(|| format!("admin API {admin}"))?;
    // The admin token: TELEX_ADMIN_TOKEN, or the one a node started in this directory wrote.
    let token = std::env::var("TELEX_ADMIN_TOKEN")
        .ok()
        .or_else(|| std::fs::read_to_string("telex-data/admin-token").ok())
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
        format!("Bearer {token}").parse().ok().filter(|_| !token.is_empty());
    for u in 0..s.users {
        let mut req =
            tonic::Request::new(AddUserRequest { jid: format!("lt{u}@{}", s.domain), password: s.password.clone() });
        if let Some(b) = &bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        match client.add_user(req).await {
            Ok(_) => {}
            Err(e) if e.code() == tonic::Code::AlreadyExists => {}
            Err(e) => anyhow::bail!("provisioning lt{u}@{}: {}", s.domain, e.message()),
        }
    }
    eprintln!("provisioned {} users", s.users);
    Ok(())
}

/// Creates the users the scenario's way: its own command, else Telex's admin API if given.
async fn provision_users(s: &Scenario, admin: Option<&str>) -> anyhow::Result<()> {
    if s.provision_command.is_empty() {
        return match admin {
            Some(admin) => provision(admin, s).await,
            None => Ok(()),
        };
    }
    let mut command = std::process::Command::new("sh");
    command.args(["-c", &s.provision_command]);
    command.env("LT_USERS", s.users.to_string()).env("LT_DOMAIN", &s.domain).env("LT_PASSWORD", &s.password);
    // Waiting for a process blocks: on the blocking pool.
    let status = tokio::task::spawn_blocking(move || command.status()).await?.context("provision_command")?;
    anyhow::ensure!(status.success(), "provision_command failed ({status})");
    eprintln!("provisioned {} users with provision_command", s.users);
    Ok(())
}

/// What became of one message this process offered (the history checker's outcomes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Written, no answer (yet): unknown.
    Info,
    Ok,
    Fail,
}

/// One connection slot: how to log it in again, and the connection while it is up.
struct Slot {
    login: Login,
    conn: Option<Conn>,
}

/// A reconnect that finished: the slot, the connection or why not, and how long it took.
type Relogged = (usize, anyhow::Result<(Conn, Login)>, u64);

/// The state of one run while it sends.
struct Runner {
    stats: Stats,
    /// Per message number: sender, recipient and outcome.
    history: Vec<(usize, usize, Outcome)>,
    subscribed: usize,
}

impl Runner {
    fn record(&mut self, e: Event) {
        match e {
            Event::Delivered { sec, latency_us } => self.stats.delivered(sec, latency_us),
            Event::Acked { sec, latency_us, n } => {
                self.stats.acked(sec, latency_us);
                if let Some(h) = self.history.get_mut(n as usize) {
                    if h.2 == Outcome::Info {
                        h.2 = Outcome::Ok;
                    }
                }
            }
            Event::Refused { sec, n, kind } => {
                self.stats.error(sec, &kind);
                if let Some(h) = self.history.get_mut(n as usize) {
                    h.2 = Outcome::Fail;
                }
            }
            Event::PresenceSeen { sec, latency_us } => self.stats.presence_seen(sec, latency_us),
            Event::Subscribed => self.subscribed += 1,
            // Only the sending phase logs connections in again.
            Event::Closed { .. } => {}
            Event::Error { sec, kind } => self.stats.error(sec, &kind),
        }
    }
}

/// Logs the connection in, timing it.
async fn timed_login(login: Login) -> (anyhow::Result<Conn>, u64) {
    let t = Instant::now();
    let c = login.connect().await;
    (c, t.elapsed().as_micros() as u64)
}

/// Logs a slot in again (retrying for a while: its server may be down, the next one is
/// tried) and reports back on `done`.
fn relogin(slot: usize, mut login: Login, servers: &[SocketAddr], done: mpsc::UnboundedSender<Relogged>) {
    login.generation += 1;
    let servers = servers.to_vec();
    tokio::spawn(async move {
        let started = Instant::now();
        let mut attempt = 0;
        let c = loop {
            match login.clone().connect().await {
                Ok(c) => break Ok(c),
                Err(e) if attempt >= 20 => break Err(e),
                Err(_) => {
                    attempt += 1;
                    let at = servers.iter().position(|s| *s == login.server).unwrap_or(0);
                    login.server = servers[(at + 1) % servers.len()];
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        let _ = done.send((slot, c.map(|c| (c, login)), started.elapsed().as_micros() as u64));
    });
}

/// The next open connection at or after slot `i`.
fn open_slot(slots: &[Slot], i: usize) -> Option<&Conn> {
    (0..slots.len()).find_map(|k| slots[(i + k) % slots.len()].conn.as_ref())
}

pub async fn run(s: &Scenario, o: &Options) -> anyhow::Result<Stats> {
    provision_users(s, o.admin.as_deref()).await?;
    let clock = Clock { sending_from_us: Arc::new(AtomicU64::new(u64::MAX)) };
    let (index, of) = o.slice;
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut run = Runner { stats: Stats::default(), history: Vec::new(), subscribed: 0 };

    // Log in at the scenario's rate.
    let login_start = Instant::now();
    let mut slots: Vec<Slot> = Vec::new();
    let mut logging_in = tokio::task::JoinSet::new();
    let total = s.online_users() * s.devices;
    for (k, i) in (0..total).filter(|i| i % of == index).enumerate() {
        let due = login_start + Duration::from_secs_f64(k as f64 * of as f64 / s.login_rate);
        tokio::time::sleep_until(due.into()).await;
        let (user, device) = (i / s.devices, i % s.devices);
        let subscribe_to = if s.presence_rate > 0.0 && device == 0 {
            (0..s.contacts).map(|k| s.contact(user, k)).collect()
        } else {
            Vec::new()
        };
        let login = Login {
            driver: s.driver,
            server: o.servers[i % o.servers.len()],
            source: o.source,
            domain: s.domain.clone(),
            password: s.password.clone(),
            user,
            device,
            subscribe_to,
            room: s.room_of(user),
            body_bytes: s.message_bytes,
            id_prefix: format!("lt-{}-{index}-", o.run_id),
            generation: 0,
            clock: clock.clone(),
            events: tx.clone(),
        };
        logging_in.spawn(async move {
            let (c, us) = timed_login(login.clone()).await;
            (login, c, us)
        });
    }
    let mut wanted_subscriptions = 0;
    while let Some(joined) = logging_in.join_next().await {
        let (login, c, us) = joined?;
        match c {
            Ok(c) => {
                run.stats.logged_in(us);
                wanted_subscriptions += login.subscribe_to.len();
                slots.push(Slot { login, conn: Some(c) });
            }
            Err(e) => *run.stats.errors.entry(format!("login: {e:#}")).or_default() += 1,
        }
    }
    run.stats.logins = slots.len() as u64;
    run.stats.login_secs = login_start.elapsed().as_secs_f64();
    anyhow::ensure!(!slots.is_empty(), "no connection logged in: {:?}", run.stats.errors);
    eprintln!(
        "{} connections in {:.1} s ({:.0}/s)",
        slots.len(),
        run.stats.login_secs,
        run.stats.logins as f64 / run.stats.login_secs
    );
    slots.sort_by_key(|c| c.login.user);
    let slot_of: std::collections::HashMap<(usize, usize), usize> =
        slots.iter().enumerate().map(|(i, s)| ((s.login.user, s.login.device), i)).collect();

    // Presence scenarios: wait for the subscriptions to be approved (a minute at most).
    if wanted_subscriptions > 0 {
        let until = Instant::now() + Duration::from_secs(60);
        while run.subscribed < wanted_subscriptions {
            match tokio::time::timeout_at(until.into(), rx.recv()).await {
                Ok(Some(e)) => run.record(e),
                _ => break,
            }
        }
        eprintln!("{} of {wanted_subscriptions} subscriptions approved", run.subscribed);
        if run.subscribed < wanted_subscriptions {
            *run.stats.errors.entry("subscription not approved in 60 s".into()).or_default() +=
                (wanted_subscriptions - run.subscribed) as u64;
        }
    }

    // Send on schedule: messages, presence changes and reconnects, each on its own timeline.
    let sending_from_us = o.start_at_us.unwrap_or_else(unix_us);
    clock.sending_from_us.store(sending_from_us, Ordering::Relaxed);
    run.stats.sending_from_us = sending_from_us;
    let sending_secs = s.sending_secs() as f64;
    let send_start = Instant::now() + Duration::from_micros(sending_from_us.saturating_sub(unix_us()));
    let (relogged_tx, mut relogged) = mpsc::unbounded_channel::<Relogged>();
    let rates = [s.message_rate, s.presence_rate, s.reconnect_rate].map(|r| r / of as f64);
    let mut next = rates.map(|r| if r > 0.0 { 0.0 } else { f64::INFINITY });
    let mut counts = [0u64; 3];
    let mut last_progress = 0;
    loop {
        let (kind, at) = (0..3).map(|k| (k, next[k])).fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        if at >= sending_secs {
            break;
        }
        let due = send_start + Duration::from_secs_f64(at);
        // Take measurements while waiting.
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => break,
                Some(e) = rx.recv() => match e {
                    // The server ended a connection the run did not drop: log it in again, as
                    // a client would (to the next server when its own is down).
                    Event::Closed { user, device, generation } => {
                        let Some(&i) = slot_of.get(&(user, device)) else { continue };
                        if slots[i].login.generation == generation && slots[i].conn.take().is_some() {
                            run.stats.error(clock.second(clock.now_us()), "connection ended by the server");
                            relogin(i, slots[i].login.clone(), &o.servers, relogged_tx.clone());
                        }
                    }
                    e => run.record(e),
                },
                Some((slot, c, us)) = relogged.recv() => match c {
                    Ok((c, login)) => {
                        run.stats.reconnected(clock.second(clock.now_us()), us);
                        slots[slot].conn = Some(c);
                        slots[slot].login = login;
                    }
                    Err(e) => run.stats.error(clock.second(clock.now_us()), &format!("reconnect: {e:#}")),
                },
            }
        }
        let sec = at as usize;
        if sec > last_progress {
            last_progress = sec;
            progress(&run.stats, sec - 1, slots.iter().filter(|c| c.conn.is_some()).count());
        }
        let intended_us = sending_from_us + (at * 1e6) as u64;
        let n = counts[kind];
        counts[kind] += 1;
        let pick = n as usize % slots.len();
        match kind {
            0 => {
                let Some(c) = open_slot(&slots, pick) else {
                    run.stats.error(sec, "no connection open");
                    continue;
                };
                let to = s.contact(c.user, (n as usize / slots.len()) % s.contacts);
                run.stats.sent(sec);
                run.history.push((c.user, to, Outcome::Info));
                if let Err(e) = c.out.try_send(Action::Message { to, n, intended_us }) {
                    run.history[n as usize].2 = Outcome::Fail;
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "client backlog (connection not keeping up)",
                        mpsc::error::TrySendError::Closed(_) => "connection lost",
                    };
                    run.stats.error(sec, why);
                }
            }
            1 => {
                if let Some(c) = open_slot(&slots, pick) {
                    let _ = c.out.try_send(Action::Presence { intended_us });
                }
            }
            _ => {
                // Drop the connection and log it in again; sends meanwhile go to the next one.
                if slots[pick].conn.take().is_some() {
                    relogin(pick, slots[pick].login.clone(), &o.servers, relogged_tx.clone());
                }
            }
        }
        let rate = rates[kind] * s.ramp_at(at);
        next[kind] += 1.0 / rate;
    }
    // Let the last deliveries and acknowledgements arrive.
    let drain_until = Instant::now() + Duration::from_secs(3);
    while let Ok(Some(e)) = tokio::time::timeout_at(drain_until.into(), rx.recv()).await {
        run.record(e);
    }
    progress(&run.stats, (sending_secs as usize).saturating_sub(1), slots.iter().filter(|c| c.conn.is_some()).count());
    drop(slots);
    if let Some(path) = &o.history {
        write_history(path, s, &format!("lt-{}-{index}-", o.run_id), &run.history)?;
    }
    Ok(run.stats)
}

/// Runs the scenario in `n` worker processes (connections and rates shared out, each from its
/// own source address), all sending from the same instant, and merges their figures and
/// histories.
pub async fn workers(s: &Scenario, o: &Options, n: usize, sources: &[std::net::IpAddr]) -> anyhow::Result<Stats> {
    provision_users(s, o.admin.as_deref()).await?;
    // Everyone logs in (and subscribes) first, at the scenario's rate, generously; then all
    // send together.
    let login_secs = (s.online_users() * s.devices) as f64 / s.login_rate;
    let subscribe_secs = if s.presence_rate > 0.0 { (s.users * s.contacts) as f64 / 1000.0 } else { 0.0 };
    let start_at_us = unix_us() + ((login_secs * 1.5 + subscribe_secs + 3.0) * 1e6) as u64;
    let exe = std::env::current_exe()?;
    let json = serde_json::to_string(s)?;
    let servers: Vec<String> = o.servers.iter().map(|a| a.to_string()).collect();
    let part = |i: usize| o.history.as_ref().map(|h| PathBuf::from(format!("{}.{i}", h.display())));
    let mut children = Vec::new();
    for i in 0..n {
        let source = match sources {
            [] => std::net::IpAddr::from([127, 0, 0, 2 + (i % 250) as u8]),
            list => list[i % list.len()],
        };
        let mut command = std::process::Command::new(&exe);
        command
            .args(["worker", "--scenario-json", &json, "--server", &servers.join(",")])
            .args(["--index", &i.to_string(), "--of", &n.to_string(), "--source", &source.to_string()])
            .args(["--start-at-us", &start_at_us.to_string(), "--run-id", &o.run_id])
            .stdout(std::process::Stdio::piped());
        if let Some(h) = part(i) {
            command.arg("--history").arg(h);
        }
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
    if let Some(path) = &o.history {
        let mut all = std::fs::File::create(path)?;
        for i in 0..n {
            let p = part(i).expect("history set");
            std::io::copy(&mut std::fs::File::open(&p)?, &mut all)?;
            std::fs::remove_file(p)?;
        }
    }
    Ok(stats)
}

/// The live progress line for second `sec`.
fn progress(stats: &Stats, sec: usize, conns: usize) {
    let Some(s) = stats.seconds.get(sec) else { return };
    let p99 = |h: &hdrhistogram::Histogram<u64>| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(0.99) as f64 / 1000.0
        }
    };
    let mut line = format!(
        "[{sec:>4}s] sent {:>6}/s  acked {:>6}/s  delivered {:>6}/s  p99 {:>8.1} ms",
        s.sent,
        s.acked,
        s.delivered,
        p99(&s.delivery)
    );
    if s.presence > 0 {
        line += &format!("  presence {:>6}/s  p99 {:>8.1} ms", s.presence, p99(&s.presence_latency));
    }
    if s.reconnects > 0 {
        line += &format!("  reconnects {:>4}/s", s.reconnects);
    }
    eprintln!("{line}  errors {:>4}  connections {conns}", s.errors);
}

/// JSON lines in the history checker's terms: every message this process offered, with its
/// sender, recipient (the archive owner), client id and outcome: `ok` acknowledged, `fail`
/// refused or never written, `info` no answer (it may or may not be stored).
fn write_history(
    path: &PathBuf,
    s: &Scenario,
    id_prefix: &str,
    sent: &[(usize, usize, Outcome)],
) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (n, (from, to, outcome)) in sent.iter().enumerate() {
        let outcome = match outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        };
        let (from, owner, id) =
            (format!("lt{from}@{}", s.domain), format!("lt{to}@{}", s.domain), format!("{id_prefix}{n}"));
        writeln!(f, "{}", serde_json::json!({ "from": from, "owner": owner, "client_id": id, "outcome": outcome }))?;
    }
    Ok(())
}
