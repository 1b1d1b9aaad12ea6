//! Stanzas to and from the session core's frames: an XMPP session is a device session like a
//! gRPC one (same actor, same delivery, same cluster routing), and this module is the
//! translation. Pure, so every rule is unit-tested; the connection does the I/O.

use telex_session::{ClientFrame, SendMessage, ServerFrame};
use telex_types::presence::{DevicePresence, Show};
use telex_types::records::ArchivedMessage;
use telex_types::roster::RosterItem;
use telex_types::UserJid;

use crate::errors::stanza_error;
use crate::iq::{format_time, request, Request};
use crate::ns;
use crate::xml::{el, extras, parse_element, text_el, xml_of, Element, Node};

/// What a stanza from the client asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// A frame for the session: a send, presence, or a signal (chat state, receipt, marker,
    /// directed presence).
    Frame(ClientFrame),
    /// An iq request (`id` to answer).
    Iq { id: String, request: Request },
    /// A subscription stanza (`subscribe`, `subscribed`, `unsubscribe`, `unsubscribed`) to `to`.
    Subscription { to: String, kind: Subscription },
    /// A presence or message stanza to a room (`conference.<domain>`).
    Room(crate::muc::ToRoom),
    /// A stanza the gateway answers with an error of this condition (and text).
    Refuse { stanza: Element, condition: &'static str, text: String },
    /// Nothing to do (an iq result or error, a body-less message with nothing to pass on, a
    /// probe).
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The bare part of a JID (everything before the first `/`).
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

/// The resource of a full JID, if it has one.
pub fn resource(jid: &str) -> &str {
    jid.split_once('/').map_or("", |(_, r)| r)
}

/// `user` or `user/device`.
fn full(user: &UserJid, device: &str) -> String {
    if device.is_empty() {
        user.to_string()
    } else {
        format!("{user}/{device}")
    }
}

/// Maps one stanza from the client. `next_id` names messages that came without an id (the id
/// is the client message id: a retry with the same id stores nothing twice).
pub fn inbound(stanza: &Element, next_id: impl FnOnce() -> String) -> Inbound {
    let to_room = stanza.attr("to").is_some_and(crate::muc::is_room_address);
    match stanza.name.as_str() {
        "message" if to_room => Inbound::Room(crate::muc::message(stanza, next_id)),
        "presence" if to_room => Inbound::Room(crate::muc::presence(stanza, now_ms())),
        "message" => message(stanza, next_id),
        "presence" => presence(stanza),
        "iq" => iq(stanza),
        other => Inbound::Refuse {
            stanza: stanza.clone(),
            condition: "unsupported-stanza-type",
            text: format!("<{other}> is not a stanza"),
        },
    }
}

fn message(m: &Element, next_id: impl FnOnce() -> String) -> Inbound {
    if m.attr("type") == Some("error") {
        return Inbound::Ignore;
    }
    let Some(body) = m.child("body").map(Element::text) else { return signal(m) };
    let Some(to) = m.attr("to") else {
        return Inbound::Refuse { stanza: m.clone(), condition: "bad-request", text: "a message needs a 'to'".into() };
    };
    if m.attr("type") == Some("groupchat") {
        return Inbound::Refuse {
            stanza: m.clone(),
            condition: "bad-request",
            text: "groupchat messages go to a room (room@conference.<domain>)".into(),
        };
    }
    let client_id = m.attr("id").filter(|id| !id.is_empty()).map_or_else(next_id, str::to_string);
    // Everything but the body travels with it, except a stanza id: only the server assigns those.
    let mut extras = String::new();
    for e in
        m.elements().filter(|e| e.name != "body" && !(e.name == "stanza-id" && e.attr("xmlns") == Some(ns::STANZA_ID)))
    {
        crate::xml::to_xml(e, &mut extras);
    }
    let send = SendMessage { client_id, to: bare(to).to_string(), to_device: resource(to).to_string(), body, extras };
    Inbound::Frame(ClientFrame::Send(send))
}

/// The namespaces of what passes through as a signal (not stored): chat states (XEP-0085),
/// delivery receipts (XEP-0184) and chat markers (XEP-0333).
pub const SIGNAL_NAMESPACES: &[&str] =
    &["http://jabber.org/protocol/chatstates", "urn:xmpp:receipts", "urn:xmpp:chat-markers:0"];

const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";

/// A message without a body: its chat state, receipt or marker goes to the recipient's online
/// devices; anything else is dropped. The signal's payload is the stanza without its
/// addresses (the recipient's gateway sets them).
fn signal(m: &Element) -> Inbound {
    let kept: Vec<Node> = m
        .elements()
        .filter(|e| e.attr("xmlns").is_some_and(|ns| SIGNAL_NAMESPACES.contains(&ns)))
        .map(|e| Node::Element(e.clone()))
        .collect();
    match m.attr("to") {
        Some(to) if !kept.is_empty() => {
            let kind = m.attr("type").unwrap_or("chat");
            let id = m.attr("id").unwrap_or_default();
            signal_frame(to, &el("message", &[("type", kind), ("id", id)], kept))
        }
        _ => Inbound::Ignore,
    }
}

fn signal_frame(to: &str, stanza: &Element) -> Inbound {
    Inbound::Frame(ClientFrame::Signal { to: bare(to).to_string(), payload: xml_of(stanza) })
}

/// Directed presence (RFC 6121 §4.6): this device's presence for one entity only, subscribed or
/// not, passed on as a signal. The connection remembers whom it told, to say unavailable later.
pub fn directed_presence(to: &str, available: bool, p: &Element) -> Inbound {
    let children = p
        .elements()
        .filter(|e| matches!(e.name.as_str(), "show" | "status" | "priority" | "c"))
        .map(|e| Node::Element(e.clone()))
        .collect();
    let presence =
        if available { el("presence", &[], children) } else { el("presence", &[("type", "unavailable")], vec![]) };
    signal_frame(to, &presence)
}

fn presence(p: &Element) -> Inbound {
    let set = |show: Show| {
        let status = p.child("status").map(Element::text).unwrap_or_default();
        let priority = p.child("priority").and_then(|e| e.text().trim().parse::<i32>().ok()).unwrap_or(0);
        // Entity capabilities, avatar hashes and the like go to contacts with it.
        let mut extras = String::new();
        if show != Show::Unavailable {
            for e in p.elements().filter(|e| !matches!(e.name.as_str(), "show" | "status" | "priority")) {
                crate::xml::to_xml(e, &mut extras);
            }
        }
        match DevicePresence::from_parts(show.as_str(), status, priority.clamp(-128, 127), extras) {
            Ok(presence) => Inbound::Frame(ClientFrame::Presence(presence)),
            Err(e) => Inbound::Refuse { stanza: p.clone(), condition: "not-acceptable", text: e.message },
        }
    };
    let subscription = |kind| match p.attr("to") {
        Some(to) => Inbound::Subscription { to: bare(to).to_string(), kind },
        None => Inbound::Refuse {
            stanza: p.clone(),
            condition: "bad-request",
            text: "a subscription stanza needs a 'to'".into(),
        },
    };
    match (p.attr("type"), p.attr("to")) {
        // Broadcast presence: available (with an optional <show/>) or unavailable.
        (None, None) => {
            let show = p.child("show").map(Element::text).unwrap_or_default();
            match show.trim() {
                "" => set(Show::Available),
                "chat" => set(Show::Chat),
                "away" => set(Show::Away),
                "xa" => set(Show::Xa),
                "dnd" => set(Show::Dnd),
                other => Inbound::Refuse {
                    stanza: p.clone(),
                    condition: "bad-request",
                    text: format!("<show>{other}</show> is not chat, away, xa or dnd"),
                },
            }
        }
        (Some("unavailable"), None) => set(Show::Unavailable),
        (None, Some(to)) => directed_presence(to, true, p),
        (Some("unavailable"), Some(to)) => directed_presence(to, false, p),
        (Some("subscribe"), _) => subscription(Subscription::Subscribe),
        (Some("subscribed"), _) => subscription(Subscription::Subscribed),
        (Some("unsubscribe"), _) => subscription(Subscription::Unsubscribe),
        (Some("unsubscribed"), _) => subscription(Subscription::Unsubscribed),
        // Probes and other types: presence is shared through subscriptions (and directed
        // presence above).
        _ => Inbound::Ignore,
    }
}

fn iq(q: &Element) -> Inbound {
    let id = q.attr("id").unwrap_or_default().to_string();
    match q.attr("type") {
        Some(kind @ ("get" | "set")) => {
            if id.is_empty() {
                return Inbound::Refuse {
                    stanza: q.clone(),
                    condition: "bad-request",
                    text: "an iq needs an 'id'".into(),
                };
            }
            let payloads: Vec<&Element> = q.elements().collect();
            let request = match payloads.as_slice() {
                [one] => request(kind, Some(one)),
                _ => Request::Bad("an iq request carries exactly one child element".into()),
            };
            Inbound::Iq { id, request }
        }
        // Results and errors addressed to the server (answers to roster pushes, pings).
        Some("result" | "error") => Inbound::Ignore,
        _ => Inbound::Refuse {
            stanza: q.clone(),
            condition: "bad-request",
            text: "an iq's type is get, set, result or error".into(),
        },
    }
}

/// Who a stanza goes to, and what that session asked for.
pub struct Viewer<'a> {
    /// The full JID of the session, `user@domain/resource`.
    pub me: &'a str,
    pub user: &'a UserJid,
    /// The domain, for what the server itself stamps (delays).
    pub domain: &'a str,
    pub carbons: bool,
    /// The session fetched its roster (roster pushes go to interested resources only).
    pub roster_fetched: bool,
    /// The session fetched its block list (XEP-0191 pushes go to those only).
    pub blocklist_fetched: bool,
    /// Messages sent before this instant (Unix ms) were waiting for the device: they carry a
    /// XEP-0203 delay.
    pub offline_before_ms: u64,
}

