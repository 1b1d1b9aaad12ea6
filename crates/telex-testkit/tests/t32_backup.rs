//! Backup and restore: `telex backup create DIR` on a node with users, rosters and archives,
//! then `telexd --restore-from DIR` (another node id, other ports) starts a new cluster whose
//! every group's state has the backup's fingerprint, whose users log in with their passwords
//! and see the same history, and which takes new messages.

use std::collections::BTreeMap;

use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::DigestRequest;
use telex_testkit::client::{login, Device};
use telex_testkit::cluster::archive;
use telex_testkit::{data_dir, Telexd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster_with_the_same_state() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for u in ["alice", "bob"] {
        node.cli(&["user", "add", &format!("{u}@localhost"), "--password", "pw"]).success();
    }
    node.cli(&["roster", "add", "bob@localhost", "--user", "alice@localhost", "--password", "pw"]).success();
    let token = login(&node.client_url(), "alice@localhost", "pw", "laptop").await;
    let mut alice = Device::open(&node.client_url(), &token).await.unwrap();
    for i in 0..25 {
        let id = format!("m{i}");
        alice.send("bob@localhost", &id, "before the backup").await;
        assert!(alice.result(&id).await.error.is_empty());
    }
    let before = archive(&node, "bob@localhost").await;
    assert_eq!(before.len(), 25);

    let backup = tempfile::tempdir().unwrap();
    let target = backup.path().join("b1");
    let out = node.cli(&["--json", "backup", "create", target.to_str().unwrap()]).json();
    assert_eq!(out["groups"], 9, "{out}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(target.join("manifest.json")).unwrap()).unwrap();
    // A backup into a directory that is not empty is refused.
    node.cli(&["backup", "create", target.to_str().unwrap()]).failure("is not empty");
    // Writes after the backup are not in it.
    alice.send("bob@localhost", "after", "after the backup").await;
    assert!(alice.result("after").await.error.is_empty());

    let (_tmp2, dir2) = data_dir();
    let restored =
        Telexd::start(&dir2, &["--shards", "8", "--node-id", "5", "--restore-from", target.to_str().unwrap()]);
    assert!(restored.log_text().contains("restored a backup"), "{}", restored.log_text());

    // Every group's state is the backup's, and this node alone leads it.
    let mut node_api = NodeClient::connect(format!("http://{}", restored.addrs.node)).await.unwrap();
    let digests = node_api.digest(DigestRequest { groups: vec![] }).await.unwrap().into_inner().digests;
    let backed: BTreeMap<u64, (u64, u64)> = manifest["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_u64().unwrap(), (g["keys"].as_u64().unwrap(), g["hash"].as_u64().unwrap())))
        .collect();
    assert_eq!(digests.len(), backed.len());
    for d in &digests {
        assert_eq!(backed[&u64::from(d.group)], (d.keys, d.hash), "group {} differs from the backup", d.group);
    }
    let status = restored.cli(&["--json", "status"]).json();
    for g in status["groups"].as_array().unwrap() {
        assert_eq!(g["leader"], 5, "{g}");
    }

    // Same users, passwords, rosters and history; and it takes new messages.
    assert_eq!(archive(&restored, "bob@localhost").await, before);
    let roster = restored.cli(&["roster", "list", "--user", "alice@localhost", "--password", "pw"]).success();
    assert!(roster.contains("bob@localhost"), "{roster}");
    let token = login(&restored.client_url(), "alice@localhost", "pw", "laptop").await;
    let mut alice2 = Device::open(&restored.client_url(), &token).await.unwrap();
    alice2.send("bob@localhost", "restored-1", "after the restore").await;
    assert!(alice2.result("restored-1").await.error.is_empty());
    let after = archive(&restored, "bob@localhost").await;
    assert_eq!(after.len(), 26);
    assert!(!after.contains(&"after".to_string()), "a write after the backup reappeared");

    // Starting again with the same flag (a pod whose spec still says --restore-from) uses the
    // data as it is: nothing is restored twice.
    // (Same ports: the members know each other by address.)
    let mut again = restored;
    assert!(again.terminate(std::time::Duration::from_secs(40)));
    again.restart();
    assert!(again.log_text().contains("restored here before"), "{}", again.log_text());
    assert_eq!(archive(&again, "bob@localhost").await.len(), 26);

    // The restored cluster grows like any other: a new node joins and replicates it.
    let (_tmp3, dir3) = data_dir();
    let joiner = Telexd::start_member(&dir3, 6, Some(again.addrs.node), &["--shards", "8"]);
    telex_testkit::cluster::wait_for_replicas(&again, 2);
    let verified = again.cli(&["cluster", "verify"]).success();
    assert!(verified.contains("9 of 9 groups identical"), "{verified}");
    drop(joiner);
    drop(again);

    // Another backup into a data directory that already holds a store is refused.
    let other = backup.path().join("b2");
    node.cli(&["backup", "create", other.to_str().unwrap()]).success();
    let refused = std::process::Command::new(telex_testkit::bin("telexd"))
        .args(["--data-dir", dir2.to_str().unwrap(), "--shards", "8", "--restore-from", other.to_str().unwrap()])
        .args(["--client-addr", "127.0.0.1:0", "--node-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--xmpp-tls-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("empty data directory"), "{err}");
}
