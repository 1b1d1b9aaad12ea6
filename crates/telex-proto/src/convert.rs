//! Conversions between `telex.v1` messages and Telex's domain types. Everything that comes from
//! the wire is checked here and named when wrong: a JID that does not parse, an unknown code.

use std::time::Duration;

use telex_types::presence::DevicePresence;
use telex_types::records::ArchivedMessage;
use telex_types::room::{Affiliation, EntryKind, Occupant, Removal, Role, RoomEntry, RoomEvent, RoomJid};
use telex_types::roster::{RosterItem, RosterOp, RosterReply, Subscription, SubscriptionKind};
use telex_types::session::{ClientFrame, CutOff, Refused, SendMessage, Sent, ServerFrame};
use telex_types::{ErrorCode, TelexError, UserJid};

use crate::v1 as pb;

fn jid(s: &str) -> Result<UserJid, TelexError> {
    UserJid::parse(s)
}

pub fn error(e: &TelexError) -> pb::Error {
    pb::Error { code: e.code.as_str().to_string(), message: e.message.clone() }
}

/// An error from another node; an unknown code (a newer node) is internal.
pub fn telex_error(e: pb::Error) -> TelexError {
    TelexError::new(ErrorCode::parse(&e.code).unwrap_or(ErrorCode::Internal), e.message)
}

/// A device's frame; `None` for an empty one.
pub fn client_frame(f: pb::ClientFrame) -> Result<Option<ClientFrame>, TelexError> {
    use pb::client_frame::Frame;
    Ok(Some(match f.frame {
        None => return Ok(None),
        Some(Frame::Send(m)) => ClientFrame::Send(SendMessage {
            client_id: m.client_id,
            to: m.to,
            to_device: m.to_device,
            body: m.body,
            extras: m.extras,
        }),
        Some(Frame::Ack(a)) => ClientFrame::Ack(a.position),
        Some(Frame::Presence(p)) => ClientFrame::Presence(device_presence(p)?),
        Some(Frame::Signal(s)) => ClientFrame::Signal { to: s.to, payload: s.payload },
        Some(Frame::RoomRead(r)) => ClientFrame::RoomRead { room: RoomJid::parse(&r.room)?, position: r.position },
    }))
}

pub fn device_presence(p: pb::SetPresence) -> Result<DevicePresence, TelexError> {
    DevicePresence::from_parts(&p.show, p.status, p.priority, p.extras)
}

fn set_presence(p: DevicePresence) -> pb::SetPresence {
    pb::SetPresence {
        show: p.show.as_str().to_string(),
        status: p.status,
        priority: i32::from(p.priority),
        extras: p.extras,
    }
}

pub fn to_client_frame(f: ClientFrame) -> pb::ClientFrame {
    use pb::client_frame::Frame;
    let frame = match f {
        ClientFrame::Send(m) => Frame::Send(pb::SendMessage {
            client_id: m.client_id,
            to: m.to,
            to_device: m.to_device,
            body: m.body,
            extras: m.extras,
        }),
        ClientFrame::Ack(position) => Frame::Ack(pb::Ack { position }),
        ClientFrame::Presence(p) => Frame::Presence(set_presence(p)),
        ClientFrame::Signal { to, payload } => Frame::Signal(pb::SendSignal { to, payload }),
        ClientFrame::RoomRead { room, position } => Frame::RoomRead(pb::RoomRead { room: room.to_string(), position }),
    };
    pb::ClientFrame { frame: Some(frame) }
}

pub fn message(position: u64, m: ArchivedMessage, for_other_device: bool) -> pb::Message {
    pb::Message {
        position,
        server_id: m.server_id,
        from: m.from.to_string(),
        from_device: m.from_device,
        to: m.to.to_string(),
        body: m.body,
        sent_at_ms: m.sent_at,
        client_id: m.client_id,
        extras: m.extras,
        to_device: m.to_device,
        for_other_device,
    }
}

