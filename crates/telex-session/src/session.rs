//! One device session, polled by its connection. The session is attached to the user's actor:
//! on this node directly (a `DeviceLink`: no task, no channel of its own), or on the node that
//! leads the user's shard (a remote attachment). When the actor moves (its shard's leader
//! changed, that node died or is shutting down) the session attaches again where it lives
//! now, without the device reconnecting: sends that were in flight on the old attachment, or
//! that arrive while it re-attaches, are answered retryably (the device retries with the same
//! client id; the archive deduplicates), and the device's last presence is replayed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use telex_actors::{DeviceLink, LinkEvent};
use telex_types::presence::DevicePresence;
use telex_types::room::{RoomEntry, RoomEvent, RoomJid};
use telex_types::session::{ClientFrame, CutOff, Refused, ServerFrame};
use telex_types::UserJid;
use tokio::sync::mpsc;

use crate::core::{reattach, Core};
use crate::ports::{Home, RemoteEvent, RemoteLink};

/// Sends (and signals) of one session being carried out at once; the adapter stops reading
/// its client while this many are in flight.
pub const SENDS_IN_FLIGHT: usize = 64;
/// How often a remote attachment checks that its node still serves the user.
const LEADER_CHECK: Duration = Duration::from_millis(200);
/// Attachments in a row that end before the device got anything: something is wrong.
const MAX_EMPTY_ATTACHMENTS: usize = 20;
/// Pause before attaching again, so a flapping leadership does not spin.
const REATTACH_PAUSE: Duration = Duration::from_millis(20);

/// Sends and signals accepted from the device: tasks of their own, so one the server accepted
/// completes even if the device goes away before its answer (a message is then stored, or
/// not, exactly as if the answer had been read).
type Work = FuturesUnordered<tokio::task::JoinHandle<Option<ServerFrame>>>;
type Reservation = BoxFuture<'static, Option<mpsc::OwnedPermit<ClientFrame>>>;

// The local attachment is the common case: kept inline rather than boxed.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Link {
    Local(DeviceLink),
    Remote(Box<RemoteAttachment>),
    Attaching(BoxFuture<'static, Result<Link, telex_types::TelexError>>),
    Ended,
}

pub(crate) struct RemoteAttachment {
    node: u64,
    up: mpsc::Sender<ClientFrame>,
    /// Frames for the remote node that did not fit in `up` yet.
    pending: VecDeque<ClientFrame>,
    reserving: Option<Reservation>,
    down: BoxStream<'static, RemoteEvent>,
    check: tokio::time::Interval,
    /// Resolves when this node starts shutting down.
    closing: Option<BoxFuture<'static, ()>>,
}

