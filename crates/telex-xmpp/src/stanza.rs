//! Stanzas to and from the client API's session frames: an XMPP session is a device session
//! like a gRPC one (same actor, same delivery, same cluster routing), and this module is the
//! translation. Pure, so every rule is unit-tested; the c2s connection does the I/O.

use telex_proto::v1 as pb;

use crate::iq::{request, Request};
use crate::ns;
use crate::xml::{Element, Node};

/// What a stanza from the client asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// A frame for the session (send, presence).
    Frame(pb::ClientFrame),
    /// An iq request (`id` to answer).
    Iq { id: String, request: Request },
    /// A subscription stanza (`subscribe`, `subscribed`, `unsubscribe`, `unsubscribed`) to `to`.
    Subscription { to: String, kind: Subscription },
    /// A stanza the gateway answers with an error of this condition (and text).
    Refuse { stanza: Element, condition: &'static str, text: String },
    /// Nothing to do (an iq result, a chat state without a body, a probe).
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// Maps one stanza from the client. `next_id` names messages that came without an id (the id
/// is the client message id: a retry with the same id stores nothing twice).
pub fn inbound(stanza: &Element, next_id: impl FnOnce() -> String) -> Inbound {
    match stanza.name.as_str() {
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
            condition: "feature-not-implemented",
            text: "group chat is not offered here yet".into(),
        };
    }
    let client_id = m.attr("id").filter(|id| !id.is_empty()).map_or_else(next_id, str::to_string);
    // Everything but the body travels with it, except a stanza id: only the server assigns those.
    let mut extras = String::new();
    for e in
        m.elements().filter(|e| e.name != "body" && !(e.name == "stanza-id" && e.attr("xmlns") == Some(ns::STANZA_ID)))
    {
        to_xml(e, &mut extras);
    }
    let send = pb::SendMessage { client_id, to: bare(to).to_string(), body, extras };
    Inbound::Frame(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(send)) })
}

/// The stored extension elements of a message, as children (nothing if they do not parse).
pub fn extras(xml: &str) -> Vec<Node> {
    if xml.is_empty() {
        return Vec::new();
    }
    crate::xml::parse_element(&format!("<x>{xml}</x>")).map(|x| x.children).unwrap_or_default()
}

/// The namespaces of what passes through as a signal (not stored): chat states (XEP-0085),
/// delivery receipts (XEP-0184) and chat markers (XEP-0333).
pub const SIGNAL_NAMESPACES: &[&str] =
    &["http://jabber.org/protocol/chatstates", "urn:xmpp:receipts", "urn:xmpp:chat-markers:0"];

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
    let mut payload = String::new();
    to_xml(stanza, &mut payload);
    let signal = pb::SendSignal { to: bare(to).to_string(), payload };
    Inbound::Frame(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Signal(signal)) })
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
    let set = |show: &str| {
        let status = p.child("status").map(Element::text).unwrap_or_default();
        let priority = p.child("priority").and_then(|e| e.text().trim().parse::<i32>().ok()).unwrap_or(0);
        // Entity capabilities, avatar hashes and the like go to contacts with it.
        let mut extras = String::new();
        if show != "unavailable" {
            for e in p.elements().filter(|e| !matches!(e.name.as_str(), "show" | "status" | "priority")) {
                to_xml(e, &mut extras);
            }
        }
        let presence = pb::SetPresence { show: show.to_string(), status, priority: priority.clamp(-128, 127), extras };
        Inbound::Frame(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(presence)) })
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
                "" => set("available"),
                s @ ("chat" | "away" | "xa" | "dnd") => set(s),
                other => Inbound::Refuse {
                    stanza: p.clone(),
                    condition: "bad-request",
                    text: format!("<show>{other}</show> is not chat, away, xa or dnd"),
                },
            }
        }
        (Some("unavailable"), None) => set("unavailable"),
        (None, Some(to)) => directed_presence(to, true, p),
        (Some("unavailable"), Some(to)) => directed_presence(to, false, p),
        (Some("subscribe"), _) => subscription(Subscription::Subscribe),
        (Some("subscribed"), _) => subscription(Subscription::Subscribed),
        (Some("unsubscribe"), _) => subscription(Subscription::Unsubscribe),
        (Some("unsubscribed"), _) => subscription(Subscription::Unsubscribed),
        // Directed presence and probes: presence is shared through subscriptions only.
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

