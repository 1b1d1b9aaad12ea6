//! The XMPP gateway against aioxmpp, a client stricter than slixmpp (it matches answers by
//! their 'from' and checks stream-management counts): answers from the server, acknowledgements
//! that count every committed message, offline messages after initial presence, block-list
//! pushes, per-resource presence and routing, roster versioning and client state indication.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use telex_testkit::{data_dir, http_get, Telexd};

/// The virtualenv python with aioxmpp (installed on first use).
fn python() -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/xmpp-clients.sh");
    let out = Command::new(script).stderr(Stdio::inherit()).output().expect("run xmpp-clients.sh");
    assert!(out.status.success(), "installing the XMPP clients failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn strict(node: &Telexd, name: &str) -> Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("xmpp/strict.py");
    Command::new(python())
        .arg(script)
        .arg(name)
        .args(["--port", &node.addrs.xmpp.port().to_string()])
        .output()
        .expect("run strict.py")
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn assert_ok(node: &Telexd, name: &str) {
    let out = strict(node, name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("OK {name}")),
        "aioxmpp scenario {name} failed:\n{stdout}\n{}\nserver log tail:\n{}",
        tail(&stderr, 40),
        tail(&node.log_text(), 40)
    );
}

/// A node with alice, bob and eve; bob on alice's roster with presence both ways.
fn node() -> (tempfile::TempDir, Telexd) {
    let (tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for n in ["alice", "bob", "eve"] {
        node.cli(&["user", "add", &format!("{n}@localhost"), "--password", "pw"]).success();
    }
    let as_user = |u: &str, args: &[&str]| {
        let jid = format!("{u}@localhost");
        let mut all = args.to_vec();
        all.extend(["--user", jid.as_str(), "--password", "pw"]);
        node.cli(&all).success();
    };
    as_user("alice", &["roster", "add", "bob@localhost", "--name", "Bob"]);
    as_user("bob", &["roster", "approve", "alice@localhost"]);
    as_user("bob", &["roster", "add", "alice@localhost"]);
    as_user("alice", &["roster", "approve", "bob@localhost"]);
    (tmp, node)
}

#[test]
fn aioxmpp_gets_answers_from_whom_it_asked() {
    let (_tmp, node) = node();
    assert_ok(&node, "answers");
}

#[test]
fn aioxmpp_sees_every_message_acknowledged_without_asking_twice() {
    let (_tmp, node) = node();
    assert_ok(&node, "acks");
}

#[test]
fn aioxmpp_gets_offline_messages_after_initial_presence_with_a_delay() {
    let (_tmp, node) = node();
    assert_ok(&node, "offline");
}

#[test]
fn aioxmpp_resources_all_learn_of_a_block() {
    let (_tmp, node) = node();
    assert_ok(&node, "blocking");
}

#[test]
fn aioxmpp_sees_presence_per_resource_and_messages_to_full_jids() {
    let (_tmp, node) = node();
    assert_ok(&node, "resources");
}

#[test]
fn aioxmpp_keeps_an_unchanged_roster_by_its_version() {
    let (_tmp, node) = node();
    assert_ok(&node, "rosterver");
}

#[test]
fn aioxmpp_inactive_client_gets_messages_but_not_presence() {
    let (_tmp, node) = node();
    assert_ok(&node, "csi");
    assert_eq!(http_get(node.addrs.http, "/healthz").map(|(c, _)| c), Some(200));
}

#[test]
fn aioxmpp_occupants_share_a_native_members_room() {
    let (_tmp, node) = node();
    node.cli(&["user", "add", "carol@localhost", "--password", "pw"]).success();
    let carol =
        |args: &[&str]| node.cli(&[args, &["--user", "carol@localhost", "--password", "pw"]].concat()).success();
    carol(&["room", "create", "team@conference.localhost"]);
    carol(&["room", "say", "team@conference.localhost", "before-0"]);
    carol(&["room", "say", "team@conference.localhost", "before-1"]);
    assert_ok(&node, "muc");
    // What the aioxmpp clients said is the room's log, in the order they saw.
    let log = carol(&["--json", "room", "history", "team@conference.localhost"]);
    let bodies: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&log)
        .unwrap()
        .iter()
        .map(|v| v["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(bodies.len(), 12, "{bodies:?}");
    assert_eq!(bodies[..2], ["before-0", "before-1"]);
}

#[test]
fn aioxmpp_runs_a_room_as_its_owner() {
    let (_tmp, node) = node();
    assert_ok(&node, "muc_admin");
    let shown = node.cli(&["--json", "room", "show", "board@conference.localhost"]).json();
    assert_eq!(shown["members_only"], true, "{shown}");
    assert!(shown["members"].to_string().contains("bob@localhost"), "{shown}");
}

/// go-sendxmpp (Debian's package), a Go client: installed on first use.
fn go_sendxmpp() -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/go-sendxmpp.sh");
    let out = Command::new(script).stderr(Stdio::inherit()).output().expect("run go-sendxmpp.sh");
    assert!(out.status.success(), "installing go-sendxmpp failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn go_sendxmpp_logs_in_over_starttls_and_its_message_is_stored() {
    let (_tmp, node) = node();
    let server = format!("127.0.0.1:{}", node.addrs.xmpp.port());
    let mut child = Command::new(go_sendxmpp())
        .args(["-u", "alice@localhost", "-p", "pw", "-j", &server, "-n", "--timeout", "20", "bob@localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start go-sendxmpp");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello from go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "go-sendxmpp failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&node.log_text(), 30)
    );
    let history = node.cli(&["history", "--user", "bob@localhost", "--password", "pw", "--with", "alice@localhost"]);
    assert!(history.success().contains("hello from go"), "go-sendxmpp's message is in bob's archive");
}

#[test]
fn go_sendxmpp_says_something_in_a_room() {
    let (_tmp, node) = node();
    node.cli(&["room", "create", "team@conference.localhost", "--user", "bob@localhost", "--password", "pw"]).success();
    let server = format!("127.0.0.1:{}", node.addrs.xmpp.port());
    let mut child = Command::new(go_sendxmpp())
        .args(["-u", "alice@localhost", "-p", "pw", "-j", &server, "-n", "--timeout", "20"])
        .args(["-c", "team@conference.localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start go-sendxmpp");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello room from go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "go-sendxmpp failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&node.log_text(), 30)
    );
    let history =
        node.cli(&["room", "history", "team@conference.localhost", "--user", "bob@localhost", "--password", "pw"]);
    assert!(history.success().contains("hello room from go"), "go-sendxmpp's message is in the room's log");
}

#[test]
fn aioxmpp_sees_a_shared_roster_group_and_a_policy_violation_with_the_rules_text() {
    let (tmp, node) = node();
    for (g, name, shown, members) in [
        ("team", "Team", "team", &["alice", "eve"][..]),
        ("left", "Left", "", &["alice"]),
        ("right", "Right", "", &["bob"]),
    ] {
        let group = format!("{g}@localhost");
        let mut add = vec!["group", "add", group.as_str(), "--name", name];
        if !shown.is_empty() {
            add.extend(["--shown-to", shown]);
        }
        node.cli(&add).success();
        for m in members {
            node.cli(&["group", "member", "add", &group, &format!("{m}@localhost")]).success();
        }
    }
    let file = tmp.path().join("policy.toml");
    std::fs::write(
        &file,
        "[[barrier]]\nname = \"wall\"\nbetween = [\"group:left\", \"group:right\"]\ndescription = \"Alice and Bob are kept apart\"\n",
    )
    .unwrap();
    node.cli(&["policy", "set", "localhost", file.to_str().unwrap()]).success();
    // Each node compiles the policy from its replica just after the write.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_ok(&node, "policy");
}