/// The `<message/>` for an archived one, to `to`.
fn chat(m: &ArchivedMessage, to: &str, with_stanza_id: Option<&str>, delay: Option<&str>) -> Element {
    let mut children = vec![text_el("body", &m.body)];
    if let Some(by) = with_stanza_id {
        children.push(Node::Element(el(
            "stanza-id",
            &[("xmlns", ns::STANZA_ID), ("id", &m.server_id), ("by", by)],
            vec![],
        )));
    }
    if let Some(domain) = delay {
        let stamp = format_time(m.sent_at);
        children.push(Node::Element(el("delay", &[("xmlns", ns::DELAY), ("from", domain), ("stamp", &stamp)], vec![])));
    }
    children.extend(extras(&m.extras));
    let from = full(&m.from, &m.from_device);
    el("message", &[("from", &from), ("to", to), ("id", &m.client_id), ("type", "chat")], children)
}

/// A XEP-0280 carbon copy (`sent` or `received`) of `message` for the session `me`.
fn carbon(kind: &str, mut message: Element, v: &Viewer<'_>) -> Element {
    message.attrs.insert(0, ("xmlns".into(), ns::CLIENT.into()));
    let forwarded = el("forwarded", &[("xmlns", ns::FORWARD)], vec![Node::Element(message)]);
    let copy = el(kind, &[("xmlns", ns::CARBONS)], vec![Node::Element(forwarded)]);
    el("message", &[("from", &v.user.to_string()), ("to", v.me), ("type", "chat")], vec![Node::Element(copy)])
}