/// Builds an element.
pub fn el(name: &str, attrs: &[(&str, &str)], children: Vec<Node>) -> Element {
    let attrs = attrs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Element { name: name.to_string(), attrs, children }
}

pub fn text_el(name: &str, text: &str) -> Node {
    Node::Element(el(name, &[], vec![Node::Text(text.to_string())]))
}

/// What the session sends the client, as a stanza for the device `me` (a full JID). `None`
/// for frames that have no stanza: a successful send (XMPP has no acknowledgement for it), and
/// the user's own messages from the archive unless they came from another device and the
/// client enabled carbons (then they come as XEP-0280 `<sent/>` copies).
pub fn outbound(frame: pb::server_frame::Frame, me: &str, carbons: bool) -> Option<Element> {
    use pb::server_frame::Frame;
    match frame {
        Frame::Message(m) => {
            let from = if m.from_device.is_empty() { m.from.clone() } else { format!("{}/{}", m.from, m.from_device) };
            let stanza_id =
                el("stanza-id", &[("xmlns", ns::STANZA_ID), ("id", &m.server_id), ("by", bare(me))], vec![]);
            let own = m.from == bare(me);
            let to = if own { m.to.as_str() } else { me };
            let message = el(
                "message",
                &[("from", &from), ("to", to), ("id", &m.client_id), ("type", "chat")],
                [text_el("body", &m.body), Node::Element(stanza_id)].into_iter().chain(extras(&m.extras)).collect(),
            );
            if !own {
                return Some(message);
            }
            if !carbons || me.strip_prefix(m.from.as_str()) == Some(&format!("/{}", m.from_device)) {
                return None;
            }
            let mut message = message;
            message.attrs.insert(0, ("xmlns".into(), ns::CLIENT.into()));
            let forwarded = el("forwarded", &[("xmlns", ns::FORWARD)], vec![Node::Element(message)]);
            let sent = el("sent", &[("xmlns", ns::CARBONS)], vec![Node::Element(forwarded)]);
            Some(el("message", &[("from", bare(me)), ("to", me), ("type", "chat")], vec![Node::Element(sent)]))
        }
        Frame::Presence(p) => {
            let mut children = Vec::new();
            if matches!(p.show.as_str(), "chat" | "away" | "xa" | "dnd") {
                children.push(text_el("show", &p.show));
            }
            if !p.status.is_empty() {
                children.push(text_el("status", &p.status));
            }
            if p.priority != 0 {
                children.push(text_el("priority", &p.priority.to_string()));
            }
            children.extend(extras(&p.extras));
            let kind = if p.show == "unavailable" { "unavailable" } else { "" };
            Some(el("presence", &[("from", &p.from), ("to", me), ("type", kind)], children))
        }
        Frame::Roster(push) => {
            let item = match push.item {
                Some(i) => roster_item(&i),
                None => el("item", &[("jid", &push.jid), ("subscription", "remove")], vec![]),
            };
            let query = el("query", &[("xmlns", ns::ROSTER)], vec![Node::Element(item)]);
            Some(el("iq", &[("type", "set"), ("to", me), ("id", "push")], vec![Node::Element(query)]))
        }
        Frame::SubscriptionRequest(r) => {
            Some(el("presence", &[("from", &r.from), ("to", me), ("type", "subscribe")], vec![]))
        }
        Frame::Sent(r) if !r.error.is_empty() => {
            let error = el(
                "error",
                &[("type", if r.retryable { "wait" } else { "cancel" })],
                vec![
                    Node::Element(el(condition_of(&r.error_code), &[("xmlns", ns::STANZAS)], vec![])),
                    Node::Element(el("text", &[("xmlns", ns::STANZAS)], vec![Node::Text(r.error.clone())])),
                ],
            );
            Some(el("message", &[("to", me), ("id", &r.client_id), ("type", "error")], vec![Node::Element(error)]))
        }
        Frame::Sent(_) => None,
        Frame::Signal(s) => {
            // A stanza another device passed on (XMPP or not): only a well-formed message or
            // presence goes out, with the addresses set here.
            let mut stanza = crate::xml::parse_element(&s.payload)?;
            if !matches!(stanza.name.as_str(), "message" | "presence") {
                return None;
            }
            let from = if s.from_device.is_empty() { s.from.clone() } else { format!("{}/{}", s.from, s.from_device) };
            stanza.attrs.retain(|(k, _)| k != "from" && k != "to" && k != "xmlns");
            stanza.attrs.insert(0, ("to".into(), me.to_string()));
            stanza.attrs.insert(0, ("from".into(), from));
            Some(stanza)
        }
    }
}

