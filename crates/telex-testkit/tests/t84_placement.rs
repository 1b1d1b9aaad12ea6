//! Replica placement on real nodes on loopback: with more nodes than replicas per group, each
//! group lives on exactly R = 3 of them, spread evenly and over zones; a node added under load
//! takes its share, a decommissioned one hands its share away, and nothing acknowledged is
//! lost (the history checker's figures).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use telex_testkit::client::login;
use telex_testkit::cluster::{archive, assert_replicas_identical, steady_load};
use telex_testkit::history::check;
use telex_testkit::{data_dir, Telexd};

const SHARDS: &str = "16";

/// `cluster placement --json` through `node`, once no moves are pending and every group has a
/// leader again (a group whose leader moved away elects another).
fn settled_placement(node: &Telexd) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p = node.cli(&["--json", "cluster", "placement"]).json();
        let led = p["groups"].as_array().is_some_and(|g| g.iter().all(|g| g["leader"] != 0));
        if p["pending_moves"] == 0 && led {
            return p;
        }
        assert!(Instant::now() < deadline, "placement never settled: {p}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn ids(v: &serde_json::Value) -> BTreeSet<u64> {
    v.as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect()
}

/// Every group on exactly 3 of `nodes`, each node's count within one of even; the counts.
fn assert_even(p: &serde_json::Value, nodes: &[u64]) -> BTreeMap<u64, usize> {
    let groups = p["groups"].as_array().unwrap();
    assert_eq!(groups.len(), SHARDS.parse::<usize>().unwrap(), "{p}");
    let mut counts: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for g in groups {
        let replicas = ids(&g["replicas"]);
        assert_eq!(replicas.len(), 3, "group not on exactly 3 nodes: {g}");
        for r in replicas {
            *counts.get_mut(&r).unwrap_or_else(|| panic!("group on an unexpected node: {g}")) += 1;
        }
        assert_ne!(g["leader"], 0, "leaderless: {g}");
    }
    let (lo, hi) = (counts.values().min().unwrap(), counts.values().max().unwrap());
    assert!(hi - lo <= 1, "replica counts not within one of even: {counts:?}");
    counts
}

