//! Room operations for native clients: create, list, say, history, affiliations, configure,
//! destroy. Each asks `muc`'s rules against the room's stored record, then writes through the
//! `RoomStore`; a refused action writes nothing. A room is seen only from its own tenant (to
//! anyone else it does not exist).
//!
//! Native members are always "in" their rooms (their devices follow them); XMPP occupants,
//! nicknames and live fan-out come with the room actor.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use telex_policy::rules::PolicyAction;
use telex_types::records::server_id;
use telex_types::room::{Affiliation, EntryKind, RoomChange, RoomConfig, RoomEntry, RoomJid, RoomRecord};
use telex_types::{Domain, TelexError, UserJid};

use crate::muc::{self, Refusal, Role};
use crate::rate::TokenBucket;
use crate::RoomStore;

/// Rooms a new session catches up on (a user in more gets the rest through history).
const MAX_CATCH_UP_ROOMS: usize = 256;
/// Bytes of room entries a new session catches up on, over all its rooms.
const CATCH_UP_BYTES: usize = 4 << 20;

/// Longest room message body, in bytes.
pub const MAX_ROOM_BODY: usize = 64 * 1024;
/// Most log entries one history call returns.
pub const MAX_HISTORY: usize = 1000;

/// What a `say` stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    pub server_id: String,
    pub position: u64,
    pub duplicate: bool,
}

/// Something said in a room.
#[derive(Clone, Copy, Debug, Default)]
pub struct Say<'a> {
    /// The device's id for it: a retry with the same id stores nothing twice.
    pub client_id: &'a str,
    pub body: &'a str,
    /// A new subject instead of a message.
    pub subject: bool,
    /// The sender's nickname in the room (XMPP occupants); empty: the user's local part.
    pub nick: &'a str,
    /// Extension elements that travel with it.
    pub extras: &'a str,
    /// The sender is an occupant that entered the room (giving its password, if it has one).
    pub entered: bool,
}

/// Bounds on what the users of a tenant do with rooms.
#[derive(Clone, Debug)]
pub struct RoomLimits {
    /// Messages one member may say in one room per second (on this node), and in a burst.
    pub messages_per_second: f64,
    pub burst: f64,
    pub rooms_per_tenant: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits { messages_per_second: 20.0, burst: 40.0, rooms_per_tenant: 10_000 }
    }
}

/// Token buckets kept per (room, member) before the least recently used are dropped.
const MAX_BUCKETS: usize = 100_000;

pub struct Rooms {
    store: Arc<dyn RoomStore>,
    limits: RoomLimits,
    buckets: DashMap<(RoomJid, UserJid), (TokenBucket, Instant)>,
    /// The tenants' policies: who may create, join and invite (barriers hold in rooms too).
    policies: Arc<crate::policies::PolicyCache>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Rooms {
    pub fn new(store: Arc<dyn RoomStore>, limits: RoomLimits, policies: Arc<crate::policies::PolicyCache>) -> Self {
        Rooms { store, limits, buckets: DashMap::new(), policies }
    }

    /// Whether the tenant's policy lets `user` be in `room` with the room's members and
    /// `others` (its occupants): a rule on joining, or a barrier between `user` and any of
    /// them, refuses it.
    pub(crate) fn policy_allows_joining<'a>(
        &self,
        user: &UserJid,
        record: &'a RoomRecord,
        others: impl IntoIterator<Item = &'a UserJid>,
    ) -> Result<(), TelexError> {
        let members = record.affiliations.iter().filter(|(_, a)| **a != Affiliation::Outcast).map(|(u, _)| u);
        for other in members.chain(others).filter(|o| *o != user) {
            if let Some(refusal) = self.policies.check(user, PolicyAction::JoinRoom, other) {
                return Err(refusal.to_error());
            }
        }
        match self.policies.check(user, PolicyAction::JoinRoom, user) {
            Some(refusal) => Err(refusal.to_error()),
            None => Ok(()),
        }
    }

