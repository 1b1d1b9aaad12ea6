//! One user's actor: the single writer for that user on this node. It owns the user's device
//! sessions and their delivery cursors (streaming the archive to each device from its cursor),
//! the cached roster and block list, and each device's presence (see `social`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use telex_policy::directory::SharedContact;
use telex_policy::{decide, Action, Facts};
use telex_types::presence::DevicePresence;
use telex_types::room::{RoomEvent, RoomJid};
use telex_types::roster::{RosterItem, SubscriptionKind};
use telex_types::session::{CutOff, ServerFrame};
use telex_types::{TelexError, UserJid};
use tokio::sync::{mpsc, oneshot};

use crate::cursor::DeviceCursor;
use crate::hub::{FrameTx, Hub, PresenceChange, SessionId, Signal};
use crate::presence::Coalescer;
use crate::{Ledger, Limits};
use telex_types::roster::{RosterOp, RosterReply};

pub(crate) enum Cmd {
    Attach {
        device: String,
        tx: FrameTx,
        kill: oneshot::Sender<CutOff>,
        /// Deliver nothing until the device announces its presence.
        hold: bool,
        reply: oneshot::Sender<Result<SessionId, TelexError>>,
    },
    Detach {
        device: String,
        id: SessionId,
    },
    Ack {
        device: String,
        id: SessionId,
        position: u64,
    },
    /// The archive grew (a hint; the actor reads the real head).
    Appended,
    /// The roster or block list changed in storage: drop the cached copies.
    Reload,
    /// The tenant's directory or policy changed: shared roster groups may give the user
    /// other contacts.
    SharedChanged,
    Roster {
        op: RosterOp,
        reply: oneshot::Sender<Result<RosterReply, TelexError>>,
    },
    /// A contact sent the user a subscription stanza.
    Inbound {
        from: UserJid,
        kind: SubscriptionKind,
    },
    SetPresence {
        device: String,
        id: SessionId,
        presence: DevicePresence,
    },
    /// Something for the user's online devices only.
    Signal(Signal),
    /// A device of a contact changed its presence.
    ContactPresence(PresenceChange),
    /// A batch of a room's events: for `devices` (occupants) and, with `members`, for every
    /// device of the user that follows its rooms (native sessions).
    Room {
        room: RoomJid,
        events: Arc<Vec<RoomEvent>>,
        devices: Vec<String>,
        members: bool,
    },
    /// The server ends a device's session.
    Kick {
        device: String,
        why: CutOff,
        reply: oneshot::Sender<bool>,
    },
}

pub(crate) struct Session {
    id: SessionId,
    /// Since when the device's queue has been full.
    stalled_since: Option<Instant>,
    cursor: DeviceCursor,
    pub(crate) tx: FrameTx,
    kill: Option<oneshot::Sender<CutOff>>,
    /// Nothing is delivered until the device announces its presence.
    pub(crate) hold: bool,
    /// The device gets every room of its user (native sessions); otherwise only the rooms it
    /// entered (XMPP).
    member_rooms: bool,
    /// The last log position of each room handed to the device (repeats are dropped).
    rooms_seen: HashMap<RoomJid, u64>,
}

/// One device's announced presence and the coalescing of its changes.
pub(crate) struct DeviceState {
    pub(crate) presence: DevicePresence,
    pub(crate) coalescer: Coalescer<Option<DevicePresence>>,
    /// When a held change must go out.
    pub(crate) flush_at: Option<tokio::time::Instant>,
}

const MAILBOX: usize = 1024;
/// Cursor acknowledgements persisted at least every this many positions (and on detach).
const PERSIST_EVERY: u64 = 32;
const IDLE: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_secs(1);
/// Changes of a device's presence closer together than this are coalesced.
pub(crate) const PRESENCE_WINDOW: Duration = Duration::from_millis(250);

