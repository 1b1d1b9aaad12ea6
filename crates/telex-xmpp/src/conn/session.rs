//! A bound XMPP session: its state (what outlives a connection when the client can resume
//! it), frames from the session core turned into stanzas, and the loop that moves both ways.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures::FutureExt;
use telex_session::{ClientFrame, CutOff, SendMessage, ServerFrame};
use telex_types::{Domain, UserJid};
use tokio::sync::mpsc;

use super::{stream_error, End, Xmpp};
use crate::errors::stream_condition;
use crate::resume::{self, Registry, Take};
use crate::stanza::{self, bare, Inbound, Viewer};
use crate::wire::{serialize, Wire, WireError};
use crate::xml::{el, Element, Event};
use crate::{ns, sm};

/// Stanzas sent and not acknowledged by a stream-managed client before it is cut off...
const MAX_UNACKED: usize = 5_000;
/// ...or bytes of them (a resumable session keeps them for the client).
const MAX_UNACKED_BYTES: usize = 16 << 20;
/// Times a retryably refused message is sent (about 10 s of leader changes at 100 ms apart).
const MAX_SEND_ATTEMPTS: u32 = 100;
/// Frames written per batch before the connection flushes.
const BATCH: usize = 64;
/// Entities one device may have sent directed presence to.
const MAX_DIRECTED: usize = 1_000;
/// Presence updates held while the client is inactive (XEP-0352); past this, they go out.
const MAX_HELD: usize = 1_024;

