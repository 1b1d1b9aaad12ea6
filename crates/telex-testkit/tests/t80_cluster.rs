//! Three real nodes on loopback: joining, replication, and failover of the leader under a
//! steady stream of sends, checked with the history checker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use telex_proto::v1::HistoryRequest;
use telex_testkit::client::{authed, client, login, Device};
use telex_testkit::history::{check, Outcome, SendEvent};
use telex_testkit::{data_dir, Telexd};

const SHARDS: &str = "4";

/// Waits until `node` sees every group with `voters` voters and a leader.
fn wait_for_replicas(node: &Telexd, voters: usize) {
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

/// Every client id in `owner`'s archive, read through `node`, in archive order.
async fn archive(node: &Telexd, owner: &str) -> Vec<String> {
    let url = node.client_url();
    let token = login(&url, owner, "pw", "checker").await;
    let mut after = 0;
    let mut ids = Vec::new();
    loop {
        let q = HistoryRequest { after, limit: 500, ..Default::default() };
        let page = client(&url).await.history(authed(q, &token)).await.unwrap().into_inner().messages;
        let Some(last) = page.last() else { return ids };
        after = last.position;
        ids.extend(page.into_iter().map(|m| m.client_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_under_load_loses_no_acknowledged_message() {
    let (_t1, d1) = data_dir();
    let (_t2, d2) = data_dir();
    let (_t3, d3) = data_dir();
    let mut n1 = Telexd::start_member(&d1, 1, None, &["--shards", SHARDS]);
    let n2 = Telexd::start_member(&d2, 2, Some(n1.addrs.node), &["--shards", SHARDS]);
    let n3 = Telexd::start_member(&d3, 3, Some(n1.addrs.node), &["--shards", SHARDS]);
    wait_for_replicas(&n1, 3);
    let status = n1.cli(&["cluster", "status"]).success();
    assert!(status.contains("0 groups without a leader"), "{status}");

    // Accounts made on one node are usable on the others.
    n1.cli(&["user", "add", "alice@localhost", "--password", "pw"]).success();
    n3.cli(&["user", "add", "bob@localhost", "--password", "pw"]).success();
    let bob_url = n3.client_url();
    let mut bob = Device::open(&bob_url, &login(&bob_url, "bob@localhost", "pw", "phone").await).await.unwrap();

    // Alice sends from node 2, one message at a time, retrying refused sends with the same id.
    let alice_url = n2.client_url();
    let mut alice =
        Device::open(&alice_url, &login(&alice_url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    let mut events = Vec::new();
    let mut longest_outage = Duration::ZERO;
    let started = Instant::now();
    let mut killed = false;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(8) {
        if !killed && started.elapsed() > Duration::from_secs(2) {
            n1.kill9();
            killed = true;
        }
        let id = format!("c{i}");
        let first_try = Instant::now();
        loop {
            alice.send("bob@localhost", &id, &format!("message {i}")).await;
            let r = alice.result(&id).await;
            let outcome = if r.error.is_empty() {
                Outcome::Ok
            } else if r.retryable {
                Outcome::Info
            } else {
                Outcome::Fail
            };
            events.push(SendEvent { owner: "bob@localhost".into(), client_id: id.clone(), outcome });
            if outcome != Outcome::Info {
                assert_eq!(outcome, Outcome::Ok, "{r:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        longest_outage = longest_outage.max(first_try.elapsed());
        i += 1;
    }
    assert!(killed);

    // Bob, connected to a surviving node, got the messages live.
    let live = bob.drain(Duration::from_secs(2)).await;
    assert!(!live.is_empty(), "bob's device received nothing live");

    // The checker over bob's archive as both survivors see it.
    let from_n3 = archive(&n3, "bob@localhost").await;
    let from_n2 = archive(&n2, "bob@localhost").await;
    assert_eq!(from_n2, from_n3, "replicas disagree on bob's archive");
    let figures = check(&events, &BTreeMap::from([("bob@localhost".to_string(), from_n3.clone())]));
    println!("leader kill: {figures}; longest write outage {longest_outage:?}");
    assert!(figures.promise_kept(), "{figures}");
    assert!(figures.acked > 20, "too few messages to mean anything: {figures}");

    // The killed node comes back, catches up, and holds the same archive.
    n1.restart();
    wait_for_replicas(&n2, 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let from_n1 = archive(&n1, "bob@localhost").await;
        if from_n1 == from_n3 {
            break;
        }
        assert!(Instant::now() < deadline, "node 1 never caught up: {} vs {} entries", from_n1.len(), from_n3.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
