//! The registry of user actors on this node, and the calls other parts of the node make on
//! them. An actor exists while its user has sessions (plus a short idle grace period); see
//! `actor` for what it does.

use std::sync::Arc;

use dashmap::DashMap;
use futures::future::BoxFuture;
use telex_types::occupancy::{Recipient, RoomCall, RoomDelivery, RoomReply};
use telex_types::presence::DevicePresence;
use telex_types::room::{RoomEvent, RoomJid};
use telex_types::roster::SubscriptionKind;
use telex_types::session::{CutOff, ServerFrame};
use telex_types::{TelexError, UserJid};
use tokio::sync::{mpsc, oneshot};

use crate::actor::{spawn, Cmd};
use crate::link::DeviceLink;
use crate::{Ledger, Limits};
use telex_types::roster::{RosterOp, RosterReply};

/// A device's queue. Items are boxed so the channel's preallocated slots stay small: every
/// connected device holds one for hours.
pub type FrameTx = mpsc::Sender<Box<ServerFrame>>;
pub type FrameRx = mpsc::Receiver<Box<ServerFrame>>;

/// Frames queued towards one device; when full the actor waits, and cuts the device off if it
/// stays full (see `Limits::stall_timeout`). Smaller than the delivery window on purpose.
const DEVICE_QUEUE: usize = 64;

/// One connected device, for administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub user: UserJid,
    pub device: String,
    pub connected_at_ms: u64,
}

/// Identifies one attachment of a device (a reconnect gets a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub(crate) u64);

/// A node's drain: its own sessions end between `began` and `began + window`.
#[derive(Clone, Copy, Debug)]
pub struct Drain {
    pub began: tokio::time::Instant,
    pub window: std::time::Duration,
}

/// Clonable handle to every user actor of this node.
#[derive(Clone)]
pub struct Hub {
    pub(crate) actors: Arc<DashMap<UserJid, mpsc::Sender<Cmd>>>,
    /// Presence of every available device of every user with an actor here, or relayed from
    /// another node (for probes).
    pub(crate) online: Arc<DashMap<UserJid, Vec<(String, DevicePresence)>>>,
    /// Every connected device of this node.
    sessions: Arc<DashMap<(UserJid, String), SessionInfo>>,
    pub(crate) ledger: Arc<dyn Ledger>,
    pub(crate) limits: Limits,
    /// The tenants' compiled policies.
    pub(crate) policies: Arc<crate::policies::PolicyCache>,
    /// Where presence for contacts on other nodes goes (set by the node when clustered).
    relay: Arc<std::sync::OnceLock<PresenceRelay>>,
    /// Where actors of users led elsewhere live (set by the node when clustered).
    homes: Arc<std::sync::OnceLock<Box<dyn Homes>>>,
    /// Set when the node shuts down, for sessions served elsewhere through this node.
    /// Set once the node drains: when the drain began, and the window its own sessions end
    /// spread over.
    closing: Arc<tokio::sync::watch::Sender<Option<Drain>>>,
}

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
    fn signal(&self, node: u64, to: &UserJid, signal: Signal) -> BoxFuture<'static, ()>;
    /// The node leading the room's shard (where its actor runs) when it is not this one.
    fn room_home(&self, room: &RoomJid) -> Option<u64>;
    /// Runs a device's call on the room's actor on `node`.
    fn room_call(&self, node: u64, room: &RoomJid, call: RoomCall)
        -> BoxFuture<'static, Result<RoomReply, TelexError>>;
    /// Hands a batch of a room's events to `node`, for the recipients whose actors it holds.
    fn room_deliver(&self, node: u64, delivery: RoomDelivery) -> BoxFuture<'static, ()>;
}

/// A signal on its way to a user's online devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub from: UserJid,
    pub from_device: String,
    pub payload: String,
}

/// One device's presence on its way to a contact on another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceChange {
    /// Whose devices should see it.
    pub to: UserJid,
    pub from: UserJid,
    pub device: String,
    /// `None`: that device is unavailable.
    pub presence: Option<DevicePresence>,
}

/// Sends a presence change to the other nodes of the cluster; must not block.
pub type PresenceRelay = Box<dyn Fn(PresenceChange) + Send + Sync>;

impl Hub {
    pub fn new(ledger: Arc<dyn Ledger>, limits: Limits) -> Self {
        Hub {
            actors: Arc::new(DashMap::new()),
            online: Arc::new(DashMap::new()),
            sessions: Arc::new(DashMap::new()),
            ledger,
            limits,
            policies: crate::policies::PolicyCache::new(),
            relay: Arc::default(),
            homes: Arc::default(),
            closing: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }

    /// Becomes `Some` when the node starts shutting down: the sessions connected here end
    /// spread over the drain's window.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<Option<Drain>> {
        self.closing.subscribe()
    }

    pub fn is_closing(&self) -> bool {
        self.closing.borrow().is_some()
    }