fn archived(m: pb::Message) -> Result<ArchivedMessage, TelexError> {
    Ok(ArchivedMessage {
        server_id: m.server_id,
        from: jid(&m.from)?,
        to: jid(&m.to)?,
        from_device: m.from_device,
        client_id: m.client_id,
        body: m.body,
        sent_at: m.sent_at_ms,
        extras: m.extras,
        to_device: m.to_device,
    })
}

pub fn presence_update(from: &UserJid, device: String, presence: Option<DevicePresence>) -> pb::PresenceUpdate {
    match presence {
        Some(p) => pb::PresenceUpdate {
            from: from.to_string(),
            show: p.show.as_str().to_string(),
            status: p.status,
            priority: i32::from(p.priority),
            extras: p.extras,
            from_device: device,
        },
        None => pb::PresenceUpdate {
            from: from.to_string(),
            show: "unavailable".into(),
            from_device: device,
            ..Default::default()
        },
    }
}

fn from_presence_update(p: pb::PresenceUpdate) -> Result<(UserJid, String, Option<DevicePresence>), TelexError> {
    let from = jid(&p.from)?;
    let presence = match p.show.as_str() {
        "unavailable" => None,
        show => Some(DevicePresence::from_parts(show, p.status, p.priority, p.extras)?),
    };
    Ok((from, p.from_device, presence))
}

pub fn roster_item(jid: &UserJid, i: &RosterItem) -> pb::RosterItem {
    pb::RosterItem {
        jid: jid.to_string(),
        subscription: i.subscription.as_str().to_string(),
        pending_out: i.pending_out,
        pending_in: i.pending_in,
        name: i.name.clone(),
        groups: i.groups.clone(),
    }
}

fn from_roster_item(i: pb::RosterItem) -> Result<(UserJid, RosterItem), TelexError> {
    let subscription = Subscription::parse(&i.subscription)
        .ok_or_else(|| TelexError::invalid(format!("unknown subscription {:?}", i.subscription)))?;
    let item = RosterItem {
        subscription,
        pending_out: i.pending_out,
        pending_in: i.pending_in,
        name: i.name,
        groups: i.groups,
    };
    Ok((jid(&i.jid)?, item))
}

pub fn send_result(client_id: String, result: Result<Sent, Refused>) -> pb::SendResult {
    match result {
        Ok(s) => pb::SendResult {
            client_id,
            server_id: s.server_id,
            position: s.position,
            recipient_position: s.recipient_position,
            ..Default::default()
        },
        Err(r) => pb::SendResult {
            client_id,
            error_code: r.error.code.as_str().to_string(),
            retryable: r.error.code.retryable(),
            error: r.error.message,
            retry_after_ms: r.retry_after.map(|d| d.as_millis() as u64).unwrap_or(0),
            ..Default::default()
        },
    }
}

fn from_send_result(r: pb::SendResult) -> (String, Result<Sent, Refused>) {
    if r.error_code.is_empty() && r.error.is_empty() {
        let sent = Sent { server_id: r.server_id, position: r.position, recipient_position: r.recipient_position };
        return (r.client_id, Ok(sent));
    }
    let error = telex_error(pb::Error { code: r.error_code, message: r.error });
    let retry_after = (r.retry_after_ms > 0).then(|| Duration::from_millis(r.retry_after_ms));
    (r.client_id, Err(Refused { error, retry_after }))
}

pub fn server_frame(f: ServerFrame) -> pb::ServerFrame {
    use pb::server_frame::Frame;
    let frame = match f {
        ServerFrame::Message { position, message: m, for_other_device } => {
            Frame::Message(message(position, m, for_other_device))
        }
        ServerFrame::Presence { from, device, presence } => Frame::Presence(presence_update(&from, device, presence)),
        ServerFrame::Roster { contact, item, version } => Frame::Roster(pb::RosterPush {
            jid: contact.to_string(),
            item: item.map(|i| roster_item(&contact, &i)),
            version,
        }),
        ServerFrame::SubscriptionRequest { from } => {
            Frame::SubscriptionRequest(pb::SubscriptionRequest { from: from.to_string() })
        }
        ServerFrame::Signal { from, from_device, payload } => {
            Frame::Signal(pb::Signal { from: from.to_string(), from_device, payload })
        }
        ServerFrame::Blocked { jid, blocked } => Frame::Blocked(pb::BlockPush { jid: jid.to_string(), blocked }),
        ServerFrame::Sent { client_id, result } => Frame::Sent(send_result(client_id, result)),
        ServerFrame::Room { room, event } => Frame::Room(room_event(&room, event)),
    };
    pb::ServerFrame { frame: Some(frame) }
}