impl Link {
    pub(crate) fn remote(node: u64, link: RemoteLink) -> Link {
        let mut check = tokio::time::interval(LEADER_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Link::Remote(Box::new(RemoteAttachment {
            node,
            up: link.up,
            pending: VecDeque::new(),
            reserving: None,
            down: link.down,
            check,
            closing: None,
        }))
    }
}

impl Drop for RemoteAttachment {
    /// Frames the device sent that have not reached the remote node yet (an unavailable to the
    /// entities it sent directed presence to, say) still go, then the stream ends.
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (up, pending) = (self.up.clone(), std::mem::take(&mut self.pending));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for f in pending {
                    if up.send(f).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
}

impl RemoteAttachment {
    /// Hands pending frames to the remote stream as far as it has room; false if it is gone.
    fn flush(&mut self, cx: &mut Context<'_>) -> bool {
        while let Some(f) = self.pending.pop_front() {
            if let Some(r) = self.reserving.as_mut() {
                match r.poll_unpin(cx) {
                    Poll::Ready(Some(permit)) => {
                        self.reserving = None;
                        permit.send(f);
                        continue;
                    }
                    Poll::Ready(None) => return false,
                    Poll::Pending => {
                        self.pending.push_front(f);
                        return true;
                    }
                }
            }
            match self.up.try_send(f) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(f)) => {
                    self.pending.push_front(f);
                    let up = self.up.clone();
                    self.reserving = Some(Box::pin(async move { up.reserve_owned().await.ok() }));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// A device session. Frames from the device go in with [`Session::submit`]; what the device
/// receives comes out of [`Session::poll_next`] / [`Session::next`], ending with the reason
/// when the server cuts it off.
pub struct Session {
    core: Core,
    jid: UserJid,
    device: String,
    link: Link,
    /// Sends and signals being carried out on this node (for a local attachment).
    work: Option<Work>,
    /// Answers made here: sends that could not be carried while re-attaching.
    answers: VecDeque<ServerFrame>,
    /// The device's last presence, replayed after a re-attach.
    presence: Option<DevicePresence>,
    /// Deliver nothing until the device announces its presence.
    hold: bool,
    /// Attach again when the actor moves (else end with `CutOff::Moved`).
    follow: bool,
    /// Sends handed to a remote attachment and not answered yet.
    in_flight: HashSet<String>,
    got_any: bool,
    empty_attachments: usize,
    ended: bool,
    /// The last room log position handed to the device, per room: a room actor that starts
    /// again (its shard's leader moved) re-sends its last seconds, and the user's actor may
    /// have moved too, so repeats are dropped here, next to the device.
    room_seen: HashMap<RoomJid, u64>,
}

/// Rooms whose positions a session remembers (a device in more starts over with the oldest).
const ROOM_SEEN_MAX: usize = 4096;

impl Session {
    /// The core this session runs in.
    pub fn core(&self) -> &Core {
        &self.core
    }

    pub(crate) fn new(core: Core, jid: UserJid, device: String, link: Link, hold: bool, follow: bool) -> Session {
        if follow {
            core.0.devices.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Session {
            core,
            jid,
            device,
            link,
            work: None,
            answers: VecDeque::new(),
            presence: None,
            hold,
            follow,
            in_flight: HashSet::new(),
            got_any: false,
            empty_attachments: 0,
            room_seen: HashMap::new(),
            ended: false,
        }
    }

    pub fn jid(&self) -> &UserJid {
        &self.jid
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// Whether the session takes another frame now; while it does not, the adapter stops
    /// reading its client (the frames it has are being carried out).
    pub fn can_submit(&self) -> bool {
        let work = self.work.as_ref().map_or(0, |w| w.len());
        let pending = match &self.link {
            Link::Remote(r) => r.pending.len(),
            _ => 0,
        };
        work < SENDS_IN_FLIGHT && pending < SENDS_IN_FLIGHT && self.answers.len() < SENDS_IN_FLIGHT
    }

    /// Whether frames submitted earlier are still being carried out (results to come).
    pub fn busy(&self) -> bool {
        self.work.as_ref().is_some_and(|w| !w.is_empty()) || !self.answers.is_empty() || !self.in_flight.is_empty()
    }

    /// Hands a frame from the device to the session. Never waits: results come out of
    /// `poll_next`, which must keep being polled.
    pub fn submit(&mut self, frame: ClientFrame) {
        if let ClientFrame::RoomRead { room, position } = frame {
            // Written from here, wherever the user's actor is: the cursor lives in the room's
            // shard. No answer: a refused one is only logged.
            let (core, jid, device) = (self.core.clone(), self.jid.clone(), self.device.clone());
            self.work.get_or_insert_with(Work::new).push(tokio::spawn(async move {
                let marked = match core.room_hub() {
                    Ok(hub) => hub.rooms().mark_read(&jid, &device, &room, position).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = marked {
                    tracing::debug!(user = %jid, %room, error = %e, "room cursor not moved");
                }
                None
            }));
            return;
        }
        if let ClientFrame::Presence(p) = &frame {
            self.presence = Some(p.clone());
            self.hold = false;
        }
        match &mut self.link {
            Link::Local(link) => match frame {
                ClientFrame::Ack(position) => link.ack(position),
                // Carried out above, before the link is looked at.
                ClientFrame::RoomRead { .. } => {}
                ClientFrame::Presence(p) => link.set_presence(p),
                ClientFrame::Send(m) => {
                    let (messaging, jid, device) =
                        (self.core.messaging().clone(), self.jid.clone(), self.device.clone());
                    let client_id = m.client_id.clone();
                    self.work.get_or_insert_with(Work::new).push(tokio::spawn(async move {
                        let result = messaging.send(&jid, &device, m).await;
                        Some(ServerFrame::Sent { client_id, result })
                    }));
                }
                ClientFrame::Signal { to, payload } => {
                    let (messaging, jid, device) =
                        (self.core.messaging().clone(), self.jid.clone(), self.device.clone());
                    self.work.get_or_insert_with(Work::new).push(tokio::spawn(async move {
                        // Best effort, no answer: a refused signal is only logged.
                        if let Err(r) = messaging.signal(&jid, &device, &to, payload).await {
                            tracing::debug!(user = %jid, error = %r.error, "signal dropped");
                        }
                        None
                    }));
                }
            },
            Link::Remote(r) => {
                if let ClientFrame::Send(m) = &frame {
                    self.in_flight.insert(m.client_id.clone());
                }
                r.pending.push_back(frame);
            }
            // Nothing carries frames right now: sends are refused retryably, the rest waits for
            // the next attachment (presence is replayed, acks are repeated by later ones).
            Link::Attaching(_) | Link::Ended => {
                if let ClientFrame::Send(m) = frame {
                    self.answers
                        .push_back(ServerFrame::Sent { client_id: m.client_id, result: Err(Refused::moving()) });
                }
            }
        }
    }

    /// The next frame for the device; `Err` when the server ended the session (then `None`).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ServerFrame, CutOff>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(f) = self.answers.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(work) = self.work.as_mut().filter(|w| !w.is_empty()) {
            while let Poll::Ready(Some(done)) = work.poll_next_unpin(cx) {
                match done {
                    Ok(Some(f)) => return Poll::Ready(Some(Ok(f))),
                    Ok(None) => {}
                    Err(e) => tracing::error!(user = %self.jid, error = %e, "a send task failed"),
                }
            }
        }
        loop {
            match &mut self.link {
                Link::Ended => return Poll::Ready(None),
                Link::Attaching(attaching) => match attaching.poll_unpin(cx) {
                    Poll::Ready(Ok(link)) => {
                        self.link = link;
                        self.attached();
                    }
                    Poll::Ready(Err(e)) => return self.end(CutOff::Unreachable(e.message)),
                    Poll::Pending => return Poll::Pending,
                },
                Link::Local(link) => match link.poll_next(cx) {
                    Poll::Ready(LinkEvent::Frame(f)) => {
                        self.got_any = true;
                        if self.repeated(&f) {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(*f)));
                    }
                    // Without a reason the actor stopped: it may have moved as well.
                    Poll::Ready(LinkEvent::Ended(None | Some(CutOff::Moved))) => {
                        if let Some(end) = self.moved() {
                            return end;
                        }
                    }
                    Poll::Ready(LinkEvent::Ended(Some(why))) => return self.end(why),
                    Poll::Pending => return Poll::Pending,
                },
                Link::Remote(r) => {
                    if !r.flush(cx) {
                        if let Some(end) = self.moved() {
                            return end;
                        }
                        continue;
                    }
                    let closing = r.closing.get_or_insert_with(|| {
                        let mut closing = self.core.hub().closing();
                        let offset = drain_offset(&self.jid, &self.device);
                        Box::pin(async move {
                            // The same moment however often the session re-attaches meanwhile.
                            let at = match closing.wait_for(Option::is_some).await {
                                Ok(d) => d.map(|d| d.began + d.window.mul_f64(offset)),
                                Err(_) => return,
                            };
                            if let Some(at) = at {
                                tokio::time::sleep_until(at).await;
                            }
                        })
                    });
                    if closing.poll_unpin(cx).is_ready() {
                        return self.end(CutOff::ShuttingDown);
                    }
                    // Every ready tick is taken, so the timer's waker stays registered.
                    let mut moved = false;
                    while r.check.poll_tick(cx).is_ready() {
                        moved |= match self.core.0.remote.home(&self.jid) {
                            Home::Here => true,
                            Home::Node(n) => n != r.node,
                            Home::Unknown => false,
                        };
                    }
                    if moved {
                        if let Some(end) = self.moved() {
                            return end;
                        }
                        continue;
                    }
                    let Link::Remote(r) = &mut self.link else { continue };
                    match r.down.poll_next_unpin(cx) {
                        Poll::Ready(Some(RemoteEvent::Frame(f))) => {
                            self.got_any = true;
                            if let ServerFrame::Sent { client_id, .. } = f.as_ref() {
                                self.in_flight.remove(client_id);
                            }
                            if self.repeated(&f) {
                                continue;
                            }
                            return Poll::Ready(Some(Ok(*f)));
                        }
                        Poll::Ready(Some(RemoteEvent::End(CutOff::Moved))) => {
                            if let Some(end) = self.moved() {
                                return end;
                            }
                        }
                        Poll::Ready(Some(RemoteEvent::End(why))) => return self.end(why),
                        // The node serving it went away: attach again.
                        Poll::Ready(Some(RemoteEvent::Lost(_)) | None) => {
                            if let Some(end) = self.moved() {
                                return end;
                            }
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }

    /// Room entries the device missed, handed to it before anything live (a repeat of them
    /// arriving live is dropped).
    pub(crate) fn catch_up(&mut self, room: RoomJid, entries: Vec<(u64, RoomEntry)>) {
        for (position, entry) in entries {
            let f = ServerFrame::Room { room: room.clone(), event: RoomEvent::Entry { position, entry } };
            if !self.repeated(&f) {
                self.answers.push_back(f);
            }
        }
    }

    /// Whether `f` is a room entry the device was already given.
    fn repeated(&mut self, f: &ServerFrame) -> bool {
        let ServerFrame::Room { room, event: RoomEvent::Entry { position, .. } } = f else { return false };
        if let Some(seen) = self.room_seen.get_mut(room) {
            if *position <= *seen {
                return true;
            }
            *seen = *position;
            return false;
        }
        if self.room_seen.len() >= ROOM_SEEN_MAX {
            self.room_seen.clear();
        }
        self.room_seen.insert(room.clone(), *position);
        false
    }

    /// The next frame for the device, as a future.
    pub async fn next(&mut self) -> Option<Result<ServerFrame, CutOff>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn end(&mut self, why: CutOff) -> Poll<Option<Result<ServerFrame, CutOff>>> {
        self.ended = true;
        self.link = Link::Ended;
        Poll::Ready(Some(Err(why)))
    }

    /// The actor moved: attach again where it lives now (or end, if this session does not
    /// follow it or keeps losing it). `Some` is what to return from `poll_next`.
    fn moved(&mut self) -> Option<Poll<Option<Result<ServerFrame, CutOff>>>> {
        if !self.follow {
            return Some(self.end(CutOff::Moved));
        }
        // A draining node's sessions follow their actor to its new node (and end later, at
        // their offset in the drain window); with nowhere else to go they end now.
        if self.core.hub().is_closing() && !matches!(self.core.0.remote.home(&self.jid), Home::Node(_)) {
            return Some(self.end(CutOff::ShuttingDown));
        }
        // Sends the old attachment never answered may or may not have been stored.
        for client_id in self.in_flight.drain() {
            self.answers.push_back(ServerFrame::Sent { client_id, result: Err(Refused::moving()) });
        }
        self.empty_attachments = if self.got_any { 0 } else { self.empty_attachments + 1 };
        self.got_any = false;
        if self.empty_attachments >= MAX_EMPTY_ATTACHMENTS {
            return Some(self.end(CutOff::Unreachable("the session keeps losing its actor".into())));
        }
        metrics::counter!("telex_sessions_reattached_total").increment(1);
        tracing::info!(user = %self.jid, device = %self.device, "re-attaching session to the user's actor");
        let (core, jid, device, hold) = (self.core.clone(), self.jid.clone(), self.device.clone(), self.hold);
        self.link = Link::Attaching(Box::pin(async move {
            tokio::time::sleep(REATTACH_PAUSE).await;
            reattach(&core, &jid, &device, hold).await
        }));
        if let Some(f) = self.answers.pop_front() {
            return Some(Poll::Ready(Some(Ok(f))));
        }
        None
    }

    /// A fresh attachment: replay the device's presence.
    fn attached(&mut self) {
        let Some(p) = self.presence.clone() else { return };
        match &mut self.link {
            Link::Local(l) => l.set_presence(p),
            Link::Remote(r) => r.pending.push_back(ClientFrame::Presence(p)),
            _ => {}
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.follow {
            self.core.0.devices.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Where in a drain window a device's session ends: a fraction in [0, 1) fixed by its user and
/// device, so a node's sessions end spread evenly over the window.
fn drain_offset(jid: &UserJid, device: &str) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (jid.to_string(), device).hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl futures::Stream for Session {
    type Item = Result<ServerFrame, CutOff>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Session::poll_next(self.get_mut(), cx)
    }
}