/// A roster item element.
pub fn roster_item(i: &pb::RosterItem) -> Element {
    let ask = if i.pending_out { "subscribe" } else { "" };
    let groups = i.groups.iter().map(|g| text_el("group", g)).collect();
    el("item", &[("jid", &i.jid), ("name", &i.name), ("subscription", &i.subscription), ("ask", ask)], groups)
}

/// The RFC 6120 stanza error condition for a Telex error code.
pub fn condition_of(code: &str) -> &'static str {
    match code {
        "not_found" => "item-not-found",
        "already_exists" => "conflict",
        "failed_precondition" => "unexpected-request",
        "permission_denied" => "forbidden",
        "invalid_argument" => "bad-request",
        "resource_exhausted" => "resource-constraint",
        "unauthenticated" => "not-authorized",
        "unavailable" => "service-unavailable",
        _ => "internal-server-error",
    }
}

/// Serializes an element; text and attribute values are escaped.
pub fn to_xml(e: &Element, out: &mut String) {
    out.push('<');
    out.push_str(&e.name);
    for (k, v) in &e.attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("='");
        escape(v, out);
        out.push('\'');
    }
    if e.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for c in &e.children {
        match c {
            Node::Element(c) => to_xml(c, out),
            Node::Text(t) => escape(t, out),
        }
    }
    out.push_str("</");
    out.push_str(&e.name);
    out.push('>');
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Event, Limits, StreamParser};

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

    fn send_of(i: Inbound) -> pb::SendMessage {
        match i {
            Inbound::Frame(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(s)) }) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_become_sends_to_the_bare_jid_with_the_stanza_id_as_client_id() {
        let s = send_of(inbound(
            &parse("<message to='bob@x/phone' id='m1' type='chat'><body>hi &amp; bye</body></message>"),
            || "gen".into(),
        ));
        assert_eq!((s.to.as_str(), s.client_id.as_str(), s.body.as_str()), ("bob@x", "m1", "hi & bye"));
        let s = send_of(inbound(&parse("<message to='bob@x'><body>no id</body></message>"), || "gen-7".into()));
        assert_eq!(s.client_id, "gen-7");
        // A chat state alone carries no body: nothing to store, passed on as a signal.
        let typing = inbound(
            &parse("<message to='bob@x/pc'><composing xmlns='http://jabber.org/protocol/chatstates'/><x xmlns='y'/></message>"),
            String::new,
        );
        let Inbound::Frame(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Signal(s)) }) = typing else {
            panic!("{typing:?}")
        };
        assert_eq!(
            (s.to.as_str(), s.payload.as_str()),
            ("bob@x", "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        );
        let back = outbound(
            pb::server_frame::Frame::Signal(pb::Signal {
                from: "alice@x".into(),
                from_device: "pc".into(),
                payload: s.payload,
            }),
            "bob@x/phone",
            false,
        )
        .unwrap();
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
            Inbound::Frame(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(p)) }) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(p("<presence/>").show, "available");
        let away = p("<presence><show>away</show><status>lunch</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>");
        assert_eq!((away.show.as_str(), away.status.as_str(), away.priority), ("away", "lunch", 5));
        assert_eq!(away.extras, "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>");
        assert_eq!(p("<presence type='unavailable'/>").show, "unavailable");
        assert!(matches!(
            inbound(&parse("<presence><show>sleepy</show></presence>"), String::new),
            Inbound::Refuse { .. }
        ));
        let get = parse("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
        assert_eq!(inbound(&get, String::new), Inbound::Iq { id: "r1".into(), request: Request::RosterGet });
        let no_id = parse("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>");
        assert!(matches!(inbound(&no_id, String::new), Inbound::Refuse { condition: "bad-request", .. }));
        assert_eq!(
            inbound(&parse("<presence to='bob@x/phone' type='subscribe'/>"), String::new),
            Inbound::Subscription { to: "bob@x".into(), kind: Subscription::Subscribe }
        );
        assert_eq!(inbound(&parse("<presence to='bob@x' type='probe'/>"), String::new), Inbound::Ignore);
    }

    #[test]
    fn frames_become_stanzas_that_parse_back() {
        use pb::server_frame::Frame;
        let m = pb::Message {
            server_id: "s1".into(),
            from: "alice@x".into(),
            from_device: "laptop".into(),
            body: "<b>&'\"".into(),
            client_id: "c1".into(),
            ..Default::default()
        };
        let stanza = outbound(Frame::Message(m.clone()), "bob@x/phone", false).unwrap();
        let mut xml = String::new();
        to_xml(&stanza, &mut xml);
        let back = parse(&xml);
        assert_eq!(back.attr("from"), Some("alice@x/laptop"));
        assert_eq!(back.child("body").unwrap().text(), "<b>&'\"");
        assert_eq!(back.child("stanza-id").unwrap().attr("id"), Some("s1"));

        // Alice's own message reaches her other devices as a carbon, if they asked for them.
        let own = pb::Message { to: "bob@x".into(), ..m };
        assert_eq!(outbound(Frame::Message(own.clone()), "alice@x/laptop", true), None, "the sending device");
        assert_eq!(outbound(Frame::Message(own.clone()), "alice@x/phone", false), None, "carbons off");
        let carbon = outbound(Frame::Message(own), "alice@x/phone", true).unwrap();
        let copy = carbon.child("sent").unwrap().child("forwarded").unwrap().child("message").unwrap();
        assert_eq!((copy.attr("from"), copy.attr("to")), (Some("alice@x/laptop"), Some("bob@x")));

        let away = pb::PresenceUpdate { from: "alice@x".into(), show: "away".into(), ..Default::default() };
        let p = outbound(Frame::Presence(away), "bob@x/phone", false).unwrap();
        assert_eq!(p.child("show").unwrap().text(), "away");
        let gone = pb::PresenceUpdate { from: "alice@x".into(), show: "unavailable".into(), ..Default::default() };
        assert_eq!(outbound(Frame::Presence(gone), "bob@x/p", false).unwrap().attr("type"), Some("unavailable"));

        let refused = pb::SendResult {
            client_id: "c2".into(),
            error_code: "permission_denied".into(),
            error: "blocked".into(),
            ..Default::default()
        };
        let e = outbound(Frame::Sent(refused), "bob@x/p", false).unwrap();
        assert_eq!(e.attr("type"), Some("error"));
        assert!(e.child("error").unwrap().child("forbidden").is_some());
        assert!(outbound(Frame::Sent(pb::SendResult::default()), "bob@x/p", false).is_none());
    }
}
