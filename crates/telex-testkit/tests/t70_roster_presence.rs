//! Rosters (RFC 6121 subscriptions), presence seen only by subscribed contacts, and blocking.

use std::time::Duration;

use telex_proto::v1 as pb;
use telex_proto::v1::server_frame::Frame;
use telex_testkit::client::{authed, client, login, Device};
use telex_testkit::{data_dir, Telexd};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(800);

async fn roster(url: &str, token: &str, op: Option<pb::roster_update::Op>) -> Vec<pb::RosterItem> {
    let mut c = client(url).await;
    let r = match op {
        None => c.get_roster(authed(pb::GetRosterRequest {}, token)).await,
        Some(op) => c.update_roster(authed(pb::RosterUpdate { op: Some(op) }, token)).await,
    };
    r.expect("roster call").into_inner().items
}

fn sub(items: &[pb::RosterItem], jid: &str) -> (String, bool, bool) {
    let i = items.iter().find(|i| i.jid == jid).unwrap_or_else(|| panic!("{jid} not on roster: {items:?}"));
    (i.subscription.clone(), i.pending_out, i.pending_in)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_dance_presence_visibility_and_blocking() {
    use pb::roster_update::Op;
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for n in ["alice", "bob", "carol"] {
        node.cli(&["user", "add", &format!("{n}@localhost"), "--password", "pw"]).success();
    }
    let url = node.client_url();
    let (ta, tb, tc) = (
        login(&url, "alice@localhost", "pw", "laptop").await,
        login(&url, "bob@localhost", "pw", "desk").await,
        login(&url, "carol@localhost", "pw", "tablet").await,
    );
    let mut bob = Device::open(&url, &tb).await.unwrap();
    bob.presence("available", "at my desk", 5).await;

    // Alice asks to see Bob's presence; Bob's device is asked live.
    let add = pb::RosterAdd { jid: "bob@localhost".into(), name: "Bob".into(), groups: vec!["Work".into()] };
    let items = roster(&url, &ta, Some(Op::Add(add))).await;
    assert_eq!(sub(&items, "bob@localhost"), ("none".into(), true, false));
    let mut asked = false;
    while let Some(e) = bob.event(WAIT).await {
        if matches!(&e, Frame::SubscriptionRequest(r) if r.from == "alice@localhost") {
            asked = true;
            break;
        }
    }
    assert!(asked, "bob's device sees the request");
    assert_eq!(sub(&roster(&url, &tb, None).await, "alice@localhost"), ("none".into(), false, true));

    // Approving a request that does not exist is refused.
    let err = client(&url)
        .await
        .update_roster(authed(pb::RosterUpdate { op: Some(Op::Approve("carol@localhost".into())) }, &tb))
        .await;
    assert_eq!(err.unwrap_err().code(), tonic::Code::FailedPrecondition);

    // Alice comes online before Bob approves: she sees nothing of Bob yet.
    let mut alice = Device::open(&url, &ta).await.unwrap();
    alice.presence("available", "", 0).await;
    let mut carol = Device::open(&url, &tc).await.unwrap();
    carol.presence("available", "", 0).await;
    assert!(alice.presences(QUIET).await.is_empty(), "not subscribed yet");

    // Bob approves: Alice is now `to`, Bob `from`, and Alice gets Bob's current presence.
    let items = roster(&url, &tb, Some(Op::Approve("alice@localhost".into()))).await;
    assert_eq!(sub(&items, "alice@localhost"), ("from".into(), false, false));
    let p = alice.presence_from("bob@localhost", WAIT).await.expect("bob's presence after approval");
    assert_eq!((p.show.as_str(), p.status.as_str()), ("available", "at my desk"));
    let items = roster(&url, &ta, None).await;
    assert_eq!(sub(&items, "bob@localhost"), ("to".into(), false, false));
    assert_eq!(items[0].name, "Bob");
    assert_eq!(items[0].groups, ["Work"]);

    // Every change reaches Alice; Carol (not subscribed) sees none of it.
    bob.presence("dnd", "in a meeting", 5).await;
    let p = alice.presence_from("bob@localhost", WAIT).await.unwrap();
    assert_eq!((p.show.as_str(), p.status.as_str()), ("dnd", "in a meeting"));
    tokio::time::sleep(Duration::from_millis(400)).await; // past the coalescing window
    bob.presence("away", "", 5).await;
    assert_eq!(alice.presence_from("bob@localhost", WAIT).await.unwrap().show, "away");
    // A second device that is more available wins the aggregate.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let phone = Device::open(&url, &login(&url, "bob@localhost", "pw", "phone").await).await.unwrap();
    phone.presence("chat", "on my phone", 0).await;
    assert_eq!(alice.presence_from("bob@localhost", WAIT).await.unwrap().show, "chat");
    assert!(carol.presences(QUIET).await.is_empty(), "carol is not subscribed to bob");

    // Flapping is coalesced: the last state wins.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for show in ["away", "xa", "away", "dnd"] {
        phone.presence(show, "", 10).await;
    }
    let seen = alice.presences(QUIET).await;
    assert!(seen.len() < 4, "flaps are coalesced: {seen:?}");
    assert_eq!(seen.last().map(|p| p.show.as_str()), Some("dnd"));

    // Going offline is seen.
    drop(phone);
    drop(bob);
    // Each of Bob's devices goes unavailable (presence is per device).
    let mut devices = std::collections::BTreeMap::new();
    while devices.len() < 2 || devices.values().any(|s| s != "unavailable") {
        let Some(p) = alice.presence_from("bob@localhost", WAIT).await else { break };
        devices.insert(p.from_device, p.show);
    }
    assert!(devices.len() == 2 && devices.values().all(|s| s == "unavailable"), "{devices:?}");

    // Blocking: messages refused and presence hidden, both directions.
    let mut bob = Device::open(&url, &tb).await.unwrap();
    bob.presence("available", "", 0).await;
    assert_eq!(alice.presence_from("bob@localhost", WAIT).await.unwrap().show, "available");
    let blocked = client(&url)
        .await
        .set_blocked(authed(pb::SetBlockedRequest { jid: "alice@localhost".into(), blocked: true }, &tb))
        .await
        .unwrap();
    assert_eq!(blocked.into_inner().jids, ["alice@localhost"]);
    assert_eq!(alice.presence_from("bob@localhost", WAIT).await.unwrap().show, "unavailable", "hidden once blocked");
    alice.send("bob@localhost", "b1", "hello?").await;
    let r = alice.result("b1").await;
    assert_eq!(r.error_code, "permission_denied", "{r:?}");
    bob.send("alice@localhost", "b2", "hi").await;
    let r = bob.result("b2").await;
    assert_eq!(r.error_code, "permission_denied", "{r:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    bob.presence("away", "hidden", 0).await;
    assert!(alice.presences(QUIET).await.is_empty(), "no presence while blocked");
    node.cli(&["unblock", "--user", "bob@localhost", "--password", "pw", "alice@localhost"]).success();
    assert_eq!(alice.presence_from("bob@localhost", WAIT).await.unwrap().show, "away");
    bob.send("alice@localhost", "b3", "back").await;
    assert!(bob.result("b3").await.error.is_empty());

    // Removing the contact ends the subscription on both sides.
    roster(&url, &ta, Some(Op::Remove("bob@localhost".into()))).await;
    assert!(roster(&url, &ta, None).await.is_empty());
    assert_eq!(sub(&roster(&url, &tb, None).await, "alice@localhost").0, "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_cli_round_trip() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);
    for n in ["alice", "bob"] {
        node.cli(&["user", "add", &format!("{n}@localhost"), "--password", "pw"]).success();
    }
    let as_user = |user: &str, args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--user", user, "--password", "pw"]);
        node.cli(&all)
    };
    as_user("alice@localhost", &["roster", "add", "bob@localhost", "--name", "Bob", "--group", "Friends"]).success();
    let out = as_user("bob@localhost", &["roster", "list"]).success();
    assert!(out.contains("alice@localhost") && out.contains("wants to see your presence"), "{out}");
    as_user("bob@localhost", &["roster", "approve", "alice@localhost"]).success();
    as_user("bob@localhost", &["roster", "add", "alice@localhost"]).success();
    as_user("alice@localhost", &["roster", "approve", "bob@localhost"]).success();
    let out = as_user("alice@localhost", &["--json", "roster", "list"]).json();
    assert_eq!(out[0]["subscription"], "both");
    assert_eq!(out[0]["name"], "Bob");
    as_user("alice@localhost", &["roster", "add", "nobody@localhost"])
        .failure("not found: no such user nobody@localhost");
    as_user("alice@localhost", &["roster", "remove", "carol@localhost"]).failure("not found");
    as_user("alice@localhost", &["roster", "deny", "carol@localhost"]).failure("nothing to deny");
    as_user("alice@localhost", &["block", "alice@localhost"]).failure("invalid argument: you cannot block yourself");
    as_user("alice@localhost", &["block", "bob@localhost"]).success();
    assert_eq!(as_user("alice@localhost", &["blocked"]).success().trim(), "bob@localhost");
    as_user("bob@localhost", &["send", "alice@localhost", "hi"]).failure("permission denied");
}

/// The request a device sees when it comes online, if any.
async fn request_on_arrival(url: &str, token: &str) -> Option<String> {
    let mut d = Device::open(url, token).await.unwrap();
    d.presence("available", "", 0).await;
    while let Some(e) = d.event(QUIET).await {
        if let Frame::SubscriptionRequest(r) = e {
            return Some(r.from);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_while_the_contact_was_offline_waits_for_their_answer() {
    use pb::roster_update::Op;
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for n in ["alice", "bob"] {
        node.cli(&["user", "add", &format!("{n}@localhost"), "--password", "pw"]).success();
    }
    let url = node.client_url();
    let ta = login(&url, "alice@localhost", "pw", "laptop").await;
    let tb = login(&url, "bob@localhost", "pw", "desk").await;
    let add = pb::RosterAdd { jid: "bob@localhost".into(), ..Default::default() };
    roster(&url, &ta, Some(Op::Add(add))).await;
    // Bob was offline: each device he brings online is asked, until he answers.
    assert_eq!(request_on_arrival(&url, &tb).await.as_deref(), Some("alice@localhost"));
    let tb2 = login(&url, "bob@localhost", "pw", "phone").await;
    assert_eq!(request_on_arrival(&url, &tb2).await.as_deref(), Some("alice@localhost"));
    roster(&url, &tb, Some(Op::Approve("alice@localhost".into()))).await;
    let tb3 = login(&url, "bob@localhost", "pw", "tablet").await;
    assert_eq!(request_on_arrival(&url, &tb3).await, None, "answered: not asked again");
}
