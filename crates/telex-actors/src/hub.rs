//! The registry of user actors. An actor exists while its user has sessions (plus a short idle
//! grace period); it streams the user's archive to each device from the device's cursor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use telex_types::presence::DevicePresence;
use telex_types::records::ArchivedMessage;
use telex_types::roster::{RosterItem, SubscriptionKind};
use telex_types::{ErrorCode, TelexError, UserJid};
use tokio::sync::{mpsc, oneshot};

use crate::cursor::DeviceCursor;
use crate::presence::Coalescer;
use crate::social::{RosterOp, RosterReply};
use crate::{Ledger, Limits};

/// What goes down to one device session.
#[derive(Debug)]
pub enum Outbound {
    /// An archive entry of the session's user, at `position`.
    Message { position: u64, message: ArchivedMessage },
    /// A contact's presence changed (`None`: unavailable).
    Presence { from: UserJid, presence: Option<DevicePresence> },
    /// A roster item changed (`None`: removed).
    Roster { contact: UserJid, item: Option<RosterItem> },
    /// Someone asks to see the user's presence.
    SubscriptionRequest { from: UserJid },
    /// A signal from another user's device (chat state, receipt, marker); not stored.
    Signal { from: UserJid, from_device: String, payload: String },
}

/// A device's queue. Items are boxed so the channel's preallocated slots stay small: every
/// connected device holds one for hours.
pub type OutboundTx = mpsc::Sender<Box<Outbound>>;
pub type OutboundRx = mpsc::Receiver<Box<Outbound>>;

/// One connected device, for administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub user: UserJid,
    pub device: String,
    pub connected_at_ms: u64,
}

/// Identifies one attachment of a device (a reconnect gets a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(u64);

