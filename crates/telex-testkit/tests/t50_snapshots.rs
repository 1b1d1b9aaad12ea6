//! Snapshots and log purging under real load: state survives `kill -9` after the log entries that
//! produced it are gone.

use telex_proto::v1::{AddUserRequest, ListUsersRequest, NodeStatusRequest};
use telex_testkit::{data_dir, Telexd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_snapshot_purge_and_kill_9() {
    let (tmp, dir) = data_dir();
    let config = tmp.path().join("telex.toml");
    std::fs::write(&config, "[raft]\nshards = 1\nsnapshot_after_entries = 100\n").unwrap();
    let mut node = Telexd::start(&dir, &["--config", config.to_str().unwrap()]);

    // Enough writes that the log passes 1,000 entries (the tail kept after a snapshot) even when
    // concurrent writes share entries.
    let total = 4000u32;
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let url = node.admin_url();
        writers.push(tokio::spawn(async move {
            let mut admin = telex_testkit::admin_client(url).await.unwrap();
            for i in (w..total).step_by(8) {
                let req = AddUserRequest { jid: format!("s{i}@localhost"), password: "pw".into() };
                admin.add_user(req).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }

    let mut admin = telex_testkit::admin_client(node.admin_url()).await.unwrap();
    let status = admin.node_status(NodeStatusRequest {}).await.unwrap().into_inner();
    let shard = &status.groups[1];
    assert!(shard.snapshot_index >= 1000, "shard 1 should have snapshotted: {shard:?}");
    assert!(shard.purged_index > 0, "and purged its log up to the snapshot: {shard:?}");

    node.kill9();
    node.restart();
    let mut admin = telex_testkit::admin_client(node.admin_url()).await.unwrap();
    let users = admin.list_users(ListUsersRequest { domain: "localhost".into() }).await.unwrap().into_inner().users;
    assert_eq!(users.len(), total as usize, "every user is back after restart from snapshot + log");
    let status = admin.node_status(NodeStatusRequest {}).await.unwrap().into_inner();
    let shard = &status.groups[1];
    assert!(shard.purged_index > 0 && shard.applied_index >= shard.snapshot_index, "{shard:?}");
    node.cli(&["user", "add", "after@localhost", "--password", "pw"]).success();
}