/// Each node holds (has a Raft replica of) exactly the groups placed on it, and no other.
fn assert_held_as_placed(p: &serde_json::Value, nodes: &[&Telexd]) {
    for node in nodes {
        let s = node.cli(&["--json", "cluster", "status"]).json();
        let id = s["seen_from"].as_u64().unwrap();
        for g in s["groups"].as_array().unwrap().iter().filter(|g| g["group"] != 0) {
            let placed = p["groups"].as_array().unwrap().iter().find(|x| x["group"] == g["group"]).unwrap();
            let here = ids(&placed["replicas"]).contains(&id);
            assert_eq!(g["role"] != "none", here, "node {id} and group {}: {g} vs {placed}", g["group"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_live_on_three_of_five_nodes_and_move_as_nodes_come_and_go() {
    let mut dirs = Vec::new();
    let mut nodes: Vec<Telexd> = Vec::new();
    for id in 1..=5u64 {
        let (tmp, dir) = data_dir();
        let seed = nodes.first().map(|n| n.addrs.node);
        nodes.push(Telexd::start_member(&dir, id, seed, &["--shards", SHARDS]));
        dirs.push(tmp);
    }
    let p = settled_placement(&nodes[0]);
    let counts = assert_even(&p, &[1, 2, 3, 4, 5]);
    println!("5 nodes: replicas per node {counts:?}");
    assert_held_as_placed(&p, &nodes.iter().collect::<Vec<_>>());
    for user in ["alice@localhost", "bob@localhost"] {
        nodes[0].cli(&["user", "add", user, "--password", "pw"]).success();
    }

    // Alice sends to Bob through nodes 2 and 3 while node 6 joins and node 1 leaves.
    let urls = vec![nodes[1].client_url(), nodes[2].client_url()];
    let token = login(&urls[0], "alice@localhost", "pw", "laptop").await;
    let (stop_tx, load) = steady_load(urls, token);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (t6, d6) = data_dir();
    dirs.push(t6);
    let started = Instant::now();
    let n6 = Telexd::start_member(&d6, 6, Some(nodes[3].addrs.node), &["--shards", SHARDS]);
    println!("node 6 took its share in {:?}", started.elapsed());
    nodes.push(n6);
    let p = settled_placement(&nodes[1]);
    let counts = assert_even(&p, &[1, 2, 3, 4, 5, 6]);
    assert!(counts[&6] >= 7, "node 6 holds too little: {counts:?}");
    println!("6 nodes: replicas per node {counts:?}");
    assert_held_as_placed(&p, &nodes.iter().collect::<Vec<_>>());

    // Decommission node 1: its replicas move away first, then it leaves and stops.
    let started = Instant::now();
    let out = nodes[4].cli(&["cluster", "remove-node", "1"]).success();
    println!("node 1 decommissioned in {:?}: {out}", started.elapsed());
    let p = settled_placement(&nodes[1]);
    let counts = assert_even(&p, &[2, 3, 4, 5, 6]);
    assert!(!counts.contains_key(&1));
    let mut n1 = nodes.remove(0);
    assert!(n1.terminate(Duration::from_secs(20)), "node 1 did not stop");
    assert_held_as_placed(&p, &nodes.iter().collect::<Vec<_>>());

    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_tx.send(true).expect("the load task is still running");
    let events = load.await.unwrap();
    // Bob's archive read through a node that may hold no replica of his shard (a remote read)
    // and through one that does.
    let a = archive(&nodes[4], "bob@localhost").await;
    for n in &nodes[..4] {
        assert_eq!(archive(n, "bob@localhost").await, a, "nodes disagree on bob's archive");
    }
    let figures = check(&events, &BTreeMap::from([("bob@localhost".into(), a)]));
    println!("placement: add node 6, decommission node 1 under load: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert!(figures.acked > 10, "{figures}");
    assert_replicas_identical(&nodes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_group_are_in_different_zones() {
    let mut dirs = Vec::new();
    let mut nodes: Vec<Telexd> = Vec::new();
    let zones = ["a", "a", "b", "b", "c", "c"];
    for (i, zone) in zones.iter().enumerate() {
        let (tmp, dir) = data_dir();
        let seed = nodes.first().map(|n| n.addrs.node);
        let zone = format!("zone-{zone}");
        nodes.push(Telexd::start_member(&dir, i as u64 + 1, seed, &["--shards", "8", "--zone", &zone]));
        dirs.push(tmp);
    }
    let p = settled_placement(&nodes[0]);
    let zone_of: BTreeMap<u64, String> = p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node_id"].as_u64().unwrap(), n["zone"].to_string()))
        .collect();
    assert_eq!(zone_of.len(), 6, "{p}");
    for g in p["groups"].as_array().unwrap() {
        let replicas = ids(&g["replicas"]);
        let in_zones: BTreeSet<&String> = replicas.iter().map(|r| &zone_of[r]).collect();
        assert_eq!((replicas.len(), in_zones.len()), (3, 3), "a group with two replicas in one zone: {g}");
    }
    let status = nodes[0].cli(&["cluster", "status"]).success();
    assert!(status.contains("zone-b"), "{status}");
    let placement = nodes[0].cli(&["cluster", "placement"]).success();
    assert!(placement.contains("0 moves pending"), "{placement}");
}

/// Groups led per node, from `cluster placement --json`.
fn leader_counts(p: &serde_json::Value) -> BTreeMap<u64, u64> {
    let nodes = p["nodes"].as_array().unwrap();
    nodes.iter().map(|n| (n["node_id"].as_u64().unwrap(), n["leaders"].as_u64().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderships_spread_by_themselves_under_load() {
    // Node 1 bootstraps and leads every group; nodes 2 and 3 join. With the balancer on, the
    // meta leader spreads the leaderships once they have been uneven for 2 s.
    let args = ["--shards", SHARDS, "--balance-leaders-after-secs", "2"];
    let mut dirs = Vec::new();
    let mut nodes: Vec<Telexd> = Vec::new();
    for id in 1..=3u64 {
        let (tmp, dir) = data_dir();
        let seed = nodes.first().map(|n| n.addrs.node);
        nodes.push(Telexd::start_member(&dir, id, seed, &args));
        dirs.push(tmp);
    }
    for user in ["alice@localhost", "bob@localhost"] {
        nodes[0].cli(&["user", "add", user, "--password", "pw"]).success();
    }
    let before = leader_counts(&nodes[0].cli(&["--json", "cluster", "placement"]).json());
    println!("leaders per node at start: {before:?}");
    let urls = vec![nodes[1].client_url(), nodes[2].client_url()];
    let token = login(&urls[0], "alice@localhost", "pw", "laptop").await;
    let (stop_tx, load) = steady_load(urls, token);

    let started = Instant::now();
    let after = loop {
        let p = nodes[2].cli(&["--json", "cluster", "placement"]).json();
        let counts = leader_counts(&p);
        let led: u64 = counts.values().sum();
        let (lo, hi) = (counts.values().min().copied().unwrap(), counts.values().max().copied().unwrap());
        if led == 16 && hi - lo <= 1 {
            break counts;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "leaderships never spread: {counts:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("leaders per node after {:?}: {after:?}", started.elapsed());
    // Balanced, the balancer leaves them be.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = leader_counts(&nodes[0].cli(&["--json", "cluster", "placement"]).json());
    let moves: u64 = settled.iter().map(|(n, c)| c.abs_diff(after[n])).sum();
    assert!(moves <= 2, "leaderships kept moving: {after:?} then {settled:?}");

    stop_tx.send(true).expect("the load task is still running");
    let events = load.await.unwrap();
    let a = archive(&nodes[0], "bob@localhost").await;
    let figures = check(&events, &BTreeMap::from([("bob@localhost".into(), a)]));
    println!("automatic leader balancing under load: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert!(figures.acked > 10, "{figures}");
    assert_replicas_identical(&nodes[0]);
}
