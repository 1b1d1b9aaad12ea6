//! XEP-0045 on `conference.<domain>`: what a client's stanza to a room asks for, and the
//! stanzas a room sends (occupant presence, groupchat messages, history, the subject, disco).
//! Pure: the connection carries the requests to the room's actor through the core.

use telex_session::muc::Refusal;
use telex_types::occupancy::HistoryLimit;
use telex_types::presence::DevicePresence;
use telex_types::room::{self, Affiliation, Anonymity, EntryKind, Occupant, Removal, RoomEntry, RoomJid, RoomRecord};
use telex_types::{ErrorCode, TelexError};

use crate::iq::{format_time, parse_time};
use crate::ns;
use crate::stanza::{bare, resource};
use crate::xml::{el, extras, text_el, Element, Node};

pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const ROOM_CONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const ROOM_INFO: &str = "http://jabber.org/protocol/muc#roominfo";
pub const SELF_PING: &str = "urn:xmpp:ping";

/// Status codes of `<x xmlns='...muc#user'><status code=.../>` (XEP-0045 §15.6).
pub const SELF: &str = "110";
pub const CREATED: &str = "201";
pub const NON_ANONYMOUS: &str = "100";

/// What a stanza to a room asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum ToRoom {
    /// Presence to `room/nick`: enter, or change presence (or nickname) when in.
    Enter {
        room: RoomJid,
        nick: String,
        password: String,
        history: HistoryLimit,
        presence: DevicePresence,
    },
    /// Unavailable presence to the room.
    Leave {
        room: RoomJid,
    },
    /// A groupchat message (a body, or a subject).
    Say {
        room: RoomJid,
        client_id: String,
        body: String,
        subject: Option<String>,
        extras: String,
    },
    /// A private message to the occupant `nick` (XEP-0045 §7.5): a body, or only extension
    /// elements (chat states).
    Private {
        room: RoomJid,
        nick: String,
        client_id: String,
        body: String,
        extras: String,
    },
    /// Mediated invitations (XEP-0045 §7.8.2): each invitee's bare JID and the reason.
    Invite {
        room: RoomJid,
        invitees: Vec<(String, String)>,
    },
    /// A stanza the room answers with an error (condition, text).
    Refuse {
        condition: &'static str,
        text: String,
    },
    Ignore,
}

/// Whether `to` is on a room service (`conference.<domain>`).
pub fn is_room_address(to: &str) -> bool {
    let domain = bare(to).rsplit_once('@').map_or(bare(to), |(_, d)| d);
    room::service_tenant(domain).is_some()
}

/// The room `to` names, or the refusal for an address that is not one.
fn room_of(to: &str) -> Result<RoomJid, Box<ToRoom>> {
    RoomJid::parse(bare(to)).map_err(|e| Box::new(ToRoom::Refuse { condition: "item-not-found", text: e.message }))
}

/// A presence stanza to a room address.
pub fn presence(p: &Element, now_ms: u64) -> ToRoom {
    let Some(to) = p.attr("to") else { return ToRoom::Ignore };
    let room = match room_of(to) {
        Ok(r) => r,
        Err(refuse) => return *refuse,
    };
    match p.attr("type") {
        Some("unavailable") => return ToRoom::Leave { room },
        None => {}
        // Subscriptions to a room, probes: nothing to do.
        _ => return ToRoom::Ignore,
    }
    let nick = match room::check_nick(resource(to)) {
        Ok(n) => n,
        // XEP-0045 §7.2.1: entering without a nickname.
        Err(e) => {
            return ToRoom::Refuse {
                condition: "jid-malformed",
                text: format!("a room nickname is needed: {}", e.message),
            }
        }
    };
    let x = p.elements().find(|e| e.name == "x" && e.attr("xmlns") == Some(MUC));
    let password = x.and_then(|x| x.child("password")).map(Element::text).unwrap_or_default();
    let history = x.and_then(|x| x.child("history")).map_or_else(HistoryLimit::default, |h| history_limit(h, now_ms));
    let show = p.child("show").map(Element::text).unwrap_or_default();
    let show = match show.trim() {
        "" => "available",
        s @ ("chat" | "away" | "xa" | "dnd") => s,
        other => {
            return ToRoom::Refuse {
                condition: "bad-request",
                text: format!("<show>{other}</show> is not chat, away, xa or dnd"),
            }
        }
    };
    let status = p.child("status").map(Element::text).unwrap_or_default();
    match DevicePresence::from_parts(show, status, 0, String::new()) {
        Ok(presence) => ToRoom::Enter { room, nick, password, history, presence },
        Err(e) => ToRoom::Refuse { condition: "not-acceptable", text: e.message },
    }
}

