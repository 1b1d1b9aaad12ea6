//! Short `telex-loadtest` runs against real nodes: users are provisioned through the admin
//! API, every message offered is acknowledged and delivered, the report is written; presence
//! and reconnect storms, the gRPC driver, and the tool's history driving a cluster failure
//! test through the checker.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use telex_testkit::history::{check_streams, read_jsonl, Figures, Outcome};
use telex_testkit::{bin, data_dir, Telexd};

/// Runs the tool; returns the result's summary and what it printed on stderr.
fn loadtest(args: &[&str], out: &Path) -> (serde_json::Value, String) {
    let run = Command::new(bin("telex-loadtest"))
        .env("TELEX_ADMIN_TOKEN", telex_testkit::ADMIN_TOKEN)
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    (result["summary"].clone(), stderr)
}

/// Messages sent, acknowledged and delivered over the whole run (every second, the drain
/// included): rates inside the measured window depend on how busy the machine is, these do not.
fn totals(out: &Path) -> [f64; 3] {
    [0, 1, 2].map(|k| total(out, k))
}

/// The sum of one per-second column of `result.json` (see `report::Result::seconds`).
fn total(out: &Path, column: usize) -> f64 {
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    result["seconds"].as_array().unwrap().iter().map(|s| s[column].as_f64().unwrap()).sum()
}

/// A scenario file for users with the checker's password.
fn scenario(dir: &Path, toml: &str) -> String {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, format!("password = \"pw\"\nramp_up_secs = 0\nwarm_up_secs = 1\n{toml}")).unwrap();
    path.to_str().unwrap().to_string()
}