/// What the session sends the client, as a stanza for the device `v.me`. `None` for frames
/// that have no stanza here: a successful send (XMPP has no acknowledgement for it), the
/// user's own messages from the archive unless another device sent them and carbons are on,
/// messages addressed to another online device (unless carbons are on), and pushes this
/// device did not ask for.
pub fn outbound(frame: ServerFrame, v: &Viewer<'_>) -> Option<Element> {
    match frame {
        ServerFrame::Message { message: m, for_other_device, .. } => {
            let bare = v.user.to_string();
            // RFC 6121 §8.5.2.1.1: the server does not rewrite 'to'.
            let addressed = full(&m.to, &m.to_device);
            let sending_device = v.me == full(&m.from, &m.from_device);
            // Someone else's message, or one to yourself on a device other than the sender.
            if &m.from != v.user || (&m.to == v.user && !sending_device) {
                let delay = (m.sent_at < v.offline_before_ms).then_some(v.domain);
                let message = chat(&m, &addressed, Some(&bare), delay);
                if !for_other_device {
                    return Some(message);
                }
                // Addressed to another of this user's devices that is online.
                return v.carbons.then(|| carbon("received", message, v));
            }
            // The user's own message: the device that sent it has it; the others may see a copy.
            if !v.carbons || sending_device {
                return None;
            }
            Some(carbon("sent", chat(&m, &addressed, Some(&bare), None), v))
        }
        ServerFrame::Presence { from, device, presence } => {
            let mut children = Vec::new();
            let kind = match &presence {
                Some(p) => {
                    if matches!(p.show, Show::Chat | Show::Away | Show::Xa | Show::Dnd) {
                        children.push(text_el("show", p.show.as_str()));
                    }
                    if !p.status.is_empty() {
                        children.push(text_el("status", &p.status));
                    }
                    if p.priority != 0 {
                        children.push(text_el("priority", &p.priority.to_string()));
                    }
                    children.extend(extras(&p.extras));
                    ""
                }
                None => "unavailable",
            };
            Some(el("presence", &[("from", &full(&from, &device)), ("to", v.me), ("type", kind)], children))
        }
        ServerFrame::Roster { contact, item, version } => {
            if !v.roster_fetched {
                return None;
            }
            let item = match item {
                Some(i) => roster_item(&contact, &i),
                None => el("item", &[("jid", &contact.to_string()), ("subscription", "remove")], vec![]),
            };
            let query = el("query", &[("xmlns", ns::ROSTER), ("ver", &version)], vec![Node::Element(item)]);
            Some(el("iq", &[("type", "set"), ("to", v.me), ("id", "push")], vec![Node::Element(query)]))
        }
        ServerFrame::SubscriptionRequest { from } => {
            Some(el("presence", &[("from", &from.to_string()), ("to", v.me), ("type", "subscribe")], vec![]))
        }
        ServerFrame::Blocked { jid, blocked } => {
            if !v.blocklist_fetched {
                return None;
            }
            let item = el("item", &[("jid", &jid.to_string())], vec![]);
            let change =
                el(if blocked { "block" } else { "unblock" }, &[("xmlns", ns::BLOCKING)], vec![Node::Element(item)]);
            Some(el("iq", &[("type", "set"), ("to", v.me), ("id", "push")], vec![Node::Element(change)]))
        }
        ServerFrame::Sent { client_id, result: Err(refused) } => {
            let error = stanza_error(&refused.error);
            Some(el("message", &[("to", v.me), ("id", &client_id), ("type", "error")], vec![Node::Element(error)]))
        }
        ServerFrame::Sent { .. } => None,
        // Room events are the session's to render: it knows the rooms it is in.
        ServerFrame::Room { .. } => None,
        ServerFrame::Signal { from, from_device, payload } => {
            // A stanza another device passed on (XMPP or not): only a well-formed message or
            // presence goes out, with the addresses set here.
            let mut stanza = parse_element(&payload)?;
            if !matches!(stanza.name.as_str(), "message" | "presence") {
                return None;
            }
            stanza.attrs.retain(|(k, _)| k != "from" && k != "to" && k != "xmlns");
            stanza.attrs.insert(0, ("to".into(), v.me.to_string()));
            stanza.attrs.insert(0, ("from".into(), full(&from, &from_device)));
            Some(stanza)
        }
    }
}