/// A frame that came from another node; `None` for an empty one.
pub fn from_server_frame(f: pb::ServerFrame) -> Result<Option<ServerFrame>, TelexError> {
    use pb::server_frame::Frame;
    Ok(Some(match f.frame {
        None => return Ok(None),
        Some(Frame::Message(m)) => {
            let (position, for_other_device) = (m.position, m.for_other_device);
            ServerFrame::Message { position, message: archived(m)?, for_other_device }
        }
        Some(Frame::Presence(p)) => {
            let (from, device, presence) = from_presence_update(p)?;
            ServerFrame::Presence { from, device, presence }
        }
        Some(Frame::Roster(r)) => {
            let item = r.item.map(from_roster_item).transpose()?.map(|(_, i)| i);
            ServerFrame::Roster { contact: jid(&r.jid)?, item, version: r.version }
        }
        Some(Frame::SubscriptionRequest(r)) => ServerFrame::SubscriptionRequest { from: jid(&r.from)? },
        Some(Frame::Signal(s)) => {
            ServerFrame::Signal { from: jid(&s.from)?, from_device: s.from_device, payload: s.payload }
        }
        Some(Frame::Blocked(b)) => ServerFrame::Blocked { jid: jid(&b.jid)?, blocked: b.blocked },
        Some(Frame::Sent(r)) => {
            let (client_id, result) = from_send_result(r);
            ServerFrame::Sent { client_id, result }
        }
        Some(Frame::Room(r)) => {
            let (room, event) = from_room_event(r)?;
            ServerFrame::Room { room, event }
        }
    }))
}

pub fn room_entry(position: u64, e: RoomEntry) -> pb::RoomEntry {
    pb::RoomEntry {
        position,
        server_id: e.server_id,
        kind: match e.kind {
            EntryKind::Message => "message",
            EntryKind::Subject => "subject",
        }
        .into(),
        from: e.from.to_string(),
        from_device: e.from_device,
        nick: e.nick,
        client_id: e.client_id,
        body: e.body,
        sent_at_ms: e.sent_at,
        extras: e.extras,
    }
}

pub fn from_room_entry(e: pb::RoomEntry) -> Result<(u64, RoomEntry), TelexError> {
    let kind = match e.kind.as_str() {
        "message" => EntryKind::Message,
        "subject" => EntryKind::Subject,
        other => return Err(TelexError::invalid(format!("unknown room entry kind {other:?}"))),
    };
    let entry = RoomEntry {
        server_id: e.server_id,
        kind,
        from: jid(&e.from)?,
        from_device: e.from_device,
        nick: e.nick,
        client_id: e.client_id,
        body: e.body,
        extras: e.extras,
        sent_at: e.sent_at_ms,
    };
    Ok((e.position, entry))
}

fn role_of(s: &str) -> Result<Role, TelexError> {
    Ok(match s {
        "moderator" => Role::Moderator,
        "participant" => Role::Participant,
        "visitor" => Role::Visitor,
        other => return Err(TelexError::invalid(format!("unknown room role {other:?}"))),
    })
}

