//! Group chat rooms: their addresses (`room@conference.<tenant>`), configuration, affiliations
//! and the entries of a room's log. A room is sharded like a user (`shard::shard_of_room`) and
//! its log lives in its shard, committed once per message and fanned out to the members.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::presence::DevicePresence;
use crate::{Domain, TelexError, UnixMillis, UserJid};

/// The label in front of a tenant's domain that names its room service.
pub const SERVICE_LABEL: &str = "conference";
const MAX_ROOM: usize = 256;
/// Longest nickname, in bytes.
pub const MAX_NICK: usize = 128;
const MAX_TEXT: usize = 1024;

/// A room: `local@conference.<tenant>`, the local part lowercased and validated like a user's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoomJid {
    local: String,
    tenant: Domain,
}

impl RoomJid {
    /// Parses `room@conference.<tenant>`; any other service domain is refused, naming it.
    pub fn parse(raw: &str) -> Result<RoomJid, TelexError> {
        let Some((local, service)) = raw.split_once('@') else {
            return Err(TelexError::invalid(format!("invalid room {raw:?}: expected room@{SERVICE_LABEL}.<domain>")));
        };
        if service.contains('/') {
            return Err(TelexError::invalid(format!("invalid room {raw:?}: a room address has no nickname part")));
        }
        let tenant = service_tenant(service).ok_or_else(|| {
            TelexError::not_found(format!("{service:?} is not a room service (rooms live on {SERVICE_LABEL}.<domain>)"))
        })?;
        RoomJid::new(local, tenant).map_err(|e| TelexError::invalid(format!("invalid room {raw:?}: {}", e.message)))
    }

    pub fn new(local: &str, tenant: Domain) -> Result<RoomJid, TelexError> {
        Ok(RoomJid { local: crate::jid::local_part(local, "room name", MAX_ROOM)?, tenant })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    /// The tenant the room belongs to (its service domain without the `conference.` label).
    pub fn tenant(&self) -> &Domain {
        &self.tenant
    }

    /// The room service's domain: `conference.<tenant>`.
    pub fn service(&self) -> String {
        service_of(&self.tenant)
    }
}

impl fmt::Display for RoomJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{SERVICE_LABEL}.{}", self.local, self.tenant)
    }
}

/// `conference.<tenant>`.
pub fn service_of(tenant: &Domain) -> String {
    format!("{SERVICE_LABEL}.{tenant}")
}

/// The tenant whose room service `domain` is, if it is one (`conference.acme.example`).
pub fn service_tenant(domain: &str) -> Option<Domain> {
    let rest = domain.strip_prefix(SERVICE_LABEL)?.strip_prefix('.')?;
    Domain::parse(rest).ok()
}

/// A nickname: trimmed, non-empty, bounded, no control characters.
pub fn check_nick(nick: &str) -> Result<String, TelexError> {
    let n = nick.trim();
    if n.is_empty() {
        return Err(TelexError::invalid("empty nickname"));
    }
    if n.len() > MAX_NICK {
        return Err(TelexError::invalid(format!("nickname longer than {MAX_NICK} bytes")));
    }
    if n.chars().any(|c| c.is_control()) {
        return Err(TelexError::invalid("nickname contains a control character"));
    }
    Ok(n.to_string())
}

/// A user's standing in a room (XEP-0045 §5.2), kept across visits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Affiliation {
    Owner,
    Admin,
    Member,
    /// Banned.
    Outcast,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Admin => "admin",
            Affiliation::Member => "member",
            Affiliation::Outcast => "outcast",
        }
    }

    /// The XEP-0045 name (`none` for no affiliation).
    pub fn parse(s: &str) -> Result<Option<Affiliation>, TelexError> {
        Ok(Some(match s {
            "owner" => Affiliation::Owner,
            "admin" => Affiliation::Admin,
            "member" => Affiliation::Member,
            "outcast" => Affiliation::Outcast,
            "none" => return Ok(None),
            _ => {
                return Err(TelexError::invalid(format!(
                    "unknown affiliation {s:?} (owner, admin, member, outcast, none)"
                )))
            }
        }))
    }
}

/// Who may invite others into a members-only room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvitePolicy {
    Members,
    Admins,
}

/// Who sees occupants' real addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anonymity {
    /// Moderators only (semi-anonymous).
    Semi,
    /// Every occupant (non-anonymous).
    Non,
}

