//! Who may do what in a room (XEP-0045's rules), as pure functions over the room's record and
//! its occupants: entering, speaking, changing affiliations and the configuration. The room
//! actor asks these before it writes anything, so a refused action stores nothing.

use std::collections::BTreeMap;

pub use telex_types::room::Role;
use telex_types::room::{Affiliation, InvitePolicy, RoomRecord};
use telex_types::{ErrorCode, TelexError, UserJid};

/// Why a room action was refused, each with its XEP-0045 error condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoSuchRoom,
    /// Members-only room, and the user is not a member.
    NotMember,
    Banned,
    WrongPassword,
    NickTaken,
    /// The room has as many members (or occupants) as it may.
    Full,
    /// A visitor of a moderated room.
    NoVoice,
    /// Only occupants may send to the room.
    NotOccupant,
    /// The action needs a higher affiliation.
    NotAllowed(String),
    /// Owners and admins cannot be kicked or banned (XEP-0045 §8.2, §9.1).
    Protected,
    /// The room would be left without an owner.
    LastOwner,
    /// Private messages are turned off in this room.
    NoPrivateMessages,
    /// Too many messages too fast.
    RateLimited,
    Invalid(String),
}

impl Refusal {
    /// The stanza error condition and type (RFC 6120 §8.3, XEP-0045 §7.2).
    pub fn condition(&self) -> (&'static str, &'static str) {
        match self {
            Refusal::NoSuchRoom => ("item-not-found", "cancel"),
            Refusal::NotMember => ("registration-required", "auth"),
            Refusal::Banned => ("forbidden", "auth"),
            Refusal::WrongPassword => ("not-authorized", "auth"),
            Refusal::NickTaken => ("conflict", "cancel"),
            Refusal::Full => ("service-unavailable", "wait"),
            Refusal::NoVoice => ("forbidden", "auth"),
            Refusal::NotOccupant => ("not-acceptable", "cancel"),
            Refusal::NotAllowed(_) => ("forbidden", "auth"),
            Refusal::Protected => ("not-allowed", "cancel"),
            Refusal::LastOwner => ("conflict", "cancel"),
            Refusal::NoPrivateMessages => ("not-allowed", "cancel"),
            Refusal::RateLimited => ("resource-constraint", "wait"),
            Refusal::Invalid(_) => ("bad-request", "modify"),
        }
    }

    /// The same refusal as a Telex error, for the native API.
    pub fn to_error(&self) -> TelexError {
        let code = match self {
            Refusal::NoSuchRoom => ErrorCode::NotFound,
            Refusal::NickTaken => ErrorCode::AlreadyExists,
            Refusal::Full | Refusal::RateLimited => ErrorCode::ResourceExhausted,
            // Not Unauthenticated: the caller's login is fine, only the room refuses.
            Refusal::WrongPassword => ErrorCode::PermissionDenied,
            Refusal::LastOwner => ErrorCode::FailedPrecondition,
            Refusal::Invalid(_) => ErrorCode::InvalidArgument,
            _ => ErrorCode::PermissionDenied,
        };
        TelexError::new(code, self.to_string())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoSuchRoom => f.write_str("no such room"),
            Refusal::NotMember => f.write_str("this room is members-only and you are not a member"),
            Refusal::Banned => f.write_str("you are banned from this room"),
            Refusal::WrongPassword => f.write_str("this room needs a password, and that is not it"),
            Refusal::NickTaken => f.write_str("that nickname is in use by another occupant"),
            Refusal::Full => f.write_str("the room is full"),
            Refusal::NoVoice => f.write_str("this room is moderated and visitors may not speak"),
            Refusal::NotOccupant => f.write_str("only occupants may send messages to the room; join it first"),
            Refusal::NotAllowed(what) => write!(f, "not allowed: {what}"),
            Refusal::Protected => f.write_str(
                "owners and admins cannot be kicked, banned or silenced, nor can a moderator silence its peers",
            ),
            Refusal::LastOwner => f.write_str("a room keeps at least one owner"),
            Refusal::NoPrivateMessages => f.write_str("private messages are turned off in this room"),
            Refusal::RateLimited => f.write_str("too many room messages; slow down"),
            Refusal::Invalid(why) => f.write_str(why),
        }
    }
}