    /// Takes a token of `by`'s bucket for `room`, or says when to retry.
    pub(crate) fn rate(&self, by: &UserJid, room: &RoomJid) -> Result<(), TelexError> {
        let now = Instant::now();
        if self.buckets.len() >= MAX_BUCKETS {
            self.buckets.retain(|_, (_, used)| now.duration_since(*used) < std::time::Duration::from_secs(60));
            if self.buckets.len() >= MAX_BUCKETS {
                // All in use within the minute: start afresh rather than grow without bound.
                self.buckets.clear();
            }
        }
        let fresh = || (TokenBucket::new(self.limits.messages_per_second, self.limits.burst, now), now);
        let mut entry = self.buckets.entry((room.clone(), by.clone())).or_insert_with(fresh);
        entry.1 = now;
        entry.0.take(now).map_err(|wait| {
            let mut e = Refusal::RateLimited.to_error();
            e.message = format!("{} (retry in {} ms)", e.message, wait.as_millis().max(1));
            e
        })
    }

    /// The room's record, as `by` may see it: another tenant's room, or a hidden room `by` has
    /// no affiliation with, does not exist for them.
    async fn visible(&self, by: &UserJid, room: &RoomJid) -> Result<RoomRecord, TelexError> {
        let missing = || Refusal::NoSuchRoom.to_error();
        if room.tenant() != by.domain() {
            return Err(missing());
        }
        let record = self.store.record(room).await?.ok_or_else(missing)?;
        let known = record.affiliation(by).is_some_and(|a| a != Affiliation::Outcast);
        if !record.config.public && !known {
            return Err(missing());
        }
        Ok(record)
    }

    pub async fn create(&self, by: &UserJid, room: RoomJid, config: RoomConfig) -> Result<RoomRecord, TelexError> {
        if room.tenant() != by.domain() {
            let msg = format!("rooms of {} are created by its users; you are {by}", room.tenant());
            return Err(Refusal::NotAllowed(msg).to_error());
        }
        config.validate()?;
        if let Some(refusal) = self.policies.check(by, PolicyAction::CreateRoom, by) {
            return Err(refusal.to_error());
        }
        let count = self.store.rooms(room.tenant()).await?.len();
        if count >= self.limits.rooms_per_tenant {
            let msg = format!("{} has {count} rooms, as many as it may have", room.tenant());
            return Err(TelexError::new(telex_types::ErrorCode::ResourceExhausted, msg));
        }
        let record = RoomRecord {
            room: room.clone(),
            config,
            affiliations: [(by.clone(), Affiliation::Owner)].into_iter().collect(),
            subject: String::new(),
            created_by: by.clone(),
            created_at: now_ms(),
            log_start: 0, // set when the creation applies
            roles: Default::default(),
        };
        self.store.create(record).await?;
        self.store.set_membership(by.clone(), room.clone(), true).await?;
        self.store.record(&room).await?.ok_or_else(|| Refusal::NoSuchRoom.to_error())
    }

    /// The rooms of `by`'s tenant it may see, in name order.
    pub async fn list(&self, by: &UserJid) -> Result<Vec<RoomRecord>, TelexError> {
        let all = self.store.rooms(by.domain()).await?;
        let visible = |r: &RoomRecord| {
            let a = r.affiliation(by);
            a != Some(Affiliation::Outcast) && (r.config.public || a.is_some())
        };
        Ok(all.into_iter().filter(visible).collect())
    }

    pub async fn get(&self, by: &UserJid, room: &RoomJid) -> Result<RoomRecord, TelexError> {
        self.visible(by, room).await
    }

    /// A native member's role: as if it had entered (members-only rooms need a membership, a
    /// ban keeps it out).
    /// A password-protected room admits native users only with an affiliation (they have no
    /// join to give the password with).
    fn role(record: &RoomRecord, by: &UserJid) -> Result<Role, Refusal> {
        let a = record.affiliation(by);
        match a {
            Some(Affiliation::Outcast) => Err(Refusal::Banned),
            None if record.config.members_only => Err(Refusal::NotMember),
            None if !record.config.password.is_empty() => Err(Refusal::WrongPassword),
            _ => Ok(record.role(by)),
        }
    }