/// A room's configuration (what `muc#roomconfig` and `telex room config` change).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    /// Only members (and admins, owners) may enter.
    pub members_only: bool,
    /// Only participants may speak; visitors (the default role of non-members) may not.
    pub moderated: bool,
    /// Needed to enter, when non-empty.
    pub password: String,
    /// Listed in the service's room list (disco#items).
    pub public: bool,
    /// Kept when the last occupant leaves; a room that is not goes away then (its actor
    /// destroys it once no XMPP occupant is left; native members are not occupants).
    pub persistent: bool,
    pub invite: InvitePolicy,
    /// Members (affiliations owner, admin, member) at most.
    pub max_members: u32,
    /// Messages sent to an occupant on entering (XMPP); the client may ask for fewer.
    pub history_on_join: u32,
    pub anonymity: Anonymity,
    /// Occupants may send each other private messages through the room.
    pub private_messages: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            members_only: false,
            moderated: false,
            password: String::new(),
            public: true,
            persistent: true,
            invite: InvitePolicy::Members,
            max_members: 10_000,
            history_on_join: 20,
            anonymity: Anonymity::Semi,
            private_messages: true,
        }
    }
}

impl RoomConfig {
    /// Bounds a configuration, naming the first field out of range.
    pub fn validate(&self) -> Result<(), TelexError> {
        for (field, v) in [("name", &self.name), ("description", &self.description), ("password", &self.password)] {
            if v.len() > MAX_TEXT {
                return Err(TelexError::invalid(format!("room {field} longer than {MAX_TEXT} bytes")));
            }
        }
        if self.max_members == 0 {
            return Err(TelexError::invalid("max_members must be at least 1"));
        }
        if self.history_on_join > 1000 {
            return Err(TelexError::invalid("history_on_join is above 1000"));
        }
        Ok(())
    }
}

/// A room as stored in its shard.
///
/// Format version 3 (see `wire`) added `roles`; older records decode without any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct RoomRecord {
    pub room: RoomJid,
    pub config: RoomConfig,
    pub affiliations: BTreeMap<UserJid, Affiliation>,
    pub subject: String,
    pub created_by: UserJid,
    pub created_at: UnixMillis,
    /// The first position of this room's log: a room created again under the name of a
    /// destroyed one continues after the old log (set when it is created; the old entries
    /// are not shown).
    pub log_start: u64,
    /// Roles a moderator gave users, where they differ from what their affiliation gives
    /// (voice for a visitor, voice taken from a participant, a moderator). XEP-0045 §5.1 lets
    /// roles outlast a visit; here they last until changed, or until the affiliation changes.
    pub roles: BTreeMap<UserJid, Role>,
}

/// The version-2 layout of [`RoomRecord`].
#[derive(Deserialize)]
struct RoomRecordV2 {
    room: RoomJid,
    config: RoomConfig,
    affiliations: BTreeMap<UserJid, Affiliation>,
    subject: String,
    created_by: UserJid,
    created_at: UnixMillis,
    log_start: u64,
}

impl Serialize for RoomRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RoomRecord::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for RoomRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if crate::wire::layout() <= 2 {
            let v2 = RoomRecordV2::deserialize(d)?;
            return Ok(RoomRecord {
                room: v2.room,
                config: v2.config,
                affiliations: v2.affiliations,
                subject: v2.subject,
                created_by: v2.created_by,
                created_at: v2.created_at,
                log_start: v2.log_start,
                roles: BTreeMap::new(),
            });
        }
        RoomRecord::deserialize(d)
    }
}

impl RoomRecord {
    pub fn affiliation(&self, user: &UserJid) -> Option<Affiliation> {
        self.affiliations.get(user).copied()
    }

    /// The role `user` has in the room (when it is in): owners and admins moderate; otherwise
    /// a moderator's grant, or the default of the affiliation (XEP-0045 §5.1.2).
    pub fn role(&self, user: &UserJid) -> Role {
        let affiliation = self.affiliation(user);
        match affiliation {
            Some(Affiliation::Owner | Affiliation::Admin) => Role::Moderator,
            Some(Affiliation::Outcast) => Role::Visitor,
            _ => self.roles.get(user).copied().unwrap_or_else(|| self.default_role(affiliation)),
        }
    }

