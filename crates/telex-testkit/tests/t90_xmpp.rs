//! The XMPP gateway against slixmpp (a client this project did not write): login with SCRAM,
//! subscriptions and presence, chat, archive paging, carbons, stream resumption, a slixmpp user
//! and a `telex` CLI user talking both ways, and bad input, each leaving the server healthy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use telex_testkit::{data_dir, http_get, Telexd};

/// The virtualenv python with slixmpp (installed on first use).
fn python() -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/xmpp-clients.sh");
    let out = Command::new(script).stderr(Stdio::inherit()).output().expect("run xmpp-clients.sh");
    assert!(out.status.success(), "installing slixmpp failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn scenario(node: &Telexd, name: &str, extra: &[&str]) -> Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("xmpp/scenarios.py");
    Command::new(python())
        .arg(script)
        .arg(name)
        .args(["--port", &node.addrs.xmpp.port().to_string()])
        .args(["--tls-port", &node.addrs.xmpp_tls.port().to_string()])
        .args(extra)
        .output()
        .expect("run scenarios.py")
}

fn assert_ok(out: &Output, name: &str, node: &Telexd) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("OK {name}")),
        "scenario {name} failed:\n{stdout}\n{stderr}\nserver log tail:\n{}",
        tail(&node.log_text(), 40)
    );
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn users(node: &Telexd, names: &[&str]) {
    for n in names {
        node.cli(&["user", "add", &format!("{n}@localhost"), "--password", "pw"]).success();
    }
}

fn healthy(node: &Telexd) {
    assert_eq!(http_get(node.addrs.http, "/healthz").map(|(c, _)| c), Some(200));
    // And still serving XMPP: a fresh stream gets its header and features.
    let mut raw = Raw::connect(node.addrs.xmpp);
    raw.send(&open("localhost"));
    raw.expect("<stream:features>");
}

fn open(domain: &str) -> String {
    format!("<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
}

/// A hand-driven c2s connection, for input no real client would send.
struct Raw {
    s: TcpStream,
    got: String,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Raw { s, got: String::new() }
    }

    fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until `needle` arrived (everything read so far is kept), or panics.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !self.got.contains(needle) {
            assert!(Instant::now() < deadline, "never got {needle:?}; got {:?}", self.got);
            match self.s.read(&mut buf) {
                Ok(0) => panic!("connection closed before {needle:?}; got {:?}", self.got),
                Ok(n) => self.got.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
        self.got.clone()
    }

    /// Whether the server closed the connection within a few seconds.
    fn closed(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.got.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => {}
            }
        }
        false
    }

    /// Authenticates with PLAIN (allowed on loopback) and binds `resource`.
    fn login(addr: SocketAddr, user: &str, resource: &str) -> Raw {
        use base64::Engine;
        let mut r = Raw::connect(addr);
        r.send(&open("localhost"));
        r.expect("</stream:features>");
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"));
        r.send(&format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"));
        r.expect("<success");
        r.got.clear();
        r.send(&open("localhost"));
        r.expect("</stream:features>");
        r.send(&format!(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ));
        r.expect("</iq>");
        r.got.clear();
        r
    }
}

#[test]
fn slixmpp_clients_chat_page_the_archive_and_get_carbons() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "bob", "carol"]);
    let out = scenario(&node, "chat", &[]);
    assert_ok(&out, "chat", &node);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    // What slixmpp sent is in the same archive the native API reads.
    let history = node.cli(&["history", "--user", "bob@localhost", "--password", "pw", "--with", "alice@localhost"]);
    let text = history.success();
    assert!(text.contains("a0") && text.contains("b19"), "{text}");
    healthy(&node);
}

#[test]
fn slixmpp_resumes_a_dropped_stream_without_losing_a_message() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "bob"]);
    let out = scenario(&node, "resume", &[]);
    assert_ok(&out, "resume", &node);
    healthy(&node);
}

