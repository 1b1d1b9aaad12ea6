//! Process-level behaviour: one node per data dir, config errors, health endpoints, clean stop.

use std::process::Command;
use std::time::Duration;

use telex_testkit::{bin, data_dir, http_get, Telexd};

#[test]
fn a_second_telexd_on_the_same_data_dir_refuses_to_start() {
    let (_tmp, dir) = data_dir();
    let first = Telexd::start(&dir, &["--shards", "2"]);
    let out = Command::new(bin("telexd"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["--client-addr", "127.0.0.1:0", "--node-addr", "127.0.0.1:0"])
        .args(["--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by another telexd"), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    // The first one is unharmed.
    assert_eq!(http_get(first.addrs.http, "/readyz").unwrap().0, 200);
}

fn telexd_with_config(toml: &str) -> (bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("telex.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(bin("telexd"))
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_config_files_exit_naming_the_field() {
    let (ok, err) = telexd_with_config("[raft]\nshardz = 8\n");
    assert!(!ok);
    assert!(err.contains("shardz") && err.contains("telex.toml"), "{err}");
    let (ok, err) = telexd_with_config("[listen]\nclient = \"not an address\"\n");
    assert!(!ok);
    assert!(err.contains("client"), "{err}");
    let (ok, err) = telexd_with_config("[raft]\nshards = 0\n");
    assert!(!ok);
    assert!(err.contains("raft.shards"), "{err}");
    let (ok, err) = telexd_with_config("node_id = 0\n");
    assert!(!ok);
    assert!(err.contains("node_id"), "{err}");
}

#[test]
fn health_metrics_and_clean_shutdown() {
    let (_tmp, dir) = data_dir();
    let mut node = Telexd::start(&dir, &["--shards", "2"]);
    assert_eq!(http_get(node.addrs.http, "/healthz").unwrap(), (200, "ok\n".into()));
    assert_eq!(http_get(node.addrs.http, "/readyz").unwrap(), (200, "ready\n".into()));
    node.cli(&["user", "add", "m@localhost", "--password", "x"]).success();
    let (code, metrics) = http_get(node.addrs.http, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("telex_raft_applied_entries_total"), "{metrics}");
    assert!(metrics.contains("telex_store_wal_sync_seconds_bucket"), "{metrics}");
    assert_eq!(http_get(node.addrs.http, "/nope").unwrap().0, 404);

    // gRPC health on the admin and client listeners.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for addr in [node.admin_url(), node.client_url()] {
        rt.block_on(async {
            let channel = tonic::transport::Channel::from_shared(addr).unwrap().connect().await.unwrap();
            let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
            let r = h.check(tonic_health::pb::HealthCheckRequest { service: "".into() }).await.unwrap().into_inner();
            assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
        });
    }

    assert!(node.terminate(Duration::from_secs(20)), "SIGTERM should exit 0; log:\n{}", node.log_text());
    assert!(node.log_text().contains("stopped"));
    // The log went to a file, not a terminal: plain text, no colour codes.
    assert!(!node.log_text().contains('\u{1b}'), "ANSI escapes in a log file");
    // And the data is there after a clean restart.
    node.restart();
    assert!(node.cli(&["user", "list", "localhost"]).success().contains("m@localhost"));
}