    /// Applies a change (the one rule for every store): a config must validate, a room keeps
    /// an owner, a new affiliation brings its own role, and a role grant is kept only where it
    /// differs from what the affiliation gives.
    pub fn apply(&mut self, change: RoomChange) -> Result<(), TelexError> {
        match change {
            RoomChange::Config(config) => {
                config.validate()?;
                self.config = config;
            }
            RoomChange::Affiliation { user, affiliation } => {
                let mut next = self.affiliations.clone();
                match affiliation {
                    Some(a) => next.insert(user.clone(), a),
                    None => next.remove(&user),
                };
                if !next.values().any(|a| *a == Affiliation::Owner) {
                    return Err(TelexError::new(
                        crate::ErrorCode::FailedPrecondition,
                        "a room keeps at least one owner",
                    ));
                }
                self.affiliations = next;
                self.roles.remove(&user);
            }
            RoomChange::Role { user, role } => {
                let affiliation = self.affiliation(&user);
                if matches!(affiliation, Some(Affiliation::Owner | Affiliation::Admin | Affiliation::Outcast)) {
                    // Their role follows from the affiliation alone (a ban may have raced the grant).
                    self.roles.remove(&user);
                } else if role == self.default_role(affiliation) {
                    self.roles.remove(&user);
                } else {
                    if !self.roles.contains_key(&user) && self.roles.len() >= self.config.max_members as usize {
                        return Err(TelexError::new(
                            crate::ErrorCode::ResourceExhausted,
                            format!("a room keeps at most {} role grants", self.config.max_members),
                        ));
                    }
                    self.roles.insert(user, role);
                }
            }
        }
        Ok(())
    }

    /// The role an affiliation gets without a moderator's grant.
    pub fn default_role(&self, affiliation: Option<Affiliation>) -> Role {
        match affiliation {
            Some(Affiliation::Owner | Affiliation::Admin) => Role::Moderator,
            Some(Affiliation::Member) => Role::Participant,
            _ if self.config.moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }

    /// Owners, admins and members (outcasts are not members).
    pub fn members(&self) -> impl Iterator<Item = (&UserJid, Affiliation)> {
        self.affiliations.iter().filter(|(_, a)| **a != Affiliation::Outcast).map(|(u, a)| (u, *a))
    }
}

/// An occupant's role for this visit (XEP-0045 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Moderator,
    Participant,
    Visitor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Participant => "participant",
            Role::Visitor => "visitor",
        }
    }

    /// The XEP-0045 name (`none`, taking the occupant out, is not a role one keeps).
    pub fn parse(s: &str) -> Result<Role, TelexError> {
        [Role::Moderator, Role::Participant, Role::Visitor]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| TelexError::invalid(format!("unknown role {s:?} (moderator, participant, visitor)")))
    }
}

/// Someone in a room: one device of a user, under a nickname (several devices of one user may
/// share a nickname).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupant {
    pub nick: String,
    pub user: UserJid,
    pub device: String,
    pub affiliation: Option<Affiliation>,
    pub role: Role,
}

/// What a room tells the devices in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomEvent {
    /// An entry of the room's log, in log order.
    Entry { position: u64, entry: RoomEntry },
    /// An occupant entered or changed its presence; `None`: it left, or with `removed`, the
    /// room took it out (then its own device is told too, and why).
    Occupant { occupant: Occupant, presence: Option<DevicePresence>, removed: Option<Removal> },
    /// A private message from one occupant to the devices of another (XEP-0045 §7.5): only
    /// for the devices listed, not stored in the room's log.
    Private { from: Occupant, to_nick: String, client_id: String, body: String, extras: String },
}

/// Why a room took an occupant out (XEP-0045's status codes 307, 301, 321 and `<destroy/>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Removal {
    /// A moderator kicked it (it may enter again).
    Kicked,
    Banned,
    /// No longer a member of a members-only room.
    NotMember,
    Destroyed,
}

impl Removal {
    pub fn as_str(self) -> &'static str {
        match self {
            Removal::Kicked => "kicked",
            Removal::Banned => "banned",
            Removal::NotMember => "not-member",
            Removal::Destroyed => "destroyed",
        }
    }

    pub fn parse(s: &str) -> Option<Removal> {
        [Removal::Kicked, Removal::Banned, Removal::NotMember, Removal::Destroyed].into_iter().find(|r| r.as_str() == s)
    }
}

/// A change to a room's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomChange {
    Config(RoomConfig),
    /// `None` takes the affiliation away.
    Affiliation {
        user: UserJid,
        affiliation: Option<Affiliation>,
    },
    /// A moderator's grant of a role (the affiliation's own role clears the grant).
    Role {
        user: UserJid,
        role: Role,
    },
}