pub fn room_event(room: &RoomJid, event: RoomEvent) -> pb::RoomEvent {
    use pb::room_event::Event;
    let event = match event {
        RoomEvent::Entry { position, entry } => Event::Entry(room_entry(position, entry)),
        RoomEvent::Occupant { occupant, presence, removed } => {
            Event::Occupant(room_occupant(occupant, presence.as_ref(), removed))
        }
        RoomEvent::Private { from, to_nick, client_id, body, extras } => Event::Private(pb::RoomPrivate {
            from: Some(room_occupant(from, None, None)),
            to_nick,
            client_id,
            body,
            extras,
        }),
    };
    pb::RoomEvent { room: room.to_string(), event: Some(event) }
}

fn room_occupant(o: Occupant, presence: Option<&DevicePresence>, removed: Option<Removal>) -> pb::RoomOccupant {
    pb::RoomOccupant {
        removal: removed.map_or("", Removal::as_str).to_string(),
        affiliation: o.affiliation.map_or("none", |a| a.as_str()).to_string(),
        role: o.role.as_str().to_string(),
        jid: o.user.to_string(),
        presence: Some(presence_update(&o.user, o.device.clone(), presence.cloned())),
        nick: o.nick,
        device: o.device,
    }
}

fn from_room_occupant(o: pb::RoomOccupant) -> Result<(Occupant, Option<DevicePresence>), TelexError> {
    let (_, _, presence) = from_presence_update(o.presence.clone().unwrap_or_default())?;
    let occupant = Occupant {
        user: jid(&o.jid)?,
        affiliation: Affiliation::parse(&o.affiliation)?,
        role: role_of(&o.role)?,
        nick: o.nick,
        device: o.device,
    };
    Ok((occupant, presence))
}

pub fn from_room_event(r: pb::RoomEvent) -> Result<(RoomJid, RoomEvent), TelexError> {
    use pb::room_event::Event;
    let room = RoomJid::parse(&r.room)?;
    let event = match r.event {
        Some(Event::Entry(e)) => {
            let (position, entry) = from_room_entry(e)?;
            RoomEvent::Entry { position, entry }
        }
        Some(Event::Occupant(o)) => {
            let removal = o.removal.clone();
            let (occupant, presence) = from_room_occupant(o)?;
            let removed = match removal.as_str() {
                "" => None,
                other => Some(
                    Removal::parse(other).ok_or_else(|| TelexError::invalid(format!("unknown removal {other:?}")))?,
                ),
            };
            RoomEvent::Occupant { occupant, presence, removed }
        }
        Some(Event::Private(p)) => {
            let from = p.from.ok_or_else(|| TelexError::invalid("a private room message without a sender"))?;
            let (from, _) = from_room_occupant(from)?;
            RoomEvent::Private { from, to_nick: p.to_nick, client_id: p.client_id, body: p.body, extras: p.extras }
        }
        None => return Err(TelexError::invalid("a room event without an event")),
    };
    Ok((room, event))
}

pub fn session_end(c: &CutOff) -> pb::SessionEnd {
    use pb::CutOffKind as K;
    let (kind, detail, stalled_ms, queued) = match c {
        CutOff::Moved => (K::Moved, String::new(), 0, 0),
        CutOff::ShuttingDown => (K::ShuttingDown, String::new(), 0, 0),
        CutOff::Replaced => (K::Replaced, String::new(), 0, 0),
        CutOff::SlowReader { stalled, queued } => (K::SlowReader, String::new(), stalled.as_millis() as u64, *queued),
        CutOff::Kicked => (K::Kicked, String::new(), 0, 0),
        CutOff::Protocol(why) => (K::Protocol, why.clone(), 0, 0),
        CutOff::Unreachable(why) => (K::Unreachable, why.clone(), 0, 0),
    };
    pb::SessionEnd { kind: kind as i32, detail, stalled_ms, queued }
}