#[test]
fn a_slixmpp_user_and_a_cli_user_chat_both_ways() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "carol"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("xmpp/scenarios.py");
    let talker = Command::new(python())
        .arg(script)
        .args(["talk", "--port", &node.addrs.xmpp.port().to_string(), "--user", "alice", "--peer", "carol"])
        .args(["--send", "hello carol from xmpp", "--expect", "hi alice from the cli"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let auth = ["--user", "carol@localhost", "--password", "pw"];
    let heard = node.cli(&[&["listen"][..], &auth, &["--count", "1", "--timeout", "30"]].concat()).success();
    assert!(heard.contains("hello carol from xmpp") && heard.contains("alice@localhost"), "{heard}");
    node.cli(&[&["send"][..], &auth, &["alice@localhost", "hi alice from the cli"]].concat()).success();
    let out = talker.wait_with_output().unwrap();
    assert_ok(&out, "talk", &node);
}

#[test]
fn bad_input_gets_the_right_error_and_leaves_the_server_healthy() {
    let (tmp, dir) = data_dir();
    let config = telex_testkit::cluster::config_file(&tmp, "[xmpp]\npreauth_timeout_secs = 1\n");
    let node = Telexd::start(&dir, &["--shards", "8", "--config", &config]);
    users(&node, &["alice", "bob"]);
    let addr = node.addrs.xmpp;

    // Entity expansion ("billion laughs"): a DTD is refused outright.
    let mut r = Raw::connect(addr);
    r.send("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;'>]>");
    r.send(&open("localhost")[21..]);
    r.expect("<restricted-xml");
    assert!(r.closed(), "the stream ends after a stream error");

    // An oversized stanza, before it is buffered whole.
    let mut r = Raw::login(addr, "alice", "big");
    r.send(&format!("<message to='bob@localhost'><body>{}</body></message>", "x".repeat(300 * 1024)));
    r.expect("<policy-violation");
    assert!(r.closed());

    // A stanza before authentication.
    let mut r = Raw::connect(addr);
    r.send(&open("localhost"));
    r.expect("</stream:features>");
    r.send("<message to='bob@localhost'><body>sneaky</body></message>");
    r.expect("<not-authorized");
    assert!(r.closed());

    // A spoofed 'from'.
    let mut r = Raw::login(addr, "alice", "spoof");
    r.send("<message from='bob@localhost/x' to='alice@localhost'><body>I am bob</body></message>");
    r.expect("<invalid-from");
    assert!(r.closed());

    // A connection that never authenticates is cut off at the deadline.
    let mut r = Raw::connect(addr);
    r.send(&open("localhost"));
    r.expect("</stream:features>");
    r.expect("<connection-timeout");
    assert!(r.closed());

    // An unknown domain.
    let mut r = Raw::connect(addr);
    r.send(&open("nowhere.example"));
    r.expect("<host-unknown");

    // A bad SCRAM proof (slixmpp with a wrong password).
    let out = scenario(&node, "bad_password", &[]);
    assert_ok(&out, "bad_password", &node);

    // Resuming another user's stream: refused as if it did not exist.
    let mut a = Raw::login(addr, "alice", "resumable");
    a.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    let got = a.expect("/>");
    let id = got.split("id='").nth(1).and_then(|s| s.split('\'').next()).expect("an SM id").to_string();
    let mut b = Raw::connect(addr);
    b.send(&open("localhost"));
    b.expect("</stream:features>");
    use base64::Engine;
    let creds = base64::engine::general_purpose::STANDARD.encode("\0bob\0pw");
    b.send(&format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"));
    b.expect("<success");
    b.send(&open("localhost"));
    b.expect("<sm xmlns='urn:xmpp:sm:3'/>");
    b.send(&format!("<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"));
    b.expect("<item-not-found");
    // Alice's stream is untouched: she still gets answers.
    a.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    a.expect("id='p1'");

    healthy(&node);
}

#[test]
fn xmpp_over_websocket_talks_to_a_c2s_client() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "bob"]);
    let out = scenario(&node, "websocket", &["--http-port", &node.addrs.http.port().to_string()]);
    assert_ok(&out, "websocket", &node);
    healthy(&node);
}

#[test]
fn slixmpp_clients_on_different_nodes_of_a_cluster_chat() {
    // alice, bob and carol; alice connects to node 1, bob to node 2, the tablet to node 1.
    let (_dirs, nodes) = telex_testkit::cluster::three_nodes(&[]);
    nodes[0].cli(&["user", "add", "carol@localhost", "--password", "pw"]).success();
    let bob_port = nodes[1].addrs.xmpp.port().to_string();
    let out = scenario(&nodes[0], "chat", &["--bob-port", &bob_port]);
    assert_ok(&out, "chat", &nodes[0]);
}