/// A bound device session: what outlives a connection when the client can resume it.
pub struct Session {
    pub(crate) jid: UserJid,
    /// The full JID, `user@domain/resource`.
    pub(crate) full: String,
    /// The bare JID, which answers for the account.
    pub(crate) bare: String,
    pub(crate) domain: String,
    /// The device session in the core.
    pub(crate) device: telex_session::Session,
    /// The connection is a WebSocket (stanzas are written as whole documents).
    pub(crate) websocket: bool,
    /// The message being stored: XMPP processes a client's stanzas in order (RFC 6120 §10.1),
    /// so the next one waits in `next_send` (and the client is not read) until it commits.
    sending: Option<(SendMessage, u32)>,
    next_send: Option<SendMessage>,
    /// A send refused retryably (its shard is changing leader, a rate limit): it goes up again
    /// at this time with the same client id, which stores nothing twice.
    retry_at: Option<tokio::time::Instant>,
    pub(crate) inbound: sm::Inbound,
    pub(crate) outbound: sm::Outbound,
    /// Stream management is on.
    pub(crate) sm: bool,
    /// Set while an `<r/>` of ours is unanswered.
    requested: bool,
    /// The client's `<r/>`s waiting for their `<a/>`: the `h` each must report (everything
    /// received before it, handled).
    pub(crate) acks_due: VecDeque<u32>,
    pub(crate) carbons: bool,
    /// Archive position written and to be acknowledged once flushed (no stream management).
    to_ack: Option<u64>,
    next_id: u64,
    /// Registered for resumption under this id.
    pub(crate) resume_id: Option<(String, std::sync::Arc<Registry>)>,
    pub(crate) take: Option<mpsc::Receiver<Take>>,
    /// Entities this device sent directed presence to (told when it goes unavailable).
    directed: HashSet<String>,
    /// When the session was bound (Unix ms): messages sent before waited for the device.
    attached_at_ms: u64,
    pub(crate) roster_fetched: bool,
    pub(crate) blocklist_fetched: bool,
    /// XEP-0352: the client is inactive; presence waits in `held`, chat states are dropped.
    pub(crate) inactive: bool,
    held: Vec<(String, Element)>,
    /// The rooms this device is in (XEP-0045), and when it next tells them it still is.
    pub(crate) rooms: super::rooms::Rooms,
    pub(crate) rooms_refresh_at: tokio::time::Instant,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some((id, registry)) = &self.resume_id {
            registry.remove(id);
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn rand_suffix() -> u32 {
    use rand::Rng;
    rand::thread_rng().gen()
}

impl Session {
    pub(crate) fn new(jid: UserJid, domain: &Domain, device: telex_session::Session, websocket: bool) -> Session {
        Session {
            full: format!("{jid}/{}", device.device()),
            bare: jid.to_string(),
            jid,
            domain: domain.to_string(),
            device,
            websocket,
            sending: None,
            next_send: None,
            retry_at: None,
            inbound: sm::Inbound::default(),
            outbound: sm::Outbound::default(),
            sm: false,
            requested: false,
            acks_due: VecDeque::new(),
            carbons: false,
            to_ack: None,
            next_id: 0,
            resume_id: None,
            take: None,
            directed: HashSet::new(),
            attached_at_ms: now_ms(),
            roster_fetched: false,
            blocklist_fetched: false,
            inactive: false,
            held: Vec::new(),
            rooms: Default::default(),
            rooms_refresh_at: tokio::time::Instant::now() + telex_session::REFRESH_EVERY,
        }
    }

    /// A message for the session: goes up now if no other is being stored, else waits its turn.
    pub(crate) fn send_in_order(&mut self, m: SendMessage) {
        if self.sending.is_some() {
            self.next_send = Some(m);
            return;
        }
        self.sending = Some((m.clone(), 1));
        self.device.submit(ClientFrame::Send(m));
    }

    /// Sends the message refused retryably again.
    fn retry(&mut self) {
        self.retry_at = None;
        let Some((m, attempts)) = self.sending.as_mut() else { return };
        *attempts += 1;
        let m = m.clone();
        self.device.submit(ClientFrame::Send(m));
    }

    /// Whether the client may be read: nothing is waiting to go up.
    fn ready_for_input(&self) -> bool {
        self.next_send.is_none() && self.retry_at.is_none() && self.device.can_submit()
    }

    /// Records a stanza about to be written; the text to write.
    fn record(&mut self, stanza: &Element, position: Option<u64>) -> String {
        let text = serialize(stanza, self.websocket);
        if self.sm {
            self.outbound.sent(text.clone(), position);
        } else if let Some(p) = position {
            self.to_ack = Some(self.to_ack.map_or(p, |a| a.max(p)));
        }
        text
    }

    /// Writes a stanza of ours, counted for stream management.
    pub(crate) fn emit(&mut self, wire: &mut Wire, stanza: &Element) {
        let text = self.record(stanza, None);
        wire.send_text(&text);
    }

    /// An archive entry the client is not shown is still acknowledged with what it was shown.
    fn skipped(&mut self, position: Option<u64>) {
        let Some(p) = position else { return };
        if self.sm {
            self.outbound.skipped(p);
        } else {
            self.to_ack = Some(self.to_ack.map_or(p, |a| a.max(p)));
        }
    }

    /// Takes a frame from the core: the text to write, if any. `Err` ends the session.
    pub(crate) fn accept(&mut self, frame: Option<Result<ServerFrame, CutOff>>) -> Result<Option<String>, End> {
        let frame = match frame {
            Some(Ok(f)) => f,
            Some(Err(why)) => return Err(End::Error(stream_condition(&why), why.to_string())),
            None => return Err(stream_error("undefined-condition", "the session ended")),
        };
        if matches!(frame, ServerFrame::Room { .. }) {
            let me = self.full.clone();
            return Ok(super::rooms::event_stanza(&mut self.rooms, &me, frame).map(|st| self.record(&st, None)));
        }
        let position = match &frame {
            ServerFrame::Message { position, .. } => Some(*position),
            ServerFrame::Sent { client_id, result } => {
                let current = matches!(&self.sending, Some((m, _)) if &m.client_id == client_id);
                if current {
                    let attempts = self.sending.as_ref().map_or(0, |(_, n)| *n);
                    if let Err(r) = result {
                        if r.error.code.retryable() && attempts < MAX_SEND_ATTEMPTS {
                            let wait = r
                                .retry_after
                                .unwrap_or_default()
                                .clamp(Duration::from_millis(100), Duration::from_secs(5));
                            self.retry_at = Some(tokio::time::Instant::now() + wait);
                            return Ok(None);
                        }
                    }
                    self.sending = None;
                }
                self.inbound.sent(client_id);
                if current {
                    if let Some(next) = self.next_send.take() {
                        self.send_in_order(next);
                    }
                }
                None
            }
            _ => None,
        };
        if self.inactive {
            match &frame {
                // The latest presence of each contact device waits for the client to be active
                // (as many as `MAX_HELD`; past that, presence goes out as it comes).
                ServerFrame::Presence { .. } => {
                    let Some(p) = stanza::outbound(frame, &self.viewer()) else { return Ok(None) };
                    return Ok(self.hold(p).map(|p| self.record(&p, None)));
                }
                ServerFrame::Signal { payload, .. } if stanza::is_chat_state_only(payload) => return Ok(None),
                _ => {}
            }
        }
        match stanza::outbound(frame, &self.viewer()) {
            Some(s) => Ok(Some(self.record(&s, position))),
            None => {
                self.skipped(position);
                Ok(None)
            }
        }
    }

    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            me: &self.full,
            user: &self.jid,
            domain: &self.domain,
            carbons: self.carbons,
            roster_fetched: self.roster_fetched,
            blocklist_fetched: self.blocklist_fetched,
            offline_before_ms: self.attached_at_ms,
        }
    }