/// `<history maxchars maxstanzas seconds since/>` (XEP-0045 §7.2.15); `maxchars='0'` asks
/// for none.
fn history_limit(h: &Element, now_ms: u64) -> HistoryLimit {
    let num = |a: &str| h.attr(a).and_then(|v| v.trim().parse::<u64>().ok());
    let mut max_stanzas = num("maxstanzas").map(|n| n.min(u64::from(u32::MAX)) as u32);
    if num("maxchars") == Some(0) {
        max_stanzas = Some(0);
    }
    let by_seconds = num("seconds").map(|s| now_ms.saturating_sub(s.saturating_mul(1000)));
    let by_since = h.attr("since").and_then(parse_time);
    let since_ms = match (by_seconds, by_since) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    HistoryLimit { max_stanzas, since_ms }
}

/// A message stanza to a room address.
pub fn message(m: &Element, next_id: impl FnOnce() -> String) -> ToRoom {
    let Some(to) = m.attr("to") else { return ToRoom::Ignore };
    if m.attr("type") == Some("error") {
        return ToRoom::Ignore;
    }
    let room = match room_of(to) {
        Ok(r) => r,
        Err(refuse) => return *refuse,
    };
    if m.attr("type") != Some("groupchat") {
        if !resource(to).is_empty() {
            return private(m, room, resource(to), next_id);
        }
        let invitees = crate::room_admin::invitations(m);
        if !invitees.is_empty() {
            return ToRoom::Invite { room, invitees };
        }
        if m.elements().any(|x| x.name == "x" && x.attr("xmlns") == Some(MUC_USER)) {
            // A declined invitation, and the like: nothing for the room to do.
            return ToRoom::Ignore;
        }
        return ToRoom::Refuse {
            condition: "feature-not-implemented",
            text: "only groupchat messages go to a room".into(),
        };
    }
    if !resource(to).is_empty() {
        return ToRoom::Refuse {
            condition: "bad-request",
            text: "a groupchat message goes to the room, not to an occupant".into(),
        };
    }
    let subject = m.child("subject").map(Element::text);
    let body = m.child("body").map(Element::text).unwrap_or_default();
    if body.is_empty() && subject.is_none() {
        // Chat states and markers to a room are not stored or relayed yet.
        return ToRoom::Ignore;
    }
    let client_id = m.attr("id").filter(|id| !id.is_empty()).map_or_else(next_id, str::to_string);
    ToRoom::Say { room, client_id, body, subject, extras: kept_extras(m) }
}

/// The extension elements a message to a room carries on: the server assigns stanza ids,
/// and an empty muc#user marker (aioxmpp adds one) says nothing.
fn kept_extras(m: &Element) -> String {
    let dropped = |e: &Element| {
        matches!(e.name.as_str(), "body" | "subject")
            || (e.name == "stanza-id" && e.attr("xmlns") == Some(ns::STANZA_ID))
            || (e.name == "x" && e.attr("xmlns") == Some(MUC_USER))
    };
    let mut kept = String::new();
    for e in m.elements().filter(|e| !dropped(e)) {
        crate::xml::to_xml(e, &mut kept);
    }
    kept
}