/// A cut-off from another node; an unknown kind (a newer node) counts as unreachable.
pub fn cut_off(e: pb::SessionEnd) -> CutOff {
    use pb::CutOffKind as K;
    match K::try_from(e.kind).unwrap_or(K::Unspecified) {
        K::Moved => CutOff::Moved,
        K::ShuttingDown => CutOff::ShuttingDown,
        K::Replaced => CutOff::Replaced,
        K::SlowReader => CutOff::SlowReader { stalled: Duration::from_millis(e.stalled_ms), queued: e.queued },
        K::Kicked => CutOff::Kicked,
        K::Protocol => CutOff::Protocol(e.detail),
        K::Unreachable | K::Unspecified => CutOff::Unreachable(e.detail),
    }
}

pub fn subscription_kind(k: SubscriptionKind) -> pb::SubscriptionKind {
    match k {
        SubscriptionKind::Subscribe => pb::SubscriptionKind::Subscribe,
        SubscriptionKind::Subscribed => pb::SubscriptionKind::Subscribed,
        SubscriptionKind::Unsubscribe => pb::SubscriptionKind::Unsubscribe,
        SubscriptionKind::Unsubscribed => pb::SubscriptionKind::Unsubscribed,
    }
}

pub fn from_subscription_kind(k: i32) -> Result<SubscriptionKind, TelexError> {
    match pb::SubscriptionKind::try_from(k) {
        Ok(pb::SubscriptionKind::Subscribe) => Ok(SubscriptionKind::Subscribe),
        Ok(pb::SubscriptionKind::Subscribed) => Ok(SubscriptionKind::Subscribed),
        Ok(pb::SubscriptionKind::Unsubscribe) => Ok(SubscriptionKind::Unsubscribe),
        Ok(pb::SubscriptionKind::Unsubscribed) => Ok(SubscriptionKind::Unsubscribed),
        _ => Err(TelexError::invalid(format!("unknown subscription kind {k}"))),
    }
}

fn contact(contact: &UserJid, name: String, groups: Vec<String>) -> pb::RosterContact {
    pb::RosterContact { jid: contact.to_string(), name, groups }
}

pub fn roster_op(op: RosterOp) -> pb::RosterOp {
    use pb::roster_op::Op;
    let s = |j: UserJid| j.to_string();
    let op = match op {
        RosterOp::Get => Op::Get(pb::Nothing {}),
        RosterOp::Add { contact: c, name, groups } => Op::Add(contact(&c, name, groups)),
        RosterOp::Remove { contact } => Op::Remove(s(contact)),
        RosterOp::Approve { contact } => Op::Approve(s(contact)),
        RosterOp::Deny { contact } => Op::Deny(s(contact)),
        RosterOp::Block { jid } => Op::Block(s(jid)),
        RosterOp::Unblock { jid } => Op::Unblock(s(jid)),
        RosterOp::Blocked => Op::Blocked(pb::Nothing {}),
        RosterOp::Set { contact: c, name, groups } => Op::Set(contact(&c, name, groups)),
        RosterOp::Subscribe { contact } => Op::Subscribe(s(contact)),
        RosterOp::Unsubscribe { contact } => Op::Unsubscribe(s(contact)),
    };
    pb::RosterOp { op: Some(op) }
}

pub fn from_roster_op(op: pb::RosterOp) -> Result<RosterOp, TelexError> {
    use pb::roster_op::Op;
    Ok(match op.op.ok_or_else(|| TelexError::invalid("a roster call without an operation"))? {
        Op::Get(_) => RosterOp::Get,
        Op::Add(c) => RosterOp::Add { contact: jid(&c.jid)?, name: c.name, groups: c.groups },
        Op::Remove(j) => RosterOp::Remove { contact: jid(&j)? },
        Op::Approve(j) => RosterOp::Approve { contact: jid(&j)? },
        Op::Deny(j) => RosterOp::Deny { contact: jid(&j)? },
        Op::Block(j) => RosterOp::Block { jid: jid(&j)? },
        Op::Unblock(j) => RosterOp::Unblock { jid: jid(&j)? },
        Op::Blocked(_) => RosterOp::Blocked,
        Op::Set(c) => RosterOp::Set { contact: jid(&c.jid)?, name: c.name, groups: c.groups },
        Op::Subscribe(j) => RosterOp::Subscribe { contact: jid(&j)? },
        Op::Unsubscribe(j) => RosterOp::Unsubscribe { contact: jid(&j)? },
    })
}