    /// Keeps a presence stanza while the client is inactive, replacing an older one from the
    /// same device; gives it back when it cannot be held (too many devices held already), to
    /// go out now.
    fn hold(&mut self, p: Element) -> Option<Element> {
        let from = p.attr("from").unwrap_or_default().to_string();
        if let Some(slot) = self.held.iter_mut().find(|(f, _)| f == &from) {
            slot.1 = p;
            return None;
        }
        if self.held.len() >= MAX_HELD {
            return Some(p);
        }
        self.held.push((from, p));
        None
    }

    /// The client became active again: what was held goes out, in order.
    pub(crate) fn flush_held(&mut self, wire: &mut Wire) {
        for (_, p) in std::mem::take(&mut self.held) {
            self.emit(wire, &p);
        }
    }

    /// The client acknowledged `h` stanzas (`<a/>` or `<resume/>`).
    pub(crate) fn client_acked(&mut self, h: u32) -> Result<(), End> {
        self.requested = false;
        match self.outbound.ack(h) {
            Ok(Some(p)) => self.device.submit(ClientFrame::Ack(p)),
            Ok(None) => {}
            Err(t) => {
                return Err(stream_error(
                    "undefined-condition",
                    format!("handled-count-too-high: h={} but only {} stanzas were sent", t.h, t.sent),
                ))
            }
        }
        Ok(())
    }

    /// A resumed session on a new connection: nothing of ours is awaiting an answer, the old
    /// stream's `<r/>`s died with it, and (XEP-0352 §5.2) the stream starts active, so what was
    /// held goes out.
    pub(crate) fn resumed(&mut self, wire: &mut Wire) {
        self.requested = false;
        self.acks_due.clear();
        self.inactive = false;
        self.flush_held(wire);
    }

    /// Tells every entity that got directed presence that this device is unavailable.
    pub(crate) fn unavailable_to_directed(&mut self) {
        for to in std::mem::take(&mut self.directed) {
            let gone = el("presence", &[("type", "unavailable")], vec![]);
            if let Inbound::Frame(f) = stanza::directed_presence(&to, false, &gone) {
                self.device.submit(f);
            }
        }
    }

    /// Keeps track of directed presence (RFC 6121 §4.6): whom this device told it is available.
    pub(crate) fn track_directed(&mut self, p: &Element) {
        match (p.attr("to"), p.attr("type")) {
            (Some(to), None) => {
                let to = bare(to);
                if UserJid::parse(to).is_ok() && self.directed.len() < MAX_DIRECTED {
                    self.directed.insert(to.to_string());
                }
            }
            (Some(to), Some("unavailable")) => {
                self.directed.remove(bare(to));
            }
            (None, Some("unavailable")) => self.unavailable_to_directed(),
            _ => {}
        }
    }

    pub(crate) fn overflowing(&self) -> bool {
        self.outbound.unacked() > MAX_UNACKED || self.outbound.bytes() > MAX_UNACKED_BYTES
    }

    pub(crate) fn next_client_id(&mut self) -> String {
        self.next_id += 1;
        format!("xmpp-{}-{}", rand_suffix(), self.next_id)
    }