/// The checker's figures for a history the tool wrote, against the recipients' archives.
fn check_history(history: &Path, node: &Telexd) -> Figures {
    let streams = read_jsonl(&std::fs::read_to_string(history).unwrap()).unwrap();
    let owners: std::collections::BTreeSet<String> = streams.iter().flatten().map(|e| e.owner.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let archives: BTreeMap<String, Vec<String>> = owners
        .into_iter()
        .map(|o| {
            let ids = rt.block_on(telex_testkit::cluster::received(node, &o));
            (o, ids)
        })
        .collect();
    let lost: Vec<&str> = streams
        .iter()
        .flatten()
        .filter(|e| e.outcome == Outcome::Ok && !archives[&e.owner].contains(&e.client_id))
        .map(|e| e.client_id.as_str())
        .collect();
    if !lost.is_empty() {
        println!("acknowledged, not in the recipient's archive: {lost:?}");
    }
    let streams: Vec<&[_]> = streams.iter().map(|s| s.as_slice()).collect();
    check_streams(&streams, &archives)
}

#[test]
fn the_smoke_preset_runs_against_a_node_and_writes_its_report() {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    let out = tmp.path().join("report");
    let history = tmp.path().join("history.jsonl");
    let run = Command::new(bin("telex-loadtest"))
        .env("TELEX_ADMIN_TOKEN", telex_testkit::ADMIN_TOKEN)
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
    // 3 s of sending (1 warm-up, 2 measured) at 50/s: each acknowledged and delivered once.
    assert_eq!(totals(&out), [150.0; 3], "{s}");
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
    for f in ["summary.md", "throughput.svg", "latency.svg"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let history = std::fs::read_to_string(&history).unwrap();
    assert_eq!(history.lines().count(), 3 * 50, "one line per message offered");
    assert!(history.lines().all(|l| l.contains("\"outcome\":\"ok\"")), "every message acknowledged: {history}");

    // Again, against the same node and users: a new run's message ids are new (the server
    // deduplicates by id), so everything is stored and delivered again.
    let again = tmp.path().join("again");
    let (s, _) = loadtest(
        &["--preset", "smoke", "--duration", "2", "--server", &node.addrs.xmpp.to_string()]
            .into_iter()
            .chain(["--admin", &node.addrs.admin.to_string()])
            .collect::<Vec<_>>(),
        &again,
    );
    assert_eq!(totals(&again), [150.0; 3], "second run: {s}");
}

#[test]
fn worker_processes_from_several_source_addresses_merge_into_one_report() {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    let out = tmp.path().join("report");
    let run = Command::new(bin("telex-loadtest"))
        .env("TELEX_ADMIN_TOKEN", telex_testkit::ADMIN_TOKEN)
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
    assert_eq!(totals(&out), [150.0; 3], "{s}");
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
}

#[test]
fn a_presence_storm_reaches_every_subscriber() {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    let file =
        scenario(tmp.path(), "users = 12\ncontacts = 3\nmessage_rate = 0.0\npresence_rate = 24.0\nduration_secs = 2");
    let admin = node.addrs.admin.to_string();
    let out = tmp.path().join("report");
    let (s, stderr) =
        loadtest(&["--scenario", &file, "--server", &node.addrs.xmpp.to_string(), "--admin", &admin], &out);
    assert!(stderr.contains("36 of 36 subscriptions approved"), "{stderr}");
    // 3 s at 24 changes/s, each seen by the 3 users subscribed to it (give or take a few:
    // presence is not stored, and a user's changes close together may be coalesced).
    let seen = total(&out, 6);
    assert!((200.0..=240.0).contains(&seen), "{seen} presence changes seen, 216 expected: {s}");
    assert!(s["presence_p99_ms"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
}

#[test]
fn the_rooms_scenario_fans_each_message_out_to_its_room() {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    // 12 users in 3 rooms of 4: each message reaches the 3 other occupants of its room.
    let file = scenario(tmp.path(), "users = 12\ncontacts = 3\nrooms = 3\nmessage_rate = 20.0\nduration_secs = 2");
    let admin = node.addrs.admin.to_string();
    let out = tmp.path().join("report");
    let (s, _) = loadtest(&["--scenario", &file, "--server", &node.addrs.xmpp.to_string(), "--admin", &admin], &out);
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
    let [sent, acked, delivered] = totals(&out);
    assert!(sent >= 50.0 && acked == sent, "sent {sent}, acked {acked}: {s}");
    assert_eq!(delivered, 3.0 * sent, "each room message reaches the room's 3 other occupants: {s}");
    let rooms = node.cli(&["--user", "lt0@localhost", "--password", "pw", "room", "list"]).success();
    assert!(rooms.contains("lt-room0@conference.localhost") && rooms.contains("lt-room2"), "{rooms}");
}

#[test]
fn the_grpc_driver_chats_through_the_client_api() {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    let history = tmp.path().join("history.jsonl");
    let out = tmp.path().join("report");
    let (s, stderr) = loadtest(
        &["--preset", "smoke", "--duration", "2", "--driver", "grpc", "--server", &node.addrs.client.to_string()]
            .into_iter()
            .chain(["--admin", &node.addrs.admin.to_string(), "--history", history.to_str().unwrap()])
            .collect::<Vec<_>>(),
        &out,
    );
    assert!(stderr.contains("connections 10"), "{stderr}");
    assert_eq!(s["sent_per_sec"].as_f64(), Some(50.0), "{s}");
    assert_eq!(totals(&out), [150.0; 3], "{s}");
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
    let history = std::fs::read_to_string(&history).unwrap();
    assert!(history.lines().all(|l| l.contains("\"outcome\":\"ok\"")), "{history}");
}

#[test]
fn a_reconnect_storm_loses_no_acknowledged_message() {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    let file =
        scenario(tmp.path(), "users = 10\ncontacts = 3\nmessage_rate = 50.0\nreconnect_rate = 4.0\nduration_secs = 3");
    let history = tmp.path().join("history.jsonl");
    let admin = node.addrs.admin.to_string();
    let (s, _) = loadtest(
        &["--scenario", &file, "--server", &node.addrs.xmpp.to_string(), "--admin", &admin]
            .into_iter()
            .chain(["--history", history.to_str().unwrap()])
            .collect::<Vec<_>>(),
        &tmp.path().join("report"),
    );
    assert!(s["reconnects_per_sec"].as_f64().unwrap() >= 2.0, "{s}");
    assert!(s["login_p99_ms"].as_f64().unwrap() > 0.0, "{s}");
    let figures = check_history(&history, &node);
    println!("reconnect storm: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert!(figures.acked >= 150, "{figures}");
}

#[test]
fn the_tools_history_drives_a_cluster_failure_test() {
    let (_dirs, [mut n1, n2, n3]) = telex_testkit::cluster::three_nodes(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario(tmp.path(), "users = 12\ncontacts = 3\nmessage_rate = 60.0\nduration_secs = 11");
    let history = tmp.path().join("history.jsonl");
    let servers = [&n1, &n2, &n3].map(|n| n.addrs.xmpp.to_string()).join(",");
    let report = tmp.path().join("report");
    let run = Command::new(bin("telex-loadtest"))
        .env("TELEX_ADMIN_TOKEN", telex_testkit::ADMIN_TOKEN)
        .args(["run", "--scenario", &file, "--server", &servers, "--admin", &n2.addrs.admin.to_string()])
        .arg("--history")
        .arg(&history)
        .arg("--out")
        .arg(&report)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Logged in and sending for a while: node 1 dies mid-run, leaving its users 5 s to get
    // back in through the others.
    std::thread::sleep(Duration::from_secs(6));
    n1.kill9();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let figures = check_history(&history, &n3);
    println!("loadtest across a kill -9: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert!(figures.acked > 200, "{figures}");
    // The 4 users connected through node 1 were logged in again through the others.
    assert!(total(&report, 8) >= 4.0, "reconnects: {stderr}");
}
