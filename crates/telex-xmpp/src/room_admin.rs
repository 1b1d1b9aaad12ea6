//! XEP-0045 §9–10: what owners and admins ask a room for (the configuration form, affiliation
//! lists and changes, kicks, destroying the room), and mediated invitations. Pure: requests are
//! read into values the connection carries out, and the room's answers are built here.

use telex_types::room::{Affiliation, Anonymity, InvitePolicy, Occupant, Role, RoomConfig, RoomRecord};
use telex_types::UserJid;

use crate::muc::{MUC_ADMIN, MUC_OWNER, MUC_USER, ROOM_CONFIG};
use crate::ns;
use crate::xml::{el, text_el, Element, Node};

/// XEP-0249's direct invitation, which the room's invitations are delivered as.
pub const CONFERENCE: &str = "jabber:x:conference";

/// Changes one muc#admin request may carry (each is a write).
const MAX_ITEMS: usize = 50;

/// An owner's or admin's iq to a room.
#[derive(Clone, Debug, PartialEq)]
pub enum AdminRequest {
    /// muc#owner get: the configuration form.
    ConfigForm,
    /// muc#owner set with a submitted form (empty: accept the configuration, the instant room
    /// of §10.1.2): each field's var and values.
    Configure(Vec<(String, Vec<String>)>),
    /// muc#owner set with a cancelled form: nothing changes.
    CancelConfig,
    Destroy,
    /// muc#admin get: the users with this affiliation.
    List(Affiliation),
    /// muc#admin get: the occupants with this role (the voice and moderator lists).
    Roles(Role),
    /// muc#admin set: affiliation changes (`None` takes it away) and kicks (role `none`).
    Change(Vec<AdminChange>),
    Bad(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum AdminChange {
    Affiliation { user: UserJid, affiliation: Option<Affiliation> },
    Kick { nick: String },
    Role { nick: String, role: Role },
}

/// The owner or admin request in an iq to a room, if it is one.
pub fn request(iq: &Element) -> Option<AdminRequest> {
    let query = iq.child("query")?;
    let set = iq.attr("type") == Some("set");
    match query.attr("xmlns") {
        Some(MUC_OWNER) => Some(owner(query, set)),
        Some(MUC_ADMIN) => Some(admin(query, set)),
        _ => None,
    }
}

fn owner(query: &Element, set: bool) -> AdminRequest {
    if !set {
        return AdminRequest::ConfigForm;
    }
    if query.child("destroy").is_some() {
        return AdminRequest::Destroy;
    }
    let Some(form) = query.elements().find(|e| e.name == "x" && e.attr("xmlns") == Some(ns::DATA)) else {
        return AdminRequest::Bad("a muc#owner set carries a data form or <destroy/>".into());
    };
    match form.attr("type") {
        Some("cancel") => AdminRequest::CancelConfig,
        Some("submit") => {
            let fields = form
                .elements()
                .filter(|f| f.name == "field")
                .filter_map(|f| {
                    let var = f.attr("var")?.to_string();
                    let values = f.elements().filter(|v| v.name == "value").map(Element::text).collect();
                    Some((var, values))
                })
                .collect();
            AdminRequest::Configure(fields)
        }
        other => AdminRequest::Bad(format!("a configuration form of type {:?}; submit or cancel", other.unwrap_or(""))),
    }
}

fn admin(query: &Element, set: bool) -> AdminRequest {
    let items: Vec<&Element> = query.elements().filter(|e| e.name == "item").collect();
    if items.is_empty() {
        return AdminRequest::Bad("a muc#admin request names at least one <item/>".into());
    }
    if !set {
        let [item] = items.as_slice() else {
            return AdminRequest::Bad("a muc#admin list asks for one affiliation".into());
        };
        return match (item.attr("affiliation"), item.attr("role")) {
            (Some(a), _) => match Affiliation::parse(a) {
                Ok(Some(a)) => AdminRequest::List(a),
                _ => AdminRequest::Bad(format!("no list of affiliation {a:?}: owner, admin, member or outcast")),
            },
            (None, Some(r)) => match Role::parse(r) {
                Ok(role) => AdminRequest::Roles(role),
                Err(e) => AdminRequest::Bad(e.message),
            },
            (None, None) => AdminRequest::Bad("the <item/> names an affiliation".into()),
        };
    }
    if items.len() > MAX_ITEMS {
        return AdminRequest::Bad(format!("at most {MAX_ITEMS} items in one muc#admin request"));
    }
    let mut changes = Vec::new();
    for item in items {
        let change = match (item.attr("affiliation"), item.attr("role"), item.attr("jid"), item.attr("nick")) {
            (Some(a), _, Some(jid), _) => {
                let user = match UserJid::parse(crate::stanza::bare(jid)) {
                    Ok(u) => u,
                    Err(e) => return AdminRequest::Bad(format!("item jid {jid:?}: {}", e.message)),
                };
                match Affiliation::parse(a) {
                    Ok(affiliation) => AdminChange::Affiliation { user, affiliation },
                    Err(e) => return AdminRequest::Bad(e.message),
                }
            }
            (Some(_), _, None, _) => return AdminRequest::Bad("an affiliation change names the user's jid".into()),
            (None, Some("none"), _, Some(nick)) => AdminChange::Kick { nick: nick.to_string() },
            (None, Some("none"), _, None) => return AdminRequest::Bad("a kick names the occupant's nick".into()),
            (None, Some(role), _, Some(nick)) => match Role::parse(role) {
                Ok(role) => AdminChange::Role { nick: nick.to_string(), role },
                Err(e) => return AdminRequest::Bad(e.message),
            },
            (None, Some(_), _, None) => return AdminRequest::Bad("a role change names the occupant's nick".into()),
            (None, None, _, _) => return AdminRequest::Bad("each <item/> sets an affiliation or a role".into()),
        };
        changes.push(change);
    }
    AdminRequest::Change(changes)
}

fn field(var: &str, kind: &str, label: &str, values: &[&str], options: &[&str]) -> Node {
    let mut children: Vec<Node> = values.iter().map(|v| text_el("value", v)).collect();
    for o in options {
        children.push(Node::Element(el("option", &[("label", o)], vec![text_el("value", o)])));
    }
    Node::Element(el("field", &[("var", var), ("type", kind), ("label", label)], children))
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// The configuration form (XEP-0045 §10.2, the muc#roomconfig fields Telex has).
pub fn config_form(r: &RoomRecord) -> Element {
    let c = &r.config;
    let whois = match c.anonymity {
        Anonymity::Non => "anyone",
        Anonymity::Semi => "moderators",
    };
    let (max, history) = (c.max_members.to_string(), c.history_on_join.to_string());
    // XEP-0045's registry has maxusers as a list (the current value among its options).
    let mut sizes: Vec<&str> = vec!["10", "20", "50", "100", "1000", "10000"];
    if !sizes.contains(&max.as_str()) {
        sizes.push(&max);
    }
    let fields = vec![
        Node::Element(el("field", &[("var", "FORM_TYPE"), ("type", "hidden")], vec![text_el("value", ROOM_CONFIG)])),
        field("muc#roomconfig_roomname", "text-single", "Name", &[&c.name], &[]),
        field("muc#roomconfig_roomdesc", "text-single", "Description", &[&c.description], &[]),
        field("muc#roomconfig_persistentroom", "boolean", "Kept when empty", &[flag(c.persistent)], &[]),
        field("muc#roomconfig_publicroom", "boolean", "Listed in the room list", &[flag(c.public)], &[]),
        field("muc#roomconfig_membersonly", "boolean", "Members only", &[flag(c.members_only)], &[]),
        field("muc#roomconfig_moderatedroom", "boolean", "Moderated", &[flag(c.moderated)], &[]),
        field(
            "muc#roomconfig_passwordprotectedroom",
            "boolean",
            "Needs a password",
            &[flag(!c.password.is_empty())],
            &[],
        ),
        field("muc#roomconfig_roomsecret", "text-private", "Password", &[&c.password], &[]),
        field(
            "muc#roomconfig_allowinvites",
            "boolean",
            "Members may invite",
            &[flag(c.invite == InvitePolicy::Members)],
            &[],
        ),
        field("muc#roomconfig_whois", "list-single", "Who sees real addresses", &[whois], &["moderators", "anyone"]),
        field(
            "muc#roomconfig_allowpm",
            "list-single",
            "Private messages",
            &[if c.private_messages { "anyone" } else { "none" }],
            &["anyone", "none"],
        ),
        field("muc#roomconfig_maxusers", "list-single", "Members at most", &[&max], &sizes),
        field("muc#maxhistoryfetch", "text-single", "Messages shown on entering", &[&history], &[]),
    ];
    let title = Node::Element(el("title", &[], vec![Node::Text(format!("Configuration of {}", r.room))]));
    let mut children = vec![title];
    children.extend(fields);
    let form = el("x", &[("xmlns", ns::DATA), ("type", "form")], children);
    el("query", &[("xmlns", MUC_OWNER)], vec![Node::Element(form)])
}

/// `base` with a submitted form's fields applied; unknown fields are ignored (other servers'
/// fields), a known one with a bad value is refused by name.
pub fn apply_form(mut c: RoomConfig, fields: &[(String, Vec<String>)]) -> Result<RoomConfig, String> {
    let mut protected = None;
    let mut secret = None;
    for (var, values) in fields {
        let one = values.first().map(String::as_str).unwrap_or("");
        let boolean = || match one.trim() {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            other => Err(format!("{var}: {other:?} is not a boolean")),
        };
        let number = || one.trim().parse::<u32>().map_err(|_| format!("{var}: {one:?} is not a number"));
        match var.as_str() {
            "muc#roomconfig_roomname" => c.name = one.to_string(),
            "muc#roomconfig_roomdesc" => c.description = one.to_string(),
            "muc#roomconfig_persistentroom" => c.persistent = boolean()?,
            "muc#roomconfig_publicroom" => c.public = boolean()?,
            "muc#roomconfig_membersonly" => c.members_only = boolean()?,
            "muc#roomconfig_moderatedroom" => c.moderated = boolean()?,
            "muc#roomconfig_passwordprotectedroom" => protected = Some(boolean()?),
            "muc#roomconfig_roomsecret" => secret = Some(one.to_string()),
            "muc#roomconfig_allowinvites" => {
                c.invite = if boolean()? { InvitePolicy::Members } else { InvitePolicy::Admins }
            }
            "muc#roomconfig_whois" => {
                c.anonymity = match one.trim() {
                    "anyone" => Anonymity::Non,
                    "moderators" => Anonymity::Semi,
                    other => return Err(format!("{var}: {other:?} is not moderators or anyone")),
                }
            }
            "muc#roomconfig_allowpm" => {
                c.private_messages = match one.trim() {
                    "none" => false,
                    "anyone" | "participants" | "moderators" => true,
                    other => return Err(format!("{var}: {other:?} is not anyone, participants, moderators or none")),
                }
            }
            "muc#roomconfig_maxusers" => c.max_members = number()?,
            "muc#maxhistoryfetch" | "muc#roomconfig_historylength" => c.history_on_join = number()?,
            _ => {}
        }
    }
    match (protected, secret) {
        (Some(false), _) => c.password.clear(),
        (Some(true), None) if c.password.is_empty() => {
            return Err("muc#roomconfig_passwordprotectedroom: set, but no muc#roomconfig_roomsecret".into())
        }
        (Some(true), Some(s)) if s.is_empty() => {
            return Err("muc#roomconfig_roomsecret: empty, but the room is to need a password".into())
        }
        (_, Some(s)) => c.password = s,
        _ => {}
    }
    c.validate().map_err(|e| e.message)?;
    Ok(c)
}

/// A muc#admin list: the users with one affiliation.
pub fn affiliation_list(r: &RoomRecord, which: Affiliation) -> Element {
    let items = r
        .affiliations
        .iter()
        .filter(|(_, a)| **a == which)
        .map(|(u, a)| Node::Element(el("item", &[("affiliation", a.as_str()), ("jid", &u.to_string())], vec![])))
        .collect();
    el("query", &[("xmlns", MUC_ADMIN)], items)
}

/// The occupants with one role, as a moderator (who sees real JIDs) is shown them (§8.5, §9.8).
pub fn role_list(occupants: &[Occupant]) -> Element {
    let items = occupants
        .iter()
        .map(|o| {
            let jid = format!("{}/{}", o.user, o.device);
            let affiliation = o.affiliation.map_or("none", Affiliation::as_str);
            let attrs = [("affiliation", affiliation), ("jid", &jid), ("nick", &o.nick), ("role", o.role.as_str())];
            Node::Element(el("item", &attrs, vec![]))
        })
        .collect();
    el("query", &[("xmlns", MUC_ADMIN)], items)
}

/// A mediated invitation (XEP-0045 §7.8.2) in a message to the room: each invitee's bare JID
/// with the reason given.
pub fn invitations(m: &Element) -> Vec<(String, String)> {
    m.elements()
        .filter(|x| x.name == "x" && x.attr("xmlns") == Some(MUC_USER))
        .flat_map(|x| x.elements().filter(|i| i.name == "invite"))
        .filter_map(|i| {
            let to = crate::stanza::bare(i.attr("to")?).to_string();
            Some((to, i.child("reason").map(Element::text).unwrap_or_default()))
        })
        .collect()
}

/// The invitation as its invitee receives it: a XEP-0249 direct invitation from the inviter,
/// stored and delivered like any chat message (so an offline invitee gets it later).
/// `with_password`: the room's password goes along (the inviter could enter already).
pub fn invitation_extras(r: &RoomRecord, reason: &str, with_password: bool) -> String {
    let room = r.room.to_string();
    let mut attrs = vec![("jid", room.as_str())];
    if !reason.is_empty() {
        attrs.push(("reason", reason));
    }
    if with_password && !r.config.password.is_empty() {
        attrs.push(("password", r.config.password.as_str()));
    }
    crate::xml::xml_of(&el("x", &[&[("xmlns", CONFERENCE)][..], &attrs].concat(), vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_element, xml_of};
    use telex_types::room::RoomJid;

    fn p(xml: &str) -> Element {
        parse_element(xml).unwrap()
    }

    fn record() -> RoomRecord {
        RoomRecord {
            room: RoomJid::parse("team@conference.x").unwrap(),
            config: RoomConfig::default(),
            affiliations: [(UserJid::parse("ann@x").unwrap(), Affiliation::Owner)].into(),
            subject: String::new(),
            created_by: UserJid::parse("ann@x").unwrap(),
            created_at: 0,
            log_start: 1,
            roles: Default::default(),
        }
    }

    #[test]
    fn owner_requests_are_read() {
        let get = p("<iq type='get'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>");
        assert_eq!(request(&get), Some(AdminRequest::ConfigForm));
        let instant = p("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#owner'>\
            <x xmlns='jabber:x:data' type='submit'/></query></iq>");
        assert_eq!(request(&instant), Some(AdminRequest::Configure(vec![])));
        let destroy = p("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#owner'>\
            <destroy><reason>done</reason></destroy></query></iq>");
        assert_eq!(request(&destroy), Some(AdminRequest::Destroy));
        let cancel = p("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#owner'>\
            <x xmlns='jabber:x:data' type='cancel'/></query></iq>");
        assert_eq!(request(&cancel), Some(AdminRequest::CancelConfig));
        let bare = p("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>");
        assert!(matches!(request(&bare), Some(AdminRequest::Bad(_))));
        let other = p("<iq type='get'><query xmlns='jabber:iq:version'/></iq>");
        assert_eq!(request(&other), None);
    }

    #[test]
    fn the_form_round_trips_and_bad_values_are_named() {
        let r = record();
        let form = xml_of(&config_form(&r));
        assert!(form.contains("muc#roomconfig_membersonly") && form.contains("type='form'"), "{form}");
        let set = |var: &str, v: &str| vec![(var.to_string(), vec![v.to_string()])];
        let c = apply_form(r.config.clone(), &set("muc#roomconfig_membersonly", "1")).unwrap();
        assert!(c.members_only);
        let c = apply_form(c, &set("muc#roomconfig_roomsecret", "pw")).unwrap();
        assert_eq!(c.password, "pw");
        let c = apply_form(c, &set("muc#roomconfig_passwordprotectedroom", "0")).unwrap();
        assert!(c.password.is_empty());
        let bad = apply_form(r.config.clone(), &set("muc#roomconfig_moderatedroom", "maybe")).unwrap_err();
        assert!(bad.starts_with("muc#roomconfig_moderatedroom"), "{bad}");
        let zero = apply_form(r.config.clone(), &set("muc#roomconfig_maxusers", "0")).unwrap_err();
        assert!(zero.contains("max_members"), "{zero}");
        let unknown = apply_form(r.config.clone(), &set("x-other#thing", "1")).unwrap();
        assert_eq!(unknown, r.config);
    }

    #[test]
    fn admin_requests_are_read() {
        let list = p("<iq type='get'><query xmlns='http://jabber.org/protocol/muc#admin'>\
            <item affiliation='member'/></query></iq>");
        assert_eq!(request(&list), Some(AdminRequest::List(Affiliation::Member)));
        let set = p("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#admin'>\
            <item affiliation='outcast' jid='bob@x/phone'/><item role='none' nick='Eve'/></query></iq>");
        let Some(AdminRequest::Change(changes)) = request(&set) else { panic!() };
        assert_eq!(
            changes,
            vec![
                AdminChange::Affiliation {
                    user: UserJid::parse("bob@x").unwrap(),
                    affiliation: Some(Affiliation::Outcast)
                },
                AdminChange::Kick { nick: "Eve".into() },
            ]
        );
        let voice = p("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#admin'>\
            <item role='participant' nick='Eve'/></query></iq>");
        let Some(AdminRequest::Change(voice)) = request(&voice) else { panic!() };
        assert_eq!(voice, vec![AdminChange::Role { nick: "Eve".into(), role: Role::Participant }]);
        let voices = p("<iq type='get'><query xmlns='http://jabber.org/protocol/muc#admin'>\
            <item role='participant'/></query></iq>");
        assert_eq!(request(&voices), Some(AdminRequest::Roles(Role::Participant)));
        let king = p("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#admin'>\
            <item role='king' nick='Eve'/></query></iq>");
        assert!(matches!(request(&king), Some(AdminRequest::Bad(why)) if why.contains("unknown role")));
        let nojid = p("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#admin'>\
            <item affiliation='member'/></query></iq>");
        assert!(matches!(request(&nojid), Some(AdminRequest::Bad(_))));
        let r = record();
        assert!(xml_of(&affiliation_list(&r, Affiliation::Owner)).contains("jid='ann@x'"));
    }

    #[test]
    fn invitations_become_direct_invitations() {
        let m = p("<message to='team@conference.x'><x xmlns='http://jabber.org/protocol/muc#user'>\
            <invite to='bob@x/pc'><reason>join us</reason></invite></x></message>");
        assert_eq!(invitations(&m), vec![("bob@x".to_string(), "join us".to_string())]);
        let x = invitation_extras(&record(), "join us", true);
        assert!(x.contains("xmlns='jabber:x:conference'") && x.contains("jid='team@conference.x'"), "{x}");
        let mut locked = record();
        locked.config.password = "s3".into();
        assert!(invitation_extras(&locked, "", true).contains("password='s3'"));
        assert!(!invitation_extras(&locked, "", false).contains("s3"), "an outsider's invitation carries the password");
    }
}