pub(crate) struct UserActor {
    pub(crate) user: UserJid,
    pub(crate) ledger: Arc<dyn Ledger>,
    limits: Limits,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) hub: Hub,
    me: mpsc::WeakSender<Cmd>,
    /// Loaded on first use; the actor is the only writer of both.
    pub(crate) roster: Option<BTreeMap<UserJid, RosterItem>>,
    pub(crate) blocked: Option<BTreeSet<UserJid>>,
    /// The contacts shared roster groups give the user, as last shown to its devices.
    pub(crate) shared: Option<BTreeMap<UserJid, SharedContact>>,
    /// Presence of each device that announced one (and is still available).
    pub(crate) devices: HashMap<String, DeviceState>,
}

static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

/// Starts `user`'s actor; the sender is its mailbox.
pub(crate) fn spawn(hub: &Hub, user: UserJid) -> mpsc::Sender<Cmd> {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let actor = UserActor {
        user,
        ledger: hub.ledger.clone(),
        limits: hub.limits.clone(),
        sessions: HashMap::new(),
        hub: hub.clone(),
        me: tx.downgrade(),
        roster: None,
        blocked: None,
        shared: None,
        devices: HashMap::new(),
    };
    tokio::spawn(actor.run(rx));
    metrics::counter!("telex_actors_started_total").increment(1);
    tx
}