pub(crate) enum Cmd {
    Attach {
        device: String,
        tx: OutboundTx,
        kill: oneshot::Sender<String>,
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
    Signal {
        from: UserJid,
        from_device: String,
        payload: String,
    },
    /// A contact's aggregated presence changed.
    ContactPresence {
        from: UserJid,
        presence: Option<DevicePresence>,
    },
    /// An administrator ends a device's session.
    Kick {
        device: String,
        reason: String,
        reply: oneshot::Sender<bool>,
    },
}

pub(crate) struct Session {
    id: SessionId,
    /// Since when the device's queue has been full.
    stalled_since: Option<std::time::Instant>,
    cursor: DeviceCursor,
    pub(crate) tx: OutboundTx,
    kill: Option<oneshot::Sender<String>>,
}

/// Clonable handle to every user actor of this node.
#[derive(Clone)]
pub struct Hub {
    actors: Arc<DashMap<UserJid, mpsc::Sender<Cmd>>>,
    /// Aggregated presence of every available user with an actor here (for probes).
    pub(crate) online: Arc<DashMap<UserJid, DevicePresence>>,
    /// Every connected device of this node.
    sessions: Arc<DashMap<(UserJid, String), SessionInfo>>,
    pub(crate) ledger: Arc<dyn Ledger>,
    limits: Limits,
    /// Where presence for contacts on other nodes goes (set by the node when clustered).
    relay: Arc<std::sync::OnceLock<PresenceRelay>>,
    /// Where actors of users led elsewhere live (set by the node when clustered).
    homes: Arc<std::sync::OnceLock<Box<dyn Homes>>>,
    /// Set when the node shuts down, for sessions served elsewhere through this node.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

/// The start of the reason given to a session whose actor no longer lives on this node (its
/// shard's leadership moved, or the node is shutting down): the device, or the gateway serving
/// it, attaches again where the actor lives now.
pub const MOVED: &str = "the user's actor moved to another node";

/// Where users' actors live in a cluster: on the leader of their shard. The node implements it
/// (over the node-to-node API); without it every actor is local.
pub trait Homes: Send + Sync {
    /// The node holding `user`'s actor when it is not this one.
    fn remote_home(&self, user: &UserJid) -> Option<u64>;
    /// Runs a roster operation on the actor on `node`.
    fn roster(&self, node: u64, user: &UserJid, op: RosterOp) -> BoxFuture<'static, Result<RosterReply, TelexError>>;
    /// Delivers a subscription stanza to `to`'s actor on `node`.
    fn subscription(&self, node: u64, to: &UserJid, from: &UserJid, kind: SubscriptionKind) -> BoxFuture<'static, ()>;
    /// Delivers a signal to `to`'s online devices through its actor on `node` (best effort).
    fn signal(
        &self,
        node: u64,
        to: &UserJid,
        from: &UserJid,
        from_device: &str,
        payload: String,
    ) -> BoxFuture<'static, ()>;
}

/// Sends (contact, from, presence) to the other nodes of the cluster; must not block.
pub type PresenceRelay = Box<dyn Fn(&UserJid, &UserJid, Option<DevicePresence>) + Send + Sync>;

const MAILBOX: usize = 1024;
/// Cursor acknowledgements persisted at least every this many positions (and on detach).
const PERSIST_EVERY: u64 = 32;
const IDLE: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_secs(1);

impl Hub {
    pub fn new(ledger: Arc<dyn Ledger>, limits: Limits) -> Self {
        Hub {
            actors: Arc::new(DashMap::new()),
            online: Arc::new(DashMap::new()),
            sessions: Arc::new(DashMap::new()),
            ledger,
            limits,
            relay: Arc::default(),
            homes: Arc::default(),
            closing: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Becomes true when the node starts shutting down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every session of the users `which` selects, telling them their actor moved.
    pub async fn moved(&self, which: impl Fn(&UserJid) -> bool, why: &str) -> usize {
        let devices: Vec<(UserJid, String)> =
            self.sessions.iter().map(|s| s.key().clone()).filter(|(u, _)| which(u)).collect();
        for (user, device) in &devices {
            self.kick(user, device, &format!("{MOVED} ({why}); attach again")).await;
        }
        devices.len()
    }

    /// Roster operations and subscription stanzas for users whose actor lives on another node
    /// go there through `homes`.
    pub fn set_homes(&self, homes: Box<dyn Homes>) {
        let _ = self.homes.set(homes);
    }

    fn remote_home(&self, user: &UserJid) -> Option<u64> {
        self.homes.get().and_then(|h| h.remote_home(user))
    }

    /// Presence for contacts whose devices are connected to other nodes goes through `relay`.
    pub fn set_presence_relay(&self, relay: PresenceRelay) {
        let _ = self.relay.set(relay);
    }

    /// Presence relayed from another node: `from`'s presence for `contact`'s devices here.
    pub fn presence_from_peer(&self, contact: &UserJid, from: &UserJid, presence: Option<DevicePresence>) {
        // For probes by this node's users. A user with devices on two nodes is seen here with
        // the other node's aggregate (a known limit until actors live on shard leaders).
        if !self.actors.contains_key(from) {
            match &presence {
                Some(p) => self.online.insert(from.clone(), p.clone()),
                None => self.online.remove(from).map(|(_, p)| p),
            };
        }
        self.deliver_presence(contact, from, presence);
    }

    /// Number of users with a live actor.
    pub fn online_users(&self) -> usize {
        self.actors.len()
    }

    /// The user's actor, started if needed.
    pub(crate) fn actor(&self, user: &UserJid) -> mpsc::Sender<Cmd> {
        // The guard is dropped before any await.
        let entry = self.actors.entry(user.clone()).or_insert_with(|| self.spawn(user.clone()));
        if !entry.is_closed() {
            return entry.clone();
        }
        drop(entry);
        let fresh = self.spawn(user.clone());
        self.actors.insert(user.clone(), fresh.clone());
        fresh
    }

    fn spawn(&self, user: UserJid) -> mpsc::Sender<Cmd> {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let actor = UserActor {
            user,
            ledger: self.ledger.clone(),
            limits: self.limits.clone(),
            sessions: HashMap::new(),
            hub: self.clone(),
            me: tx.downgrade(),
            roster: None,
            blocked: None,
            devices: HashMap::new(),
            coalescer: Coalescer::new(PRESENCE_WINDOW),
            flush_at: None,
        };
        tokio::spawn(actor.run(rx));
        metrics::counter!("telex_actors_started_total").increment(1);
        tx
    }

    /// Attaches a device session. Archive entries after the device's cursor are sent to `tx`;
    /// `kill` receives the reason if the server ends the session.
    pub async fn attach(
        &self,
        user: &UserJid,
        device: &str,
        tx: OutboundTx,
        kill: oneshot::Sender<String>,
    ) -> Result<SessionId, TelexError> {
        let mut kill = kill;
        for _ in 0..2 {
            let (reply, answer) = oneshot::channel();
            let cmd = Cmd::Attach { device: device.to_string(), tx: tx.clone(), kill, reply };
            match self.actor(user).send(cmd).await {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| Err(TelexError::unavailable("session actor stopped")))
                }
                // The actor was just evicting itself: start a fresh one and try again.
                Err(mpsc::error::SendError(Cmd::Attach { kill: k, .. })) => {
                    kill = k;
                    self.actors.remove_if(user, |_, h| h.is_closed());
                }
                Err(_) => unreachable!("attach sends an Attach"),
            }
        }
        Err(TelexError::unavailable("could not start the user's session actor"))
    }

