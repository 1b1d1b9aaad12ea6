//! A short `telex-loadtest` run against a real node: users are provisioned through the admin
//! API, every message offered is acknowledged and delivered, and the report is written.

use std::process::Command;

use telex_testkit::{bin, data_dir, Telexd};

#[test]
fn the_smoke_preset_runs_against_a_node_and_writes_its_report() {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    let out = tmp.path().join("report");
    let history = tmp.path().join("history.jsonl");
    let run = Command::new(bin("telex-loadtest"))
        .args(["run", "--preset", "smoke", "--duration", "2"])
        .args(["--server", &node.addrs.xmpp.to_string(), "--admin", &node.addrs.admin.to_string()])
        .arg("--out")
        .arg(&out)
        .arg("--history")
        .arg(&history)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    assert!(stderr.contains("connections 10"), "progress lines: {stderr}");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let s = &result["summary"];
    assert_eq!(s["sent_per_sec"].as_f64(), Some(50.0), "{s}");
    assert!(s["delivered_per_sec"].as_f64().unwrap() >= 45.0, "{s}");
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
    for f in ["summary.md", "throughput.svg", "latency.svg"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert_eq!(std::fs::read_to_string(&history).unwrap().lines().count(), 3 * 50, "one line per message offered");
}

#[test]
fn worker_processes_from_several_source_addresses_merge_into_one_report() {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    let out = tmp.path().join("report");
    let run = Command::new(bin("telex-loadtest"))
        .args(["run", "--preset", "smoke", "--duration", "2", "--workers", "2"])
        .args(["--server", &node.addrs.xmpp.to_string(), "--admin", &node.addrs.admin.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let s = &result["summary"];
    // Both halves of the rate and of the users, added up.
    assert_eq!(s["sent_per_sec"].as_f64(), Some(50.0), "{s}");
    assert!(s["delivered_per_sec"].as_f64().unwrap() >= 45.0, "{s}");
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
}