impl UserActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut tick = tokio::time::interval(TICK);
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        loop {
            let idle = if self.sessions.is_empty() { IDLE } else { Duration::from_secs(86_400) };
            let flush_at = self.devices.values().filter_map(|d| d.flush_at).min();
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                _ = tick.tick() => Some(Cmd::Appended),
                _ = tokio::time::sleep_until(flush_at.unwrap_or_else(far)), if flush_at.is_some() => {
                    self.flush_presence();
                    continue;
                }
                _ = tokio::time::sleep(idle) => None,
            };
            match cmd {
                Some(cmd) => self.handle(cmd).await,
                None if self.sessions.is_empty() => break,
                None => {}
            }
        }
        rx.close();
        // Only remove the registry entry if it is still ours.
        let me = self.me.clone();
        self.hub.online.remove(&self.user);
        self.hub.actors.remove_if(&self.user, |_, h| me.upgrade().is_none_or(|m| m.same_channel(h)));
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Attach { device, tx, kill, hold, reply } => {
                let _ = reply.send(self.attach(device, tx, kill, hold));
            }
            Cmd::Detach { device, id } => {
                // Only this attachment: a newer session of the same device stays.
                if self.sessions.get(&device).is_some_and(|s| s.id == id) {
                    if let Some(s) = self.sessions.remove(&device) {
                        self.persist(&device, &s.cursor, true);
                    }
                    self.device_gone(&device);
                }
            }
            Cmd::Ack { device, id, position } => {
                let Some(s) = self.sessions.get_mut(&device).filter(|s| s.id == id) else { return };
                // A device that re-attached (its actor moved) may acknowledge what the previous
                // attachment sent it, beyond what this one has sent: it has it, as long as the
                // archive does.
                if position > s.cursor.sent() && position <= self.ledger.head(&self.user).unwrap_or(0) {
                    s.cursor.mark_sent(position);
                }
                if let Err(e) = s.cursor.ack(position) {
                    self.kill(&device, CutOff::Protocol(format!("invalid acknowledgement: {e:?}")));
                    return;
                }
                let cursor = s.cursor.clone();
                self.persist(&device, &cursor, false);
                self.pump(&device);
            }
            Cmd::Roster { op, reply } => {
                let _ = reply.send(self.roster_op(op).await);
            }
            Cmd::Inbound { from, kind } => self.inbound(from, kind).await,
            Cmd::SetPresence { device, id, presence } => {
                let Some(s) = self.sessions.get_mut(&device).filter(|s| s.id == id) else { return };
                let released = std::mem::replace(&mut s.hold, false);
                self.set_presence(&device, presence);
                if released {
                    self.pump(&device);
                }
            }
            Cmd::ContactPresence(change) => self.contact_presence(change),
            Cmd::Signal(signal) => self.signal(signal),
            Cmd::Room { room, events, devices, members } => self.room(&room, &events, &devices, members),
            Cmd::Kick { device, why, reply } => {
                let present = self.sessions.contains_key(&device);
                self.kill(&device, why);
                let _ = reply.send(present);
            }
            Cmd::Reload => {
                self.roster = None;
                self.blocked = None;
            }
            Cmd::SharedChanged => self.shared_changed(),
            Cmd::Appended => {
                let devices: Vec<String> = self.sessions.keys().cloned().collect();
                for d in devices {
                    self.pump(&d);
                }
            }
        }
    }

    fn attach(
        &mut self,
        device: String,
        tx: FrameTx,
        kill: oneshot::Sender<CutOff>,
        hold: bool,
    ) -> Result<SessionId, TelexError> {
        if let Some(old) = self.sessions.get(&device) {
            let cursor = old.cursor.clone();
            self.persist(&device, &cursor, true);
            self.kill(&device, CutOff::Replaced);
        } else {
            let limits = self.limits.for_tenant(&self.ledger.tenant_limits(self.user.domain())?);
            // The tenant's policy may allow fewer (`[[sessions]]`), never more.
            let by_policy = self.hub.policies.get(self.user.domain()).and_then(|p| p.max_sessions(&self.user));
            let facts = Facts {
                open_sessions: self.sessions.len(),
                max_sessions: by_policy.map_or(limits.sessions_per_user, |n| limits.sessions_per_user.min(n as usize)),
                ..Facts::default()
            };
            decide(&self.user, Action::OpenSession, &self.user, &facts).into_result().map_err(|d| d.error)?;
        }
        let mut durable = self.ledger.cursor(&self.user, &device)?;
        if durable == 0 {
            // A device seen for the first time catches up on what none of the user's devices
            // has received (offline messages), not on the whole archive: history is a query.
            let live = self.sessions.values().map(|s| s.cursor.acked()).max().unwrap_or(0);
            durable = self.ledger.latest_cursor(&self.user)?.max(live);
        }
        let id = SessionId(SESSION_IDS.fetch_add(1, Ordering::Relaxed));
        let cursor = DeviceCursor::attach(durable);
        // Sessions that hold (XMPP) follow the rooms they enter; the others (native) every room
        // of their user.
        let member_rooms = !hold;
        let session = Session {
            id,
            stalled_since: None,
            cursor,
            tx,
            kill: Some(kill),
            hold,
            member_rooms,
            rooms_seen: HashMap::new(),
        };
        self.sessions.insert(device.clone(), session);
        self.hub.session_started(&self.user, &device);
        self.pump(&device);
        Ok(id)
    }

    /// Whether `device` is attached and past its hold (it announced presence).
    pub(crate) fn available(&self, device: &str) -> bool {
        self.sessions.get(device).is_some_and(|s| !s.hold)
    }

    /// Sends the device whatever its window allows.
    fn pump(&mut self, device: &str) {
        if !self.available(device) {
            return;
        }
        let head = match self.ledger.head(&self.user) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(user = %self.user, error = %e, "cannot read archive head");
                return;
            }
        };
        let window = self.limits.delivery_window;
        // Which devices other than this one would get a message addressed to them.
        let online: BTreeSet<String> = self.sessions.iter().filter(|(_, s)| !s.hold).map(|(d, _)| d.clone()).collect();
        let Some(s) = self.sessions.get_mut(device) else { return };
        while let Some(range) = s.cursor.next(head, window) {
            let entries = match self.ledger.range(&self.user, *range.start(), *range.end(), window as usize) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(user = %self.user, error = %e, "cannot read archive");
                    return;
                }
            };
            if entries.is_empty() {
                // A hole would be a bug in the archive; never spin on it.
                tracing::error!(user = %self.user, ?range, "archive range unexpectedly empty");
                return;
            }
            for (position, message) in entries {
                // The device that sent a message has it already: when nothing before it is
                // outstanding, count it as received instead of sending it back.
                if s.cursor.acked() + 1 == position && message.from == self.user && message.from_device == device {
                    s.cursor.mark_sent(position);
                    s.cursor.ack(position).unwrap_or_default();
                    continue;
                }
                let for_other_device = message.to == self.user
                    && !message.to_device.is_empty()
                    && message.to_device != device
                    && online.contains(&message.to_device);
                let traced = crate::trace::sampled(&message.server_id).then(|| message.server_id.clone());
                match s.tx.try_send(Box::new(ServerFrame::Message { position, message, for_other_device })) {
                    Ok(()) => {
                        if let Some(id) = traced {
                            let _handed = crate::trace::deliver_span(&id, &self.user, device, position);
                        }
                        s.cursor.mark_sent(position);
                        s.stalled_since = None;
                    }
                    // The queue is full: wait for the device to read; cut it off if it does not.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let since = *s.stalled_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.limits.stall_timeout {
                            metrics::counter!("telex_sessions_slow_reader_disconnects_total").increment(1);
                            let why =
                                CutOff::SlowReader { stalled: self.limits.stall_timeout, queued: s.cursor.in_flight() };
                            self.kill(device, why);
                        }
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        if let Some(s) = self.sessions.remove(device) {
                            self.persist(device, &s.cursor, true);
                        }
                        self.device_gone(device);
                        return;
                    }
                }
            }
        }
        let cursor = s.cursor.clone();
        self.persist(device, &cursor, false);
    }

    /// Hands a room's events to the devices in the room; log entries a device was handed
    /// already are dropped. Best effort: a full queue misses them (the device reads
    /// the room's log to catch up).
    fn room(&mut self, room: &RoomJid, events: &[RoomEvent], devices: &[String], members: bool) {
        for (device, s) in self.sessions.iter_mut() {
            let listed = devices.iter().any(|d| d == device);
            if !(listed || (members && s.member_rooms)) {
                continue;
            }
            for event in events {
                match event {
                    RoomEvent::Entry { position, .. } => {
                        let seen = s.rooms_seen.entry(room.clone()).or_insert(0);
                        if *position <= *seen {
                            continue;
                        }
                        *seen = *position;
                    }
                    // A device's own occupancy goes to it too: the room answered its call
                    // already, but a moderator's role change reaches it only this way.
                    RoomEvent::Occupant { .. } => {}
                    // For the other occupant's devices only, never for members at large.
                    RoomEvent::Private { .. } if !listed => continue,
                    RoomEvent::Private { .. } => {}
                }
                let frame = ServerFrame::Room { room: room.clone(), event: event.clone() };
                if s.tx.try_send(Box::new(frame)).is_err() {
                    metrics::counter!("telex_room_frames_dropped_total").increment(1);
                }
            }
        }
    }

    pub(crate) fn kill(&mut self, device: &str, why: CutOff) {
        if let Some(mut s) = self.sessions.remove(device) {
            tracing::info!(user = %self.user, device, reason = %why, "session ended by server");
            if let Some(k) = s.kill.take() {
                let _ = k.send(why);
            }
            self.persist(device, &s.cursor, true);
            self.device_gone(device);
        }
    }

    /// Writes the cursor in the background when enough acks accumulated (or `force`). The
    /// durable cursor only ever trails the real one, so a failed write means re-sending, never
    /// losing.
    fn persist(&mut self, device: &str, cursor: &DeviceCursor, force: bool) {
        let Some(pos) = cursor.to_persist(PERSIST_EVERY, force) else { return };
        if let Some(s) = self.sessions.get_mut(device) {
            s.cursor.persisted(pos);
        }
        let (ledger, user, device) = (self.ledger.clone(), self.user.clone(), device.to_string());
        tokio::spawn(async move {
            if let Err(e) = ledger.set_cursor(user.clone(), device, pos).await {
                tracing::warn!(user = %user, error = %e, "cursor not persisted; entries will be re-sent");
            }
        });
    }
}