/// A chat (or normal) message to `room/nick`.
fn private(m: &Element, room: RoomJid, nick: &str, next_id: impl FnOnce() -> String) -> ToRoom {
    let nick = match room::check_nick(nick) {
        Ok(n) => n,
        Err(e) => return ToRoom::Refuse { condition: "jid-malformed", text: e.message },
    };
    let body = m.child("body").map(Element::text).unwrap_or_default();
    let extras = kept_extras(m);
    if body.is_empty() && extras.is_empty() {
        return ToRoom::Ignore;
    }
    let client_id = m.attr("id").filter(|id| !id.is_empty()).map_or_else(next_id, str::to_string);
    ToRoom::Private { room, nick, client_id, body, extras }
}

/// A private message from the occupant `from` as `to` receives it: from its occupant JID,
/// marked as coming through the room (XEP-0045 §7.5).
pub fn private_message(
    room: &RoomJid,
    from: &Occupant,
    client_id: &str,
    body: &str,
    extras: &str,
    to: &str,
) -> Element {
    let sender = occupant_jid(room, &from.nick);
    let mut children = Vec::new();
    if !body.is_empty() {
        children.push(text_el("body", body));
    }
    children.extend(crate::xml::extras(extras));
    children.push(Node::Element(el("x", &[("xmlns", MUC_USER)], vec![])));
    el("message", &[("from", &sender), ("to", to), ("type", "chat"), ("id", client_id)], children)
}

/// `room/nick`.
pub fn occupant_jid(room: &RoomJid, nick: &str) -> String {
    format!("{room}/{nick}")
}

/// An occupant's presence as the room sends it to `to` (XEP-0045 §7.2.3); `real_jid`: the
/// viewer may see who it is. `codes`: status codes (110 for the viewer's own).
pub fn occupant_presence(
    room: &RoomJid,
    o: &Occupant,
    presence: Option<&DevicePresence>,
    to: &str,
    real_jid: bool,
    codes: &[&str],
) -> Element {
    let mut children = Vec::new();
    if let Some(p) = presence {
        let show = p.show.as_str();
        if matches!(show, "chat" | "away" | "xa" | "dnd") {
            children.push(text_el("show", show));
        }
        if !p.status.is_empty() {
            children.push(text_el("status", &p.status));
        }
    }
    let affiliation = o.affiliation.map_or("none", Affiliation::as_str);
    let role = if presence.is_some() { o.role.as_str() } else { "none" };
    let full = format!("{}/{}", o.user, o.device);
    let mut item_attrs = vec![("affiliation", affiliation), ("role", role)];
    if real_jid {
        item_attrs.push(("jid", full.as_str()));
    }
    let mut x = vec![Node::Element(el("item", &item_attrs, vec![]))];
    x.extend(codes.iter().map(|c| Node::Element(el("status", &[("code", c)], vec![]))));
    children.push(Node::Element(el("x", &[("xmlns", MUC_USER)], x)));
    let from = occupant_jid(room, &o.nick);
    let mut attrs = vec![("from", from.as_str()), ("to", to)];
    if presence.is_none() {
        attrs.push(("type", "unavailable"));
    }
    el("presence", &attrs, children)
}

/// The presence of an occupant the room took out, with why (XEP-0045 §8.2, §9.1, §9.4,
/// §10.9); `mine`: sent to the occupant itself.
pub fn removed_presence(room: &RoomJid, o: &Occupant, to: &str, real_jid: bool, mine: bool, why: Removal) -> Element {
    let code = match why {
        Removal::Kicked => Some("307"),
        Removal::Banned => Some("301"),
        Removal::NotMember => Some("321"),
        Removal::Destroyed => None,
    };
    let codes: Vec<&str> = mine.then_some(SELF).into_iter().chain(code).collect();
    let mut p = occupant_presence(room, o, None, to, real_jid || mine, &codes);
    if why == Removal::Destroyed {
        if let Some(Node::Element(x)) = p.children.last_mut() {
            x.children.push(Node::Element(el("destroy", &[], vec![])));
        }
    }
    p
}

