//! Network faults between real nodes (cut, black-holed links), a replica that must catch up by
//! snapshot, and leaderships spread over the nodes; each checked with the history checker and
//! `telex cluster verify` (every group's replicas identical).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use telex_testkit::client::{login, Device};
use telex_testkit::cluster::{
    archive, assert_replicas_identical, config_file, steady_load, three_nodes, three_nodes_with_faults,
    wait_for_replicas, Sender,
};
use telex_testkit::history::{check, check_streams, Outcome};
use telex_testkit::netfault::Link;
use telex_testkit::{http_get, Telexd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_minority_refuses_writes_and_the_majority_carries_on() {
    let conf = tempfile::tempdir().unwrap();
    let config = config_file(&conf, "[raft]\nshards = 4\nwrite_timeout_ms = 1500\n");
    let (_dirs, faults, [n1, n2, n3]) = three_nodes_with_faults(&["--config", config.as_str()]);
    // A fresh cluster: node 1 leads every group, so cutting it off moves every leadership.
    let urls = vec![n2.client_url(), n3.client_url()];
    let token = login(&urls[0], "alice@localhost", "pw", "laptop").await;
    let (stop_tx, load) = steady_load(urls.clone(), token.clone());
    let n1_url = n1.client_url();
    let mut minority = Sender::new(vec![n1_url.clone()], login(&n1_url, "alice@localhost", "pw", "desk").await);
    let soon = || Instant::now() + Duration::from_secs(20);
    assert!(minority.send_acked("bob@localhost", "before-cut", soon()).await);

    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    faults.partition(&[1], &[2, 3]);
    // Node 1 alone cannot commit: its clients get retryable refusals, nothing is acknowledged.
    let refused_until = Instant::now() + Duration::from_secs(4);
    assert!(!minority.send_acked("bob@localhost", "during-cut", refused_until).await, "the minority committed");
    assert!(minority.events.iter().any(|e| e.client_id == "during-cut" && e.outcome == Outcome::Info));
    println!("{:?} minority refused", t0.elapsed());
    // The majority elects new leaders and goes on acknowledging.
    let mut probe = Sender::new(urls.clone(), token.clone());
    assert!(probe.send_acked("bob@localhost", "majority-probe", soon()).await, "the majority is stuck");
    // Every group, not only the two this user needs, moves its leadership off node 1.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = n2.cli(&["--json", "cluster", "status"]).json();
        let stuck: Vec<_> = status["groups"].as_array().unwrap().iter().filter(|g| g["leader"] == 1).collect();
        if stuck.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "node 1 still leads groups while cut off: {stuck:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    println!("{:?} majority acknowledged", t0.elapsed());
    // Heal: node 1 rejoins as a follower; the refused send, retried with the same id, lands once.
    faults.heal();
    assert!(minority.send_acked("bob@localhost", "during-cut", soon()).await);
    println!("{:?} healed, the refused send acknowledged", t0.elapsed());

    // A black hole (connections open, nothing arrives) around node 3: the others carry on.
    faults.between(&[3], &[1, 2], Link::Drop);
    assert!(probe.send_acked("bob@localhost", "black-hole-probe", soon()).await);
    println!("{:?} acknowledged around a black hole", t0.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    faults.heal();
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop_tx.send(true).expect("the load task is still running");
    let events = load.await.unwrap();
    println!("{:?} load stopped", t0.elapsed());
    let bob = archive(&n2, "bob@localhost").await;
    let streams: [&[_]; 3] = [&events, &minority.events, &probe.events];
    let figures = check_streams(&streams, &BTreeMap::from([("bob@localhost".to_string(), bob)]));
    println!("minority partition and black hole: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert!(figures.acked > 10, "{figures}");
    assert_replicas_identical(&n3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_past_the_kept_log_catches_up_by_snapshot() {
    let conf = tempfile::tempdir().unwrap();
    let config = config_file(&conf, "[raft]\nshards = 2\nsnapshot_after_entries = 50\nkeep_log_entries = 5\n");
    let (_dirs, [n1, _n2, mut n3]) = three_nodes(&["--config", config.as_str()]);
    let url = n1.client_url();
    let mut alice = Sender::new(vec![url.clone()], login(&url, "alice@localhost", "pw", "laptop").await);
    let soon = || Instant::now() + Duration::from_secs(20);
    n3.kill9();
    for i in 0..300 {
        assert!(alice.send_acked("bob@localhost", &format!("m{i}"), soon()).await);
    }
    // The leader has compacted its log past everything node 3 has.
    let status = n1.cli(&["--json", "status"]).json();
    let purged = status["groups"].as_array().unwrap().iter().filter_map(|g| g["purged_index"].as_u64()).max();
    assert!(purged.unwrap_or(0) > 100, "the leader never purged its log: {status}");

    n3.restart();
    wait_for_replicas(&n1, 3);
    assert_replicas_identical(&n1);
    let (_, metrics) = http_get(n3.addrs.http, "/metrics").expect("metrics");
    let installed = metrics
        .lines()
        .find(|l| l.starts_with("telex_raft_snapshots_installed_total"))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(installed >= 1.0, "node 3 caught up without a snapshot:\n{metrics}");
    let figures =
        check(&alice.events, &BTreeMap::from([("bob@localhost".into(), archive(&n3, "bob@localhost").await)]));
    println!("snapshot catch-up: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert_eq!(figures.acked, 300);
}

/// The shard group of `jid` in a cluster of `shards` shards.
fn group_of(jid: &str, shards: u32) -> u32 {
    let user = telex_types::UserJid::parse(jid).unwrap();
    telex_types::shard::shard_of(&user, shards)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalanced_leaders_serve_users_whose_shards_lead_on_different_nodes() {
    let (_dirs, [n1, n2, n3]) = three_nodes(&["--shards", "4"]);
    let out = n2.cli(&["--json", "cluster", "rebalance"]).json();
    let after: BTreeMap<String, u64> =
        out["after"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
    // Five groups (meta and four shards) over three nodes: 2, 2, 1 in some order.
    let mut counts: Vec<u64> = after.values().copied().collect();
    counts.sort();
    assert_eq!(counts, [1, 2, 2], "{out}");

    // Two users whose shards are led by different nodes.
    let status = n1.cli(&["--json", "cluster", "status"]).json();
    let leader_of = |group: u32| status["groups"][group as usize]["leader"].as_u64().unwrap();
    let users: Vec<String> = (0..40).map(|i| format!("u{i}@localhost")).collect();
    let (a, b) = users
        .iter()
        .flat_map(|a| users.iter().map(move |b| (a, b)))
        .find(|(a, b)| leader_of(group_of(a, 4)) != leader_of(group_of(b, 4)))
        .expect("some two users live on shards with different leaders");
    for u in [a, b] {
        n1.cli(&["user", "add", u, "--password", "pw"]).success();
    }
    let cli = |node: &Telexd, who: &str, args: &[&str]| {
        node.cli(&[args, &["--user", who, "--password", "pw"]].concat()).success()
    };
    cli(&n2, a, &["roster", "add", b]);
    cli(&n3, b, &["roster", "approve", a]);
    cli(&n3, b, &["roster", "add", a]);
    cli(&n2, a, &["roster", "approve", b]);

    let (a_url, b_url) = (n2.client_url(), n3.client_url());
    let mut a_dev = Device::open(&a_url, &login(&a_url, a, "pw", "laptop").await).await.unwrap();
    let mut b_dev = Device::open(&b_url, &login(&b_url, b, "pw", "phone").await).await.unwrap();
    a_dev.presence("available", "", 0).await;
    b_dev.presence("away", "busy", 0).await;
    let p = loop {
        let p = a_dev.presence_from(b, Duration::from_secs(5)).await.expect("presence crosses nodes");
        if p.show == "away" {
            break p;
        }
    };
    assert_eq!(p.status, "busy");

    // Messages both ways, checked.
    let mut a_send = Sender::new(vec![a_url.clone()], login(&a_url, a, "pw", "tablet").await);
    let mut b_send = Sender::new(vec![b_url.clone()], login(&b_url, b, "pw", "watch").await);
    let soon = || Instant::now() + Duration::from_secs(20);
    for i in 0..20 {
        assert!(a_send.send_acked(b, &format!("a{i}"), soon()).await);
        assert!(b_send.send_acked(a, &format!("b{i}"), soon()).await);
    }
    let got = b_dev.message(Duration::from_secs(5)).await.expect("b gets a's messages live");
    assert_eq!(got.client_id, "a0");

    // Each archive holds the owner's own sent copies too; the checker looks at received ones.
    let received =
        |ids: Vec<String>, from: char| -> Vec<String> { ids.into_iter().filter(|id| id.starts_with(from)).collect() };
    let archives = BTreeMap::from([
        (b.to_string(), received(archive(&n1, b).await, 'a')),
        (a.to_string(), received(archive(&n1, a).await, 'b')),
    ]);
    let figures = check_streams(&[&a_send.events, &b_send.events], &archives);
    println!("users on differently led shards: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert_eq!(figures.acked, 40);
    assert_replicas_identical(&n1);
}