/// What a room log entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A groupchat message.
    Message,
    /// A new subject (the body).
    Subject,
}

/// One entry of a room's log: a message said in the room, or a subject change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEntry {
    /// Stable across retries: derived from the sender and the client's message id.
    pub server_id: String,
    pub kind: EntryKind,
    pub from: UserJid,
    pub from_device: String,
    /// The sender's nickname in the room when it was said.
    pub nick: String,
    pub client_id: String,
    pub body: String,
    /// Extension elements that travel with the message (serialized XML, opaque here).
    pub extras: String,
    pub sent_at: UnixMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_live_on_the_tenants_conference_service() {
        let r = RoomJid::parse("Team@conference.Acme.example").unwrap();
        assert_eq!(r.to_string(), "team@conference.acme.example");
        assert_eq!(r.tenant().as_str(), "acme.example");
        assert_eq!(r.service(), "conference.acme.example");
        let e = RoomJid::parse("team@chat.acme.example").unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::NotFound, "{e:?}");
        assert!(e.message.contains("not a room service"), "{e:?}");
        for bad in ["team", "@conference.x", "a b@conference.x", "team@conference.x/nick", "team@conference."] {
            assert!(RoomJid::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(service_tenant("conference.localhost"), Some(Domain::parse("localhost").unwrap()));
        assert_eq!(service_tenant("conferencex.localhost"), None);
    }

    #[test]
    fn changes_keep_an_owner_and_role_grants_only_where_they_differ() {
        let ann = UserJid::parse("ann@x").unwrap();
        let bob = UserJid::parse("bob@x").unwrap();
        let mut r = RoomRecord {
            room: RoomJid::parse("team@conference.x").unwrap(),
            config: RoomConfig { moderated: true, ..RoomConfig::default() },
            affiliations: BTreeMap::from([(ann.clone(), Affiliation::Owner)]),
            subject: String::new(),
            created_by: ann.clone(),
            created_at: 0,
            log_start: 1,
            roles: BTreeMap::new(),
        };
        r.apply(RoomChange::Role { user: bob.clone(), role: Role::Visitor }).unwrap();
        assert!(r.roles.is_empty(), "a visitor of a moderated room is one by default");
        r.apply(RoomChange::Role { user: bob.clone(), role: Role::Participant }).unwrap();
        assert_eq!(r.role(&bob), Role::Participant);
        r.apply(RoomChange::Affiliation { user: bob.clone(), affiliation: Some(Affiliation::Member) }).unwrap();
        assert!(r.roles.is_empty(), "a new affiliation brings its own role");
        let e = r.apply(RoomChange::Affiliation { user: ann.clone(), affiliation: None }).unwrap_err();
        assert!(e.message.contains("owner"), "{e:?}");
        assert_eq!(r.affiliation(&ann), Some(Affiliation::Owner), "a refused change changes nothing");
        assert!(r.apply(RoomChange::Config(RoomConfig { max_members: 0, ..RoomConfig::default() })).is_err());
        // A ban outranks a grant that raced it; grants are bounded like members.
        let eve = UserJid::parse("eve@x").unwrap();
        r.apply(RoomChange::Affiliation { user: eve.clone(), affiliation: Some(Affiliation::Outcast) }).unwrap();
        r.apply(RoomChange::Role { user: eve.clone(), role: Role::Moderator }).unwrap();
        assert_eq!((r.role(&eve), r.roles.len()), (Role::Visitor, 0));
        r.config.max_members = 1;
        r.apply(RoomChange::Role { user: UserJid::parse("u1@x").unwrap(), role: Role::Participant }).unwrap();
        let full = r.apply(RoomChange::Role { user: UserJid::parse("u2@x").unwrap(), role: Role::Participant });
        assert!(full.unwrap_err().message.contains("at most 1"));
    }

    #[test]
    fn nicknames_and_configs_are_bounded() {
        assert_eq!(check_nick("  Ann ").unwrap(), "Ann");
        assert!(check_nick("").is_err());
        assert!(check_nick("a\u{7}").is_err());
        assert!(check_nick(&"n".repeat(MAX_NICK + 1)).is_err());
        assert!(RoomConfig::default().validate().is_ok());
        let e = RoomConfig { max_members: 0, ..RoomConfig::default() }.validate().unwrap_err();
        assert!(e.message.contains("max_members"));
        assert_eq!(Affiliation::parse("none").unwrap(), None);
        assert!(Affiliation::parse("king").unwrap_err().message.contains("unknown affiliation"));
    }
}
