//! Room actors: one per active room, on the leader of the room's shard, the single place that
//! decides who is in the room. It keeps the occupants (XMPP devices that entered: soft state,
//! refreshed by their sessions and rebuilt from those refreshes when the room's leader moves)
//! and fans out what the room's log gains and the occupants' presence: each batch goes to each
//! node holding members' or occupants' actors once, carrying the recipients on that node.
//!
//! A message is committed once, to the room's log (`Rooms::say`, from any node); the actor
//! learns of it from its replica applying it and reads the log in order, so every device is
//! handed the room in log order. Devices drop what they were already handed (a new actor
//! re-sends the last moments of the log, which a message that woke it is part of).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use telex_types::occupancy::{HistoryLimit, Recipient, RoomCall, RoomDelivery, RoomReply};
use telex_types::presence::DevicePresence;
use telex_types::room::{Affiliation, Occupant, Removal, Role, RoomConfig, RoomEntry, RoomEvent, RoomJid, RoomRecord};
use telex_types::{TelexError, UserJid};
use tokio::sync::{mpsc, oneshot};

use crate::muc::{self, Refusal};
use crate::rooms::RoomLimits;
use crate::{Hub, RoomStore, Rooms};

/// An occupant whose session has not refreshed its presence for this long is taken out.
pub const OCCUPANT_TTL: Duration = Duration::from_secs(90);
/// How often sessions refresh their rooms (well within `OCCUPANT_TTL`).
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// A new actor re-sends the log's entries of the last this long (devices drop what they had).
const CATCH_UP: Duration = Duration::from_secs(5);
/// At most this many log entries per fan-out batch.
const BATCH_ENTRIES: usize = 256;
/// A room with no occupants stops its actor after this long without traffic.
const IDLE: Duration = Duration::from_secs(300);
/// Members are grouped by node again at least this often (leaders move).
const REGROUP_EVERY: Duration = Duration::from_secs(1);
const MAILBOX: usize = 4096;
/// A delivery to another node gives up after this long (the devices miss it live and catch up
/// from the log).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

enum Cmd {
    Call(Box<RoomCall>, oneshot::Sender<Result<RoomReply, TelexError>>),
    /// The log grew (a hint: the actor reads the head).
    Appended,
    /// The record changed (configuration, affiliations), or the room was created or destroyed.
    Changed,
}

/// The room actors of this node, and the way to reach a room's actor wherever it runs.
#[derive(Clone)]
pub struct RoomHub(Arc<Inner>);

/// A handle on the rooms that does not keep them alive: for storage the hub itself holds,
/// which tells it of changes (a strong handle there would be a cycle).
#[derive(Clone)]
pub struct WeakRoomHub(std::sync::Weak<Inner>);

impl WeakRoomHub {
    pub fn upgrade(&self) -> Option<RoomHub> {
        self.0.upgrade().map(RoomHub)
    }
}

struct Inner {
    actors: DashMap<RoomJid, mpsc::Sender<Cmd>>,
    rooms: Arc<Rooms>,
    store: Arc<dyn RoomStore>,
    hub: Hub,
}

impl RoomHub {
    pub fn new(hub: Hub, store: Arc<dyn RoomStore>, limits: RoomLimits) -> RoomHub {
        let rooms = Arc::new(Rooms::new(store.clone(), limits, hub.policies.clone()));
        RoomHub(Arc::new(Inner { actors: DashMap::new(), rooms, store, hub }))
    }

    pub fn downgrade(&self) -> WeakRoomHub {
        WeakRoomHub(Arc::downgrade(&self.0))
    }

    /// The native room operations over the same store.
    pub fn rooms(&self) -> &Arc<Rooms> {
        &self.0.rooms
    }

    /// Runs a device's call on the room's actor, wherever the room's shard is led.
    pub async fn call(&self, room: &RoomJid, call: RoomCall) -> Result<RoomReply, TelexError> {
        if call.user().domain() != room.tenant() {
            return Err(Refusal::NoSuchRoom.to_error());
        }
        match (self.0.hub.room_home(room), self.0.hub.homes()) {
            (Some(node), Some(homes)) => homes.room_call(node, room, call).await,
            _ => self.call_here(room, call).await,
        }
    }