    /// Answers the client's `<r/>`s whose stanzas are all handled now.
    fn answer_due_acks(&mut self, wire: &mut Wire) {
        let h = self.inbound.h();
        while let Some(&due) = self.acks_due.front() {
            // Counts wrap at 2^32; compare by distance.
            if (h.wrapping_sub(due) as i32) < 0 {
                break;
            }
            self.acks_due.pop_front();
            wire.send(&el("a", &[("xmlns", ns::SM), ("h", &h.to_string())], vec![]));
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How a bound session's loop ended.
enum Flow {
    End(End),
    /// The connection dropped; the session can be resumed.
    Park,
    /// The client resumed the session on another connection.
    HandOver(Take),
}

/// The connection is gone: a resumable session waits for its client; any other ends.
fn dropped(s: &Session) -> Flow {
    if s.take.is_some() {
        Flow::Park
    } else {
        Flow::End(End::Quiet)
    }
}

impl Xmpp {
    /// The bound session: stanzas in, frames out, until the stream or the session ends.
    pub(super) async fn established(&self, wire: &mut Wire, mut s: Session) -> End {
        match self.session_loop(wire, &mut s).await {
            Flow::Park => End::Park(Box::new(s)),
            Flow::HandOver(give) => {
                let _ = give.send(s);
                End::Quiet
            }
            Flow::End(end) => {
                // Whoever got directed presence learns the device is gone (RFC 6121 §4.6.3),
                // and so do the rooms it was in.
                s.unavailable_to_directed();
                self.leave_rooms(&mut s);
                end
            }
        }
    }

    /// The bound session's loop; says how it ended.
    async fn session_loop(&self, wire: &mut Wire, s: &mut Session) -> Flow {
        loop {
            let step = tokio::select! {
                _ = sleep_until(s.retry_at), if s.retry_at.is_some() => {
                    s.retry();
                    Ok(())
                }
                _ = tokio::time::sleep_until(s.rooms_refresh_at), if !s.rooms.is_empty() => {
                    s.rooms_refresh_at = tokio::time::Instant::now() + telex_session::REFRESH_EVERY;
                    self.refresh_rooms(wire, s).await;
                    Ok(())
                }
                ev = wire.read(), if s.ready_for_input() => match ev {
                    // Boxed: the request handling is large and rare; an idle session keeps
                    // only the small waiting state.
                    Ok(Some(Event::Stanza(e))) => Box::pin(self.stanza(wire, s, e)).await,
                    Ok(Some(Event::StreamClose)) => {
                        wire.close();
                        let _ = wire.flush().await;
                        return Flow::End(End::Quiet);
                    }
                    Ok(Some(Event::StreamOpen(_))) => Err(stream_error("not-well-formed", "a second stream header")),
                    Ok(None) | Err(WireError::Io(_)) => return dropped(s),
                    Err(e) => Err(e.into()),
                },
                f = s.device.next() => s.accept(f).map(|t| {
                    if let Some(t) = t {
                        wire.send_text(&t);
                    }
                }),
                t = resume::next_take(&mut s.take) => {
                    // The client resumed this session on another connection: hand it over.
                    match t {
                        Some(give) => return Flow::HandOver(give),
                        None => return Flow::End(End::Quiet),
                    }
                }
            };
            if let Err(end) = step {
                return Flow::End(end);
            }
            // Whatever else is ready goes out in the same write.
            for _ in 0..BATCH {
                let Some(f) = s.device.next().now_or_never() else { break };
                match s.accept(f) {
                    Ok(Some(t)) => wire.send_text(&t),
                    Ok(None) => {}
                    Err(end) => return Flow::End(end),
                }
            }
            s.answer_due_acks(wire);
            if wire.pending() {
                if s.sm && s.outbound.unacked() > 0 && !s.requested {
                    wire.send(&el("r", &[("xmlns", ns::SM)], vec![]));
                    s.requested = true;
                }
                if wire.flush().await.is_err() {
                    return dropped(s);
                }
                if let Some(p) = s.to_ack.take() {
                    s.device.submit(ClientFrame::Ack(p));
                }
            }
            if s.overflowing() {
                return Flow::End(stream_error(
                    "policy-violation",
                    format!("more than {MAX_UNACKED} stanzas or {MAX_UNACKED_BYTES} bytes unacknowledged"),
                ));
            }
        }
    }
}