/// May `user` enter with `nick` (and `password`)? `nicks` are the occupants' nicknames, each
/// with its user. The role it gets.
pub fn may_enter(
    record: &RoomRecord,
    user: &UserJid,
    nick: &str,
    password: &str,
    nicks: &BTreeMap<String, UserJid>,
    occupants: usize,
) -> Result<Role, Refusal> {
    let affiliation = record.affiliation(user);
    if affiliation == Some(Affiliation::Outcast) {
        return Err(Refusal::Banned);
    }
    let privileged = matches!(affiliation, Some(Affiliation::Owner | Affiliation::Admin));
    if record.config.members_only && affiliation.is_none() {
        return Err(Refusal::NotMember);
    }
    if !record.config.password.is_empty() && password != record.config.password && !privileged {
        return Err(Refusal::WrongPassword);
    }
    if nicks.get(nick).is_some_and(|holder| holder != user) {
        return Err(Refusal::NickTaken);
    }
    if occupants >= record.config.max_members as usize && !privileged && !nicks.values().any(|u| u == user) {
        return Err(Refusal::Full);
    }
    Ok(record.role(user))
}

/// May an occupant with `role` say something in the room?
pub fn may_speak(role: Option<Role>) -> Result<(), Refusal> {
    match role {
        None => Err(Refusal::NotOccupant),
        Some(Role::Visitor) => Err(Refusal::NoVoice),
        Some(_) => Ok(()),
    }
}

/// May `actor` (with `by`) give `user` (now `current`) the affiliation `to`? XEP-0045 §9, §10:
/// owners change anything; admins manage members and outcasts below admin; nobody takes the
/// last owner's ownership away.
pub fn may_affiliate(
    record: &RoomRecord,
    by: Option<Affiliation>,
    user: &UserJid,
    to: Option<Affiliation>,
) -> Result<(), Refusal> {
    let current = record.affiliation(user);
    let low = |a: Option<Affiliation>| matches!(a, None | Some(Affiliation::Member | Affiliation::Outcast));
    if by == Some(Affiliation::Admin) && matches!(current, Some(Affiliation::Owner | Affiliation::Admin)) {
        return Err(Refusal::Protected);
    }
    match by {
        Some(Affiliation::Owner) => {}
        Some(Affiliation::Admin) if low(current) && low(to) => {}
        _ => {
            return Err(Refusal::NotAllowed(
                "changing affiliations needs an owner (or an admin, for members and bans)".into(),
            ))
        }
    }
    let owners = record.affiliations.values().filter(|a| **a == Affiliation::Owner).count();
    if current == Some(Affiliation::Owner) && to != Some(Affiliation::Owner) && owners <= 1 {
        return Err(Refusal::LastOwner);
    }
    let members = record.members().count();
    if current.is_none_or(|a| a == Affiliation::Outcast)
        && matches!(to, Some(Affiliation::Owner | Affiliation::Admin | Affiliation::Member))
        && members >= record.config.max_members as usize
    {
        return Err(Refusal::Full);
    }
    Ok(())
}

/// May `by` invite others? Open rooms: any occupant; members-only: per the room's policy.
pub fn may_invite(record: &RoomRecord, by: Option<Affiliation>) -> Result<(), Refusal> {
    if by == Some(Affiliation::Outcast) {
        return Err(Refusal::Banned);
    }
    let admin = matches!(by, Some(Affiliation::Owner | Affiliation::Admin));
    match (record.config.members_only, record.config.invite) {
        (false, _) => Ok(()),
        (true, _) if admin => Ok(()),
        (true, InvitePolicy::Members) if by.is_some() => Ok(()),
        _ => Err(Refusal::NotAllowed("only admins may invite to this room".into())),
    }
}

/// Owners only: configuration and destruction.
pub fn may_own(by: Option<Affiliation>, what: &str) -> Result<(), Refusal> {
    if by == Some(Affiliation::Owner) {
        Ok(())
    } else {
        Err(Refusal::NotAllowed(format!("{what} needs the room's owner")))
    }
}

