//! The core over in-memory ports: what a device sees, without Raft or a network.

use std::time::Duration;

use telex_types::presence::{DevicePresence, Show};
use telex_types::{ErrorCode, UserJid};

use crate::memory::Memory;
use crate::{ClientFrame, Core, CutOff, HistoryQuery, Limits, SendMessage, ServerFrame, Session};

fn jid(s: &str) -> UserJid {
    UserJid::parse(s).unwrap()
}

fn core() -> (Memory, Core) {
    let memory = Memory::default();
    for u in ["alice@x.example", "bob@x.example", "carol@x.example", "eve@y.example"] {
        memory.add_user(&jid(u), "pw");
    }
    let core = memory.core(Limits::default());
    (memory, core)
}

async fn next(s: &mut Session) -> Result<ServerFrame, CutOff> {
    tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("a frame in time").expect("not ended")
}

fn send(to: &str, to_device: &str, id: &str) -> ClientFrame {
    ClientFrame::Send(SendMessage {
        client_id: id.into(),
        to: to.into(),
        to_device: to_device.into(),
        body: format!("body {id}"),
        extras: String::new(),
    })
}

fn available() -> ClientFrame {
    ClientFrame::Presence(DevicePresence {
        show: Show::Available,
        status: String::new(),
        priority: 0,
        extras: String::new(),
    })
}

/// Submits a send and drives the session until it is answered (sends run as the session is
/// polled, as an adapter always does).
async fn sent(s: &mut Session, frame: ClientFrame) -> Result<crate::Sent, crate::Refused> {
    let id = frame.client_id().unwrap_or_default().to_string();
    s.submit(frame);
    loop {
        if let ServerFrame::Sent { client_id, result } = next(s).await.unwrap() {
            if client_id == id {
                return result;
            }
        }
    }
}

/// The next message frame, skipping presence and the like.
async fn message(s: &mut Session) -> (u64, String, bool) {
    loop {
        if let ServerFrame::Message { position, message, for_other_device } = next(s).await.unwrap() {
            return (position, message.body, for_other_device);
        }
    }
}

#[tokio::test]
async fn a_send_is_answered_then_delivered_in_archive_order() {
    let (_m, core) = core();
    let mut alice = core.open(jid("alice@x.example"), "pc", false).await.unwrap();
    let mut bob = core.open(jid("bob@x.example"), "phone", false).await.unwrap();
    alice.submit(send("bob@x.example", "", "c1"));
    alice.submit(send("bob@x.example", "", "c2"));
    let mut acked = Vec::new();
    while acked.len() < 2 {
        if let ServerFrame::Sent { client_id, result } = next(&mut alice).await.unwrap() {
            assert!(result.is_ok(), "{result:?}");
            acked.push(client_id);
        }
    }
    acked.sort();
    assert_eq!(acked, ["c1", "c2"]);
    assert_eq!(message(&mut bob).await.1, "body c1");
    assert_eq!(message(&mut bob).await.1, "body c2");
}

#[tokio::test]
async fn a_held_session_gets_nothing_until_its_presence() {
    let (_m, core) = core();
    let mut alice = core.open(jid("alice@x.example"), "pc", false).await.unwrap();
    sent(&mut alice, send("bob@x.example", "", "c1")).await.unwrap();
    let mut bob = core.open(jid("bob@x.example"), "phone", true).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), bob.next()).await.is_err(), "held until presence");
    bob.submit(available());
    assert_eq!(message(&mut bob).await.1, "body c1");
}

#[tokio::test]
async fn a_message_to_one_device_is_marked_for_the_others() {
    let (_m, core) = core();
    let mut alice = core.open(jid("alice@x.example"), "pc", false).await.unwrap();
    let mut phone = core.open(jid("bob@x.example"), "phone", false).await.unwrap();
    let mut desk = core.open(jid("bob@x.example"), "desk", false).await.unwrap();
    sent(&mut alice, send("bob@x.example", "phone", "c1")).await.unwrap();
    assert_eq!(message(&mut phone).await, (1, "body c1".into(), false));
    assert_eq!(message(&mut desk).await, (1, "body c1".into(), true), "the desk sees it addressed elsewhere");
    // To a device that is not online: for everyone.
    sent(&mut alice, send("bob@x.example", "tablet", "c2")).await.unwrap();
    assert!(!message(&mut phone).await.2);
    assert!(!message(&mut desk).await.2);
}

