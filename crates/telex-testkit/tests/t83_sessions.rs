//! A user's actor lives on the leader of the user's shard: devices connected to other nodes are
//! served there (one presence for all of a user's devices, wherever they connect), and keep
//! their sessions when that leader is killed: the gateway re-attaches them to the new leader.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use telex_testkit::client::{login, Device};
use telex_testkit::cluster::{archive, three_nodes};
use telex_testkit::history::{check, Outcome, SendEvent};
use telex_testkit::Telexd;

const SHARDS: u32 = 4;

fn leader_of(node: &Telexd, jid: &str) -> u64 {
    let group = telex_types::shard::shard_of(&telex_types::UserJid::parse(jid).unwrap(), SHARDS);
    let s = node.cli(&["--json", "cluster", "status"]).json();
    s["groups"][group as usize]["leader"].as_u64().unwrap()
}

/// The last presence `device` sees from `from` once updates stop for `quiet`.
/// What `device` last saw of each of `from`'s devices once updates stop for `quiet`.
async fn settled_presence(device: &mut Device, from: &str, quiet: Duration) -> BTreeMap<String, String> {
    let mut last = BTreeMap::new();
    for p in device.presences(quiet).await {
        if p.from == from {
            last.insert(p.from_device, p.show);
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_follow_the_users_actor_across_a_leader_kill() {
    let (_dirs, mut nodes) = three_nodes(&["--shards", &SHARDS.to_string()]);
    nodes[0].cli(&["cluster", "rebalance"]).success();
    let alice = "alice@localhost";
    let bob = "bob@localhost";
    let leader = leader_of(&nodes[0], alice) as usize;
    // Alice's laptop and bob connect to one node that does not lead alice's shard; her phone
    // to the other.
    let (g, x) = match leader {
        1 => (1, 2),
        2 => (0, 2),
        _ => (0, 1),
    };
    let cli = |n: usize, who: &str, args: &[&str]| nodes[n].cli(&[args, &["--user", who, "--password", "pw"]].concat());
    cli(g, alice, &["roster", "add", bob]).success();
    cli(g, bob, &["roster", "approve", alice]).success();
    cli(x, bob, &["roster", "add", alice]).success();
    cli(x, alice, &["roster", "approve", bob]).success();

    let (g_url, x_url) = (nodes[g].client_url(), nodes[x].client_url());
    let mut bob_dev = Device::open(&g_url, &login(&g_url, bob, "pw", "desk").await).await.unwrap();
    bob_dev.presence("available", "", 0).await;
    let phone = Device::open(&x_url, &login(&x_url, alice, "pw", "phone").await).await.unwrap();
    let mut laptop = Device::open(&g_url, &login(&g_url, alice, "pw", "laptop").await).await.unwrap();
    // One actor holds both devices; bob sees each (RFC 6121: presence is per resource).
    phone.presence("chat", "", 0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    laptop.presence("away", "", 0).await;
    let seen = settled_presence(&mut bob_dev, alice, Duration::from_secs(1)).await;
    let show = |d: &str| seen.get(d).map(String::as_str);
    assert_eq!((show("phone"), show("laptop")), (Some("chat"), Some("away")), "bob sees both of alice's devices");

    // Kill the node where alice's actor lives; her laptop keeps its session and carries on.
    nodes[leader - 1].kill9();
    let killed = Instant::now();
    let mut events = Vec::new();
    for i in 0..20 {
        let id = format!("m{i}");
        loop {
            assert!(laptop.try_send(bob, &id, "still here").await, "the laptop's session ended");
            let r = laptop.try_result(&id, Duration::from_secs(15)).await.expect("the laptop's session ended");
            let outcome = match (r.error.is_empty(), r.retryable) {
                (true, _) => Outcome::Ok,
                (false, true) => Outcome::Info,
                (false, false) => panic!("refused for good: {r:?}"),
            };
            events.push(SendEvent { owner: bob.into(), client_id: id.clone(), outcome });
            if outcome == Outcome::Ok {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(20), "no acknowledgement 20 s after the kill");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!("first acknowledgement after the kill within {:?}", killed.elapsed());
    let new_leader = leader_of(&nodes[g], alice);
    assert_ne!(new_leader as usize, leader, "alice's shard has a new leader");
    // Bob got them live, and alice's devices' presence (replayed by her gateways) still shows.
    let got = bob_dev.drain(Duration::from_secs(2)).await;
    assert!(got.iter().any(|m| m.client_id == "m19"), "bob did not get the messages live");
    phone.presence("chat", "back", 0).await;
    let seen = settled_presence(&mut bob_dev, alice, Duration::from_secs(1)).await;
    assert_eq!(seen.get("phone").map(String::as_str), Some("chat"), "{seen:?}");

    let survivors: Vec<&Telexd> = nodes.iter().enumerate().filter(|(i, _)| *i != leader - 1).map(|(_, n)| n).collect();
    let bob_archive = archive(survivors[0], bob).await;
    let figures = check(&events, &BTreeMap::from([(bob.to_string(), bob_archive)]));
    println!("sessions across a leader kill: {figures}");
    assert!(figures.promise_kept(), "{figures}");
    assert_eq!(figures.acked, 20);
}