/// May `by` give `user` the role `to` (XEP-0045 §8.3–8.5, §9.6–9.7)? Moderators give and take
/// voice; only owners and admins make or unmake moderators; owners and admins always moderate,
/// and a moderator cannot silence someone affiliated as high as itself.
pub fn may_set_role(record: &RoomRecord, by: &UserJid, user: &UserJid, to: Role) -> Result<(), Refusal> {
    if record.role(by) != Role::Moderator {
        return Err(Refusal::NotAllowed("changing roles needs a moderator".into()));
    }
    let (by_a, user_a) = (record.affiliation(by), record.affiliation(user));
    if user_a == Some(Affiliation::Outcast) {
        return Err(Refusal::NotAllowed(format!("{user} is banned from this room")));
    }
    if matches!(user_a, Some(Affiliation::Owner | Affiliation::Admin)) {
        return Err(Refusal::Protected);
    }
    let high = matches!(by_a, Some(Affiliation::Owner | Affiliation::Admin));
    if (to == Role::Moderator || record.role(user) == Role::Moderator) && !high {
        return Err(Refusal::NotAllowed("granting or revoking moderation needs an owner or admin".into()));
    }
    let rank = |a: Option<Affiliation>| match a {
        Some(Affiliation::Owner) => 3,
        Some(Affiliation::Admin) => 2,
        Some(Affiliation::Member) => 1,
        _ => 0,
    };
    if to == Role::Visitor && !high && rank(user_a) >= rank(by_a) {
        return Err(Refusal::Protected);
    }
    Ok(())
}