    /// Ends every session of the users `which` selects: their actor moved (the sessions attach
    /// again where it lives now).
    pub async fn moved(&self, which: impl Fn(&UserJid) -> bool) -> usize {
        let devices: Vec<(UserJid, String)> =
            self.sessions.iter().map(|s| s.key().clone()).filter(|(u, _)| which(u)).collect();
        for (user, device) in &devices {
            self.cut_off(user, device, CutOff::Moved).await;
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

    pub(crate) fn homes(&self) -> Option<&dyn Homes> {
        self.homes.get().map(|h| h.as_ref())
    }

    /// The node holding `user`'s actor when it is not this one.
    pub(crate) fn user_home(&self, user: &UserJid) -> Option<u64> {
        self.remote_home(user)
    }

    /// The node whose room actor serves `room` when it is not this one.
    pub(crate) fn room_home(&self, room: &RoomJid) -> Option<u64> {
        self.homes.get().and_then(|h| h.room_home(room))
    }

    /// A room's events for the recipients whose actors are here (offline users cost nothing;
    /// a full mailbox drops the batch for that user, counted).
    pub fn room_deliver_here(&self, room: &RoomJid, events: Arc<Vec<RoomEvent>>, to: &[Recipient]) {
        for r in to {
            let Some(a) = self.actors.get(&r.user) else { continue };
            let cmd = Cmd::Room {
                room: room.clone(),
                events: events.clone(),
                devices: r.devices.clone(),
                members: r.members,
            };
            if a.try_send(cmd).is_err() {
                metrics::counter!("telex_room_deliveries_dropped_total").increment(1);
            }
        }
    }

    /// Presence for contacts whose actors live on other nodes goes through `relay`.
    pub fn set_presence_relay(&self, relay: PresenceRelay) {
        let _ = self.relay.set(relay);
    }

    /// Presence relayed from another node: one of `from`'s devices, for `to`'s devices here.
    pub fn presence_from_peer(&self, change: PresenceChange) {
        // Remembered for probes by this node's users, unless `from`'s actor is here (it keeps
        // its own devices' presence).
        if !self.actors.contains_key(&change.from) {
            remember(&self.online, &change.from, &change.device, change.presence.clone());
        }
        self.deliver_presence(change);
    }

    /// Number of users with a live actor.
    pub fn online_users(&self) -> usize {
        self.actors.len()
    }

    /// The user's actor, started if needed.
    pub(crate) fn actor(&self, user: &UserJid) -> mpsc::Sender<Cmd> {
        // The guard is dropped before any await.
        let entry = self.actors.entry(user.clone()).or_insert_with(|| spawn(self, user.clone()));
        if !entry.is_closed() {
            return entry.clone();
        }
        drop(entry);
        let fresh = spawn(self, user.clone());
        self.actors.insert(user.clone(), fresh.clone());
        fresh
    }

    /// Attaches a device session to the user's actor on this node. Archive entries after the
    /// device's cursor start flowing at once, or, with `hold`, once the device announces its
    /// presence (XMPP delivers offline messages after initial presence).
    pub async fn link(&self, user: &UserJid, device: &str, hold: bool) -> Result<DeviceLink, TelexError> {
        let (tx, rx) = mpsc::channel(DEVICE_QUEUE);
        let (kill, killed) = oneshot::channel();
        let mut kill = kill;
        for _ in 0..2 {
            let (reply, answer) = oneshot::channel();
            let actor = self.actor(user);
            let cmd = Cmd::Attach { device: device.to_string(), tx: tx.clone(), kill, hold, reply };
            match actor.send(cmd).await {
                Ok(()) => {
                    let id = answer.await.unwrap_or_else(|_| Err(TelexError::unavailable("session actor stopped")))?;
                    tracing::info!(user = %user, device, "session attached");
                    return Ok(DeviceLink::new(user.clone(), device.to_string(), id, actor, rx, killed));
                }
                // The actor was just evicting itself: start a fresh one and try again.
                Err(mpsc::error::SendError(Cmd::Attach { kill: k, .. })) => {
                    kill = k;
                    self.actors.remove_if(user, |_, h| h.is_closed());
                }
                Err(_) => return Err(TelexError::internal("attach sent something other than an attach")),
            }
        }
        Err(TelexError::unavailable("could not start the user's session actor"))
    }

    /// Connected devices, of one user or of everyone, sorted.
    pub fn sessions(&self, user: Option<&UserJid>) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> =
            self.sessions.iter().filter(|e| user.is_none_or(|u| &e.key().0 == u)).map(|e| e.value().clone()).collect();
        out.sort_by(|a, b| (&a.user, &a.device).cmp(&(&b.user, &b.device)));
        out
    }

    /// Ends a device's session for `why`; false when it is not connected.
    pub async fn cut_off(&self, user: &UserJid, device: &str, why: CutOff) -> bool {
        let Some(actor) = self.actors.get(user).map(|a| a.clone()) else { return false };
        let (reply, answer) = oneshot::channel();
        if actor.send(Cmd::Kick { device: device.to_string(), why, reply }).await.is_err() {
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

    /// Delivers a subscription stanza to `to`'s actor, wherever it lives.
    pub(crate) async fn deliver_subscription(&self, to: &UserJid, from: &UserJid, kind: SubscriptionKind) {
        match (self.remote_home(to), self.homes.get()) {
            (Some(node), Some(homes)) => homes.subscription(node, to, from, kind).await,
            _ => self.subscription_here(to, from, kind).await,
        }
    }

    /// Delivers a signal to `to`'s online devices, wherever its actor lives. Best effort: an
    /// offline user, a full queue or an unreachable node drops it.
    pub(crate) async fn deliver_signal(&self, to: &UserJid, signal: Signal) {
        match (self.remote_home(to), self.homes.get()) {
            (Some(node), Some(homes)) => homes.signal(node, to, signal).await,
            _ => self.signal_here(to, signal),
        }
    }

    /// Delivers a signal to `to`'s actor on this node if it is running (the user is online).
    pub fn signal_here(&self, to: &UserJid, signal: Signal) {
        if let Some(a) = self.actors.get(to) {
            if a.try_send(Cmd::Signal(signal)).is_err() {
                metrics::counter!("telex_signals_dropped_total").increment(1);
            }
        }
    }

    /// Delivers a subscription stanza to `to`'s actor on this node, starting it if needed.
    pub async fn subscription_here(&self, to: &UserJid, from: &UserJid, kind: SubscriptionKind) {
        let _ = self.actor(to).send(Cmd::Inbound { from: from.clone(), kind }).await;
    }

    /// Tells an online contact about one of `from`'s devices. Offline contacts cost nothing.
    pub(crate) fn presence_to(&self, change: PresenceChange) {
        if let Some(relay) = self.relay.get() {
            relay(change.clone());
        }
        self.deliver_presence(change);
    }

    fn deliver_presence(&self, change: PresenceChange) {
        if let Some(a) = self.actors.get(&change.to) {
            metrics::counter!("telex_presence_deliveries_total").increment(1);
            if a.try_send(Cmd::ContactPresence(change)).is_err() {
                metrics::counter!("telex_presence_dropped_total").increment(1);
            }
        }
    }

    /// On shutdown: refuses new sessions, and tells every actor's sessions that it moved, so
    /// sessions routed here from other gateways attach again elsewhere at once. The devices
    /// connected to this node follow their actors too, then end one by one over `window` (each
    /// at its own offset), so their clients reconnect to other nodes gradually rather than all
    /// at once.
    pub async fn close_all_sessions(&self, window: std::time::Duration) {
        self.closing.send_replace(Some(Drain { began: tokio::time::Instant::now(), window }));
        self.moved(|_| true).await;
    }

    /// Tells an online user's actor that its roster or block list changed in storage (perhaps
    /// through another node), so it reloads them before using them again.
    pub fn social_changed(&self, user: &UserJid) {
        if let Some(a) = self.actors.get(user) {
            let _ = a.try_send(Cmd::Reload);
        }
    }

    /// Tells the actors of `tenant`'s users that its directory or policy changed, so each
    /// shows the contacts shared roster groups now give it.
    pub fn directory_changed(&self, tenant: &telex_types::Domain) {
        let actors: Vec<mpsc::Sender<Cmd>> =
            self.actors.iter().filter(|a| a.key().domain() == tenant).map(|a| a.value().clone()).collect();
        for a in actors {
            if let Err(mpsc::error::TrySendError::Full(cmd)) = a.try_send(Cmd::SharedChanged) {
                // A busy actor still must learn of it.
                tokio::spawn(async move {
                    let _ = a.send(cmd).await;
                });
            }
        }
    }

    /// Tells an online user's actor that its archive grew. Offline users cost nothing.
    pub fn notify(&self, user: &UserJid) {
        if let Some(a) = self.actors.get(user) {
            // A full mailbox already has work queued that will read the new head.
            let _ = a.try_send(Cmd::Appended);
        }
    }

    /// The available devices of `user` known here (an actor here, or relayed), for probes.
    pub(crate) fn devices_of(&self, user: &UserJid) -> Vec<(String, DevicePresence)> {
        self.online.get(user).map(|d| d.clone()).unwrap_or_default()
    }
}

/// Records one device's presence in a per-user list (`None` removes it).
pub(crate) fn remember(
    online: &DashMap<UserJid, Vec<(String, DevicePresence)>>,
    user: &UserJid,
    device: &str,
    presence: Option<DevicePresence>,
) {
    let mut entry = online.entry(user.clone()).or_default();
    entry.retain(|(d, _)| d != device);
    if let Some(p) = presence {
        entry.push((device.to_string(), p));
    }
    let empty = entry.is_empty();
    drop(entry);
    if empty {
        online.remove_if(user, |_, v| v.is_empty());
    }
}