/// A room log entry as a groupchat message to `to`; `delayed`: sent as history on entering.
pub fn groupchat(room: &RoomJid, entry: &RoomEntry, to: &str, delayed: bool) -> Element {
    let from = occupant_jid(room, &entry.nick);
    let room_s = room.to_string();
    let mut children = match entry.kind {
        EntryKind::Message => vec![text_el("body", &entry.body)],
        EntryKind::Subject => vec![text_el("subject", &entry.body)],
    };
    children.push(Node::Element(el(
        "stanza-id",
        &[("xmlns", ns::STANZA_ID), ("id", &entry.server_id), ("by", &room_s)],
        vec![],
    )));
    if delayed {
        let stamp = format_time(entry.sent_at);
        children.push(Node::Element(el(
            "delay",
            &[("xmlns", ns::DELAY), ("stamp", &stamp), ("from", &room_s)],
            vec![],
        )));
    }
    children.extend(extras(&entry.extras));
    el("message", &[("from", &from), ("to", to), ("type", "groupchat"), ("id", &entry.client_id)], children)
}

/// The subject, sent last on entering (XEP-0045 §7.2.15: empty when there is none).
pub fn subject(room: &RoomJid, subject: &str, to: &str) -> Element {
    let from = room.to_string();
    let id = format!("subject-{}", room.local());
    el("message", &[("from", &from), ("to", to), ("type", "groupchat"), ("id", &id)], vec![text_el("subject", subject)])
}

fn feature(var: &str) -> Node {
    Node::Element(el("feature", &[("var", var)], vec![]))
}

/// disco#info of the room service.
pub fn service_info() -> Element {
    let identity = el("identity", &[("category", "conference"), ("type", "text"), ("name", "Rooms")], vec![]);
    let mut children = vec![Node::Element(identity)];
    children.extend([ns::DISCO_INFO, ns::DISCO_ITEMS, MUC].iter().map(|f| feature(f)));
    el("query", &[("xmlns", ns::DISCO_INFO)], children)
}

/// disco#info of a room: its identity and the features its configuration gives it.
pub fn room_info(r: &RoomRecord, occupants: Option<usize>) -> Element {
    let c = &r.config;
    let name = if c.name.is_empty() { r.room.local().to_string() } else { c.name.clone() };
    let identity = el("identity", &[("category", "conference"), ("type", "text"), ("name", &name)], vec![]);
    let mut children = vec![Node::Element(identity)];
    let features = [
        MUC,
        ns::DISCO_INFO,
        ns::MAM,
        ns::STANZA_ID,
        SELF_PING,
        if c.public { "muc_public" } else { "muc_hidden" },
        if c.members_only { "muc_membersonly" } else { "muc_open" },
        if c.moderated { "muc_moderated" } else { "muc_unmoderated" },
        if c.password.is_empty() { "muc_unsecured" } else { "muc_passwordprotected" },
        if c.persistent { "muc_persistent" } else { "muc_temporary" },
        match c.anonymity {
            Anonymity::Non => "muc_nonanonymous",
            Anonymity::Semi => "muc_semianonymous",
        },
    ];
    children.extend(features.iter().map(|f| feature(f)));
    let field = |var: &str, label: &str, value: String| {
        Node::Element(el("field", &[("var", var), ("label", label)], vec![text_el("value", &value)]))
    };
    let mut form = vec![
        Node::Element(el("field", &[("var", "FORM_TYPE"), ("type", "hidden")], vec![text_el("value", ROOM_INFO)])),
        field("muc#roominfo_description", "Description", c.description.clone()),
        field("muc#roominfo_subject", "Subject", r.subject.clone()),
    ];
    if let Some(n) = occupants {
        form.push(field("muc#roominfo_occupants", "Number of occupants", n.to_string()));
    }
    children.push(Node::Element(el("x", &[("xmlns", ns::DATA), ("type", "result")], form)));
    el("query", &[("xmlns", ns::DISCO_INFO)], children)
}

