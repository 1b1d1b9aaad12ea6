//! Helpers for cluster tests: a three-node cluster, its replicas, and a client that keeps
//! sending through whichever node answers, recording every attempt for the history checker.

use std::time::{Duration, Instant};

use telex_proto::v1::HistoryRequest;

use crate::client::{authed, client, login, Device};
use crate::history::{Outcome, SendEvent};
use crate::netfault::NetFaults;
use crate::{data_dir, Telexd};

pub const SHARDS: &str = "4";

/// Waits until `node` sees every group with `voters` voters and a leader.
pub fn wait_for_replicas(node: &Telexd, voters: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = node.cli(&["--json", "cluster", "status"]).json();
        let groups = s["groups"].as_array().unwrap();
        let done = groups.iter().all(|g| g["voters"].as_array().unwrap().len() == voters && g["leader"] != 0);
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "groups never reached {voters} voters: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts nodes 1..=`n` (the others join node 1) with `extra` flags; each is ready (it
/// replicates every group) when this returns. The temporary directories must outlive the nodes.
pub fn start_cluster(n: u64, extra: &[&str]) -> (Vec<tempfile::TempDir>, Vec<Telexd>) {
    let mut dirs = Vec::new();
    let mut nodes: Vec<Telexd> = Vec::new();
    for id in 1..=n {
        let (tmp, dir) = data_dir();
        let seed = nodes.first().map(|n| n.addrs.node);
        nodes.push(Telexd::start_member(&dir, id, seed, extra));
        dirs.push(tmp);
    }
    (dirs, nodes)
}

/// Starts nodes 1..=3 (2 and 3 join node 1) with `extra` flags, waits until every group has
/// three voters, and adds alice and bob. The temporary directories must outlive the nodes.
pub fn three_nodes(extra: &[&str]) -> (Vec<tempfile::TempDir>, [Telexd; 3]) {
    let (dirs, nodes) = start_cluster(3, extra);
    wait_for_replicas(&nodes[0], 3);
    for user in ["alice@localhost", "bob@localhost"] {
        nodes[0].cli(&["user", "add", user, "--password", "pw"]).success();
    }
    (dirs, nodes.try_into().unwrap_or_else(|_| unreachable!("three nodes")))
}

/// As `three_nodes`, with every node-to-node connection through a `NetFaults` proxy, so the
/// test can cut, black-hole or delay the links between chosen nodes.
pub fn three_nodes_with_faults(extra: &[&str]) -> (Vec<tempfile::TempDir>, NetFaults, [Telexd; 3]) {
    let faults = NetFaults::new(&[1, 2, 3]);
    let mut dirs = Vec::new();
    let mut nodes: Vec<Telexd> = Vec::new();
    for id in 1..=3u64 {
        let (tmp, dir) = data_dir();
        let routes = faults.routes_for(id);
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(routes.iter().map(String::as_str));
        let seed = (id > 1).then(|| faults.addr(id, 1));
        let mut node = Telexd::launch_member(&dir, id, seed, &args);
        faults.set_node_addr(id, node.addrs.node);
        node.wait_ready();
        nodes.push(node);
        dirs.push(tmp);
    }
    wait_for_replicas(&nodes[0], 3);
    for user in ["alice@localhost", "bob@localhost"] {
        nodes[0].cli(&["user", "add", user, "--password", "pw"]).success();
    }
    (dirs, faults, nodes.try_into().unwrap_or_else(|_| unreachable!("three nodes")))
}

/// `telex cluster verify` through `node`, retried while replicas still catch up.
pub fn assert_replicas_identical(node: &Telexd) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = node.cli(&["cluster", "verify"]);
        if out.ok {
            assert!(out.stdout.contains("groups identical on every replica"), "{}", out.stdout);
            return;
        }
        assert!(Instant::now() < deadline, "replicas differ: {}{}", out.stdout, out.stderr);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A config file in `dir` with `text`; its path.
pub fn config_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("telex.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Every client id in `owner`'s archive, read through `node`, in archive order.
pub async fn archive(node: &Telexd, owner: &str) -> Vec<String> {
    drain(node, owner, false).await
}

/// The client ids of the messages `owner` received (not the copies of ones it sent), read
/// through `node`, in archive order.
pub async fn received(node: &Telexd, owner: &str) -> Vec<String> {
    drain(node, owner, true).await
}

/// As `archive`, through the client API at `url` (a node not started by this harness).
pub async fn archive_at(url: &str, owner: &str) -> Vec<String> {
    drain_at(url.to_string(), owner, false).await
}

async fn drain(node: &Telexd, owner: &str, received_only: bool) -> Vec<String> {
    drain_at(node.client_url(), owner, received_only).await
}

async fn drain_at(url: String, owner: &str, received_only: bool) -> Vec<String> {
    let token = login(&url, owner, "pw", "checker").await;
    let mut after = 0;
    let mut ids = Vec::new();
    loop {
        let q = HistoryRequest { after, limit: 500, ..Default::default() };
        let page = client(&url).await.history(authed(q, &token)).await.unwrap().into_inner().messages;
        let Some(last) = page.last() else { return ids };
        after = last.position;
        ids.extend(page.into_iter().filter(|m| !received_only || m.to == owner).map(|m| m.client_id));
    }
}

/// A client that sends one message at a time and keeps retrying (same client id, any node)
/// until each is acknowledged, recording every attempt for the checker.
pub struct Sender {
    urls: Vec<String>,
    token: String,
    device: Option<Device>,
    next: usize,
    pub events: Vec<SendEvent>,
}

impl Sender {
    pub fn new(urls: Vec<String>, token: String) -> Sender {
        Sender { urls, token, device: None, next: 0, events: Vec::new() }
    }

    /// Sends `id` until acknowledged; false if `deadline` passes first.
    pub async fn send_acked(&mut self, to: &str, id: &str, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if self.device.is_none() {
                let url = &self.urls[self.next % self.urls.len()];
                match Device::open(url, &self.token).await {
                    Ok(d) => self.device = Some(d),
                    Err(_) => {
                        self.next += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let d = self.device.as_mut().unwrap();
            let outcome = if !d.try_send(to, id, "steady load").await {
                None
            } else {
                d.try_result(id, Duration::from_secs(15)).await
            };
            let outcome = match outcome {
                Some(r) if r.error.is_empty() => Outcome::Ok,
                Some(r) if !r.retryable => panic!("send refused for good: {r:?}"),
                Some(_) => Outcome::Info,
                None => {
                    // The session broke: its node went away. Try another.
                    self.device = None;
                    self.next += 1;
                    Outcome::Info
                }
            };
            self.events.push(SendEvent { owner: to.into(), client_id: id.into(), outcome });
            if outcome == Outcome::Ok {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Alice sends to Bob one message after another (each retried until acknowledged) through
/// `urls` until told to stop; the task returns every attempt for the checker.
pub fn steady_load(
    urls: Vec<String>,
    token: String,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<Vec<SendEvent>>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(async move {
        let mut alice = Sender::new(urls, token);
        let mut i = 0;
        while !*stop_rx.borrow() {
            let deadline = Instant::now() + Duration::from_secs(30);
            assert!(alice.send_acked("bob@localhost", &format!("m{i}"), deadline).await, "m{i} never acked");
            i += 1;
        }
        alice.events
    });
    (stop_tx, load)
}
