//! The core both adapters call: sessions, rosters, archives, vCards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use telex_actors::{HistoryQuery, Hub, Messaging, RoomHub, RosterOp, RosterReply, Said, Say};
use telex_policy::{decide, Action};
use telex_types::occupancy::{RoomCall, RoomReply};
use telex_types::records::ArchivedMessage;
use telex_types::room::{RoomEntry, RoomJid, RoomRecord};
use telex_types::{Domain, ErrorCode, TelexError, UserJid};

use crate::ports::{Directory, Home, Remote};
use crate::session::{Link, Session};

pub use telex_types::session::MAX_DEVICE_BYTES;

/// How long opening or re-attaching a session waits for the user's shard to have a reachable
/// leader before it gives up.
const ATTACH_PATIENCE: Duration = Duration::from_secs(5);
/// Room entries a new native session is given per room it missed them in (older: history).
const CATCH_UP_PER_ROOM: usize = 200;

/// Clonable handle to the session core of this node.
#[derive(Clone)]
pub struct Core(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) messaging: Messaging,
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) remote: Arc<dyn Remote>,
    /// Devices whose sessions this node serves as their gateway (the drain waits for them).
    pub(crate) devices: std::sync::atomic::AtomicUsize,
    /// Where sessions ended by this node's drain are sent, in turn (none: nowhere named).
    redirects: std::sync::RwLock<Option<Redirects>>,
    next_redirect: std::sync::atomic::AtomicUsize,
    /// Group chat (absent in some tests and fuzz targets: rooms are then unavailable).
    rooms: std::sync::OnceLock<RoomHub>,
}

/// The nodes clients may be sent to now, asked at each cut-off (peers that start draining
/// drop out).
pub type Redirects = Box<dyn Fn() -> Vec<Redirect> + Send + Sync>;

/// Another node's addresses as clients dial them, for clients of a draining node to go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// host:port of the native API.
    pub client: String,
    /// host:port of XMPP c2s.
    pub xmpp: String,
}

/// A valid device name, or a fresh one when none is given (XMPP clients may bind without one).
pub fn device_name(device: &str) -> Result<String, TelexError> {
    if device.is_empty() {
        use rand::Rng;
        return Ok(format!("telex-{:08x}", rand::thread_rng().gen::<u32>()));
    }
    telex_types::session::check_device(device)?;
    Ok(device.to_string())
}

impl Core {
    pub fn new(messaging: Messaging, directory: Arc<dyn Directory>, remote: Arc<dyn Remote>) -> Core {
        Core(Arc::new(Inner {
            messaging,
            directory,
            remote,
            devices: Default::default(),
            redirects: Default::default(),
            next_redirect: Default::default(),
            rooms: Default::default(),
        }))
    }

    /// Offers group chat through `rooms`.
    pub fn with_rooms(self, rooms: RoomHub) -> Core {
        let _ = self.0.rooms.set(rooms);
        self
    }

    /// The rooms of this node (an error where group chat is not offered).
    pub fn room_hub(&self) -> Result<&RoomHub, TelexError> {
        self.0.rooms.get().ok_or_else(|| TelexError::unavailable("group chat is not offered by this server"))
    }

    /// A device's call on a room (entering, refreshing, leaving), wherever its actor runs.
    pub async fn room_call(&self, room: &RoomJid, call: RoomCall) -> Result<RoomReply, TelexError> {
        self.room_hub()?.call(room, call).await
    }

    /// Says something in a room; answered once it is in the room's log.
    pub async fn room_say(&self, by: &UserJid, device: &str, room: &RoomJid, say: Say<'_>) -> Result<Said, TelexError> {
        self.room_hub()?.rooms().say(by, device, room, say).await
    }