/// Whether a signal's payload is only a chat state (dropped while the client is inactive,
/// XEP-0352).
pub fn is_chat_state_only(payload: &str) -> bool {
    parse_element(payload).is_some_and(|s| {
        s.name == "message" && s.elements().count() > 0 && s.elements().all(|e| e.attr("xmlns") == Some(CHAT_STATES))
    })
}

/// A roster item element.
pub fn roster_item(jid: &UserJid, i: &RosterItem) -> Element {
    let ask = if i.pending_out { "subscribe" } else { "" };
    let groups = i.groups.iter().map(|g| text_el("group", g)).collect();
    let jid = jid.to_string();
    el("item", &[("jid", &jid), ("name", &i.name), ("subscription", i.subscription.as_str()), ("ask", ask)], groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{to_xml, Event, Limits, StreamParser};
    use telex_session::{Refused, Sent};
    use telex_types::{ErrorCode, TelexError};

    /// Parses one stanza written as XML.
    fn parse(xml: &str) -> Element {
        let mut p = StreamParser::new(Limits::default());
        p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        p.feed(xml.as_bytes());
        assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
        match p.next_event() {
            Ok(Some(Event::Stanza(e))) => e,
            other => panic!("{other:?}"),
        }
    }

    fn send_of(i: Inbound) -> SendMessage {
        match i {
            Inbound::Frame(ClientFrame::Send(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    fn j(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }

    #[test]
    fn messages_become_sends_with_the_stanza_id_as_client_id() {
        let s = send_of(inbound(
            &parse("<message to='bob@x/phone' id='m1' type='chat'><body>hi &amp; bye</body></message>"),
            || "gen".into(),
        ));
        assert_eq!(
            (s.to.as_str(), s.to_device.as_str(), s.client_id.as_str(), s.body.as_str()),
            ("bob@x", "phone", "m1", "hi & bye")
        );
        let s = send_of(inbound(&parse("<message to='bob@x'><body>no id</body></message>"), || "gen-7".into()));
        assert_eq!((s.client_id.as_str(), s.to_device.as_str()), ("gen-7", ""));
        // A chat state alone carries no body: nothing to store, passed on as a signal.
        let typing = inbound(
            &parse("<message to='bob@x/pc'><composing xmlns='http://jabber.org/protocol/chatstates'/><x xmlns='y'/></message>"),
            String::new,
        );
        let Inbound::Frame(ClientFrame::Signal { to, payload }) = typing else { panic!("{typing:?}") };
        assert_eq!(
            (to.as_str(), payload.as_str()),
            ("bob@x", "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        );
        assert!(is_chat_state_only(&payload));
        let me = j("bob@x");
        let v = viewer(&me, "bob@x/phone", false);
        let back = outbound(ServerFrame::Signal { from: j("alice@x"), from_device: "pc".into(), payload }, &v).unwrap();
        assert_eq!(back.attr("from"), Some("alice@x/pc"));
        assert!(back.child("composing").is_some());
        assert_eq!(inbound(&parse("<message to='bob@x'><x xmlns='y'/></message>"), String::new), Inbound::Ignore);
        assert!(matches!(
            inbound(&parse("<message><body>x</body></message>"), String::new),
            Inbound::Refuse { condition: "bad-request", .. }
        ));
    }

    #[test]
    fn presence_and_iq() {
        let p = |xml: &str| match inbound(&parse(xml), String::new) {
            Inbound::Frame(ClientFrame::Presence(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(p("<presence/>").show, Show::Available);
        let away = p("<presence><show>away</show><status>lunch</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>");
        assert_eq!((away.show, away.status.as_str(), away.priority), (Show::Away, "lunch", 5));
        assert_eq!(away.extras, "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>");
        assert_eq!(p("<presence type='unavailable'/>").show, Show::Unavailable);
        assert!(matches!(
            inbound(&parse("<presence><show>sleepy</show></presence>"), String::new),
            Inbound::Refuse { .. }
        ));
        let get = parse("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
        assert_eq!(
            inbound(&get, String::new),
            Inbound::Iq { id: "r1".into(), request: Request::RosterGet { ver: None } }
        );
        let no_id = parse("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>");
        assert!(matches!(inbound(&no_id, String::new), Inbound::Refuse { condition: "bad-request", .. }));
        assert_eq!(
            inbound(&parse("<presence to='bob@x/phone' type='subscribe'/>"), String::new),
            Inbound::Subscription { to: "bob@x".into(), kind: Subscription::Subscribe }
        );
        assert_eq!(inbound(&parse("<presence to='bob@x' type='probe'/>"), String::new), Inbound::Ignore);
    }

    fn viewer<'a>(user: &'a UserJid, me: &'a str, carbons: bool) -> Viewer<'a> {
        Viewer { me, user, domain: "x", carbons, roster_fetched: true, blocklist_fetched: true, offline_before_ms: 100 }
    }

    fn message(from: &str, device: &str, to: &str, to_device: &str, sent_at: u64) -> ArchivedMessage {
        ArchivedMessage {
            server_id: "s1".into(),
            from: j(from),
            to: j(to),
            from_device: device.into(),
            client_id: "c1".into(),
            body: "<b>&'\"".into(),
            sent_at,
            extras: String::new(),
            to_device: to_device.into(),
        }
    }

    #[test]
    fn frames_become_stanzas_that_parse_back() {
        let bob = j("bob@x");
        let v = viewer(&bob, "bob@x/phone", false);
        let m = ArchivedMessage {
            extras: "<request xmlns='urn:xmpp:receipts'/>".into(),
            ..message("alice@x", "laptop", "bob@x", "", 500)
        };
        let stanza = outbound(ServerFrame::Message { position: 1, message: m, for_other_device: false }, &v).unwrap();
        let mut xml = String::new();
        to_xml(&stanza, &mut xml);
        let back = parse(&xml);
        assert_eq!((back.attr("from"), back.attr("to")), (Some("alice@x/laptop"), Some("bob@x")), "'to' not rewritten");
        assert_eq!(back.child("request").and_then(|r| r.attr("xmlns")), Some("urn:xmpp:receipts"), "extras kept");
        assert_eq!(back.child("body").unwrap().text(), "<b>&'\"");
        assert_eq!(back.child("stanza-id").unwrap().attr("id"), Some("s1"));
        assert!(back.child("delay").is_none(), "sent after the session attached");

        // Waiting while the device was away: stamped with when it was sent.
        let old = message("alice@x", "laptop", "bob@x", "", 50);
        let stanza = outbound(ServerFrame::Message { position: 1, message: old, for_other_device: false }, &v).unwrap();
        let delay = stanza.child("delay").unwrap();
        assert_eq!((delay.attr("from"), delay.attr("stamp")), (Some("x"), Some("1970-01-01T00:00:00.050Z")));

        // Alice's own message reaches her other devices as a carbon, if they asked for them.
        let alice = j("alice@x");
        let own = message("alice@x", "laptop", "bob@x", "", 500);
        let frame =
            |m: &ArchivedMessage| ServerFrame::Message { position: 2, message: m.clone(), for_other_device: false };
        assert_eq!(outbound(frame(&own), &viewer(&alice, "alice@x/laptop", true)), None, "the sending device");
        assert_eq!(outbound(frame(&own), &viewer(&alice, "alice@x/phone", false)), None, "carbons off");
        let carbon = outbound(frame(&own), &viewer(&alice, "alice@x/phone", true)).unwrap();
        let copy = carbon.child("sent").unwrap().child("forwarded").unwrap().child("message").unwrap();
        assert_eq!((copy.attr("from"), copy.attr("to")), (Some("alice@x/laptop"), Some("bob@x")));

        // A message to yourself reaches your other devices as a message (not a copy).
        let note = message("alice@x", "laptop", "alice@x", "", 500);
        let to_self = outbound(frame(&note), &viewer(&alice, "alice@x/phone", true)).unwrap();
        assert!(to_self.child("body").is_some() && to_self.child("sent").is_none(), "{to_self:?}");
        assert_eq!(outbound(frame(&note), &viewer(&alice, "alice@x/laptop", true)), None, "the sender has it");

        // A message to bob's desk: bob's phone sees it only as a received carbon.
        let to_desk = message("alice@x", "laptop", "bob@x", "desk", 500);
        let elsewhere = ServerFrame::Message { position: 3, message: to_desk, for_other_device: true };
        assert_eq!(outbound(elsewhere.clone(), &v), None);
        let received = outbound(elsewhere, &viewer(&bob, "bob@x/phone", true)).unwrap();
        let copy = received.child("received").unwrap().child("forwarded").unwrap().child("message").unwrap();
        assert_eq!(copy.attr("to"), Some("bob@x/desk"));

        let away = DevicePresence { show: Show::Away, status: String::new(), priority: 3, extras: String::new() };
        let p = outbound(ServerFrame::Presence { from: alice.clone(), device: "pc".into(), presence: Some(away) }, &v)
            .unwrap();
        assert_eq!((p.attr("from"), p.child("show").unwrap().text()), (Some("alice@x/pc"), "away".into()));
        assert_eq!(p.child("priority").unwrap().text(), "3");
        let gone = outbound(ServerFrame::Presence { from: alice.clone(), device: "pc".into(), presence: None }, &v);
        assert_eq!(gone.unwrap().attr("type"), Some("unavailable"));

        let refused = ServerFrame::Sent {
            client_id: "c2".into(),
            result: Err(Refused::from(TelexError::new(ErrorCode::PermissionDenied, "blocked"))),
        };
        let e = outbound(refused, &v).unwrap();
        assert_eq!(e.attr("type"), Some("error"));
        assert!(e.child("error").unwrap().child("forbidden").is_some());
        let ok = Sent { server_id: "s".into(), position: 1, recipient_position: 1 };
        assert!(outbound(ServerFrame::Sent { client_id: "c3".into(), result: Ok(ok) }, &v).is_none());
    }

    #[test]
    fn pushes_go_only_to_sessions_that_asked() {
        let bob = j("bob@x");
        let mut v = viewer(&bob, "bob@x/phone", false);
        let blocked = ServerFrame::Blocked { jid: j("eve@x"), blocked: true };
        let push = outbound(blocked.clone(), &v).unwrap();
        assert_eq!(push.child("block").unwrap().child("item").unwrap().attr("jid"), Some("eve@x"));
        let roster = ServerFrame::Roster { contact: j("ann@x"), item: None, version: "v9".into() };
        let push = outbound(roster.clone(), &v).unwrap();
        let query = push.child("query").unwrap();
        assert_eq!(
            (query.attr("ver"), query.child("item").unwrap().attr("subscription")),
            (Some("v9"), Some("remove"))
        );
        v.blocklist_fetched = false;
        v.roster_fetched = false;
        assert_eq!(outbound(blocked, &v), None);
        assert_eq!(outbound(roster, &v), None);
    }
}
