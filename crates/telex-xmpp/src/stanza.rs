//! Stanzas to and from the client API's session frames: an XMPP session is a device session
//! like a gRPC one (same actor, same delivery, same cluster routing), and this module is the
//! translation. Pure, so every rule is unit-tested; the c2s connection does the I/O.

use telex_proto::v1 as pb;

use crate::xml::{Element, Node};

pub const NS_CLIENT: &str = "jabber:client";
pub const NS_ROSTER: &str = "jabber:iq:roster";
pub const NS_STANZA_ID: &str = "urn:xmpp:sid:0";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// What a stanza from the client asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// A frame for the session (send, presence).
    Frame(pb::ClientFrame),
    /// Roster get (`iq` id to answer).
    RosterGet { id: String },
    /// A stanza the gateway answers with an error of this condition (and text).
    Refuse { stanza: Element, condition: &'static str, text: String },
    /// Nothing to do (for example a chat state without a body, passed through later).
    Ignore,
}

fn bare(jid: &str) -> &str {
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
    let Some(body) = m.child("body").map(Element::text) else { return Inbound::Ignore };
    let Some(to) = m.attr("to") else {
        return Inbound::Refuse { stanza: m.clone(), condition: "bad-request", text: "a message needs a 'to'".into() };
    };
    let client_id = m.attr("id").filter(|id| !id.is_empty()).map_or_else(next_id, str::to_string);
    let send = pb::SendMessage { client_id, to: bare(to).to_string(), body };
    Inbound::Frame(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(send)) })
}

fn presence(p: &Element) -> Inbound {
    let set = |show: &str| {
        let status = p.child("status").map(Element::text).unwrap_or_default();
        let priority = p.child("priority").and_then(|e| e.text().trim().parse::<i32>().ok()).unwrap_or(0);
        let presence = pb::SetPresence { show: show.to_string(), status, priority: priority.clamp(-128, 127) };
        Inbound::Frame(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(presence)) })
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
        _ => Inbound::Ignore,
    }
}

fn iq(q: &Element) -> Inbound {
    let id = q.attr("id").unwrap_or_default().to_string();
    let payload = q.elements().next();
    match (q.attr("type"), payload.map(|e| (e.name.as_str(), e.attr("xmlns")))) {
        (Some("get"), Some(("query", Some(NS_ROSTER)))) => Inbound::RosterGet { id },
        (Some("get" | "set"), _) => Inbound::Refuse {
            stanza: q.clone(),
            condition: "service-unavailable",
            text: "this request is not supported".into(),
        },
        // Results and errors addressed to the server: nothing to answer.
        _ => Inbound::Ignore,
    }
}

/// Builds an element.
pub fn el(name: &str, attrs: &[(&str, &str)], children: Vec<Node>) -> Element {
    let attrs = attrs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Element { name: name.to_string(), attrs, children }
}

fn text_el(name: &str, text: &str) -> Node {
    Node::Element(el(name, &[], vec![Node::Text(text.to_string())]))
}

/// What the session sends the client, as a stanza for the device `me` (a full JID). `None`
/// for frames that have no stanza (a successful send: XMPP has no acknowledgement for it).
pub fn outbound(frame: pb::server_frame::Frame, me: &str) -> Option<Element> {
    use pb::server_frame::Frame;
    match frame {
        Frame::Message(m) => {
            let from = if m.from_device.is_empty() { m.from.clone() } else { format!("{}/{}", m.from, m.from_device) };
            let stanza_id = el("stanza-id", &[("xmlns", NS_STANZA_ID), ("id", &m.server_id), ("by", bare(me))], vec![]);
            Some(el(
                "message",
                &[("from", &from), ("to", me), ("id", &m.client_id), ("type", "chat")],
                vec![text_el("body", &m.body), Node::Element(stanza_id)],
            ))
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
            let kind = if p.show == "unavailable" { "unavailable" } else { "" };
            Some(el("presence", &[("from", &p.from), ("to", me), ("type", kind)], children))
        }
        Frame::Roster(push) => {
            let item = match push.item {
                Some(i) => roster_item(&i),
                None => el("item", &[("jid", &push.jid), ("subscription", "remove")], vec![]),
            };
            let query = el("query", &[("xmlns", NS_ROSTER)], vec![Node::Element(item)]);
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
                    Node::Element(el(condition_of(&r.error_code), &[("xmlns", NS_STANZAS)], vec![])),
                    Node::Element(el("text", &[("xmlns", NS_STANZAS)], vec![Node::Text(r.error.clone())])),
                ],
            );
            Some(el("message", &[("to", me), ("id", &r.client_id), ("type", "error")], vec![Node::Element(error)]))
        }
        Frame::Sent(_) => None,
    }
}

/// A roster item element.
pub fn roster_item(i: &pb::RosterItem) -> Element {
    let ask = if i.pending_out { "subscribe" } else { "" };
    let groups = i.groups.iter().map(|g| text_el("group", g)).collect();
    el("item", &[("jid", &i.jid), ("name", &i.name), ("subscription", &i.subscription), ("ask", ask)], groups)
}

/// The RFC 6120 stanza error condition for a Telex error code.
fn condition_of(code: &str) -> &'static str {
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
        // A chat state alone carries no body: nothing to store.
        assert_eq!(
            inbound(
                &parse("<message to='bob@x'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"),
                String::new
            ),
            Inbound::Ignore
        );
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
        let away = p("<presence><show>away</show><status>lunch</status><priority>5</priority></presence>");
        assert_eq!((away.show.as_str(), away.status.as_str(), away.priority), ("away", "lunch", 5));
        assert_eq!(p("<presence type='unavailable'/>").show, "unavailable");
        assert!(matches!(
            inbound(&parse("<presence><show>sleepy</show></presence>"), String::new),
            Inbound::Refuse { .. }
        ));
        let get = parse("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
        assert_eq!(inbound(&get, String::new), Inbound::RosterGet { id: "r1".into() });
        let other = parse("<iq type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>");
        assert!(matches!(inbound(&other, String::new), Inbound::Refuse { condition: "service-unavailable", .. }));
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
        let stanza = outbound(Frame::Message(m), "bob@x/phone").unwrap();
        let mut xml = String::new();
        to_xml(&stanza, &mut xml);
        let back = parse(&xml);
        assert_eq!(back.attr("from"), Some("alice@x/laptop"));
        assert_eq!(back.child("body").unwrap().text(), "<b>&'\"");
        assert_eq!(back.child("stanza-id").unwrap().attr("id"), Some("s1"));

        let away = pb::PresenceUpdate { from: "alice@x".into(), show: "away".into(), ..Default::default() };
        let p = outbound(Frame::Presence(away), "bob@x/phone").unwrap();
        assert_eq!(p.child("show").unwrap().text(), "away");
        let gone = pb::PresenceUpdate { from: "alice@x".into(), show: "unavailable".into(), ..Default::default() };
        assert_eq!(outbound(Frame::Presence(gone), "bob@x/p").unwrap().attr("type"), Some("unavailable"));

        let refused = pb::SendResult {
            client_id: "c2".into(),
            error_code: "permission_denied".into(),
            error: "blocked".into(),
            ..Default::default()
        };
        let e = outbound(Frame::Sent(refused), "bob@x/p").unwrap();
        assert_eq!(e.attr("type"), Some("error"));
        assert!(e.child("error").unwrap().child("forbidden").is_some());
        assert!(outbound(Frame::Sent(pb::SendResult::default()), "bob@x/p").is_none());
    }
}
