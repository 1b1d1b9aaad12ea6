//! The company directory and the tenant's policy through the CLI: groups, attributes, a policy
//! with an information barrier and an "only managers may message the CEO" rule, tested dry,
//! applied, enforced on native sends, versioned, rolled back, and the audit trail of it all.

use std::time::{Duration, Instant};

use telex_proto::v1 as pb;
use telex_proto::v1::roster_update::Op;
use telex_proto::v1::server_frame::Frame;
use telex_testkit::client::{authed, client, login, Device};
use telex_testkit::{data_dir, Telexd};

const WAIT: Duration = Duration::from_secs(5);

async fn roster(url: &str, token: &str) -> Vec<pb::RosterItem> {
    let mut c = client(url).await;
    c.get_roster(authed(pb::GetRosterRequest {}, token)).await.expect("roster").into_inner().items
}

const POLICY: &str = r#"
[[barrier]]
name = "wall"
between = ["group:research", "group:trading"]
description = "Research and trading are kept apart"

[[rule]]
name = "ceo"
effect = "deny"
actions = ["message"]
except_from = ["group:managers"]
to = ["attr:title=CEO"]
description = "Only managers may message the CEO"
"#;

#[test]
fn an_admin_publishes_a_policy_that_is_enforced_versioned_and_audited() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for u in ["ceo", "mia", "rita", "tom", "ann"] {
        node.cli(&["user", "add", &format!("{u}@localhost"), "--password", "pw"]).success();
    }
    for (g, members) in [("research", &["rita"][..]), ("trading", &["tom"]), ("managers", &["mia"])] {
        node.cli(&["group", "add", &format!("{g}@localhost"), "--name", g]).success();
        for m in members {
            node.cli(&["group", "member", "add", &format!("{g}@localhost"), &format!("{m}@localhost")]).success();
        }
    }
    node.cli(&["group", "add", "staff@localhost", "--subgroups", "research,trading"]).success();
    let shown = node.cli(&["user", "set", "ceo@localhost", "--title", "CEO", "--department", "Board"]).success();
    assert!(shown.contains("title=\"CEO\""), "{shown}");
    let rita = node.cli(&["--json", "user", "set", "rita@localhost", "--display-name", "Rita R"]).success();
    assert!(rita.contains(r#""groups":["research","staff"]"#), "nested groups count: {rita}");

    // Bad files are refused with the line and the reason, and nothing changes.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"x\"\neffect = \"deny\"\nactions = [\"message\"]\nfrom = [\"group:nobody\"]\n",
    )
    .unwrap();
    node.cli(&["policy", "set", "localhost", bad.to_str().unwrap()]).failure("line 5: unknown group \"nobody\"");
    std::fs::write(&bad, "[[barrier]]\nname = \"b\"\nbetween = [\"group:staff\", \"group:research\"]\n").unwrap();
    node.cli(&["policy", "set", "localhost", bad.to_str().unwrap()]).failure("rita@localhost would be on both sides");
    let file = dir.join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let f = file.to_str().unwrap();
    node.cli(&["policy", "set", "localhost", f, "--dry-run"]).success();
    assert!(node.cli(&["policy", "get", "localhost"]).success().contains("no policy"));
    let test = |from: &str, to: &str| {
        node.cli(&["policy", "test", "--from", from, "--to", to, "--action", "message", "--file", f]).success()
    };
    assert!(
        test("rita@localhost", "tom@localhost").starts_with("deny")
            && test("rita@localhost", "tom@localhost").contains("rule wall")
    );
    assert!(test("ann@localhost", "ceo@localhost").contains("by rule ceo: Only managers may message the CEO"));
    assert!(test("mia@localhost", "ceo@localhost").starts_with("allow"));
    let diff = node.cli(&["policy", "diff", "localhost", f]).success();
    assert!(diff.contains("+name = \"wall\""), "{diff}");

    node.cli(&["policy", "set", "localhost", f, "--comment", "barrier and CEO rule"]).success();
    let send = |from: &str, to: &str, text: &str| {
        node.cli(&[
            "--user",
            &format!("{from}@localhost"),
            "--password",
            "pw",
            "send",
            &format!("{to}@localhost"),
            text,
        ])
    };
    // Compiled by the node from its replica right after the write: allow a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while send("ann", "ceo", "probe").ok {
        assert!(Instant::now() < deadline, "the policy never came into force");
        std::thread::sleep(Duration::from_millis(100));
    }
    send("ann", "ceo", "hello boss").failure("policy denied: Only managers may message the CEO");
    send("rita", "tom", "a tip").failure("policy denied: Research and trading are kept apart");
    send("mia", "ceo", "report").success();
    send("rita", "ann", "lunch?").success();
    // `[[sessions]]`: contractors may have one device connected.
    node.cli(&["group", "add", "contractors@localhost"]).success();
    node.cli(&["group", "member", "add", "contractors@localhost", "ann@localhost"]).success();
    std::fs::write(&file, format!("{POLICY}\n[[sessions]]\nwho = [\"group:contractors\"]\nmax = 1\n")).unwrap();
    node.cli(&["policy", "set", "localhost", f]).success();
    let listen = |device: &str| {
        std::process::Command::new(telex_testkit::bin("telex"))
            .args(["--server", &node.client_url(), "--user", "ann@localhost", "--password", "pw"])
            .args(["--device", device, "listen", "--timeout", "20"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = listen("laptop");
    std::thread::sleep(Duration::from_millis(800));
    let cli = |args: &[&str]| {
        node.cli(&[&["--user", "ann@localhost", "--password", "pw", "--device", "phone"][..], args].concat())
    };
    cli(&["listen", "--timeout", "1"]).failure("too many sessions for ann@localhost: the limit is 1");
    first.kill().unwrap();
    first.wait().unwrap();
    let inbox = node.cli(&["--user", "tom@localhost", "--password", "pw", "history"]).success();
    assert!(!inbox.contains("a tip"), "a refused message was stored: {inbox}");

    // A group the policy names stays; versions and rollback.
    node.cli(&["group", "remove", "managers@localhost"]).failure("change the policy first");
    std::fs::write(&file, "").unwrap();
    node.cli(&["policy", "set", "localhost", f, "--comment", "open again"]).success();
    let history = node.cli(&["--json", "policy", "history", "localhost"]).success();
    assert!(history.contains(r#""version":1"#) && history.contains(r#""version":2"#), "{history}");
    node.cli(&["policy", "rollback", "localhost", "1"]).success();
    let now = node.cli(&["--json", "policy", "get", "localhost"]).success();
    assert!(now.contains(r#""version":4"#) && now.contains("rollback to version 1") && now.contains("wall"), "{now}");

    let audit = node.cli(&["--json", "audit", "list", "localhost"]).success();
    for action in ["group.add", "group.member.add", "user.set", "policy.set"] {
        assert!(audit.contains(&format!(r#""action":"{action}""#)), "{action} not audited: {audit}");
    }
    assert!(!audit.contains("group.remove"), "a refused removal is not audited: {audit}");
    let text = node.cli(&["audit", "list", "localhost", "--since", "1h", "--actor", "bootstrap"]).success();
    assert!(text.lines().count() >= 10, "{text}");
}

/// Waits for a roster push about `jid`, skipping other events.
async fn roster_push(d: &mut Device, jid: &str) -> Option<pb::RosterPush> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match d.event(left).await? {
            Frame::Roster(p) if p.jid == jid => return Some(p),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_shown_to_itself_puts_its_members_on_each_others_rosters_live() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for u in ["sue", "sam", "eve", "boss"] {
        node.cli(&["user", "add", &format!("{u}@localhost"), "--password", "pw"]).success();
    }
    node.cli(&["user", "set", "boss@localhost", "--display-name", "The Boss"]).success();
    node.cli(&["group", "add", "sales@localhost", "--name", "Sales", "--shown-to", "sales"]).success();
    node.cli(&["group", "add", "board@localhost", "--name", "Board", "--shown-to", "sales"]).success();
    node.cli(&["group", "member", "add", "board@localhost", "boss@localhost"]).success();
    for u in ["sue", "sam"] {
        node.cli(&["group", "member", "add", "sales@localhost", &format!("{u}@localhost")]).success();
    }
    let url = node.client_url();
    let (ts, tm, te) = (
        login(&url, "sue@localhost", "pw", "laptop").await,
        login(&url, "sam@localhost", "pw", "laptop").await,
        login(&url, "eve@localhost", "pw", "laptop").await,
    );
    // The node recompiles the directory just after each write: allow a moment.
    let deadline = Instant::now() + WAIT;
    let items = loop {
        let items = roster(&url, &ts).await;
        if items.len() == 2 || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sam = items.iter().find(|i| i.jid == "sam@localhost").expect("sam on sue's roster");
    assert_eq!((sam.subscription.as_str(), sam.groups.clone()), ("both", vec!["Sales".to_string()]));
    let boss = items.iter().find(|i| i.jid == "boss@localhost").expect("the board is shown to sales");
    assert_eq!((boss.name.as_str(), boss.groups.clone()), ("The Boss", vec!["Board".to_string()]));
    assert!(roster(&url, &te).await.is_empty(), "eve is in no group");

    // Presence flows both ways without any subscription request.
    let mut sue = Device::open(&url, &ts).await.unwrap();
    sue.presence("available", "", 0).await;
    let mut samd = Device::open(&url, &tm).await.unwrap();
    samd.presence("away", "on a call", 0).await;
    assert_eq!(sue.presence_from("sam@localhost", WAIT).await.expect("sam's presence").show, "away");
    assert_eq!(samd.presence_from("sue@localhost", WAIT).await.expect("sue's presence").show, "available");

    // Live: eve joins sales; sue's roster gains her, and her presence, at once.
    let mut eve = Device::open(&url, &te).await.unwrap();
    eve.presence("dnd", "", 0).await;
    node.cli(&["group", "member", "add", "sales@localhost", "eve@localhost"]).success();
    let push = roster_push(&mut sue, "eve@localhost").await.expect("a roster push for eve");
    assert_eq!(push.item.map(|i| i.subscription), Some("both".to_string()));
    assert_eq!(sue.presence_from("eve@localhost", WAIT).await.expect("eve's presence").show, "dnd");
    assert_eq!(eve.presence_from("sue@localhost", WAIT).await.expect("sue's presence for eve").show, "available");

    // A shared contact cannot be removed by the user.
    let mut c = client(&url).await;
    let err = c
        .update_roster(authed(pb::RosterUpdate { op: Some(Op::Remove("eve@localhost".into())) }, &ts))
        .await
        .expect_err("a shared contact stays");
    assert!(err.message().contains("shared group Sales"), "{err:?}");

    // Sam leaves sales: gone from sue's roster, and his presence with him.
    node.cli(&["group", "member", "remove", "sales@localhost", "sam@localhost"]).success();
    let push = roster_push(&mut sue, "sam@localhost").await.expect("a roster push removing sam");
    assert!(push.item.is_none(), "{push:?}");
    assert_eq!(sue.presence_from("sam@localhost", WAIT).await.expect("sam unavailable").show, "unavailable");
    assert!(!roster(&url, &ts).await.iter().any(|i| i.jid == "sam@localhost"));

    // The policy hides: a barrier between sue and eve takes each off the other's roster.
    node.cli(&["group", "add", "north@localhost"]).success();
    node.cli(&["group", "member", "add", "north@localhost", "sue@localhost"]).success();
    let file = dir.join("barrier.toml");
    std::fs::write(&file, "[[barrier]]\nname = \"b\"\nbetween = [\"group:north\", \"user:eve@localhost\"]\n").unwrap();
    node.cli(&["policy", "set", "localhost", file.to_str().unwrap()]).success();
    let push = roster_push(&mut sue, "eve@localhost").await.expect("eve hidden by the barrier");
    assert!(push.item.is_none(), "{push:?}");
    assert_eq!(sue.presence_from("eve@localhost", WAIT).await.expect("eve unavailable").show, "unavailable");
    assert!(!roster(&url, &te).await.iter().any(|i| i.jid == "sue@localhost"));
}

#[test]
fn a_barrier_keeps_people_out_of_each_others_rooms_and_the_dry_run_says_what_it_would_cut() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for u in ["rita", "tom", "ann"] {
        node.cli(&["user", "add", &format!("{u}@localhost"), "--password", "pw"]).success();
    }
    let as_user = |u: &str, args: &[&str]| {
        node.cli(&[&["--user", &format!("{u}@localhost"), "--password", "pw"][..], args].concat())
    };
    // Before any policy: rita and tom are contacts and share a room.
    as_user("rita", &["roster", "add", "tom@localhost"]).success();
    as_user("tom", &["roster", "approve", "rita@localhost"]).success();
    as_user("tom", &["room", "create", "desk@conference.localhost"]).success();
    as_user("rita", &["room", "join", "desk@conference.localhost"]).success();
    for (g, u) in [("research", "rita"), ("trading", "tom")] {
        node.cli(&["group", "add", &format!("{g}@localhost")]).success();
        node.cli(&["group", "member", "add", &format!("{g}@localhost"), &format!("{u}@localhost")]).success();
    }
    let file = dir.join("wall.toml");
    std::fs::write(
        &file,
        "[[barrier]]\nname = \"wall\"\nbetween = [\"group:research\", \"group:trading\"]\ndescription = \"Research and trading are kept apart\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let dry = node.cli(&["policy", "set", "localhost", f, "--dry-run"]).success();
    for line in [
        "roster: rita@localhost would no longer see tom@localhost's presence (rule wall)",
        "roster: rita@localhost could no longer message tom@localhost (rule wall)",
        "room desk@conference.localhost: members rita@localhost and tom@localhost would be kept apart (rule wall)",
    ] {
        assert!(dry.contains(line), "{line:?} not in:\n{dry}");
    }
    node.cli(&["policy", "set", "localhost", f]).success();
    std::thread::sleep(Duration::from_millis(500));
    as_user("ann", &["room", "create", "lunch@conference.localhost"]).success();
    as_user("rita", &["room", "join", "lunch@conference.localhost"]).success();
    let deadline = Instant::now() + WAIT;
    loop {
        let out = as_user("tom", &["room", "join", "lunch@conference.localhost"]);
        if !out.ok {
            out.failure("policy denied: Research and trading are kept apart");
            break;
        }
        assert!(Instant::now() < deadline, "tom joined a room with rita across the barrier");
        as_user("tom", &["room", "leave", "lunch@conference.localhost"]).success();
        std::thread::sleep(Duration::from_millis(100));
    }
    let none = node.cli(&["policy", "set", "localhost", f, "--dry-run"]).success();
    assert!(none.contains("it would cut nothing that exists now"), "{none}");
}