#[tokio::test]
async fn a_second_session_of_a_device_replaces_the_first() {
    let (_m, core) = core();
    let mut first = core.open(jid("alice@x.example"), "pc", false).await.unwrap();
    let _second = core.open(jid("alice@x.example"), "pc", false).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), first.next()).await.unwrap() {
            Some(Ok(_)) => continue,
            Some(Err(why)) => {
                assert_eq!(why, CutOff::Replaced);
                break;
            }
            None => panic!("ended without a reason"),
        }
    }
    assert!(first.next().await.is_none(), "nothing after the reason");
    // The old one going away does not take the new one with it.
    drop(first);
    let mut second = _second;
    let mut bob = core.open(jid("bob@x.example"), "phone", false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    sent(&mut bob, send("alice@x.example", "", "after")).await.unwrap();
    assert_eq!(message(&mut second).await.1, "body after");
}

#[tokio::test]
async fn the_core_decides_who_reads_what() {
    let (memory, core) = core();
    let (alice, bob, eve) = (jid("alice@x.example"), jid("bob@x.example"), jid("eve@y.example"));
    let err = core.history(&alice, &bob, HistoryQuery::default()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert!(core.history(&alice, &alice, HistoryQuery::default()).await.unwrap().is_empty());
    core.set_vcard(&bob, "<vCard xmlns='vcard-temp'/>".into()).await.unwrap();
    assert!(core.vcard(&alice, &bob).await.unwrap().is_some(), "same tenant");
    assert_eq!(core.vcard(&eve, &bob).await.unwrap_err().code, ErrorCode::PermissionDenied, "another tenant");
    use telex_actors::Ledger;
    memory.set_blocked(bob.clone(), alice.clone(), true).await.unwrap();
    assert_eq!(core.vcard(&alice, &bob).await.unwrap_err().code, ErrorCode::NotFound, "blocked: as if no one");
    // Sends across tenants are refused with a reason; the device is told, not cut off.
    let mut a = core.open(alice.clone(), "pc", false).await.unwrap();
    let r = sent(&mut a, send("eve@y.example", "", "x1")).await.unwrap_err();
    assert!(r.error.message.contains("may not message"), "{}", r.error.message);
}

#[tokio::test]
async fn a_bad_device_name_is_refused_when_opening() {
    let (_m, core) = core();
    let err = core.open(jid("alice@x.example"), "bad\u{7}name", false).await.err().unwrap();
    assert!(err.message.contains("control characters"), "{}", err.message);
}

mod rooms {
    use super::*;
    use crate::Say;
    use telex_types::occupancy::{HistoryLimit, RoomCall, RoomReply};
    use telex_types::room::{Affiliation, Removal, RoomEvent, RoomJid};

    fn room() -> RoomJid {
        RoomJid::parse("team@conference.x.example").unwrap()
    }

    fn here() -> DevicePresence {
        DevicePresence { show: Show::Available, status: String::new(), priority: 0, extras: String::new() }
    }

    fn enter(user: &str, device: &str, nick: &str) -> RoomCall {
        RoomCall::Enter {
            user: jid(user),
            device: device.into(),
            nick: nick.into(),
            password: String::new(),
            presence: here(),
            history: HistoryLimit::default(),
        }
    }

    /// The next room event (other frames skipped).
    async fn event(s: &mut Session) -> RoomEvent {
        loop {
            if let ServerFrame::Room { event, .. } = next(s).await.unwrap() {
                return event;
            }
        }
    }

    async fn entries(s: &mut Session, n: usize) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            if let RoomEvent::Entry { position, entry } = event(s).await {
                out.push((position, entry.body));
            }
        }
        out
    }

    fn say<'a>(id: &'a str, body: &'a str, entered: bool) -> Say<'a> {
        Say { client_id: id, body, entered, ..Say::default() }
    }

    #[tokio::test]
    async fn members_and_occupants_get_the_room_in_log_order() {
        let (_m, core) = core();
        // alice's XMPP-like device enters a room that does not exist: it is created, hers.
        let mut a = core.open(jid("alice@x.example"), "phone", true).await.unwrap();
        a.submit(available());
        let reply = core.room_call(&room(), enter("alice@x.example", "phone", "Ann")).await.unwrap();
        let RoomReply::Entered { created, fresh, you, others, .. } = reply else { panic!("{reply:?}") };
        assert!(created && fresh && others.is_empty());
        assert_eq!(you.affiliation, Some(Affiliation::Owner));
        // bob is a native member: his device follows the room without entering it.
        let rooms = core.room_hub().unwrap().rooms().clone();
        rooms.join(&jid("bob@x.example"), &room()).await.unwrap();
        let mut b = core.open(jid("bob@x.example"), "pc", false).await.unwrap();
        for i in 0..5 {
            let (ib, ia) = (format!("b{i}"), format!("a{i}"));
            core.room_say(&jid("bob@x.example"), "pc", &room(), say(&ib, &ib, false)).await.unwrap();
            core.room_say(&jid("alice@x.example"), "phone", &room(), say(&ia, &ia, true)).await.unwrap();
        }
        let want: Vec<(u64, String)> = (0..5)
            .flat_map(|i| [format!("b{i}"), format!("a{i}")])
            .enumerate()
            .map(|(p, b)| (p as u64 + 1, b))
            .collect();
        assert_eq!(entries(&mut a, 10).await, want);
        assert_eq!(entries(&mut b, 10).await, want);
        // A retry of a message is one entry.
        let again = core.room_say(&jid("bob@x.example"), "pc", &room(), say("b0", "b0", false)).await.unwrap();
        assert!(again.duplicate && again.position == 1);
    }

    #[tokio::test]
    async fn entering_shows_history_and_a_ban_takes_an_occupant_out() {
        let (_m, core) = core();
        core.room_call(&room(), enter("alice@x.example", "phone", "Ann")).await.unwrap();
        for i in 0..30 {
            let id = format!("m{i}");
            core.room_say(&jid("alice@x.example"), "phone", &room(), say(&id, &id, true)).await.unwrap();
        }
        let mut c = core.open(jid("carol@x.example"), "laptop", true).await.unwrap();
        c.submit(available());
        let reply = core.room_call(&room(), enter("carol@x.example", "laptop", "Cat")).await.unwrap();
        let RoomReply::Entered { history, others, .. } = reply else { panic!("{reply:?}") };
        // The room's default history_on_join (20), ending with the last message.
        assert_eq!(history.len(), 20);
        assert_eq!(history.last().map(|(p, e)| (*p, e.body.as_str())), Some((30, "m29")));
        assert_eq!(others.len(), 1);
        // A nickname someone else holds is refused; the same user may share its own.
        let clash = core.room_call(&room(), enter("carol@x.example", "tablet", "Ann")).await.unwrap_err();
        assert_eq!(clash.code, ErrorCode::AlreadyExists, "{clash:?}");
        // The owner bans carol: her device is told it was taken out.
        let rooms = core.room_hub().unwrap().rooms().clone();
        rooms
            .set_affiliation(&jid("alice@x.example"), &room(), jid("carol@x.example"), Some(Affiliation::Outcast))
            .await
            .unwrap();
        loop {
            if let RoomEvent::Occupant { occupant, presence: None, removed: Some(Removal::Banned) } =
                event(&mut c).await
            {
                assert_eq!(occupant.nick, "Cat");
                assert_eq!(occupant.affiliation, Some(Affiliation::Outcast));
                break;
            }
        }
        let back = core.room_call(&room(), enter("carol@x.example", "laptop", "Cat")).await.unwrap_err();
        assert_eq!(back.code, ErrorCode::PermissionDenied, "{back:?}");
        // And nothing she says is stored.
        let said = core.room_say(&jid("carol@x.example"), "laptop", &room(), say("x", "x", true)).await;
        assert!(said.is_err());
        let (_, head) = core.room_history(&jid("alice@x.example"), &room(), 0, 1).await.unwrap();
        assert_eq!(head, 30);
    }

    #[tokio::test]
    async fn rooms_are_invisible_to_other_tenants() {
        let (_m, core) = core();
        core.room_call(&room(), enter("alice@x.example", "phone", "Ann")).await.unwrap();
        let e = core.room_call(&room(), enter("eve@y.example", "pc", "Eve")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    }

    #[tokio::test]
    async fn a_temporary_room_goes_when_its_last_occupant_leaves() {
        let (_m, core) = core();
        let alice = jid("alice@x.example");
        let mut a = core.open(alice.clone(), "phone", true).await.unwrap();
        a.submit(available());
        core.room_call(&room(), enter("alice@x.example", "phone", "Ann")).await.unwrap();
        let rooms = core.room_hub().unwrap().rooms().clone();
        let mut config = core.room(&alice, &room()).await.unwrap().config;
        config.persistent = false;
        rooms.configure(&alice, &room(), config).await.unwrap();
        // Still there while occupied.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(core.room(&alice, &room()).await.is_ok());
        core.room_call(&room(), RoomCall::Leave { user: alice.clone(), device: "phone".into() }).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while core.room(&alice, &room()).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "the empty temporary room is still there");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