    pub fn detach(&self, user: &UserJid, device: &str, id: SessionId) {
        if let Some(a) = self.actors.get(user).map(|a| a.clone()) {
            let _ = a.try_send(Cmd::Detach { device: device.to_string(), id });
        }
    }

    /// The device has everything up to `position`.
    pub async fn ack(&self, user: &UserJid, device: &str, id: SessionId, position: u64) {
        let actor = self.actors.get(user).map(|a| a.clone());
        if let Some(a) = actor {
            let _ = a.send(Cmd::Ack { device: device.to_string(), id, position }).await;
        }
    }

    /// Connected devices, of one user or of everyone, sorted.
    pub fn sessions(&self, user: Option<&UserJid>) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> =
            self.sessions.iter().filter(|e| user.is_none_or(|u| &e.key().0 == u)).map(|e| e.value().clone()).collect();
        out.sort_by(|a, b| (&a.user, &a.device).cmp(&(&b.user, &b.device)));
        out
    }

    /// Ends a device's session; false when it is not connected.
    pub async fn kick(&self, user: &UserJid, device: &str, reason: &str) -> bool {
        let Some(actor) = self.actors.get(user).map(|a| a.clone()) else { return false };
        let (reply, answer) = oneshot::channel();
        let reason = reason.to_string();
        if actor.send(Cmd::Kick { device: device.to_string(), reason, reply }).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    pub(crate) fn session_started(&self, user: &UserJid, device: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64);
        let info = SessionInfo { user: user.clone(), device: device.to_string(), connected_at_ms: now.unwrap_or(0) };
        self.sessions.insert((user.clone(), device.to_string()), info);
        metrics::gauge!("telex_sessions_connected").set(self.sessions.len() as f64);
    }

    pub(crate) fn session_ended(&self, user: &UserJid, device: &str) {
        self.sessions.remove(&(user.clone(), device.to_string()));
        metrics::gauge!("telex_sessions_connected").set(self.sessions.len() as f64);
    }

    /// Runs a roster or block-list operation on the user's actor, wherever it lives.
    pub async fn roster(&self, user: &UserJid, op: RosterOp) -> Result<RosterReply, TelexError> {
        match (self.remote_home(user), self.homes.get()) {
            (Some(node), Some(homes)) => homes.roster(node, user, op).await,
            _ => self.roster_here(user, op).await,
        }
    }

    /// Runs a roster or block-list operation on the user's actor on this node (started if needed).
    pub async fn roster_here(&self, user: &UserJid, op: RosterOp) -> Result<RosterReply, TelexError> {
        let (reply, answer) = oneshot::channel();
        self.actor(user)
            .send(Cmd::Roster { op, reply })
            .await
            .map_err(|_| TelexError::unavailable("the user's actor is restarting; retry"))?;
        answer.await.unwrap_or_else(|_| Err(TelexError::unavailable("the user's actor stopped; retry")))
    }

    /// Sets a device's presence.
    pub async fn set_presence(&self, user: &UserJid, device: &str, id: SessionId, presence: DevicePresence) {
        let actor = self.actors.get(user).map(|a| a.clone());
        if let Some(a) = actor {
            let _ = a.send(Cmd::SetPresence { device: device.to_string(), id, presence }).await;
        }
    }