#[test]
fn a_stopping_node_sends_its_xmpp_clients_to_another_node() {
    let doors = ["--advertise-client-addr", "auto", "--advertise-xmpp-addr", "auto"];
    let (_dirs, [n1, n2, mut n3]) = telex_testkit::cluster::three_nodes(&doors);
    // slixmpp's alice on node 3, bob on node 1; and a raw client on node 3 to read the error.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("xmpp/scenarios.py");
    let mut slix = Command::new(python())
        .arg(script)
        .args(["redirect", "--port", &n3.addrs.xmpp.port().to_string()])
        .args(["--bob-port", &n1.addrs.xmpp.port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scenarios.py");
    let mut lines = std::io::BufReader::new(slix.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("READY") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
        assert!(n > 0, "the scenario ended before it was ready: {:?}", slix.wait_with_output());
    }
    n1.cli(&["user", "add", "carol@localhost", "--password", "pw"]).success();
    let mut raw = Raw::login(n3.addrs.xmpp, "carol@localhost", "desk");
    // And a native device of carol's on node 3.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = n3.client_url();
    let mut native = rt.block_on(async {
        let token = telex_testkit::client::login(&url, "carol@localhost", "pw", "tablet").await;
        telex_testkit::client::Device::open(&url, &token).await.unwrap()
    });
    // Peers learn each other's doors from the leadership announcements (every 300 ms).
    std::thread::sleep(Duration::from_secs(1));
    assert!(n3.terminate(Duration::from_secs(30)), "node 3 did not stop");
    let got = raw.expect("</stream:error>");
    let others = [n1.addrs.xmpp.to_string(), n2.addrs.xmpp.to_string()];
    assert!(
        others
            .iter()
            .any(|a| got.contains(&format!("<see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{a}<"))),
        "no see-other-host naming node 1 or 2 ({others:?}): {got}"
    );
    let ended = rt.block_on(native.ended());
    let to = ended.metadata().get("telex-reconnect-to").and_then(|v| v.to_str().ok()).map(str::to_string);
    let clients = [n1.addrs.client.to_string(), n2.addrs.client.to_string()];
    assert!(
        to.as_ref().is_some_and(|t| clients.contains(t)),
        "native: not sent to node 1 or 2 ({clients:?}): {ended:?}"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    let out = slix.wait_with_output().unwrap();
    assert!(
        out.status.success() && rest.contains("OK redirect"),
        "redirect scenario failed:\n{rest}\n{}\nnode 3 log:\n{}\nnode 1 log:\n{}\nnode 2 log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&n3.log_text(), 30),
        tail(&n1.log_text(), 15),
        tail(&n2.log_text(), 15)
    );
    println!("slixmpp: {}", rest.trim());
    healthy(&n1);
    healthy(&n2);
}

/// Asks (`<r/>`, every 100 ms) until the server counts at least `want` handled stanzas; the `h`
/// seen last, or `None` by the deadline. A refused message shows as an error stanza.
fn wait_handled(r: &mut Raw, want: u32, within: Duration) -> (Option<u32>, bool) {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    let mut asked = Instant::now() - Duration::from_secs(1);
    loop {
        if asked.elapsed() >= Duration::from_millis(100) {
            r.send("<r xmlns='urn:xmpp:sm:3'/>");
            asked = Instant::now();
        }
        let refused = r.got.contains("type='error'");
        let h = r.got.rmatch_indices("<a xmlns='urn:xmpp:sm:3' h='").next().and_then(|(at, m)| {
            let rest = &r.got[at + m.len()..];
            rest[..rest.find('\'')?].parse::<u32>().ok()
        });
        if h.is_some_and(|h| h >= want) || refused || Instant::now() > deadline {
            r.got.clear();
            return (h, refused);
        }
        if let Ok(n) = r.s.read(&mut buf) {
            if n == 0 {
                return (h, refused);
            }
            r.got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

#[test]
fn an_xmpp_sender_loses_no_handled_message_when_the_leader_is_killed() {
    use std::collections::BTreeMap;
    use telex_testkit::history::{check, Outcome, SendEvent};

    let (_dirs, [mut n1, n2, n3]) = telex_testkit::cluster::three_nodes(&[]);
    // Alice's client is on node 2; her actor and bob's shard start out led by node 1.
    let mut r = Raw::login(n2.addrs.xmpp, "alice", "laptop");
    r.send("<enable xmlns='urn:xmpp:sm:3'/>");
    r.expect("<enabled");
    r.got.clear();
    let mut events = Vec::new();
    let started = Instant::now();
    let mut killed = false;
    let mut sent: u32 = 0;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(8) {
        if !killed && started.elapsed() > Duration::from_secs(2) {
            n1.kill9();
            killed = true;
        }
        let id = format!("x{i}");
        loop {
            r.send(&format!("<message to='bob@localhost' id='{id}' type='chat'><body>m {i}</body></message>"));
            sent += 1;
            // "Handled" means committed: h covers this message only once it is stored.
            let (h, refused) = wait_handled(&mut r, sent, Duration::from_secs(20));
            assert!(!refused, "a send was refused");
            let outcome = if h.is_some_and(|h| h >= sent) { Outcome::Ok } else { Outcome::Info };
            events.push(SendEvent { owner: "bob@localhost".into(), client_id: id.clone(), outcome });
            if outcome == Outcome::Ok {
                break;
            }
        }
        i += 1;
    }
    assert!(killed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let from_n3 = rt.block_on(telex_testkit::cluster::archive(&n3, "bob@localhost"));
    let from_n2 = rt.block_on(telex_testkit::cluster::archive(&n2, "bob@localhost"));
    assert_eq!(from_n2, from_n3, "replicas disagree on bob's archive");
    let figures = check(&events, &BTreeMap::from([("bob@localhost".to_string(), from_n3)]));
    println!("XMPP sender across a leader kill: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert!(figures.acked > 20, "too few messages to mean anything: {figures}");
}

/// Two slixmpp occupants and a native member (the room's owner, through the CLI) in one room:
/// the XMPP clients get the history on entering, everyone sees one order of the live messages
/// (theirs and the native member's, interleaved), and that order is the room's log.
fn room_with_xmpp_and_native_members(nodes: &[Telexd]) {
    let (first, last) = (&nodes[0], &nodes[nodes.len() - 1]);
    for n in ["alice", "bob", "carol"] {
        // The cluster helper made alice and bob already.
        let added = first.cli(&["user", "add", &format!("{n}@localhost"), "--password", "pw"]);
        assert!(added.ok || added.stderr.contains("already exists"), "{}", added.stderr);
    }
    let carol =
        |node: &Telexd, args: &[&str]| node.cli(&[args, &["--user", "carol@localhost", "--password", "pw"]].concat());
    const ROOM: &str = "team@conference.localhost";
    carol(last, &["room", "create", ROOM, "--name", "Team"]).success();
    for i in 0..3 {
        carol(last, &["room", "say", ROOM, &format!("before-{i}")]).success();
    }
    let (n, native) = (10, 5);
    // carol's device first gets what it missed (the 3 said before), then follows the room live
    // (a native member's session gets its messages).
    let total = (3 + 2 * n + native).to_string();
    let listener = Command::new(telex_testkit::bin("telex"))
        .args(["--server", &last.addrs.client.to_string(), "--user", "carol@localhost", "--password", "pw", "--json"])
        .args(["room", "listen", ROOM, "--count", &total, "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("xmpp/scenarios.py");
    let bob_node = &nodes[1.min(nodes.len() - 1)];
    let mut py = Command::new(python())
        .arg(script)
        .arg("muc")
        .args(["--port", &first.addrs.xmpp.port().to_string(), "--bob-port", &bob_node.addrs.xmpp.port().to_string()])
        .args(["--count", &n.to_string(), "--count-before", "3", "--count-native", &native.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once both are in, carol says her part while they say theirs.
    let mut stdout = std::io::BufReader::new(py.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        seen.push_str(&line);
        if read == 0 || line.starts_with("JOINED") {
            break;
        }
    }
    assert!(
        seen.contains("JOINED"),
        "the XMPP clients did not enter the room:\n{seen}\n{}",
        tail(&first.log_text(), 40)
    );
    for i in 0..native {
        carol(last, &["room", "say", ROOM, &format!("carol-{i}")]).success();
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = py.wait().unwrap();
    let mut err = String::new();
    py.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let out = format!("{seen}{rest}");
    assert!(
        status.success() && out.contains("OK muc"),
        "scenario muc failed:\n{out}\n{err}\nserver log tail:\n{}",
        tail(&first.log_text(), 40)
    );
    let order: Vec<String> = out
        .lines()
        .find_map(|l| l.strip_prefix("ORDER "))
        .expect("the scenario prints the order it saw")
        .split('|')
        .map(str::to_string)
        .collect();
    assert_eq!(order.len(), 2 * n + native, "{order:?}");
    // carol's native device saw the same order live...
    let heard = listener.wait_with_output().unwrap();
    let live: Vec<String> = String::from_utf8_lossy(&heard.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(live[..3], ["before-0", "before-1", "before-2"], "carol's device missed what it had missed");
    assert_eq!(
        live[3..],
        order,
        "carol's device saw another order; stderr: {}",
        String::from_utf8_lossy(&heard.stderr)
    );
    // ...and it is the room's log, after the history.
    let log = carol(first, &["--json", "room", "history", ROOM, "--limit", "100"]).success();
    let logged: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&log)
        .unwrap()
        .iter()
        .map(|v| v["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(logged[..3], ["before-0", "before-1", "before-2"]);
    assert_eq!(logged[3..], order[..]);
    for node in nodes {
        healthy(node);
    }
}

#[test]
fn slixmpp_occupants_and_a_native_member_see_one_room_order() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    room_with_xmpp_and_native_members(std::slice::from_ref(&node));
}

#[test]
fn a_room_spans_the_nodes_of_a_cluster() {
    // alice on node 1, bob on node 2, carol (native) on node 3; the room's shard is led by one
    // of them, so its fan-out reaches the others over the node-to-node API.
    let (_dirs, nodes) = telex_testkit::cluster::three_nodes(&[]);
    room_with_xmpp_and_native_members(&nodes);
}

#[test]
fn each_room_refusal_has_its_xep_0045_condition() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "carol"]);
    let carol =
        |args: &[&str]| node.cli(&[args, &["--user", "carol@localhost", "--password", "pw"]].concat()).success();
    carol(&["room", "create", "secret@conference.localhost", "--members-only"]);
    carol(&["room", "create", "banned@conference.localhost"]);
    carol(&["room", "ban", "banned@conference.localhost", "alice@localhost"]);
    carol(&["room", "create", "locked@conference.localhost", "--room-password", "s3"]);
    carol(&["room", "create", "team@conference.localhost"]);
    carol(&["room", "create", "quiet@conference.localhost", "--moderated"]);
    let out = scenario(&node, "muc_refusals", &[]);
    assert_ok(&out, "muc_refusals", &node);
    // Nothing a refusal touched was stored.
    let log = carol(&["--json", "room", "history", "team@conference.localhost"]);
    assert_eq!(log.trim(), "[]", "{log}");
    let log = carol(&["--json", "room", "history", "quiet@conference.localhost"]);
    assert_eq!(log.trim(), "[]", "{log}");
    healthy(&node);
}

#[test]
fn an_owner_runs_a_room_from_slixmpp() {
    // Configuration form, invitation, member list, kick, ban and destroy (XEP-0045 §9, §10).
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "bob"]);
    let out = scenario(&node, "muc_admin", &[]);
    assert_ok(&out, "muc_admin", &node);
    // The invitation is in bob's archive, as a message from alice (stored, so it waits for
    // an offline invitee).
    let inbox =
        node.cli(&["--user", "bob@localhost", "--password", "pw", "history", "--with", "alice@localhost"]).success();
    assert!(inbox.contains("invites you to the room staff@conference.localhost"), "{inbox}");
    healthy(&node);
}

#[test]
fn occupants_message_privately_and_a_moderator_gives_voice() {
    // XEP-0045 §7.5 and §8.3-8.5, with the room's native view of the grant.
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "bob"]);
    let out = scenario(&node, "muc_voice", &[]);
    assert_ok(&out, "muc_voice", &node);
    // Private messages are not in the room's log; only "thanks" (said with voice) is.
    let alice = |args: &[&str]| node.cli(&[args, &["--user", "alice@localhost", "--password", "pw"]].concat());
    let log = alice(&["--json", "room", "history", "forum@conference.localhost"]).success();
    assert!(log.contains("thanks") && !log.contains("psst") && !log.contains("may I"), "{log}");
    // Voice is a stored grant the native API shows and changes; silencing a visitor of a
    // moderated room again is its default, no grant.
    let room = "forum@conference.localhost";
    let shown = alice(&["--json", "room", "role", room, "bob@localhost", "participant"]).success();
    assert!(shown.contains(r#"["bob@localhost","participant"]"#), "{shown}");
    let bob = ["--user", "bob@localhost", "--password", "pw", "room", "role", "forum@conference.localhost"];
    node.cli(&[&bob[..], &["alice@localhost", "visitor"]].concat()).failure("changing roles needs a moderator");
    let shown = alice(&["--json", "room", "role", room, "bob@localhost", "visitor"]).success();
    assert!(shown.contains(r#""roles":[]"#), "{shown}");
    healthy(&node);
}

#[test]
fn a_message_across_an_information_barrier_gets_policy_violation_with_the_rules_text() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["rita", "tom"]);
    node.cli(&["group", "add", "research@localhost"]).success();
    node.cli(&["group", "add", "trading@localhost"]).success();
    node.cli(&["group", "member", "add", "research@localhost", "rita@localhost"]).success();
    node.cli(&["group", "member", "add", "trading@localhost", "tom@localhost"]).success();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[[barrier]]\nname = \"wall\"\nbetween = [\"group:research\", \"group:trading\"]\ndescription = \"Research and trading are kept apart\"\n",
    )
    .unwrap();
    node.cli(&["policy", "set", "localhost", policy.to_str().unwrap()]).success();
    // Each node compiles the policy from its replica: wait for it to be in force.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = scenario(&node, "refused", &["--user", "rita", "--peer", "tom", "--send", "tip"]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if stdout.contains("REFUSED policy-violation Research and trading are kept apart") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no policy-violation: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let inbox =
        node.cli(&["--user", "tom@localhost", "--password", "pw", "history", "--with", "rita@localhost"]).success();
    assert!(!inbox.contains("tip"), "a refused message was stored: {inbox}");
    healthy(&node);
}

#[test]
fn a_shared_roster_group_and_the_directory_search_work_for_an_xmpp_client() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["sue", "sam", "rita"]);
    for (u, name) in [("sue", "Sue Smith"), ("sam", "Sam Seller"), ("rita", "Rita Research")] {
        node.cli(&["user", "set", &format!("{u}@localhost"), "--display-name", name]).success();
    }
    node.cli(&["group", "add", "sales@localhost", "--name", "Sales", "--shown-to", "sales"]).success();
    node.cli(&["group", "add", "research@localhost"]).success();
    for (g, u) in [("sales", "sue"), ("sales", "sam"), ("research", "rita")] {
        node.cli(&["group", "member", "add", &format!("{g}@localhost"), &format!("{u}@localhost")]).success();
    }
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "[[barrier]]\nname = \"wall\"\nbetween = [\"group:sales\", \"group:research\"]\n").unwrap();
    node.cli(&["policy", "set", "localhost", policy.to_str().unwrap()]).success();
    // Each node compiles the directory from its replica just after the write.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = scenario(&node, "directory", &["--user", "sue", "--peer", "sam", "--expect", "Sales", "--send", "s"]);
    assert_ok(&out, "directory", &node);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // "Rita Research" matches "s" too, but the barrier hides her from sales.
    assert!(stdout.contains("FOUND sam@localhost\n"), "{stdout}");
    assert!(stdout.contains("FORM sam@localhost\n"), "{stdout}");
    let native = node.cli(&["--user", "sue@localhost", "--password", "pw", "--json", "search", "s"]).success();
    assert!(native.contains("sam@localhost") && !native.contains("rita@localhost"), "{native}");
    healthy(&node);
}