    pub async fn say(&self, by: &UserJid, device: &str, room: &RoomJid, say: Say<'_>) -> Result<Said, TelexError> {
        let Say { client_id, body, subject, nick, extras, entered } = say;
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(TelexError::invalid("client_id must be 1 to 128 bytes"));
        }
        if body.len() + extras.len() > MAX_ROOM_BODY {
            return Err(TelexError::invalid(format!("message body longer than {MAX_ROOM_BODY} bytes")));
        }
        if body.is_empty() && !subject {
            return Err(TelexError::invalid("empty message body"));
        }
        let record = self.visible(by, room).await?;
        let role = match Self::role(&record, by) {
            // An occupant gave the password when it entered.
            Err(Refusal::WrongPassword) if entered => record.role(by),
            other => other.map_err(|r| r.to_error())?,
        };
        muc::may_speak(Some(role)).map_err(|r| r.to_error())?;
        self.rate(by, room)?;
        if subject && role != Role::Moderator {
            return Err(Refusal::NotAllowed("changing the subject needs a moderator".into()).to_error());
        }
        let entry = RoomEntry {
            server_id: server_id(by, client_id),
            kind: if subject { EntryKind::Subject } else { EntryKind::Message },
            from: by.clone(),
            from_device: device.to_string(),
            nick: if nick.is_empty() { by.local().to_string() } else { nick.to_string() },
            client_id: client_id.to_string(),
            body: body.to_string(),
            extras: extras.to_string(),
            sent_at: now_ms(),
        };
        let server_id = entry.server_id.clone();
        let (position, duplicate) = self.store.append(room.clone(), entry).await?;
        Ok(Said { server_id, position, duplicate })
    }

    /// Up to `limit` entries after `after`, and the log's head. Members-only rooms show their
    /// log to members only.
    pub async fn history(
        &self,
        by: &UserJid,
        room: &RoomJid,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, RoomEntry)>, u64), TelexError> {
        let record = self.visible(by, room).await?;
        Self::role(&record, by).map_err(|r| r.to_error())?;
        let head = self.store.head(room).await?;
        let limit = if limit == 0 { 100 } else { limit.min(MAX_HISTORY) };
        let Some(from) = after.checked_add(1) else { return Ok((Vec::new(), head)) };
        let from = from.max(record.log_start);
        Ok((self.store.range(room, from, head, limit).await?, head))
    }

    /// Where the entry with `server_id` is in the log, for those who may read it.
    pub async fn position(&self, by: &UserJid, room: &RoomJid, server_id: &str) -> Result<Option<u64>, TelexError> {
        let record = self.visible(by, room).await?;
        Self::role(&record, by).map_err(|r| r.to_error())?;
        self.store.position(room, server_id).await
    }

    /// `by`'s `device` has read the room up to `position` (a member's room cursor; it only
    /// moves forward, and not past the room's head).
    pub async fn mark_read(&self, by: &UserJid, device: &str, room: &RoomJid, position: u64) -> Result<(), TelexError> {
        let record = self.visible(by, room).await?;
        if record.affiliation(by).is_none_or(|a| a == Affiliation::Outcast) {
            return Err(Refusal::NotMember.to_error());
        }
        let head = self.store.head(room).await?;
        self.store.set_cursor(room.clone(), by.clone(), device.to_string(), position.min(head)).await
    }

    /// What `device` missed in `by`'s rooms since its cursors: per room, the entries after the
    /// cursor (the newest `per_room` if more), `CATCH_UP_BYTES` in all at most (newest kept).
    /// Rooms that are gone or refuse are skipped.
    pub async fn unread(&self, by: &UserJid, device: &str, per_room: usize) -> Vec<(RoomJid, Vec<(u64, RoomEntry)>)> {
        let rooms = match self.store.memberships(by).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(user = %by, error = %e, "could not read the user's rooms for catch-up");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut budget = CATCH_UP_BYTES;
        for room in rooms.into_iter().take(MAX_CATCH_UP_ROOMS) {
            if budget == 0 {
                break;
            }
            let Ok(cursor) = self.store.cursor(&room, by, device).await else { continue };
            let Ok((mut page, head)) = self.history(by, &room, cursor, per_room).await else { continue };
            if head.saturating_sub(cursor) > per_room as u64 {
                match self.history(by, &room, head - per_room as u64, per_room).await {
                    Ok((newest, _)) => page = newest,
                    Err(_) => continue,
                }
            }
            // The newest entries that fit what is left of the budget.
            let mut keep = page.len();
            while keep > 0 {
                let size = page[keep - 1].1.body.len() + page[keep - 1].1.extras.len() + 256;
                if size > budget {
                    break;
                }
                budget -= size;
                keep -= 1;
            }
            if keep == page.len() {
                budget = 0;
            }
            let page = page.split_off(keep);
            if !page.is_empty() {
                out.push((room, page));
            }
        }
        out
    }

    pub async fn set_affiliation(
        &self,
        by: &UserJid,
        room: &RoomJid,
        user: UserJid,
        affiliation: Option<Affiliation>,
    ) -> Result<RoomRecord, TelexError> {
        let record = self.visible(by, room).await?;
        let joins = Self::makes_member(&record, &user, affiliation);
        if let Some(refusal) = self.policies.check(by, PolicyAction::Invite, &user).filter(|_| joins) {
            return Err(refusal.to_error());
        }
        self.affiliate(record.affiliation(by), record, user, affiliation).await
    }

    /// Whether `affiliation` makes `user` a member of the room it is not yet.
    fn makes_member(record: &RoomRecord, user: &UserJid, affiliation: Option<Affiliation>) -> bool {
        let member =
            |a: Option<Affiliation>| matches!(a, Some(Affiliation::Owner | Affiliation::Admin | Affiliation::Member));
        member(affiliation) && !member(record.affiliation(user))
    }

    /// A moderator (`by`) gives `user` a role in the room: voice to a visitor, voice taken
    /// away, moderation (from owners and admins). It lasts until changed, or until the user's
    /// affiliation changes.
    pub async fn set_role(
        &self,
        by: &UserJid,
        room: &RoomJid,
        user: UserJid,
        role: Role,
    ) -> Result<RoomRecord, TelexError> {
        let record = self.visible(by, room).await?;
        if user.domain() != room.tenant() {
            return Err(TelexError::invalid(format!("{user} is not a user of {}", room.tenant())));
        }
        muc::may_set_role(&record, by, &user, role).map_err(|r| r.to_error())?;
        self.store.change(room.clone(), RoomChange::Role { user, role }).await?;
        self.store.record(room).await?.ok_or_else(|| Refusal::NoSuchRoom.to_error())
    }

    /// Sets `user`'s affiliation, if one affiliated `by` may (XEP-0045 §9, §10).
    async fn affiliate(
        &self,
        by: Option<Affiliation>,
        record: RoomRecord,
        user: UserJid,
        affiliation: Option<Affiliation>,
    ) -> Result<RoomRecord, TelexError> {
        let room = &record.room;
        if user.domain() != room.tenant() {
            return Err(TelexError::invalid(format!("{user} is not a user of {}", room.tenant())));
        }
        muc::may_affiliate(&record, by, &user, affiliation).map_err(|r| r.to_error())?;
        if Self::makes_member(&record, &user, affiliation) {
            // Barriers hold for members made by an owner or an operator too.
            self.policy_allows_joining(&user, &record, [])?;
        }
        let change = RoomChange::Affiliation { user: user.clone(), affiliation };
        self.store.change(room.clone(), change).await?;
        let member = matches!(affiliation, Some(Affiliation::Owner | Affiliation::Admin | Affiliation::Member));
        self.store.set_membership(user, room.clone(), member).await?;
        self.store.record(room).await?.ok_or_else(|| Refusal::NoSuchRoom.to_error())
    }

    /// `by` invites `invitee`: in a members-only room (when `by` may invite, per the room's
    /// policy) that makes it a member; an open room only needs it told.
    pub async fn invite(&self, by: &UserJid, room: &RoomJid, invitee: &UserJid) -> Result<RoomRecord, TelexError> {
        let record = self.visible(by, room).await?;
        if invitee.domain() != room.tenant() {
            return Err(TelexError::invalid(format!("{invitee} is not a user of {}", room.tenant())));
        }
        muc::may_invite(&record, record.affiliation(by)).map_err(|r| r.to_error())?;
        if let Some(refusal) = self.policies.check(by, PolicyAction::Invite, invitee) {
            return Err(refusal.to_error());
        }
        self.policy_allows_joining(invitee, &record, [])?;
        match record.affiliation(invitee) {
            Some(Affiliation::Outcast) => {
                Err(Refusal::NotAllowed(format!("{invitee} is banned from this room")).to_error())
            }
            None if record.config.members_only => {
                if record.members().count() >= record.config.max_members as usize {
                    return Err(Refusal::Full.to_error());
                }
                let change = RoomChange::Affiliation { user: invitee.clone(), affiliation: Some(Affiliation::Member) };
                self.store.change(room.clone(), change).await?;
                self.store.set_membership(invitee.clone(), room.clone(), true).await?;
                self.store.record(room).await?.ok_or_else(|| Refusal::NoSuchRoom.to_error())
            }
            _ => Ok(record),
        }
    }

    /// Makes `by` a member of an open room (members-only rooms need an invitation; a member
    /// stays what it is).
    pub async fn join(&self, by: &UserJid, room: &RoomJid) -> Result<RoomRecord, TelexError> {
        let record = self.visible(by, room).await?;
        match record.affiliation(by) {
            Some(Affiliation::Outcast) => return Err(Refusal::Banned.to_error()),
            Some(_) => return Ok(record),
            None if record.config.members_only => return Err(Refusal::NotMember.to_error()),
            None if !record.config.password.is_empty() => return Err(Refusal::WrongPassword.to_error()),
            None => {}
        }
        self.policy_allows_joining(by, &record, [])?;
        if record.members().count() >= record.config.max_members as usize {
            return Err(Refusal::Full.to_error());
        }
        let change = RoomChange::Affiliation { user: by.clone(), affiliation: Some(Affiliation::Member) };
        self.store.change(room.clone(), change).await?;
        self.store.set_membership(by.clone(), room.clone(), true).await?;
        self.store.record(room).await?.ok_or_else(|| Refusal::NoSuchRoom.to_error())
    }

    /// Gives up `by`'s affiliation (an outcast stays banned; the last owner stays).
    pub async fn leave(&self, by: &UserJid, room: &RoomJid) -> Result<(), TelexError> {
        let record = self.visible(by, room).await?;
        match record.affiliation(by) {
            None | Some(Affiliation::Outcast) => return Ok(()),
            Some(Affiliation::Owner) if record.members().filter(|(_, a)| *a == Affiliation::Owner).count() == 1 => {
                return Err(Refusal::LastOwner.to_error())
            }
            Some(_) => {}
        }
        self.store.change(room.clone(), RoomChange::Affiliation { user: by.clone(), affiliation: None }).await?;
        self.store.set_membership(by.clone(), room.clone(), false).await
    }

    pub async fn configure(&self, by: &UserJid, room: &RoomJid, config: RoomConfig) -> Result<RoomRecord, TelexError> {
        let record = self.visible(by, room).await?;
        muc::may_own(record.affiliation(by), "configuring the room").map_err(|r| r.to_error())?;
        config.validate()?;
        if (record.members().count()) > config.max_members as usize {
            let msg = format!(
                "the room has {} members, more than max_members {}",
                record.members().count(),
                config.max_members
            );
            return Err(TelexError::invalid(msg));
        }
        self.store.change(room.clone(), RoomChange::Config(config)).await?;
        self.get(by, room).await
    }

    pub async fn destroy(&self, by: &UserJid, room: &RoomJid) -> Result<(), TelexError> {
        let record = self.visible(by, room).await?;
        muc::may_own(record.affiliation(by), "destroying the room").map_err(|r| r.to_error())?;
        self.remove(record).await
    }

    /// Operators (the admin API): every room of a tenant, whatever its visibility.
    pub async fn tenant_rooms(&self, tenant: &Domain) -> Result<Vec<RoomRecord>, TelexError> {
        self.store.rooms(tenant).await
    }

    /// Operators: any room.
    pub async fn record(&self, room: &RoomJid) -> Result<RoomRecord, TelexError> {
        self.store.record(room).await?.ok_or_else(|| Refusal::NoSuchRoom.to_error())
    }

    /// Operators: destroys any room.
    pub async fn destroy_any(&self, room: &RoomJid) -> Result<(), TelexError> {
        let record = self.record(room).await?;
        self.remove(record).await
    }

    /// Operators: affiliations as the room's owner would set them.
    pub async fn affiliate_any(
        &self,
        room: &RoomJid,
        user: UserJid,
        affiliation: Option<Affiliation>,
    ) -> Result<RoomRecord, TelexError> {
        let record = self.record(room).await?;
        self.affiliate(Some(Affiliation::Owner), record, user, affiliation).await
    }

    async fn remove(&self, record: RoomRecord) -> Result<(), TelexError> {
        let room = &record.room;
        self.store.destroy(room.clone()).await?;
        // The members' room lists are in their own shards: best effort (a stale entry names a
        // room that no longer exists and is skipped).
        for (user, _) in record.members() {
            if let Err(e) = self.store.set_membership(user.clone(), room.clone(), false).await {
                tracing::warn!(%room, %user, error = %e, "could not remove a destroyed room from a member's list");
            }
        }
        Ok(())
    }
}