    /// Delivers a subscription stanza to `to`'s actor, wherever it lives.
    pub(crate) async fn deliver_subscription(&self, to: &UserJid, from: &UserJid, kind: SubscriptionKind) {
        match (self.remote_home(to), self.homes.get()) {
            (Some(node), Some(homes)) => homes.subscription(node, to, from, kind).await,
            _ => self.subscription_here(to, from, kind).await,
        }
    }

    /// Delivers a signal to `to`'s online devices, wherever its actor lives. Best effort: an
    /// offline user, a full queue or an unreachable node drops it.
    pub(crate) async fn deliver_signal(&self, to: &UserJid, from: &UserJid, from_device: &str, payload: String) {
        match (self.remote_home(to), self.homes.get()) {
            (Some(node), Some(homes)) => homes.signal(node, to, from, from_device, payload).await,
            _ => self.signal_here(to, from, from_device, payload),
        }
    }

    /// Delivers a signal to `to`'s actor on this node if it is running (the user is online).
    pub fn signal_here(&self, to: &UserJid, from: &UserJid, from_device: &str, payload: String) {
        if let Some(a) = self.actors.get(to) {
            let cmd = Cmd::Signal { from: from.clone(), from_device: from_device.to_string(), payload };
            if a.try_send(cmd).is_err() {
                metrics::counter!("telex_signals_dropped_total").increment(1);
            }
        }
    }

    /// Delivers a subscription stanza to `to`'s actor on this node, starting it if needed.
    pub async fn subscription_here(&self, to: &UserJid, from: &UserJid, kind: SubscriptionKind) {
        let _ = self.actor(to).send(Cmd::Inbound { from: from.clone(), kind }).await;
    }

    /// Tells an online contact about `from`'s presence. Offline contacts cost nothing.
    pub(crate) fn presence_to(&self, contact: &UserJid, from: &UserJid, presence: Option<DevicePresence>) {
        if let Some(relay) = self.relay.get() {
            relay(contact, from, presence.clone());
        }
        self.deliver_presence(contact, from, presence);
    }

    fn deliver_presence(&self, contact: &UserJid, from: &UserJid, presence: Option<DevicePresence>) {
        if let Some(a) = self.actors.get(contact) {
            metrics::counter!("telex_presence_deliveries_total").increment(1);
            if a.try_send(Cmd::ContactPresence { from: from.clone(), presence }).is_err() {
                metrics::counter!("telex_presence_dropped_total").increment(1);
            }
        }
    }

    /// Disconnects every device (on shutdown), so clients reconnect to another node at once
    /// instead of holding streams open on a node that is going away.
    pub async fn close_all_sessions(&self) {
        self.closing.send_replace(true);
        self.moved(|_| true, "this node is shutting down").await;
    }

    /// Tells an online user's actor that its roster or block list changed in storage (perhaps
    /// through another node), so it reloads them before using them again.
    pub fn social_changed(&self, user: &UserJid) {
        if let Some(a) = self.actors.get(user) {
            let _ = a.try_send(Cmd::Reload);
        }
    }

    /// Tells an online user's actor that its archive grew. Offline users cost nothing.
    pub fn notify(&self, user: &UserJid) {
        if let Some(a) = self.actors.get(user) {
            // A full mailbox already has work queued that will read the new head.
            let _ = a.try_send(Cmd::Appended);
        }
    }
}

/// Changes of a user's presence closer together than this are coalesced.
const PRESENCE_WINDOW: Duration = Duration::from_millis(250);

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
    /// Presence of each device that announced one.
    pub(crate) devices: HashMap<String, DevicePresence>,
    pub(crate) coalescer: Coalescer<Option<DevicePresence>>,
    pub(crate) flush_at: Option<tokio::time::Instant>,
}

static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