pub fn roster_response(items: &[(UserJid, RosterItem)]) -> pb::RosterResponse {
    pb::RosterResponse { items: items.iter().map(|(j, i)| roster_item(j, i)).collect() }
}

pub fn block_list(jids: &[UserJid]) -> pb::BlockList {
    pb::BlockList { jids: jids.iter().map(|j| j.to_string()).collect() }
}

pub fn roster_reply(r: Result<RosterReply, TelexError>) -> pb::RosterCallReply {
    use pb::roster_call_reply::Result as R;
    let result = match r {
        Ok(RosterReply::Items(items)) => R::Items(roster_response(&items)),
        Ok(RosterReply::Blocked(jids)) => R::Blocked(block_list(&jids)),
        Err(e) => R::Error(error(&e)),
    };
    pb::RosterCallReply { result: Some(result) }
}

pub fn from_roster_reply(r: pb::RosterCallReply) -> Result<RosterReply, TelexError> {
    use pb::roster_call_reply::Result as R;
    match r.result {
        Some(R::Items(items)) => {
            Ok(RosterReply::Items(items.items.into_iter().map(from_roster_item).collect::<Result<_, _>>()?))
        }
        Some(R::Blocked(b)) => Ok(RosterReply::Blocked(b.jids.iter().map(|j| jid(j)).collect::<Result<_, _>>()?)),
        Some(R::Error(e)) => Err(telex_error(e)),
        None => Err(TelexError::internal("an empty roster reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use telex_types::presence::Show;

    fn j(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn frames() -> Vec<ServerFrame> {
        let m = ArchivedMessage {
            server_id: "s".into(),
            from: j("a@x"),
            to: j("b@x"),
            from_device: "pc".into(),
            client_id: "c".into(),
            body: "hi".into(),
            sent_at: 5,
            extras: "<r/>".into(),
            to_device: "phone".into(),
        };
        let p = DevicePresence { show: Show::Dnd, status: "busy".into(), priority: -3, extras: String::new() };
        vec![
            ServerFrame::Message { position: 3, message: m, for_other_device: true },
            ServerFrame::Presence { from: j("a@x"), device: "pc".into(), presence: Some(p) },
            ServerFrame::Presence { from: j("a@x"), device: "pc".into(), presence: None },
            ServerFrame::Roster { contact: j("c@x"), item: Some(RosterItem::default()), version: "v".into() },
            ServerFrame::Roster { contact: j("c@x"), item: None, version: "w".into() },
            ServerFrame::SubscriptionRequest { from: j("c@x") },
            ServerFrame::Signal { from: j("c@x"), from_device: "d".into(), payload: "<x/>".into() },
            ServerFrame::Blocked { jid: j("e@x"), blocked: true },
            ServerFrame::Sent {
                client_id: "c1".into(),
                result: Ok(Sent { server_id: "s".into(), position: 1, recipient_position: 2 }),
            },
            ServerFrame::Sent {
                client_id: "c2".into(),
                result: Err(Refused {
                    error: TelexError::new(ErrorCode::ResourceExhausted, "slow down"),
                    retry_after: Some(Duration::from_millis(40)),
                }),
            },
        ]
    }

    #[test]
    fn server_frames_cross_nodes_unchanged() {
        for f in frames() {
            let wire = server_frame(f.clone()).encode_to_vec();
            let back = from_server_frame(pb::ServerFrame::decode(wire.as_slice()).unwrap()).unwrap();
            assert_eq!(back, Some(f));
        }
    }

    #[test]
    fn cut_offs_and_roster_calls_cross_nodes_unchanged() {
        let cuts = [
            CutOff::Moved,
            CutOff::ShuttingDown,
            CutOff::Replaced,
            CutOff::SlowReader { stalled: Duration::from_secs(30), queued: 64 },
            CutOff::Kicked,
            CutOff::Protocol("bad ack".into()),
            CutOff::Unreachable("gone".into()),
        ];
        for c in cuts {
            assert_eq!(cut_off(session_end(&c)), c);
        }
        let ops = [
            RosterOp::Get,
            RosterOp::Add { contact: j("b@x"), name: "B".into(), groups: vec!["g".into()] },
            RosterOp::Remove { contact: j("b@x") },
            RosterOp::Approve { contact: j("b@x") },
            RosterOp::Deny { contact: j("b@x") },
            RosterOp::Block { jid: j("b@x") },
            RosterOp::Unblock { jid: j("b@x") },
            RosterOp::Blocked,
            RosterOp::Set { contact: j("b@x"), name: String::new(), groups: vec![] },
            RosterOp::Subscribe { contact: j("b@x") },
            RosterOp::Unsubscribe { contact: j("b@x") },
        ];
        for op in ops {
            assert_eq!(from_roster_op(roster_op(op.clone())).unwrap(), op);
        }
        let reply = Ok(RosterReply::Items(vec![(j("b@x"), RosterItem::default())]));
        assert_eq!(from_roster_reply(roster_reply(reply.clone())), reply);
        let refused = Err(TelexError::new(ErrorCode::FailedPrecondition, "no pending request"));
        assert_eq!(from_roster_reply(roster_reply(refused.clone())), refused);
    }

    #[test]
    fn bad_input_from_the_wire_is_named() {
        let bad = pb::ClientFrame {
            frame: Some(pb::client_frame::Frame::Presence(pb::SetPresence {
                show: "sleepy".into(),
                ..Default::default()
            })),
        };
        assert!(client_frame(bad).unwrap_err().message.contains("sleepy"));
        let bad_jid = pb::ServerFrame {
            frame: Some(pb::server_frame::Frame::SubscriptionRequest(pb::SubscriptionRequest { from: "no".into() })),
        };
        assert!(from_server_frame(bad_jid).unwrap_err().message.contains("\"no\""));
        assert_eq!(telex_error(pb::Error { code: "brand_new".into(), message: "m".into() }).code, ErrorCode::Internal);
        assert_eq!(cut_off(pb::SessionEnd { kind: 99, ..Default::default() }), CutOff::Unreachable(String::new()));
    }

    /// The node-to-node messages' encodings, pinned: a change breaks mixed-version clusters.
    #[test]
    fn node_to_node_encodings_are_pinned() {
        let end = session_end(&CutOff::SlowReader { stalled: Duration::from_millis(300), queued: 7 });
        let down = pb::AttachDown { event: Some(pb::attach_down::Event::End(end)) };
        let roster = pb::RosterCall { user: "a@x".into(), op: Some(roster_op(RosterOp::Block { jid: j("b@x") })) };
        let sub = pb::SubscriptionCall {
            to: "b@x".into(),
            from: "a@x".into(),
            kind: subscription_kind(SubscriptionKind::Subscribed) as i32,
        };
        let proposed = pb::ProposeReply {
            outcome: Some(pb::propose_reply::Outcome::Done(pb::Proposed { response: vec![2, 0, 0, 0, 0], index: 9 })),
        };
        let failed = pb::ProposeReply {
            outcome: Some(pb::propose_reply::Outcome::Error(error(&TelexError::unavailable("no leader")))),
        };
        let got = [
            hex(&down.encode_to_vec()),
            hex(&roster.encode_to_vec()),
            hex(&sub.encode_to_vec()),
            hex(&proposed.encode_to_vec()),
            hex(&failed.encode_to_vec()),
        ];
        let pinned: [&str; 5] = PINNED;
        assert_eq!(got, pinned, "node-to-node encodings changed");
    }

    const PINNED: [&str; 5] = [
        "1207080418ac022007",
        "0a0361407812053203624078",
        "0a0362407812036140781802",
        "12090a0502000000001009",
        "1a180a0b756e617661696c61626c6512096e6f206c6561646572",
    ];
}