    /// Runs a call on the room's actor on this node (another node's gateway routed it here).
    pub async fn call_here(&self, room: &RoomJid, call: RoomCall) -> Result<RoomReply, TelexError> {
        if let Some(node) = self.0.hub.room_home(room) {
            return Err(TelexError::unavailable(format!("the room {room} is now served by node {node}; retry")));
        }
        let (reply, answer) = oneshot::channel();
        self.actor(room)
            .send(Cmd::Call(Box::new(call), reply))
            .await
            .map_err(|_| TelexError::unavailable("the room's actor is restarting; retry"))?;
        answer.await.unwrap_or_else(|_| Err(TelexError::unavailable("the room's actor stopped; retry")))
    }

    /// This node's replica applied an append to the room's log: its actor, if this node leads
    /// the room's shard, fans it out.
    pub fn appended(&self, room: &RoomJid) {
        self.nudge(room, || Cmd::Appended);
    }

    /// The room's record changed in storage.
    pub fn changed(&self, room: &RoomJid) {
        self.nudge(room, || Cmd::Changed);
    }

    fn nudge(&self, room: &RoomJid, cmd: impl FnOnce() -> Cmd) {
        if let Some(a) = self.0.actors.get(room) {
            // A full mailbox has work queued that reads the new state anyway.
            let _ = a.try_send(cmd());
            return;
        }
        if self.0.hub.room_home(room).is_none() {
            let _ = self.actor(room).try_send(cmd());
        }
    }

    /// Number of room actors running here.
    pub fn active_rooms(&self) -> usize {
        self.0.actors.len()
    }

    fn actor(&self, room: &RoomJid) -> mpsc::Sender<Cmd> {
        let entry = self.0.actors.entry(room.clone()).or_insert_with(|| self.spawn(room));
        if !entry.is_closed() {
            return entry.clone();
        }
        drop(entry);
        let fresh = self.spawn(room);
        self.0.actors.insert(room.clone(), fresh.clone());
        fresh
    }

    fn spawn(&self, room: &RoomJid) -> mpsc::Sender<Cmd> {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let actor = RoomActor {
            room: room.clone(),
            hubs: self.clone(),
            record: None,
            record_stale: true,
            occupants: BTreeMap::new(),
            fanned: None,
            log_dirty: true,
            pending: Vec::new(),
            departed: Vec::new(),
            groups: Vec::new(),
            grouped_at: None,
            last_activity: Instant::now(),
            occupied: false,
        };
        tokio::spawn(actor.run(rx, tx.downgrade()));
        metrics::counter!("telex_room_actors_started_total").increment(1);
        tx
    }
}

struct Present {
    occupant: Occupant,
    presence: DevicePresence,
    seen: Instant,
}

struct RoomActor {
    room: RoomJid,
    hubs: RoomHub,
    /// `None` until read, or when the room does not exist.
    record: Option<RoomRecord>,
    record_stale: bool,
    occupants: BTreeMap<(UserJid, String), Present>,
    /// The last log position fanned out; `None` until the actor first read the head.
    fanned: Option<u64>,
    log_dirty: bool,
    pending: Vec<RoomEvent>,
    /// Devices the room took out, told in the next delivery.
    departed: Vec<(UserJid, String)>,
    /// Members and occupants grouped by the node holding their actor (`None`: this one).
    groups: Vec<(Option<u64>, Vec<Recipient>)>,
    grouped_at: Option<Instant>,
    last_activity: Instant,
    /// Someone was in the room after the last batch (a temporary room goes once nobody is).
    occupied: bool,
}