/// disco#items of the service: the rooms the asker may see.
pub fn room_items(rooms: &[RoomRecord]) -> Element {
    let items = rooms
        .iter()
        .map(|r| {
            let name = if r.config.name.is_empty() { r.room.local().to_string() } else { r.config.name.clone() };
            Node::Element(el("item", &[("jid", &r.room.to_string()), ("name", &name)], vec![]))
        })
        .collect();
    el("query", &[("xmlns", ns::DISCO_ITEMS)], items)
}

/// The stanza error condition and type for a room's refusal (XEP-0045 §7.2's conditions where
/// the refusal is one of the room's, recognised by its text since refusals cross nodes as
/// Telex errors; the general mapping otherwise).
pub fn condition(e: &TelexError) -> (&'static str, &'static str) {
    let known = [
        Refusal::NoSuchRoom,
        Refusal::NotMember,
        Refusal::Banned,
        Refusal::WrongPassword,
        Refusal::NickTaken,
        Refusal::Full,
        Refusal::NoVoice,
        Refusal::NotOccupant,
        Refusal::Protected,
        Refusal::LastOwner,
        Refusal::NoPrivateMessages,
        Refusal::RateLimited,
    ];
    if e.message.starts_with("not allowed: ") {
        return Refusal::NotAllowed(String::new()).condition();
    }
    known
        .iter()
        .find(|r| r.to_string() == e.message)
        .map_or_else(|| crate::errors::condition(e.code), Refusal::condition)
}

/// A presence error from the room (`from` the address the client used).
pub fn presence_error(to_attr: &str, me: &str, condition: &str, kind: &str, text: &str) -> Element {
    let error = crate::errors::error_element(kind, condition, text);
    let x = el("x", &[("xmlns", MUC)], vec![]);
    el("presence", &[("from", to_attr), ("to", me), ("type", "error")], vec![Node::Element(x), Node::Element(error)])
}