impl UserActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            let idle = if self.sessions.is_empty() { IDLE } else { Duration::from_secs(86_400) };
            let flush_at = self.flush_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                _ = tick.tick() => Some(Cmd::Appended),
                _ = tokio::time::sleep_until(flush_at), if self.flush_at.is_some() => {
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
            Cmd::Attach { device, tx, kill, reply } => {
                let _ = reply.send(self.attach(device, tx, kill));
            }
            Cmd::Detach { device, id } => {
                if self.sessions.get(&device).is_some_and(|s| s.id == id) {
                    let s = self.sessions.remove(&device).expect("present");
                    self.persist(&device, &s.cursor, true);
                    self.device_gone(&device);
                }
            }
            Cmd::Ack { device, id, position } => {
                let Some(s) = self.sessions.get_mut(&device).filter(|s| s.id == id) else { return };
                if let Err(e) = s.cursor.ack(position) {
                    self.kill(&device, format!("invalid ack: {e:?}"));
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
                if self.sessions.get(&device).is_some_and(|s| s.id == id) {
                    self.set_presence(&device, presence);
                }
            }
            Cmd::ContactPresence { from, presence } => self.contact_presence(from, presence),
            Cmd::Signal { from, from_device, payload } => self.signal(from, from_device, payload),
            Cmd::Kick { device, reason, reply } => {
                let present = self.sessions.contains_key(&device);
                self.kill(&device, reason);
                let _ = reply.send(present);
            }
            Cmd::Reload => {
                self.roster = None;
                self.blocked = None;
            }
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
        tx: OutboundTx,
        kill: oneshot::Sender<String>,
    ) -> Result<SessionId, TelexError> {
        if let Some(old) = self.sessions.get(&device) {
            let cursor = old.cursor.clone();
            self.persist(&device, &cursor, true);
            self.kill(&device, "replaced by a newer session of the same device".into());
        } else {
            let limit = self.limits.for_tenant(&self.ledger.tenant_limits(self.user.domain())?).sessions_per_user;
            if self.sessions.len() >= limit {
                return Err(TelexError::new(
                    ErrorCode::ResourceExhausted,
                    format!("too many sessions for {}: the limit is {limit}", self.user),
                ));
            }
        }
        let mut durable = self.ledger.cursor(&self.user, &device)?;
        if durable == 0 {
            // A device seen for the first time catches up on what none of the user's devices
            // has received (offline messages), not on the whole archive: history is a query.
            let live = self.sessions.values().map(|s| s.cursor.acked()).max().unwrap_or(0);
            durable = self.ledger.latest_cursor(&self.user)?.max(live);
        }
        let id = SessionId(SESSION_IDS.fetch_add(1, Ordering::Relaxed));
        self.sessions.insert(
            device.clone(),
            Session { id, stalled_since: None, cursor: DeviceCursor::attach(durable), tx, kill: Some(kill) },
        );
        self.hub.session_started(&self.user, &device);
        self.pump(&device);
        Ok(id)
    }

    /// Sends the device whatever its window allows.
    fn pump(&mut self, device: &str) {
        let head = match self.ledger.head(&self.user) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(user = %self.user, error = %e, "cannot read archive head");
                return;
            }
        };
        let window = self.limits.delivery_window;
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
                    s.cursor.ack(position).expect("marked sent just above");
                    continue;
                }
                match s.tx.try_send(Box::new(Outbound::Message { position, message })) {
                    Ok(()) => {
                        s.cursor.mark_sent(position);
                        s.stalled_since = None;
                    }
                    // The queue is full: wait for the device to read; cut it off if it does not.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let since = *s.stalled_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= self.limits.stall_timeout {
                            metrics::counter!("telex_sessions_slow_reader_disconnects_total").increment(1);
                            let reason = format!(
                                "disconnected: the device stopped reading for {:?} with {} messages queued; reconnect to catch up",
                                self.limits.stall_timeout,
                                s.cursor.in_flight()
                            );
                            self.kill(device, reason);
                        }
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        let s = self.sessions.remove(device).expect("present");
                        self.persist(device, &s.cursor, true);
                        self.device_gone(device);
                        return;
                    }
                }
            }
        }
        let cursor = s.cursor.clone();
        self.persist(device, &cursor, false);
    }

    fn kill(&mut self, device: &str, reason: String) {
        if let Some(mut s) = self.sessions.remove(device) {
            tracing::info!(user = %self.user, device, reason = %reason, "session ended by server");
            if let Some(k) = s.kill.take() {
                let _ = k.send(reason);
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