impl RoomActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, me: mpsc::WeakSender<Cmd>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let cmd = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Some(cmd),
                    // No handle left (the registry holds a newer actor for the room): stop.
                    None => break,
                },
                _ = tick.tick() => {
                    if !self.upkeep() {
                        break;
                    }
                    None
                }
            };
            if let Some(cmd) = cmd {
                self.handle(cmd).await;
                // Whatever else is queued joins the same batch.
                for _ in 0..MAILBOX {
                    let Ok(cmd) = rx.try_recv() else { break };
                    self.handle(cmd).await;
                }
            }
            self.fan_out().await;
            let occupied = !self.occupants.is_empty();
            if self.occupied && !occupied {
                self.vanish_if_temporary().await;
            }
            self.occupied = occupied;
        }
        rx.close();
        let inner = &self.hubs.0;
        inner.actors.remove_if(&self.room, |_, h| me.upgrade().is_none_or(|m| m.same_channel(h)));
        metrics::counter!("telex_room_actors_stopped_total").increment(1);
    }

    /// Once a second: expires silent occupants; false when the actor should stop (another node
    /// leads the room's shard now, or the room is idle and empty).
    fn upkeep(&mut self) -> bool {
        if self.hubs.0.hub.room_home(&self.room).is_some() {
            return false;
        }
        let expired: Vec<(UserJid, String)> =
            self.occupants.iter().filter(|(_, p)| p.seen.elapsed() > OCCUPANT_TTL).map(|(k, _)| k.clone()).collect();
        for key in expired {
            if let Some(gone) = self.occupants.remove(&key) {
                tracing::info!(room = %self.room, user = %key.0, device = %key.1, "room occupant timed out");
                self.pending.push(RoomEvent::Occupant { occupant: gone.occupant, presence: None, removed: None });
                self.grouped_at = None;
            }
        }
        !self.occupants.is_empty() || self.last_activity.elapsed() < IDLE
    }

    async fn handle(&mut self, cmd: Cmd) {
        self.last_activity = Instant::now();
        match cmd {
            Cmd::Appended => self.log_dirty = true,
            Cmd::Changed => {
                self.record_stale = true;
                self.grouped_at = None;
            }
            Cmd::Call(call, reply) => {
                let answer = self.call(*call).await;
                let _ = reply.send(answer);
            }
        }
    }

    async fn record(&mut self) -> Result<Option<&RoomRecord>, TelexError> {
        if self.record_stale {
            self.record = self.hubs.0.store.record(&self.room).await?;
            self.record_stale = false;
            self.revalidate();
        }
        Ok(self.record.as_ref())
    }

    /// After the record changed: occupants the room no longer admits are taken out (and told),
    /// the others' affiliations and roles follow the record.
    fn revalidate(&mut self) {
        let mut out = Vec::new();
        for (key, p) in self.occupants.iter_mut() {
            let Some(record) = &self.record else {
                out.push((key.clone(), Removal::Destroyed));
                continue;
            };
            let affiliation = record.affiliation(&key.0);
            let barred = match affiliation {
                Some(Affiliation::Outcast) => Some(Removal::Banned),
                None if record.config.members_only => Some(Removal::NotMember),
                _ => None,
            };
            if let Some(why) = barred {
                p.occupant.affiliation = affiliation;
                out.push((key.clone(), why));
                continue;
            }
            let role = record.role(&key.0);
            if (affiliation, role) != (p.occupant.affiliation, p.occupant.role) {
                p.occupant.affiliation = affiliation;
                p.occupant.role = role;
                let (occupant, presence) = (p.occupant.clone(), Some(p.presence.clone()));
                self.pending.push(RoomEvent::Occupant { occupant, presence, removed: None });
            }
        }
        for (key, why) in out {
            self.take_out(key, why);
        }
        self.grouped_at = None;
    }

    /// The last occupant left a temporary (not persistent) room: it goes away, as XEP-0045
    /// §10.1.3 has it.
    async fn vanish_if_temporary(&mut self) {
        let temporary = match self.record().await {
            Ok(Some(r)) => !r.config.persistent,
            _ => false,
        };
        if !temporary {
            return;
        }
        match self.hubs.0.rooms.destroy_any(&self.room).await {
            Ok(()) => tracing::info!(room = %self.room, "temporary room destroyed: its last occupant left"),
            Err(e) => tracing::warn!(room = %self.room, error = %e, "could not destroy an empty temporary room"),
        }
        self.record_stale = true;
    }

    /// The room takes an occupant out; it is told why with the others.
    fn take_out(&mut self, key: (UserJid, String), why: Removal) {
        if let Some(p) = self.occupants.remove(&key) {
            self.departed.push(key);
            self.pending.push(RoomEvent::Occupant { occupant: p.occupant, presence: None, removed: Some(why) });
            self.grouped_at = None;
        }
    }

    /// A moderator takes every device under `nick` out (XEP-0045 §8.2: not owners or admins).
    async fn kick(&mut self, by: UserJid, nick: String) -> Result<RoomReply, TelexError> {
        if self.record().await?.is_none() {
            return Err(Refusal::NoSuchRoom.to_error());
        }
        let moderator = self.occupants.iter().any(|((u, _), p)| *u == by && p.occupant.role == Role::Moderator);
        if !moderator {
            return Err(Refusal::NotAllowed("kicking needs a moderator in the room".into()).to_error());
        }
        let targets: Vec<(UserJid, String)> =
            self.occupants.iter().filter(|(_, p)| p.occupant.nick == nick).map(|(k, _)| k.clone()).collect();
        let Some(first) = targets.first().and_then(|k| self.occupants.get(k)) else {
            return Err(TelexError::not_found(format!("no occupant is called {nick:?} in this room")));
        };
        if matches!(first.occupant.affiliation, Some(Affiliation::Owner | Affiliation::Admin)) {
            return Err(Refusal::Protected.to_error());
        }
        for key in targets {
            self.take_out(key, Removal::Kicked);
        }
        Ok(RoomReply::Kicked)
    }

    async fn call(&mut self, call: RoomCall) -> Result<RoomReply, TelexError> {
        match call {
            RoomCall::Enter { user, device, nick, password, presence, history } => {
                self.enter(user, device, nick, password, presence, Some(history)).await
            }
            RoomCall::Refresh { user, device, nick, presence } => {
                let known = self.occupants.get_mut(&(user.clone(), device.clone()));
                match known {
                    Some(p) if p.occupant.nick == nick => {
                        p.seen = Instant::now();
                        Ok(RoomReply::Refreshed)
                    }
                    // Not known here (the room's leader moved, or it timed out): in again,
                    // without history.
                    _ => self
                        .enter(user, device, nick, String::new(), presence, None)
                        .await
                        .map(|_| RoomReply::Refreshed),
                }
            }
            RoomCall::Leave { user, device } => {
                let gone = self.occupants.remove(&(user, device)).map(|p| p.occupant);
                if let Some(o) = &gone {
                    self.pending.push(RoomEvent::Occupant { occupant: o.clone(), presence: None, removed: None });
                    self.grouped_at = None;
                }
                Ok(RoomReply::Left { you: gone })
            }
            RoomCall::Kick { user, nick } => self.kick(user, nick).await,
            RoomCall::Private { user, device, to_nick, client_id, body, extras } => {
                self.private(user, device, to_nick, client_id, body, extras).await
            }
            RoomCall::SetRole { user, nick, role } => self.set_role(user, nick, role).await,
            RoomCall::WithRole { user, role } => {
                if self.record().await?.is_none() {
                    return Err(Refusal::NoSuchRoom.to_error());
                }
                if !self.occupants.iter().any(|((u, _), p)| *u == user && p.occupant.role == Role::Moderator) {
                    return Err(Refusal::NotAllowed("role lists are for moderators in the room".into()).to_error());
                }
                let mut by_nick: BTreeMap<&str, &Occupant> = BTreeMap::new();
                for p in self.occupants.values().filter(|p| p.occupant.role == role) {
                    by_nick.entry(&p.occupant.nick).or_insert(&p.occupant);
                }
                Ok(RoomReply::Occupants(by_nick.into_values().cloned().collect()))
            }
        }
    }

    /// The devices in the room under `nick`.
    fn under(&self, nick: &str) -> Vec<(UserJid, String)> {
        self.occupants.iter().filter(|(_, p)| p.occupant.nick == nick).map(|(k, _)| k.clone()).collect()
    }

    /// A private message between occupants (XEP-0045 §7.5): handed to the devices under
    /// `to_nick` now, not stored (like a presence, it is for whoever is in the room).
    async fn private(
        &mut self,
        user: UserJid,
        device: String,
        to_nick: String,
        client_id: String,
        body: String,
        extras: String,
    ) -> Result<RoomReply, TelexError> {
        let Some(record) = self.record().await?.cloned() else { return Err(Refusal::NoSuchRoom.to_error()) };
        let Some(from) = self.occupants.get(&(user.clone(), device)).map(|p| p.occupant.clone()) else {
            return Err(Refusal::NotOccupant.to_error());
        };
        if !record.config.private_messages {
            return Err(Refusal::NoPrivateMessages.to_error());
        }
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(TelexError::invalid("a message id must be 1 to 128 bytes"));
        }
        if body.len() + extras.len() > crate::rooms::MAX_ROOM_BODY {
            return Err(TelexError::invalid(format!("message longer than {} bytes", crate::rooms::MAX_ROOM_BODY)));
        }
        let targets = self.under(&to_nick);
        let Some((to_user, _)) = targets.first().cloned() else {
            return Err(TelexError::not_found(format!("no occupant is called {to_nick:?} in this room")));
        };
        self.hubs.0.rooms.rate(&user, &self.room)?;
        let event = RoomEvent::Private { from, to_nick, client_id, body, extras };
        let to =
            Recipient { user: to_user.clone(), devices: targets.into_iter().map(|(_, d)| d).collect(), members: false };
        let hub = &self.hubs.0.hub;
        match (hub.user_home(&to_user), hub.homes()) {
            (Some(node), Some(homes)) => {
                // Best effort, like presence: a slow node must not hold up the room.
                let delivery = RoomDelivery { room: self.room.clone(), events: vec![event], to: vec![to] };
                let send = homes.room_deliver(node, delivery);
                tokio::spawn(async move {
                    if tokio::time::timeout(DELIVERY_TIMEOUT, send).await.is_err() {
                        tracing::warn!(node, "a private room message to another node timed out");
                    }
                });
            }
            _ => hub.room_deliver_here(&self.room, Arc::new(vec![event]), std::slice::from_ref(&to)),
        }
        metrics::counter!("telex_room_private_messages_total").increment(1);
        Ok(RoomReply::Sent)
    }

    /// A moderator gives the user under `nick` a role; stored in the room's record, so it holds
    /// on every node and for native members too, and the occupants hear it as presence.
    async fn set_role(&mut self, by: UserJid, nick: String, role: Role) -> Result<RoomReply, TelexError> {
        if self.record().await?.is_none() {
            return Err(Refusal::NoSuchRoom.to_error());
        }
        if !self.occupants.keys().any(|(u, _)| *u == by) {
            return Err(Refusal::NotOccupant.to_error());
        }
        let Some((user, _)) = self.under(&nick).into_iter().next() else {
            return Err(TelexError::not_found(format!("no occupant is called {nick:?} in this room")));
        };
        self.hubs.0.rooms.set_role(&by, &self.room, user, role).await?;
        // Read again now, so the occupants' new roles go out with this batch.
        self.record_stale = true;
        self.record().await?;
        Ok(RoomReply::RoleSet)
    }

    /// Enters `device` (or changes its presence). `history`: `None` for a refresh, which gets
    /// no history and skips the password (it entered with it before).
    async fn enter(
        &mut self,
        user: UserJid,
        device: String,
        nick: String,
        password: String,
        presence: DevicePresence,
        history: Option<HistoryLimit>,
    ) -> Result<RoomReply, TelexError> {
        let nick = telex_types::room::check_nick(&nick)?;
        let mut created = false;
        if self.record().await?.is_none() {
            if history.is_none() {
                return Err(Refusal::NoSuchRoom.to_error());
            }
            // XEP-0045 §10.1: entering a room that does not exist creates it (an instant room
            // with the default configuration; the creator owns it).
            self.hubs.0.rooms.create(&user, self.room.clone(), RoomConfig::default()).await?;
            self.record_stale = true;
            created = true;
        }
        let Some(record) = self.record().await?.cloned() else { return Err(Refusal::NoSuchRoom.to_error()) };
        let key = (user.clone(), device.clone());
        let already = self.occupants.get(&key).map(|p| p.occupant.nick.clone());
        let nicks: BTreeMap<String, UserJid> = self
            .occupants
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(_, p)| (p.occupant.nick.clone(), p.occupant.user.clone()))
            .collect();
        let users = self
            .occupants
            .keys()
            .filter(|(u, _)| *u != user)
            .map(|(u, _)| u)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        // A refresh and a presence change do not ask for the password again.
        let password = if history.is_none() || already.is_some() { record.config.password.as_str() } else { &password };
        let role = muc::may_enter(&record, &user, &nick, password, &nicks, users).map_err(|r| r.to_error())?;
        if already.is_none() {
            // Barriers hold in rooms too: not in a room with someone the policy keeps apart.
            self.hubs.0.rooms.policy_allows_joining(&user, &record, self.occupants.keys().map(|(u, _)| u))?;
        }
        if already.as_ref().is_some_and(|old| *old != nick) {
            // A new nickname: out under the old one, in under the new one.
            if let Some(p) = self.occupants.remove(&key) {
                self.pending.push(RoomEvent::Occupant { occupant: p.occupant, presence: None, removed: None });
            }
        }
        let fresh = !self.occupants.contains_key(&key);
        let occupant = Occupant { nick, user, device, affiliation: record.affiliation(&key.0), role };
        self.occupants
            .insert(key, Present { occupant: occupant.clone(), presence: presence.clone(), seen: Instant::now() });
        self.pending.push(RoomEvent::Occupant { occupant: occupant.clone(), presence: Some(presence), removed: None });
        self.grouped_at = None;
        let others = self
            .occupants
            .values()
            .filter(|p| !(p.occupant.user == occupant.user && p.occupant.device == occupant.device))
            .map(|p| (p.occupant.clone(), p.presence.clone()))
            .collect();
        let history = match history {
            Some(limit) if fresh => self.history(&record, limit).await?,
            _ => Vec::new(),
        };
        Ok(RoomReply::Entered { others, you: occupant, fresh, created, history, subject: record.subject })
    }

    /// What an entering device is shown of the log: up to the room's `history_on_join` entries
    /// (fewer if it asked), ending with the last one fanned out (later ones reach it live).
    async fn history(&mut self, record: &RoomRecord, limit: HistoryLimit) -> Result<Vec<(u64, RoomEntry)>, TelexError> {
        // Up to the newest entry: what is read now but not yet fanned out also reaches the
        // device live (it drops the repeats).
        if self.log_dirty || self.fanned.is_none() {
            self.log_dirty = false;
            self.read_log().await?;
        }
        let upto = self.fanned.unwrap_or(0);
        let n = limit.max_stanzas.unwrap_or(u32::MAX).min(record.config.history_on_join) as u64;
        if n == 0 || upto < record.log_start {
            return Ok(Vec::new());
        }
        let from = upto.saturating_sub(n - 1).max(record.log_start).max(1);
        let mut page = self.hubs.0.store.range(&self.room, from, upto, n as usize).await?;
        if let Some(since) = limit.since_ms {
            page.retain(|(_, e)| e.sent_at >= since);
        }
        Ok(page)
    }

    /// First look at the log: where fanning out starts (the last `CATCH_UP` of it is sent
    /// again, so a message whose commit woke this actor is not missed).
    async fn start(&mut self) -> Result<u64, TelexError> {
        let head = self.hubs.0.store.head(&self.room).await?;
        // A room created again under an old name starts after the old log.
        let floor = self.record().await?.map_or(1, |r| r.log_start.max(1));
        let from = head.saturating_sub(63).max(floor);
        let recent = if from <= head { self.hubs.0.store.range(&self.room, from, head, 64).await? } else { Vec::new() };
        let cutoff = now_ms().saturating_sub(CATCH_UP.as_millis() as u64);
        let first_recent = recent.iter().find(|(_, e)| e.sent_at >= cutoff).map(|(p, _)| *p);
        let start = first_recent.map_or(head, |p| p - 1);
        self.fanned = Some(start);
        Ok(start)
    }

    /// Reads what the log gained and sends it, with the pending presence, to every node.
    async fn fan_out(&mut self) {
        if self.record_stale && !self.occupants.is_empty() {
            // A ban or a lost membership takes occupants out now, not at their next refresh.
            if let Err(e) = self.record().await {
                tracing::warn!(room = %self.room, error = %e, "cannot read the room's record");
            }
        }
        if self.log_dirty {
            self.log_dirty = false;
            if let Err(e) = self.read_log().await {
                tracing::warn!(room = %self.room, error = %e, "cannot read the room's log; retrying");
                self.log_dirty = true;
            }
        }
        if self.pending.is_empty() {
            return;
        }
        let events = Arc::new(std::mem::take(&mut self.pending));
        if let Err(e) = self.regroup().await {
            tracing::warn!(room = %self.room, error = %e, "cannot read the room's members");
        }
        metrics::counter!("telex_room_events_total").increment(events.len() as u64);
        let hub = &self.hubs.0.hub;
        let mut remote = Vec::new();
        for (node, to) in &self.groups {
            match (node, hub.homes()) {
                (Some(node), Some(homes)) => {
                    let delivery = RoomDelivery { room: self.room.clone(), events: events.to_vec(), to: to.clone() };
                    remote.push(homes.room_deliver(*node, delivery));
                }
                _ => hub.room_deliver_here(&self.room, events.clone(), to),
            }
        }
        if !self.departed.is_empty() {
            // Their devices are no longer occupants: grouped again without them next time.
            self.departed.clear();
            self.grouped_at = None;
        }
        if !remote.is_empty() {
            metrics::counter!("telex_room_deliveries_remote_total").increment(remote.len() as u64);
            let all = futures::future::join_all(remote);
            if tokio::time::timeout(DELIVERY_TIMEOUT, all).await.is_err() {
                tracing::warn!(room = %self.room, "a room delivery to another node timed out");
            }
        }
    }

    async fn read_log(&mut self) -> Result<(), TelexError> {
        let mut from = match self.fanned {
            Some(f) => f + 1,
            None => self.start().await? + 1,
        };
        let head = self.hubs.0.store.head(&self.room).await?;
        while from <= head {
            let page = self.hubs.0.store.range(&self.room, from, head, BATCH_ENTRIES).await?;
            let Some(last) = page.last().map(|(p, _)| *p) else { break };
            for (position, entry) in page {
                self.pending.push(RoomEvent::Entry { position, entry });
            }
            self.fanned = Some(last);
            from = last + 1;
            if self.pending.len() >= BATCH_ENTRIES {
                break;
            }
        }
        if self.fanned.is_some_and(|f| f < head) {
            self.log_dirty = true;
        }
        Ok(())
    }

    /// Groups the room's members and occupants by the node holding their actor.
    async fn regroup(&mut self) -> Result<(), TelexError> {
        if self.grouped_at.is_some_and(|t| t.elapsed() < REGROUP_EVERY)
            && !self.record_stale
            && self.departed.is_empty()
        {
            return Ok(());
        }
        let record = self.record().await?.cloned();
        let mut by_user: BTreeMap<UserJid, Recipient> = BTreeMap::new();
        for (user, _) in record.iter().flat_map(|r| r.members()) {
            by_user.insert(user.clone(), Recipient { user: user.clone(), devices: Vec::new(), members: true });
        }
        for (user, device) in self.occupants.keys().chain(self.departed.iter()) {
            let r = by_user.entry(user.clone()).or_insert_with(|| Recipient {
                user: user.clone(),
                devices: Vec::new(),
                members: false,
            });
            r.devices.push(device.clone());
        }
        let hub = &self.hubs.0.hub;
        let mut groups: HashMap<Option<u64>, Vec<Recipient>> = HashMap::new();
        for (user, r) in by_user {
            groups.entry(hub.user_home(&user)).or_default().push(r);
        }
        self.groups = groups.into_iter().collect();
        self.grouped_at = Some(Instant::now());
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
