//! 1:1 messaging through the client API: live delivery, copies to the sender's devices, retry
//! dedup, offline catch-up across `kill -9`, slow readers, and bad input.

use std::collections::HashSet;
use std::time::Duration;

use telex_proto::v1::HistoryRequest;
use telex_testkit::client::{authed, client, login, Device};
use telex_testkit::{data_dir, Telexd};

const QUIET: Duration = Duration::from_millis(700);

fn users(node: &Telexd, names: &[&str]) {
    for n in names {
        node.cli(&["user", "add", &format!("{n}@localhost"), "--password", "pw"]).success();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_both_ways_and_every_device_sees_the_conversation() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "bob"]);
    let url = node.client_url();
    let mut laptop = Device::open(&url, &login(&url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    let mut phone = Device::open(&url, &login(&url, "alice@localhost", "pw", "phone").await).await.unwrap();
    let mut bob = Device::open(&url, &login(&url, "bob@localhost", "pw", "desk").await).await.unwrap();

    laptop.send("bob@localhost", "m1", "hi bob").await;
    let r = laptop.result("m1").await;
    assert!(r.error.is_empty(), "{r:?}");
    let got = bob.message(Duration::from_secs(5)).await.expect("bob gets it live");
    assert_eq!(
        (got.from.as_str(), got.body.as_str(), got.from_device.as_str()),
        ("alice@localhost", "hi bob", "laptop")
    );
    assert_eq!(got.server_id, r.server_id);
    assert_eq!(got.position, r.recipient_position);
    bob.ack(got.position).await;
    // Alice's other device gets a copy of what she sent (carbon), at her archive position.
    let carbon = phone.message(Duration::from_secs(5)).await.expect("carbon on the phone");
    assert_eq!((carbon.server_id.as_str(), carbon.position), (r.server_id.as_str(), r.position));

    bob.send("alice@localhost", "r1", "hello alice").await;
    let reply = bob.result("r1").await;
    assert!(reply.error.is_empty(), "{reply:?}");
    for dev in [&mut laptop, &mut phone] {
        let all = dev.drain(QUIET).await;
        let bodies: Vec<&str> = all.iter().map(|m| m.body.as_str()).collect();
        assert!(bodies.ends_with(&["hello alice"]), "{bodies:?}");
        let positions: Vec<u64> = all.iter().map(|m| m.position).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "archive order: {positions:?}");
    }

    // The archive holds the conversation once, in order, on both sides.
    let token = login(&url, "alice@localhost", "pw", "history").await;
    let page = client(&url).await.history(authed(HistoryRequest::default(), &token)).await.unwrap().into_inner();
    let bodies: Vec<&str> = page.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["hi bob", "hello alice"]);
    let out =
        node.cli(&["history", "--user", "bob@localhost", "--password", "pw", "--with", "alice@localhost"]).success();
    assert!(out.contains("hi bob") && out.contains("hello alice"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_client_id_stores_one_copy() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "bob"]);
    let send = ["--json", "send", "--user", "alice@localhost", "--password", "pw", "--client-id", "c-7"];
    let send_once = || node.cli(&[&send[..], &["bob@localhost", "once"]].concat()).json();
    let (first, again) = (send_once(), send_once());
    assert_eq!(first, again, "same server id and positions");
    let history = node.cli(&["--json", "history", "--user", "bob@localhost", "--password", "pw"]).success();
    assert_eq!(history.lines().count(), 1, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_survive_kill_9_and_arrive_in_order_once() {
    let (_tmp, dir) = data_dir();
    let mut node = Telexd::start(&dir, &["--shards", "8"]);
    users(&node, &["alice", "bob"]);
    let url = node.client_url();
    let token = login(&url, "alice@localhost", "pw", "laptop").await;
    let mut alice = Device::open(&url, &token).await.unwrap();
    let n = 200;
    for i in 0..n {
        alice.send("bob@localhost", &format!("c{i}"), &format!("message {i}")).await;
    }
    let mut acked = Vec::new();
    for i in 0..n {
        let r = alice.result(&format!("c{i}")).await;
        assert!(r.error.is_empty(), "{r:?}");
        acked.push(r.server_id);
    }
    // Bob was never online. The node dies without warning.
    node.kill9();
    node.restart();
    let url = node.client_url();
    let mut bob = Device::open(&url, &login(&url, "bob@localhost", "pw", "desk").await).await.unwrap();
    let got = bob.drain(QUIET).await;
    let ids: Vec<&str> = got.iter().map(|m| m.server_id.as_str()).collect();
    assert_eq!(ids.len(), n, "every acknowledged message, once");
    assert_eq!(ids.iter().copied().collect::<HashSet<_>>(), acked.iter().map(String::as_str).collect::<HashSet<_>>());
    let positions: Vec<u64> = got.iter().map(|m| m.position).collect();
    assert_eq!(positions, (1..=n as u64).collect::<Vec<_>>(), "archive order without gaps");
    drop(bob);
    // Acknowledged on that device: nothing is re-sent once the cursor is durable.
    let mut again = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut bob = Device::open(&url, &login(&url, "bob@localhost", "pw", "desk").await).await.unwrap();
        again = bob.drain(QUIET).await;
        if again.is_empty() {
            break;
        }
    }
    assert!(again.is_empty(), "{} messages re-sent after they were acknowledged", again.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_reading_is_cut_off_and_catches_up_later() {
    let (tmp, dir) = data_dir();
    let config = tmp.path().join("telex.toml");
    std::fs::write(
        &config,
        "[raft]\nshards = 4\n[limits]\nstall_timeout_secs = 1\nsends_per_second = 100000\nsend_burst = 100000\n",
    )
    .unwrap();
    let node = Telexd::start(&dir, &["--config", config.to_str().unwrap()]);
    users(&node, &["alice", "bob"]);
    let url = node.client_url();
    let bob_token = login(&url, "bob@localhost", "pw", "desk").await;
    let mut stalled = Device::open(&url, &bob_token).await.unwrap(); // never reads until later
    let mut alice = Device::open(&url, &login(&url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    let n = 400;
    let body = "x".repeat(32 * 1024);
    for i in 0..n {
        alice.send("bob@localhost", &format!("c{i}"), &body).await;
    }
    for i in 0..n {
        assert!(alice.result(&format!("c{i}")).await.error.is_empty());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Now it reads: what was queued, then the reason it was cut off. Memory stayed bounded.
    let mut first = Vec::new();
    while let Some(m) = stalled.message(Duration::from_secs(5)).await {
        first.push(m);
    }
    let status = stalled.ended.clone().expect("the server ended the stream");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("stopped reading"), "{status:?}");
    assert!(first.len() < n, "it was cut off before everything was queued ({})", first.len());
    // Reconnecting catches up with nothing missing.
    let mut bob = Device::open(&url, &bob_token).await.unwrap();
    let rest = bob.drain(QUIET).await;
    let mut seen: Vec<u64> = first.iter().chain(rest.iter()).map(|m| m.position).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=n as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sends_and_sessions_get_clear_errors() {
    let (tmp, dir) = data_dir();
    let config = tmp.path().join("telex.toml");
    std::fs::write(&config, "[raft]\nshards = 4\n[limits]\nsessions_per_user = 2\n").unwrap();
    let node = Telexd::start(&dir, &["--config", config.to_str().unwrap()]);
    users(&node, &["alice", "bob"]);
    let send = |args: &[&str]| {
        let mut all = vec!["send", "--user", "alice@localhost", "--password", "pw"];
        all.extend_from_slice(args);
        node.cli(&all)
    };
    send(&["nobody@localhost", "hi"]).failure("not found: no such user nobody@localhost");
    // Session flags go before the subcommand as well as after it.
    let before = node.cli(&["--user", "alice@localhost", "--password", "pw", "send", "bob@localhost", "flags first"]);
    assert!(before.success().contains("position"), "telex --user X send ... works");
    send(&["bob", "hi"]).failure("invalid argument: invalid JID");
    // Another tenant's users are out of reach, whether they exist or not.
    send(&["bob@nowhere.example", "hi"]).failure("users of localhost may not message users of nowhere.example");
    let big = "y".repeat(64 * 1024 + 1);
    send(&["bob@localhost", &big]).failure("the limit is 65536 bytes");
    send(&["--client-id", "", "bob@localhost", "hi"]).failure("client_id");

    let url = node.client_url();
    let err = Device::open(&url, "tx1.bogus").await.err().expect("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let _a = Device::open(&url, &login(&url, "alice@localhost", "pw", "one").await).await.unwrap();
    let _b = Device::open(&url, &login(&url, "alice@localhost", "pw", "two").await).await.unwrap();
    let err = Device::open(&url, &login(&url, "alice@localhost", "pw", "three").await).await.err().expect("refused");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("the limit is 2"), "{err:?}");
    // The same device reconnecting replaces its old session instead of counting twice.
    let _b2 = Device::open(&url, &login(&url, "alice@localhost", "pw", "two").await).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_and_kick_real_sessions() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);
    users(&node, &["alice", "bob"]);
    let url = node.client_url();
    let mut phone = Device::open(&url, &login(&url, "bob@localhost", "pw", "phone").await).await.unwrap();
    let _desk = Device::open(&url, &login(&url, "bob@localhost", "pw", "desk").await).await.unwrap();
    let _alice = Device::open(&url, &login(&url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    let all = node.cli(&["--json", "session", "list"]).json();
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let bobs = node.cli(&["session", "list", "bob@localhost"]).success();
    assert!(bobs.contains("bob@localhost/desk") && bobs.contains("bob@localhost/phone"), "{bobs}");
    assert!(!bobs.contains("alice"), "{bobs}");

    node.cli(&["session", "kick", "bob@localhost/phone"]).success();
    assert!(phone.message(Duration::from_secs(5)).await.is_none());
    let status = phone.ended.clone().expect("stream ended");
    assert!(status.message().contains("disconnected by an administrator"), "{status:?}");
    let bobs = node.cli(&["--json", "session", "list", "bob@localhost"]).json();
    assert_eq!(bobs.as_array().unwrap().len(), 1, "{bobs}");
    node.cli(&["session", "kick", "bob@localhost/phone"]).failure("not found: bob@localhost/phone is not connected");
    node.cli(&["session", "kick", "bob@localhost"]).failure("is not JID/DEVICE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_over_their_rate_are_told_when_to_retry() {
    let (tmp, dir) = data_dir();
    let config = tmp.path().join("telex.toml");
    std::fs::write(&config, "[raft]\nshards = 4\n[limits]\nsends_per_second = 2\nsend_burst = 3\n").unwrap();
    let node = Telexd::start(&dir, &["--config", config.to_str().unwrap()]);
    users(&node, &["alice", "bob"]);
    let url = node.client_url();
    let mut alice = Device::open(&url, &login(&url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    for i in 0..4 {
        alice.send("bob@localhost", &format!("r{i}"), "quick").await;
    }
    // Sends of one session are committed concurrently, so which one is refused may vary.
    let mut refused = Vec::new();
    for i in 0..4 {
        let r = alice.result(&format!("r{i}")).await;
        if !r.error.is_empty() {
            refused.push(r);
        }
    }
    assert_eq!(refused.len(), 1, "three fit the burst: {refused:?}");
    let r = refused.pop().unwrap();
    assert_eq!(r.error_code, "resource_exhausted", "{r:?}");
    assert!(r.retryable && r.retry_after_ms > 0 && r.retry_after_ms <= 500, "{r:?}");
    assert!(r.error.contains("retry after"), "{r:?}");
    tokio::time::sleep(std::time::Duration::from_millis(r.retry_after_ms + 20)).await;
    alice.send("bob@localhost", &r.client_id, "quick").await;
    assert!(alice.result(&r.client_id).await.error.is_empty(), "the retry succeeds");
    let bob_history = node.cli(&["--json", "history", "--user", "bob@localhost", "--password", "pw"]).success();
    assert_eq!(bob_history.lines().count(), 4);
}

#[test]
fn interactive_chat_sends_lines_and_prints_messages() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);
    users(&node, &["alice", "bob"]);
    let mut chat = Command::new(telex_testkit::bin("telex"))
        .args(["--server", &node.addrs.client.to_string(), "chat", "--user", "alice@localhost", "--password", "pw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    writeln!(stdin, "bob@localhost: hello from the terminal").unwrap();
    let got = node
        .cli(&["listen", "--user", "bob@localhost", "--password", "pw", "--count", "1", "--timeout", "10"])
        .success();
    assert!(got.contains("alice@localhost -> bob@localhost: hello from the terminal"), "{got}");
    node.cli(&["send", "--user", "bob@localhost", "--password", "pw", "alice@localhost", "hello back"]).success();
    std::thread::sleep(std::time::Duration::from_millis(500));
    writeln!(stdin, "/quit").unwrap();
    drop(stdin);
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("bob@localhost -> alice@localhost: hello back"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_pages_forwards_backwards_and_by_peer() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);
    users(&node, &["alice", "bob", "carol"]);
    let url = node.client_url();
    let mut alice = Device::open(&url, &login(&url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    for i in 0..30 {
        let to = if i % 3 == 0 { "carol@localhost" } else { "bob@localhost" };
        alice.send(to, &format!("p{i}"), &format!("m{i}")).await;
        assert!(alice.result(&format!("p{i}")).await.error.is_empty());
    }
    let token = login(&url, "alice@localhost", "pw", "reader").await;
    let page = |q: HistoryRequest| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let r = client(&url).await.history(authed(q, &token)).await.unwrap().into_inner();
            r.messages.iter().map(|m| (m.position, m.body.clone())).collect::<Vec<_>>()
        }
    };
    // Forwards in pages of 10, in archive order, no gaps or repeats.
    let mut after = 0;
    let mut all = Vec::new();
    loop {
        let p = page(HistoryRequest { after, limit: 10, ..Default::default() }).await;
        if p.is_empty() {
            break;
        }
        after = p.last().unwrap().0;
        all.extend(p);
    }
    assert_eq!(all.iter().map(|(pos, _)| *pos).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    // The newest page before a position.
    let p = page(HistoryRequest { before: 21, limit: 5, ..Default::default() }).await;
    assert_eq!(p.iter().map(|(pos, _)| *pos).collect::<Vec<_>>(), vec![16, 17, 18, 19, 20]);
    // Only the conversation with Carol, newest first page then older.
    let with = || "carol@localhost".to_string();
    let p = page(HistoryRequest { with: with(), before: u64::MAX, limit: 4, ..Default::default() }).await;
    assert_eq!(p.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(), ["m18", "m21", "m24", "m27"]);
    let older = page(HistoryRequest { with: with(), before: p[0].0, limit: 4, ..Default::default() }).await;
    assert_eq!(older.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(), ["m6", "m9", "m12", "m15"]);
    // Bob's archive holds only what was sent to him.
    let bob = login(&url, "bob@localhost", "pw", "reader").await;
    let r =
        client(&url).await.history(authed(HistoryRequest { limit: 500, ..Default::default() }, &bob)).await.unwrap();
    assert_eq!(r.into_inner().messages.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_pages_by_server_id_and_by_time() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);
    users(&node, &["alice", "bob"]);
    let url = node.client_url();
    let mut alice = Device::open(&url, &login(&url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    let mut send_batch = async |from: usize| {
        for i in from..from + 5 {
            alice.send("bob@localhost", &format!("c{i}"), &format!("m{i}")).await;
            assert!(alice.result(&format!("c{i}")).await.error.is_empty());
        }
    };
    send_batch(0).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let between = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send_batch(5).await;
    let token = login(&url, "bob@localhost", "pw", "reader").await;
    let bodies = |q: HistoryRequest| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let r = client(&url).await.history(authed(q, &token)).await.map_err(|s| s.code())?.into_inner();
            Ok::<_, tonic::Code>(r.messages.into_iter().map(|m| (m.server_id, m.body)).collect::<Vec<_>>())
        }
    };
    let all = bodies(HistoryRequest::default()).await.unwrap();
    assert_eq!(all.len(), 10);
    let names = |v: Vec<(String, String)>| v.into_iter().map(|(_, b)| b).collect::<Vec<_>>();
    // Relative to a server id, both ways.
    let third = all[2].0.clone();
    let after = bodies(HistoryRequest { after_id: third.clone(), limit: 3, ..Default::default() }).await.unwrap();
    assert_eq!(names(after), ["m3", "m4", "m5"]);
    let before = bodies(HistoryRequest { before_id: third, ..Default::default() }).await.unwrap();
    assert_eq!(names(before), ["m0", "m1"]);
    let unknown = bodies(HistoryRequest { after_id: "0".repeat(32), ..Default::default() }).await;
    assert_eq!(unknown, Err(tonic::Code::NotFound));
    // By time: exactly the messages on each side of `between`.
    let late = bodies(HistoryRequest { start_ms: between, ..Default::default() }).await.unwrap();
    assert_eq!(names(late), ["m5", "m6", "m7", "m8", "m9"]);
    let early = bodies(HistoryRequest { end_ms: between, ..Default::default() }).await.unwrap();
    assert_eq!(names(early), ["m0", "m1", "m2", "m3", "m4"]);
    // The CLI takes server ids, ages and RFC 3339 times.
    let bob = ["--json", "history", "--user", "bob@localhost", "--password", "pw"];
    let out = node.cli(&[&bob[..], &["--after", &all[7].0]].concat()).success();
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = node.cli(&[&bob[..], &["--since", "1h"]].concat()).success();
    assert_eq!(out.lines().count(), 10, "{out}");
    let out = node.cli(&[&bob[..], &["--until", "2000-01-01T00:00:00Z"]].concat()).success();
    assert_eq!(out.lines().count(), 0, "{out}");
    node.cli(&[&bob[..], &["--since", "yesterday-ish"]].concat()).usage_error("neither an RFC 3339 time nor an age");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_limits_override_the_defaults_for_that_tenant_only() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);
    node.cli(&["tenant", "add", "acme.example"]).success();
    for jid in ["ann@acme.example", "ben@acme.example", "alice@localhost", "bob@localhost"] {
        node.cli(&["user", "add", jid, "--password", "pw"]).success();
    }
    let shown = node.cli(&["tenant", "limits", "acme.example"]).success();
    assert!(shown.contains("max_message_bytes=default"), "{shown}");
    node.cli(&["tenant", "limits", "acme.example", "--max-message-bytes", "100", "--sessions-per-user", "1"]).success();
    let t = node.cli(&["--json", "tenant", "limits", "acme.example", "--sends-per-second", "2"]).json();
    assert_eq!((t["max_message_bytes"].as_u64(), t["sessions_per_user"].as_u64()), (Some(100), Some(1)), "{t}");
    assert_eq!(t["sends_per_second"].as_u64(), Some(2), "earlier overrides stay: {t}");
    node.cli(&["tenant", "limits", "acme.example", "--sessions-per-user", "0"]).failure("between 1 and 1000");
    node.cli(&["tenant", "limits", "nowhere.example", "--reset"]).failure("no such tenant");

    let send = |from: &str, to: &str, body: &str| node.cli(&["send", "--user", from, "--password", "pw", to, body]);
    let long = "z".repeat(101);
    send("ann@acme.example", "ben@acme.example", &long).failure("the limit is 100 bytes");
    send("alice@localhost", "bob@localhost", &long).success();
    // Rate: a burst of 4 (twice the rate), then refused with a retry time.
    let url = node.client_url();
    let mut ann = Device::open(&url, &login(&url, "ann@acme.example", "pw", "one").await).await.unwrap();
    for i in 0..6 {
        ann.send("ben@acme.example", &format!("r{i}"), "hi").await;
    }
    let mut refused = 0;
    for i in 0..6 {
        let r = ann.result(&format!("r{i}")).await;
        if !r.error.is_empty() {
            assert_eq!(r.error_code, "resource_exhausted", "{r:?}");
            assert!(r.error.contains("2 messages/s"), "{r:?}");
            refused += 1;
        }
    }
    assert!(refused >= 1, "at 2/s with a burst of 4, six sends at once cannot all pass");
    let err = Device::open(&url, &login(&url, "ann@acme.example", "pw", "two").await).await.err().expect("one session");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("the limit is 1"), "{err:?}");
    // The default tenant is untouched; a reset restores the defaults.
    let _a = Device::open(&url, &login(&url, "alice@localhost", "pw", "one").await).await.unwrap();
    let _b = Device::open(&url, &login(&url, "alice@localhost", "pw", "two").await).await.unwrap();
    node.cli(&["tenant", "limits", "acme.example", "--reset"]).success();
    send("ann@acme.example", "ben@acme.example", &long).success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_disconnects_mid_send_can_retry_safely() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);
    users(&node, &["alice", "bob"]);
    let url = node.client_url();
    let token = login(&url, "alice@localhost", "pw", "laptop").await;
    let n = 40;
    // Send and hang up at once, before any result can arrive: some sends were stored, some
    // perhaps not; the device cannot tell which.
    let gone = Device::open(&url, &token).await.unwrap();
    for i in 0..n {
        gone.send("bob@localhost", &format!("m{i}"), &format!("body {i}")).await;
    }
    drop(gone);
    // Reconnect and retry everything with the same client ids: every retry is acknowledged,
    // with one server id per client id.
    let mut again = Device::open(&url, &token).await.unwrap();
    for i in 0..n {
        again.send("bob@localhost", &format!("m{i}"), &format!("body {i}")).await;
    }
    let mut ids = HashSet::new();
    for i in 0..n {
        let r = again.result(&format!("m{i}")).await;
        assert!(r.error.is_empty(), "{r:?}");
        ids.insert(r.server_id);
    }
    assert_eq!(ids.len(), n);
    // Bob's archive holds each message exactly once.
    let bob = login(&url, "bob@localhost", "pw", "reader").await;
    let page = client(&url).await.history(authed(HistoryRequest { limit: 500, ..Default::default() }, &bob)).await;
    let mut bodies: Vec<_> = page.unwrap().into_inner().messages.into_iter().map(|m| m.body).collect();
    bodies.sort();
    let mut want: Vec<_> = (0..n).map(|i| format!("body {i}")).collect();
    want.sort();
    assert_eq!(bodies, want);
}