    /// Up to `limit` entries of the room's log after `after`, and its head.
    pub async fn room_history(
        &self,
        by: &UserJid,
        room: &RoomJid,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, RoomEntry)>, u64), TelexError> {
        self.room_hub()?.rooms().history(by, room, after, limit).await
    }

    /// Where the entry with `server_id` is in the room's log.
    pub async fn room_position(
        &self,
        by: &UserJid,
        room: &RoomJid,
        server_id: &str,
    ) -> Result<Option<u64>, TelexError> {
        self.room_hub()?.rooms().position(by, room, server_id).await
    }

    /// A room as `by` may see it.
    pub async fn room(&self, by: &UserJid, room: &RoomJid) -> Result<RoomRecord, TelexError> {
        self.room_hub()?.rooms().get(by, room).await
    }

    /// The rooms of `by`'s tenant `by` may see.
    pub async fn rooms(&self, by: &UserJid) -> Result<Vec<RoomRecord>, TelexError> {
        self.room_hub()?.rooms().list(by).await
    }

    /// From now on, sessions this node ends because it is stopping are told to go to one of
    /// the nodes `to` lists at that moment, spread over them in turn.
    pub fn redirect_clients(&self, to: Redirects) {
        *self.0.redirects.write().unwrap_or_else(|e| e.into_inner()) = Some(to);
    }

    /// The address (`door` picks the protocol's) of the next node a client of this stopping
    /// node should go to, among those that advertise one.
    pub fn next_redirect(&self, door: impl Fn(&Redirect) -> &String) -> Option<String> {
        let all = self.0.redirects.read().unwrap_or_else(|e| e.into_inner());
        let doors: Vec<String> = all.as_ref()?().iter().map(&door).filter(|d| !d.is_empty()).cloned().collect();
        let turn = self.0.next_redirect.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        doors.get(turn.checked_rem(doors.len())?).cloned()
    }

    /// How many devices are connected through this node (sessions it serves as their gateway).
    pub fn connected_devices(&self) -> usize {
        self.0.devices.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn messaging(&self) -> &Messaging {
        &self.0.messaging
    }

    pub fn hub(&self) -> &Hub {
        self.0.messaging.hub()
    }

    pub fn directory(&self) -> &dyn Directory {
        self.0.directory.as_ref()
    }

    /// Opens a device session for an authenticated user, wherever the user's actor lives, and
    /// keeps it attached when the actor moves. With `hold`, nothing is delivered until the
    /// device announces its presence.
    pub async fn open(&self, jid: UserJid, device: &str, hold: bool) -> Result<Session, TelexError> {
        let device = device_name(device)?;
        let link = attach(self, &jid, &device, hold).await?;
        let mut session = Session::new(self.clone(), jid, device, link, hold, true);
        // A native device (not held for XMPP) starts with what it missed in its rooms: read
        // after attaching, so nothing falls between the two.
        if let (false, Ok(hub)) = (hold, self.room_hub()) {
            for (room, entries) in hub.rooms().unread(session.jid(), session.device(), CATCH_UP_PER_ROOM).await {
                session.catch_up(room, entries);
            }
        }
        Ok(session)
    }

    /// The node-to-node side of a session a gateway on another node routes here: served by the
    /// actor on this node only, and ended (not re-attached) when the actor moves, so the
    /// gateway attaches again where it went.
    pub async fn open_here(&self, jid: UserJid, device: &str, hold: bool) -> Result<Session, TelexError> {
        let device = device_name(device)?;
        match self.0.remote.home(&jid) {
            Home::Here => {}
            other => {
                let leader = match other {
                    Home::Node(n) => format!("node {n} does"),
                    _ => "no node does right now".to_string(),
                };
                return Err(TelexError::new(
                    ErrorCode::FailedPrecondition,
                    format!("this node does not serve the actor of {jid}; {leader}"),
                ));
            }
        }
        let link = self.hub().link(&jid, &device, hold).await?;
        Ok(Session::new(self.clone(), jid, device, Link::Local(link), hold, false))
    }

    /// A roster or block-list operation on the user's actor, wherever it lives.
    pub async fn roster(&self, user: &UserJid, op: RosterOp) -> Result<RosterReply, TelexError> {
        self.hub().roster(user, op).await
    }

    /// A page of `owner`'s archive for `reader`. Runs on the blocking pool: it reads storage.
    pub async fn history(
        &self,
        reader: &UserJid,
        owner: &UserJid,
        query: HistoryQuery,
    ) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        decide(reader, Action::ReadArchive, owner, &Default::default()).into_result().map_err(|d| d.error)?;
        let (messaging, owner) = (self.0.messaging.clone(), owner.clone());
        tokio::task::spawn_blocking(move || messaging.history(&owner, &query))
            .await
            .map_err(|e| TelexError::internal(format!("archive query failed: {e}")))?
    }

    /// `owner`'s vCard as `reader` may see it (`None`: there is none).
    pub async fn vcard(&self, reader: &UserJid, owner: &UserJid) -> Result<Option<String>, TelexError> {
        let facts = self.0.messaging.facts(reader, owner).await?;
        decide(reader, Action::ReadVCard, owner, &facts).into_result().map_err(|d| d.error)?;
        self.0.directory.vcard(owner).await
    }

    pub async fn set_vcard(&self, owner: &UserJid, vcard: String) -> Result<(), TelexError> {
        self.0.directory.set_vcard(owner, vcard).await
    }

    /// People of `user`'s directory matching `query` whom the policy lets it see.
    /// Only the entries `keep` accepts count towards `limit`.
    pub fn search_directory(
        &self,
        user: &UserJid,
        query: &str,
        limit: usize,
        keep: &dyn Fn(&UserJid, &telex_types::directory::UserAttributes) -> bool,
    ) -> Vec<(UserJid, telex_types::directory::UserAttributes)> {
        self.messaging().policies().search(user, query, limit.clamp(1, MAX_SEARCH), keep)
    }

    /// Whether this cluster serves `domain`.
    pub fn tenant_exists(&self, domain: &Domain) -> Result<bool, TelexError> {
        self.0.directory.tenant_exists(domain)
    }
}

