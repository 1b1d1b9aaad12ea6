//! Group chat rooms through the native Rooms API on a 3-node cluster: a members-only room,
//! each refusal with the error a client can act on, members saying things through different
//! nodes while the leader of the room's shard is killed (history checker: acked_lost 0,
//! duplicates 0, each sender's order kept), and every node showing the one log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use telex_proto::v1 as pb;
use telex_proto::v1::rooms_client::RoomsClient;
use telex_testkit::client::{login, Device};
use telex_testkit::cluster::three_nodes;
use telex_testkit::history::{check_streams, Outcome, SendEvent};
use telex_testkit::Telexd;

const ROOM: &str = "team@conference.localhost";
const SHARDS: u32 = 8;

fn as_user(node: &Telexd, user: &str, args: &[&str]) -> telex_testkit::CliOutput {
    node.cli(&[args, &["--user", user, "--password", "pw"]].concat())
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    telex_testkit::client::authed(msg, token)
}

/// Says `count` messages as one sequential client, each retried with its client id through the
/// next node until acknowledged or refused for good; the events.
async fn say_all(urls: Vec<String>, token: String, prefix: &str, count: usize) -> Vec<SendEvent> {
    let mut events = Vec::new();
    let mut at = 0;
    for i in 0..count {
        let client_id = format!("{prefix}{i}");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let url = &urls[at % urls.len()];
            let said = async {
                let mut c =
                    RoomsClient::connect(url.clone()).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                let req = pb::SayRequest {
                    room: ROOM.into(),
                    client_id: client_id.clone(),
                    body: format!("m {i}"),
                    subject: false,
                };
                c.say(authed(req, &token)).await
            };
            let outcome = match tokio::time::timeout(Duration::from_secs(12), said).await {
                Ok(Ok(_)) => Outcome::Ok,
                // Faster than the room's rate limit (20/s, burst 40): nothing was stored; as a
                // client should, slow down and send it again.
                Ok(Err(s)) if s.code() == tonic::Code::ResourceExhausted => {
                    assert!(s.message().contains("slow down"), "{s:?}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                Ok(Err(s)) if s.code() != tonic::Code::Unavailable => Outcome::Fail,
                _ => Outcome::Info,
            };
            events.push(SendEvent { owner: ROOM.into(), client_id: client_id.clone(), outcome });
            if outcome != Outcome::Info {
                break;
            }
            assert!(Instant::now() < deadline, "{client_id} never acknowledged");
            at += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    events
}

/// A member's device following the room live until `stop`, through the next node of `urls`
/// whenever its session ends: the client ids each session saw, in arrival order.
async fn follow(urls: Vec<String>, token: String, stop: Arc<AtomicBool>) -> Vec<Vec<String>> {
    let mut sessions = Vec::new();
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) {
        let url = &urls[at % urls.len()];
        at += 1;
        let Ok(mut device) = Device::open(url, &token).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut seen = Vec::new();
        while device.ended.is_none() && !stop.load(Ordering::Relaxed) {
            let frame = device.event(Duration::from_millis(300)).await;
            if let Some(pb::server_frame::Frame::Room(pb::RoomEvent {
                event: Some(pb::room_event::Event::Entry(e)),
                ..
            })) = frame
            {
                seen.push(e.client_id);
            }
        }
        sessions.push(seen);
    }
    sessions
}

/// Each session saw the room in log order, nothing twice and nothing the log lacks; the
/// entries seen live at all.
fn seen_in_log_order(who: &str, sessions: &[Vec<String>], log: &[String]) -> usize {
    let position: BTreeMap<&str, usize> = log.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut live = std::collections::BTreeSet::new();
    for seen in sessions {
        let at: Vec<usize> = seen
            .iter()
            .map(|id| *position.get(id.as_str()).unwrap_or_else(|| panic!("{who} saw {id}, which the log lacks")))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{who} saw the room out of log order (or twice): {seen:?}");
        live.extend(at);
    }
    live.len()
}

/// The room's whole log read through `node`: client ids in log order.
async fn log_at(node: &Telexd, token: &str) -> Vec<String> {
    let mut c = RoomsClient::connect(node.client_url()).await.unwrap();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let req = pb::RoomHistoryRequest { room: ROOM.into(), after, limit: 100 };
        let page = c.history(authed(req, token)).await.unwrap().into_inner();
        let Some(last) = page.entries.last().map(|e| e.position) else { return out };
        out.extend(page.entries.into_iter().map(|e| e.client_id));
        after = last;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_only_room_keeps_one_log_through_a_leader_kill() {
    let (_dirs, [n1, n2, n3]) = three_nodes(&["--shards", &SHARDS.to_string()]);
    n1.cli(&["user", "add", "carol@localhost", "--password", "pw"]).success();
    as_user(&n1, "alice@localhost", &["room", "create", ROOM, "--members-only", "--name", "Team"]).success();
    let out = as_user(&n2, "alice@localhost", &["room", "invite", ROOM, "bob@localhost"]).success();
    assert!(out.contains("members-only"), "{out}");

    // Refusals: each names the problem, and nothing is stored.
    let e = as_user(&n3, "carol@localhost", &["room", "say", ROOM, "let me in"]).failure("members-only");
    assert!(e.contains("not a member"), "{e}");
    as_user(&n3, "carol@localhost", &["room", "history", ROOM]).failure("members-only");
    as_user(&n3, "carol@localhost", &["room", "create", ROOM]).failure("already exists");
    as_user(&n1, "bob@localhost", &["room", "destroy", ROOM]).failure("owner");
    as_user(&n1, "bob@localhost", &["room", "say", "team@chat.localhost", "x"]).failure("not a room service");
    as_user(&n1, "alice@localhost", &["room", "create", "x@conference.other.example"]).failure("created by its users");
    as_user(&n1, "alice@localhost", &["room", "ban", ROOM, "carol@localhost"]).success();
    as_user(&n2, "carol@localhost", &["room", "say", ROOM, "still?"]).failure("banned");
    let members = as_user(&n2, "bob@localhost", &["room", "members", ROOM]).success();
    assert!(members.contains("alice@localhost") && members.contains("bob@localhost"), "{members}");
    assert!(!members.contains("carol"), "a member sees no bans: {members}");
    let shown = as_user(&n2, "carol@localhost", &["--json", "room", "show", ROOM]).json();
    assert_eq!(shown["members"].as_array().map(Vec::len), Some(0), "an outcast sees no member list: {shown}");
    let listed = as_user(&n2, "bob@localhost", &["--json", "room", "list"]).json();
    assert_eq!(listed.as_array().map(|r| r.len()), Some(1), "{listed}");

    // Alice and Bob talk through different nodes; the room's shard leader is killed meanwhile.
    let urls = [n1.client_url(), n2.client_url(), n3.client_url()];
    let alice = login(&urls[1], "alice@localhost", "pw", "laptop").await;
    let bob = login(&urls[2], "bob@localhost", "pw", "phone").await;
    // Their devices follow the room live meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let followers = [("alice", &alice, 0), ("bob", &bob, 1)].map(|(who, token, first)| {
        let urls = urls[first..].iter().chain(&urls[..first]).cloned().collect();
        (who, tokio::spawn(follow(urls, token.clone(), stop.clone())))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = tokio::spawn(say_all(urls[1..].iter().chain(&urls[..1]).cloned().collect(), alice.clone(), "a", 150));
    let b = tokio::spawn(say_all(urls[2..].iter().chain(&urls[..2]).cloned().collect(), bob.clone(), "b", 150));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let room = telex_types::room::RoomJid::parse(ROOM).unwrap();
    let group = telex_types::shard::shard_of_room(&room, SHARDS);
    let status = n1.cli(&["--json", "cluster", "status"]).json();
    let leader = status["groups"][group as usize]["leader"].as_u64().unwrap();
    let mut nodes = [n1, n2, n3];
    assert!(!a.is_finished() && !b.is_finished(), "the senders finished before the kill");
    println!("killing node {leader}, the leader of the room's shard {group}");
    nodes[leader as usize - 1].kill9();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    // The last live deliveries arrive, then the followers stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    nodes[leader as usize - 1].restart();

    let log = log_at(&nodes[0], &alice).await;
    for n in &nodes[1..] {
        assert_eq!(log_at(n, &bob).await, log, "nodes disagree on the room's log");
    }
    let figures = check_streams(&[&a, &b], &BTreeMap::from([(ROOM.to_string(), log.clone())]));
    println!("room messages through a leader kill: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert_eq!(figures.acked, 300, "{figures}");
    // Every member device saw one order, the log's: live delivery is best effort across the
    // kill (what a device missed is in the history), but never out of order or twice.
    for (who, follower) in followers {
        let sessions = follower.await.unwrap();
        let live = seen_in_log_order(who, &sessions, &log);
        println!("{who}'s device saw {live} of {} entries live over {} session(s)", log.len(), sessions.len());
        assert!(live * 2 >= log.len(), "{who}'s device saw only {live} of {} entries live", log.len());
    }

    // Subject by the owner; the history shows it; destroy removes the room for everyone.
    as_user(&nodes[1], "alice@localhost", &["room", "subject", ROOM, "Q3 plans"]).success();
    let shown = as_user(&nodes[2], "bob@localhost", &["--json", "room", "show", ROOM]).json();
    assert_eq!(shown["subject"], "Q3 plans", "{shown}");
    as_user(&nodes[2], "bob@localhost", &["room", "subject", ROOM, "mine"]).failure("moderator");
    as_user(&nodes[0], "alice@localhost", &["room", "destroy", ROOM]).success();
    as_user(&nodes[2], "bob@localhost", &["room", "history", ROOM]).failure("no such room");
    // Created again, the room shows none of the old log.
    as_user(&nodes[1], "bob@localhost", &["room", "create", ROOM, "--room-password", "s3cret"]).success();
    let again = as_user(&nodes[0], "bob@localhost", &["--json", "room", "history", ROOM]).json();
    assert_eq!(again.as_array().map(Vec::len), Some(0), "{again}");
    as_user(&nodes[2], "alice@localhost", &["room", "say", ROOM, "hi"]).failure("password");
    nodes[0].cli(&["tenant", "add", "conference.localhost"]).failure("room service of localhost");
}

#[test]
fn an_operator_sees_and_runs_every_room_of_a_tenant() {
    let (_tmp, dir) = telex_testkit::data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for u in ["alice", "bob"] {
        node.cli(&["user", "add", &format!("{u}@localhost"), "--password", "pw"]).success();
    }
    as_user(&node, "alice@localhost", &["room", "create", "hidden@conference.localhost", "--public", "false"])
        .success();
    as_user(&node, "alice@localhost", &["room", "create", ROOM]).success();
    // bob does not see the hidden room; the operator (no --user: the admin API) sees both.
    let bobs = as_user(&node, "bob@localhost", &["--json", "room", "list"]).json();
    assert_eq!(bobs.as_array().map(Vec::len), Some(1), "{bobs}");
    let all = node.cli(&["--json", "room", "list", "localhost"]).json();
    let names: Vec<&str> = all.as_array().unwrap().iter().filter_map(|r| r["room"].as_str()).collect();
    assert_eq!(names, ["hidden@conference.localhost", ROOM], "{all}");
    // The operator hands the hidden room to bob, bans nobody it cannot, and destroys it.
    node.cli(&["room", "affiliate", "hidden@conference.localhost", "bob@localhost", "owner"]).success();
    let shown = node.cli(&["--json", "room", "show", "hidden@conference.localhost"]).json();
    let members = shown["members"].to_string();
    assert!(members.contains("bob@localhost") && members.contains("owner"), "{shown}");
    node.cli(&["room", "affiliate", ROOM, "alice@localhost", "none"]).failure("at least one owner");
    node.cli(&["room", "ban", ROOM, "mallory@other.example"]).failure("not a user of localhost");
    node.cli(&["room", "destroy", "hidden@conference.localhost"]).success();
    node.cli(&["room", "show", "hidden@conference.localhost"]).failure("no such room");
    node.cli(&["room", "list", "nowhere.example"]).success();
}

#[test]
fn an_offline_member_catches_up_when_its_device_comes_back() {
    let (_tmp, dir) = telex_testkit::data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    node.cli(&["user", "add", "alice@localhost", "--password", "pw"]).success();
    node.cli(&["user", "add", "bob@localhost", "--password", "pw"]).success();
    as_user(&node, "alice@localhost", &["room", "create", ROOM]).success();
    as_user(&node, "bob@localhost", &["room", "join", ROOM]).success();
    let listen = |count: &str, timeout: &str| -> Vec<String> {
        let out = as_user(
            &node,
            "bob@localhost",
            &["--json", "room", "listen", ROOM, "--count", count, "--timeout", timeout],
        );
        out.success()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["body"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    as_user(&node, "alice@localhost", &["room", "say", ROOM, "first"]).success();
    assert_eq!(listen("1", "10"), ["first"]);
    // bob's device is offline while alice says three things.
    for text in ["one", "two", "three"] {
        as_user(&node, "alice@localhost", &["room", "say", ROOM, text]).success();
    }
    assert_eq!(listen("3", "10"), ["one", "two", "three"], "the device did not catch up on what it missed");
    // Read now: nothing again.
    assert!(listen("1", "1").is_empty(), "the device was given what it had read");
    // Another device of bob's has read nothing: it gets the room from the start.
    let other = as_user(
        &node,
        "bob@localhost",
        &["--device", "phone", "--json", "room", "listen", ROOM, "--count", "4", "--timeout", "10"],
    )
    .success();
    assert_eq!(other.lines().count(), 4, "{other}");
}