/// Whether a TelexError is one a retry can cure (the room's shard is changing leader).
pub fn retryable(e: &TelexError) -> bool {
    e.code == ErrorCode::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_element, xml_of};

    fn p(xml: &str) -> Element {
        parse_element(xml).unwrap()
    }

    #[test]
    fn entering_a_room_reads_the_nick_password_and_history() {
        let e = p("<presence to='Team@conference.x/Ann'><x xmlns='http://jabber.org/protocol/muc'>\
            <password>pw</password><history maxstanzas='5' seconds='60'/></x><show>away</show></presence>");
        match presence(&e, 100_000) {
            ToRoom::Enter { room, nick, password, history, presence } => {
                assert_eq!(room.to_string(), "team@conference.x");
                assert_eq!(nick, "Ann");
                assert_eq!(password, "pw");
                assert_eq!(history, HistoryLimit { max_stanzas: Some(5), since_ms: Some(40_000) });
                assert_eq!(presence.show.as_str(), "away");
            }
            other => panic!("{other:?}"),
        }
        let none = p("<presence to='team@conference.x/Ann'><x xmlns='http://jabber.org/protocol/muc'>\
            <history maxchars='0'/></x></presence>");
        assert!(matches!(presence(&none, 0), ToRoom::Enter { history: HistoryLimit { max_stanzas: Some(0), .. }, .. }));
        let bare = p("<presence to='team@conference.x'/>");
        assert!(matches!(presence(&bare, 0), ToRoom::Refuse { condition: "jid-malformed", .. }));
        let leave = p("<presence type='unavailable' to='team@conference.x/Ann'/>");
        assert!(matches!(presence(&leave, 0), ToRoom::Leave { .. }));
        assert!(is_room_address("team@conference.x/Ann"));
        assert!(!is_room_address("bob@x/Ann"));
    }

    #[test]
    fn groupchat_messages_keep_their_id_and_extensions() {
        let m = p("<message to='team@conference.x' type='groupchat' id='m1'><body>hi</body>\
            <origin-id xmlns='urn:xmpp:sid:0' id='o1'/><stanza-id xmlns='urn:xmpp:sid:0' id='forged'/></message>");
        match message(&m, || "gen".into()) {
            ToRoom::Say { client_id, body, subject, extras, .. } => {
                assert_eq!((client_id.as_str(), body.as_str(), subject), ("m1", "hi", None));
                assert!(extras.contains("origin-id") && !extras.contains("forged"), "{extras}");
            }
            other => panic!("{other:?}"),
        }
        let pm = p("<message to='team@conference.x/Bob' type='chat'><body>psst</body></message>");
        match message(&pm, || "g".into()) {
            ToRoom::Private { nick, body, client_id, .. } => {
                assert_eq!((nick.as_str(), body.as_str(), client_id.as_str()), ("Bob", "psst", "g"));
            }
            other => panic!("{other:?}"),
        }
        let typing = p("<message to='team@conference.x/Bob' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert!(
            matches!(message(&typing, || "g".into()), ToRoom::Private { ref extras, .. } if extras.contains("composing"))
        );
        let empty = p("<message to='team@conference.x/Bob' type='chat'/>");
        assert_eq!(message(&empty, || "g".into()), ToRoom::Ignore);
    }

    #[test]
    fn room_stanzas_carry_the_occupant_address_and_stanza_ids() {
        let room = RoomJid::parse("team@conference.x").unwrap();
        let entry = RoomEntry {
            server_id: "s1".into(),
            kind: EntryKind::Message,
            from: telex_types::UserJid::parse("ann@x").unwrap(),
            from_device: "pc".into(),
            nick: "Ann".into(),
            client_id: "c1".into(),
            body: "hello".into(),
            extras: String::new(),
            sent_at: 1_000,
        };
        let xml = xml_of(&groupchat(&room, &entry, "bob@x/phone", true));
        assert!(xml.contains("from='team@conference.x/Ann'"), "{xml}");
        assert!(xml.contains("type='groupchat'") && xml.contains("id='c1'"), "{xml}");
        assert!(xml.contains("<stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='team@conference.x'/>"), "{xml}");
        assert!(xml.contains("urn:xmpp:delay"), "{xml}");
        let o = Occupant {
            nick: "Ann".into(),
            user: entry.from.clone(),
            device: "pc".into(),
            affiliation: Some(Affiliation::Owner),
            role: telex_types::room::Role::Moderator,
        };
        let xml = xml_of(&occupant_presence(&room, &o, None, "ann@x/pc", true, &[SELF]));
        assert!(xml.contains("type='unavailable'") && xml.contains("role='none'"), "{xml}");
        assert!(xml.contains("jid='ann@x/pc'") && xml.contains("code='110'"), "{xml}");
        let kicked = xml_of(&removed_presence(&room, &o, "bob@x/phone", false, false, Removal::Kicked));
        assert!(kicked.contains("code='307'") && !kicked.contains("110") && !kicked.contains("jid="), "{kicked}");
        let gone = xml_of(&removed_presence(&room, &o, "ann@x/pc", false, true, Removal::Destroyed));
        assert!(gone.contains("<destroy/>") && gone.contains("code='110'"), "{gone}");
    }

    #[test]
    fn room_refusals_keep_their_xep_0045_conditions_across_nodes() {
        let e = Refusal::NotMember.to_error();
        assert_eq!(condition(&e), ("registration-required", "auth"));
        let e = Refusal::WrongPassword.to_error();
        assert_eq!(condition(&e), ("not-authorized", "auth"));
        assert_eq!(condition(&TelexError::invalid("x")), ("bad-request", "modify"));
    }
}