/// Most directory entries one search returns.
pub const MAX_SEARCH: usize = 200;

/// Attaches a new session to the user's actor wherever it lives, waiting up to
/// `ATTACH_PATIENCE` for its shard to have a reachable leader. A draining node takes no new
/// sessions.
pub(crate) async fn attach(core: &Core, jid: &UserJid, device: &str, hold: bool) -> Result<Link, TelexError> {
    if core.hub().is_closing() {
        return Err(TelexError::unavailable("this node is shutting down; reconnect to another"));
    }
    reattach(core, jid, device, hold).await
}

/// Attaches an existing session again after its actor moved (also while this node drains: the
/// session follows its actor elsewhere until its turn to end).
pub(crate) async fn reattach(core: &Core, jid: &UserJid, device: &str, hold: bool) -> Result<Link, TelexError> {
    let deadline = Instant::now() + ATTACH_PATIENCE;
    let mut last = TelexError::unavailable("the user's shard has no leader yet");
    loop {
        if core.hub().is_closing() && !matches!(core.0.remote.home(jid), Home::Node(_)) {
            return Err(TelexError::unavailable("this node is shutting down; reconnect to another"));
        }
        match core.0.remote.home(jid) {
            Home::Here => match core.hub().link(jid, device, hold).await {
                Ok(l) => return Ok(Link::Local(l)),
                Err(e) if e.code == ErrorCode::Unavailable => last = e,
                Err(e) => return Err(e),
            },
            Home::Node(node) => match core.0.remote.attach(node, jid, device, hold).await {
                Ok(l) => return Ok(Link::remote(node, l)),
                // The node may have just lost the leadership: ask again.
                Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::FailedPrecondition) => last = e,
                Err(e) => return Err(e),
            },
            Home::Unknown => {}
        }
        if Instant::now() >= deadline {
            return Err(TelexError::unavailable(format!("could not reach the user's actor: {}", last.message)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