/// May a moderator with `by` kick an occupant with affiliation `target`? Not someone at or
/// above admin (XEP-0045 §8.2).
pub fn may_kick(by_role: Option<Role>, target: Option<Affiliation>) -> Result<(), Refusal> {
    if by_role != Some(Role::Moderator) {
        return Err(Refusal::NotAllowed("kicking needs a moderator".into()));
    }
    if matches!(target, Some(Affiliation::Owner | Affiliation::Admin)) {
        return Err(Refusal::Protected);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use telex_types::room::{RoomConfig, RoomJid};
    use telex_types::Domain;

    fn jid(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }

    fn room(config: RoomConfig) -> RoomRecord {
        let owner = jid("ann@x");
        RoomRecord {
            room: RoomJid::new("team", Domain::parse("x").unwrap()).unwrap(),
            config,
            affiliations: BTreeMap::from([(owner.clone(), Affiliation::Owner), (jid("bob@x"), Affiliation::Member)]),
            subject: String::new(),
            created_by: owner,
            created_at: 0,
            log_start: 1,
            roles: Default::default(),
        }
    }

    #[test]
    fn entering_follows_the_rooms_rules() {
        let none = BTreeMap::new();
        let open = room(RoomConfig::default());
        assert_eq!(may_enter(&open, &jid("eve@x"), "eve", "", &none, 0), Ok(Role::Participant));
        assert_eq!(may_enter(&open, &jid("ann@x"), "ann", "", &none, 0), Ok(Role::Moderator));
        let closed = room(RoomConfig { members_only: true, ..RoomConfig::default() });
        assert_eq!(may_enter(&closed, &jid("eve@x"), "eve", "", &none, 0), Err(Refusal::NotMember));
        assert_eq!(may_enter(&closed, &jid("bob@x"), "bob", "", &none, 0), Ok(Role::Participant));
        let mut banned = room(RoomConfig::default());
        banned.affiliations.insert(jid("eve@x"), Affiliation::Outcast);
        assert_eq!(may_enter(&banned, &jid("eve@x"), "eve", "", &none, 0), Err(Refusal::Banned));
        let locked = room(RoomConfig { password: "s3".into(), ..RoomConfig::default() });
        assert_eq!(may_enter(&locked, &jid("eve@x"), "eve", "no", &none, 0), Err(Refusal::WrongPassword));
        assert!(may_enter(&locked, &jid("eve@x"), "eve", "s3", &none, 0).is_ok());
        let taken = BTreeMap::from([("bob".to_string(), jid("bob@x"))]);
        assert_eq!(may_enter(&open, &jid("eve@x"), "bob", "", &taken, 1), Err(Refusal::NickTaken));
        // The same user on another device may share the nickname.
        assert!(may_enter(&open, &jid("bob@x"), "bob", "", &taken, 1).is_ok());
        let moderated = room(RoomConfig { moderated: true, ..RoomConfig::default() });
        assert_eq!(may_enter(&moderated, &jid("eve@x"), "eve", "", &none, 0), Ok(Role::Visitor));
        assert_eq!(may_speak(Some(Role::Visitor)), Err(Refusal::NoVoice));
        assert_eq!(may_speak(None), Err(Refusal::NotOccupant));
        let small = room(RoomConfig { max_members: 1, ..RoomConfig::default() });
        assert_eq!(may_enter(&small, &jid("eve@x"), "eve", "", &taken, 1), Err(Refusal::Full));
    }

    #[test]
    fn affiliations_change_only_from_above_and_keep_an_owner() {
        let r = room(RoomConfig::default());
        let eve = jid("eve@x");
        assert!(may_affiliate(&r, Some(Affiliation::Owner), &eve, Some(Affiliation::Admin)).is_ok());
        assert!(may_affiliate(&r, Some(Affiliation::Admin), &eve, Some(Affiliation::Outcast)).is_ok());
        assert!(may_affiliate(&r, Some(Affiliation::Admin), &eve, Some(Affiliation::Admin)).is_err());
        assert!(may_affiliate(&r, Some(Affiliation::Member), &eve, Some(Affiliation::Member)).is_err());
        let last = may_affiliate(&r, Some(Affiliation::Owner), &jid("ann@x"), None).unwrap_err();
        assert_eq!(last, Refusal::LastOwner);
        assert_eq!(last.condition(), ("conflict", "cancel"));
        let full = room(RoomConfig { max_members: 2, ..RoomConfig::default() });
        assert_eq!(may_affiliate(&full, Some(Affiliation::Owner), &eve, Some(Affiliation::Member)), Err(Refusal::Full));
        // Banning someone never needs room.
        assert!(may_affiliate(&full, Some(Affiliation::Owner), &eve, Some(Affiliation::Outcast)).is_ok());
    }

    #[test]
    fn roles_change_from_moderators_and_owners_keep_theirs() {
        let mut r = room(RoomConfig { moderated: true, ..RoomConfig::default() });
        let (ann, bob, eve) = (jid("ann@x"), jid("bob@x"), jid("eve@x"));
        assert_eq!(r.role(&eve), Role::Visitor);
        assert!(may_set_role(&r, &ann, &eve, Role::Participant).is_ok());
        r.roles.insert(eve.clone(), Role::Participant);
        assert_eq!(r.role(&eve), Role::Participant);
        // A member is no moderator; a moderator who is only a member cannot silence members.
        assert!(may_set_role(&r, &bob, &eve, Role::Visitor).is_err());
        r.roles.insert(bob.clone(), Role::Moderator);
        assert!(may_set_role(&r, &bob, &eve, Role::Visitor).is_ok());
        r.affiliations.insert(jid("cat@x"), Affiliation::Member);
        assert_eq!(may_set_role(&r, &bob, &jid("cat@x"), Role::Visitor), Err(Refusal::Protected));
        assert!(may_set_role(&r, &bob, &eve, Role::Moderator).is_err(), "only owners and admins make moderators");
        assert_eq!(may_set_role(&r, &ann, &ann, Role::Visitor), Err(Refusal::Protected));
        // Whatever was granted, an owner moderates.
        r.roles.insert(ann.clone(), Role::Visitor);
        assert_eq!(r.role(&ann), Role::Moderator);
    }

    #[test]
    fn invitations_kicks_and_ownership() {
        let open = room(RoomConfig::default());
        assert!(may_invite(&open, None).is_ok());
        let closed = room(RoomConfig { members_only: true, invite: InvitePolicy::Admins, ..RoomConfig::default() });
        assert!(may_invite(&closed, Some(Affiliation::Member)).is_err());
        assert!(may_invite(&closed, Some(Affiliation::Owner)).is_ok());
        assert!(may_kick(Some(Role::Moderator), None).is_ok());
        assert!(may_kick(Some(Role::Moderator), Some(Affiliation::Admin)).is_err());
        assert!(may_kick(Some(Role::Participant), None).is_err());
        assert!(may_own(Some(Affiliation::Admin), "destroying the room").is_err());
        for r in [Refusal::NotMember, Refusal::Banned, Refusal::NickTaken, Refusal::NoVoice, Refusal::WrongPassword] {
            assert!(!r.condition().0.is_empty());
            assert!(!r.to_error().message.is_empty());
        }
        assert_eq!(Refusal::NotMember.condition(), ("registration-required", "auth"));
    }
}
