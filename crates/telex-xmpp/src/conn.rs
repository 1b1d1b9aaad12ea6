//! One client connection: stream negotiation (STARTTLS, SASL, bind or resume), then the
//! session: stanzas from the client become session frames or answered requests, and frames
//! from the user's actor become stanzas, written in batches.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use telex_accounts::Accounts;
use telex_actors::{HistoryQuery, Messaging, RosterOp, RosterReply};
use telex_api::{FrameResult, FrameStream};
use telex_proto::v1 as pb;
use telex_types::{Domain, ErrorCode, TelexError, UserJid};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::iq::{self, MamQuery, Request};
use crate::resume::{self, Registry, Take};
use crate::stanza::{self, bare, el, text_el, Inbound, Subscription};
use crate::wire::{Transport, Wire, WireError};
use crate::xml::{Element, Event, Limits, Node};
use crate::{auth, ns, sm};

#[derive(Clone, Debug)]
pub struct XmppConfig {
    pub limits: Limits,
    /// Time a connection has to authenticate.
    pub preauth_timeout: Duration,
    /// How long a dropped stream-managed session waits for its client to resume it.
    pub resume_timeout: Duration,
    /// Require TLS before authentication on connections that are not from loopback.
    pub require_tls: bool,
}

impl Default for XmppConfig {
    fn default() -> Self {
        XmppConfig {
            limits: Limits::default(),
            preauth_timeout: Duration::from_secs(30),
            resume_timeout: Duration::from_secs(300),
            require_tls: true,
        }
    }
}

/// Stanzas sent and not acknowledged by a stream-managed client before it is cut off.
const MAX_UNACKED: usize = 5_000;
/// Failed authentications before the stream ends.
const MAX_AUTH_FAILURES: usize = 3;
/// Times a retryably refused message is sent (about 10 s of leader changes at 100 ms apart).
const MAX_SEND_ATTEMPTS: u32 = 100;
/// Frames written per batch before the connection flushes.
const BATCH: usize = 64;

/// The XMPP front door: shared by every connection of every transport.
pub struct Xmpp {
    accounts: Arc<Accounts>,
    messaging: Messaging,
    config: XmppConfig,
    tls: Option<TlsAcceptor>,
    resumable: Arc<Registry>,
}

/// Why a stream ends.
pub(crate) enum End {
    /// Closed cleanly, or the peer is gone: nothing more to write.
    Quiet,
    /// A stream error (RFC 6120 §4.9) with a text naming the problem.
    Error(&'static str, String),
    /// The connection dropped with a resumable session: keep it for a while.
    Park(Box<Session>),
}

fn stream_error(condition: &'static str, text: impl Into<String>) -> End {
    End::Error(condition, text.into())
}

impl From<WireError> for End {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Io(_) => End::Quiet,
            WireError::Xml(x) => End::Error(x.condition(), x.message().to_string()),
        }
    }
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Quiet
    }
}

/// A bound device session: what outlives a connection when the client can resume it.
pub struct Session {
    jid: UserJid,
    /// The full JID, `user@domain/resource`.
    full: String,
    up: mpsc::Sender<pb::ClientFrame>,
    /// Frames for the session that did not fit in `up`; while any wait, the client is not read.
    backlog: VecDeque<pb::ClientFrame>,
    /// The message being stored: XMPP processes a client's stanzas in order (RFC 6120 §10.1),
    /// so the next one waits in `next_send` (and the client is not read) until it commits.
    sending: Option<(pb::ClientFrame, u32)>,
    next_send: Option<pb::ClientFrame>,
    /// A send refused retryably (its shard is changing leader, a rate limit): it goes up again
    /// at this time with the same client id, which stores nothing twice.
    retry_at: Option<tokio::time::Instant>,
    pub(crate) frames: FrameStream,
    inbound: sm::Inbound,
    outbound: sm::Outbound,
    /// Stream management is on.
    sm: bool,
    /// Set while an `<r/>` is unanswered.
    requested: bool,
    carbons: bool,
    /// Archive position written and to be acknowledged once flushed (no stream management).
    to_ack: Option<u64>,
    next_id: u64,
    /// Registered for resumption under this id.
    resume_id: Option<(String, Arc<Registry>)>,
    pub(crate) take: Option<mpsc::Receiver<Take>>,
    /// Entities this device sent directed presence to (told when it goes unavailable).
    directed: std::collections::HashSet<String>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some((id, registry)) = &self.resume_id {
            registry.remove(id);
        }
    }
}

impl Session {
    /// Hands a frame to the session without waiting: the session's replies come back through
    /// `frames`, which must keep being read meanwhile.
    fn push_up(&mut self, f: pb::ClientFrame) -> Result<(), End> {
        if !self.backlog.is_empty() {
            self.backlog.push_back(f);
            return Ok(());
        }
        match self.up.try_send(f) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(f)) => {
                self.backlog.push_back(f);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(stream_error("reset", "the session ended")),
        }
    }

    /// A message for the session: goes up now if no other is being stored, else waits its turn.
    fn send_in_order(&mut self, f: pb::ClientFrame) -> Result<(), End> {
        if client_id(&f).is_none() {
            return self.push_up(f);
        }
        if self.sending.is_some() {
            self.next_send = Some(f);
            return Ok(());
        }
        self.sending = Some((f.clone(), 1));
        self.push_up(f)
    }

    /// Sends the message refused retryably again.
    fn retry(&mut self) -> Result<(), End> {
        self.retry_at = None;
        let Some((f, attempts)) = self.sending.as_mut() else { return Ok(()) };
        *attempts += 1;
        let f = f.clone();
        self.push_up(f)
    }

    /// Whether the client may be read: nothing is waiting to go up.
    fn ready_for_input(&self) -> bool {
        self.backlog.is_empty() && self.next_send.is_none() && self.retry_at.is_none()
    }

    /// Records a stanza about to be written.
    fn record(&mut self, stanza: Element, position: Option<u64>) -> Element {
        if self.sm {
            self.outbound.sent(stanza.clone(), position);
        } else if let Some(p) = position {
            self.to_ack = Some(self.to_ack.map_or(p, |a| a.max(p)));
        }
        stanza
    }

    /// Takes a frame from the actor: the stanza to write, if any. `Err` ends the session.
    pub(crate) fn accept(&mut self, frame: Option<FrameResult>) -> Result<Option<Element>, End> {
        let frame = match frame {
            Some(Ok(pb::ServerFrame { frame: Some(f) })) => f,
            Some(Ok(_)) => return Ok(None),
            Some(Err(status)) => return Err(session_cut(&status)),
            None => return Err(stream_error("reset", "the session ended")),
        };
        let position = match &frame {
            pb::server_frame::Frame::Message(m) => Some(m.position),
            pb::server_frame::Frame::Sent(r) => {
                let current = matches!(&self.sending, Some((f, _)) if client_id(f) == Some(r.client_id.as_str()));
                if current {
                    let attempts = self.sending.as_ref().map_or(0, |(_, n)| *n);
                    if r.retryable && attempts < MAX_SEND_ATTEMPTS {
                        let wait = Duration::from_millis(r.retry_after_ms.clamp(100, 5_000));
                        self.retry_at = Some(tokio::time::Instant::now() + wait);
                        return Ok(None);
                    }
                    self.sending = None;
                }
                self.inbound.sent(&r.client_id);
                if current {
                    if let Some(next) = self.next_send.take() {
                        self.send_in_order(next)?;
                    }
                }
                None
            }
            _ => None,
        };
        match stanza::outbound(frame, &self.full, self.carbons) {
            Some(s) => Ok(Some(self.record(s, position))),
            None => {
                if let Some(p) = position {
                    if self.sm {
                        self.outbound.skipped(p);
                    } else {
                        self.to_ack = Some(self.to_ack.map_or(p, |a| a.max(p)));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Tells every entity that got directed presence that this device is unavailable.
    fn unavailable_to_directed(&mut self) {
        for to in std::mem::take(&mut self.directed) {
            let gone = el("presence", &[("type", "unavailable")], vec![]);
            if let Inbound::Frame(f) = stanza::directed_presence(&to, false, &gone) {
                let _ = self.up.try_send(f);
            }
        }
    }

    /// Keeps track of directed presence (RFC 6121 §4.6): whom this device told it is available.
    fn track_directed(&mut self, p: &Element) {
        match (p.attr("to"), p.attr("type")) {
            (Some(to), None) => {
                self.directed.insert(bare(to).to_string());
            }
            (Some(to), Some("unavailable")) => {
                self.directed.remove(bare(to));
            }
            (None, Some("unavailable")) => self.unavailable_to_directed(),
            _ => {}
        }
    }

    pub(crate) fn overflowing(&self) -> bool {
        self.outbound.unacked() > MAX_UNACKED
    }

    fn next_client_id(&mut self) -> String {
        self.next_id += 1;
        format!("xmpp-{}-{}", rand_suffix(), self.next_id)
    }
}

/// The client id of a send frame.
fn client_id(f: &pb::ClientFrame) -> Option<&str> {
    match &f.frame {
        Some(pb::client_frame::Frame::Send(m)) => Some(m.client_id.as_str()),
        _ => None,
    }
}

fn rand_suffix() -> u32 {
    use rand::Rng;
    rand::thread_rng().gen()
}

/// The stream error for a session the server ended.
fn session_cut(status: &tonic::Status) -> End {
    let text = status.message().to_string();
    match status.code() {
        _ if text.contains("replaced by a newer session") => End::Error("conflict", text),
        tonic::Code::Unavailable => End::Error("system-shutdown", text),
        tonic::Code::ResourceExhausted => End::Error("policy-violation", text),
        _ => End::Error("undefined-condition", text),
    }
}

/// The stanza error condition and type for a Telex error.
fn condition(e: &TelexError) -> (&'static str, &'static str) {
    let kind = if e.code.retryable() { "wait" } else { "cancel" };
    (stanza::condition_of(e.code.as_str()), kind)
}

impl Xmpp {
    pub fn new(
        accounts: Arc<Accounts>,
        messaging: Messaging,
        config: XmppConfig,
        tls: Option<TlsAcceptor>,
    ) -> Arc<Self> {
        Arc::new(Xmpp { accounts, messaging, config, tls, resumable: Arc::new(Registry::default()) })
    }

    pub fn max_stanza(&self) -> usize {
        self.config.limits.max_stanza
    }

    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Sessions waiting to be resumed or registered for resumption.
    pub fn resumable_sessions(&self) -> usize {
        self.resumable.len()
    }

    /// Serves one connection to its end.
    pub async fn serve(self: Arc<Self>, transport: Transport) {
        metrics::gauge!("telex_xmpp_connections").increment(1.0);
        let mut wire = Wire::new(transport, self.config.limits);
        let mut opened = false;
        let end = self.run(&mut wire, &mut opened).await;
        match end {
            End::Quiet => {}
            End::Error(condition, text) => {
                metrics::counter!("telex_xmpp_stream_errors_total", "condition" => condition).increment(1);
                tracing::debug!(condition, text = %text, "XMPP stream error");
                if !opened {
                    wire.open("", &stream_id());
                }
                let children = vec![
                    Node::Element(el(condition, &[("xmlns", ns::STREAMS_ERR)], vec![])),
                    Node::Element(el("text", &[("xmlns", ns::STREAMS_ERR)], vec![Node::Text(text)])),
                ];
                wire.send(&el("stream:error", &[], children));
                wire.close();
                let _ = tokio::time::timeout(Duration::from_secs(5), wire.flush()).await;
            }
            End::Park(session) => {
                tokio::spawn(resume::park(*session, self.config.resume_timeout));
            }
        }
        metrics::gauge!("telex_xmpp_connections").decrement(1.0);
    }

    async fn run(&self, wire: &mut Wire, opened: &mut bool) -> End {
        let negotiated =
            tokio::time::timeout(self.config.preauth_timeout, Box::pin(self.authenticate(wire, opened))).await;
        let (jid, domain) = match negotiated {
            Ok(Ok(a)) => a,
            Ok(Err(end)) => return end,
            Err(_) => return stream_error("connection-timeout", "authenticate sooner"),
        };
        let session =
            match tokio::time::timeout(self.config.preauth_timeout, Box::pin(self.bind(wire, &jid, &domain))).await {
                Ok(Ok(s)) => s,
                Ok(Err(end)) => return end,
                Err(_) => return stream_error("connection-timeout", "bind a resource sooner"),
            };
        self.established(wire, session, &domain).await
    }

    /// Reads a stream header and answers it with ours and the features on offer.
    async fn open_stream(
        &self,
        wire: &mut Wire,
        opened: &mut bool,
        features: impl FnOnce(&Wire) -> Vec<Node>,
    ) -> Result<Domain, End> {
        let header = match wire.read().await? {
            Some(Event::StreamOpen(h)) => h,
            Some(_) => return Err(stream_error("not-well-formed", "expected a stream header")),
            None => return Err(End::Quiet),
        };
        let to = header.attr("to").unwrap_or_default().to_string();
        wire.open(&to, &stream_id());
        *opened = true;
        if !wire.is_websocket() && header.attr("xmlns") != Some(ns::CLIENT) {
            return Err(stream_error("invalid-namespace", "the content namespace must be jabber:client"));
        }
        if header.attr("version").is_some_and(|v| !v.starts_with("1.")) {
            return Err(stream_error("unsupported-version", "this server speaks XMPP 1.0"));
        }
        let domain =
            Domain::parse(&to).map_err(|_| stream_error("host-unknown", format!("{to:?} is not served here")))?;
        let served = self.accounts.tenants().map_err(|e| stream_error("internal-server-error", e.message))?;
        if !served.iter().any(|t| t.domain == domain) {
            return Err(stream_error("host-unknown", format!("{domain} is not served here")));
        }
        let features = features(wire);
        wire.send(&el("stream:features", &[], features));
        wire.flush().await?;
        Ok(domain)
    }

    /// Until SASL succeeds: STARTTLS, then authentication.
    async fn authenticate(&self, wire: &mut Wire, opened: &mut bool) -> Result<(UserJid, Domain), End> {
        let mut failures = 0;
        'stream: loop {
            let offer = auth::offer(
                self.config.require_tls,
                self.tls.is_some(),
                wire.is_tls(),
                wire.is_loopback(),
                wire.is_websocket(),
            );
            let (must_tls, offer_tls) = (offer.tls_required, offer.starttls);
            let plain_allowed = offer.mechanisms.contains(&"PLAIN");
            let domain = self
                .open_stream(wire, opened, |_| {
                    let mut f = Vec::new();
                    if offer.starttls {
                        let required =
                            if offer.tls_required { vec![Node::Element(el("required", &[], vec![]))] } else { vec![] };
                        f.push(Node::Element(el("starttls", &[("xmlns", ns::TLS)], required)));
                    }
                    if !offer.tls_required {
                        let mechs = offer.mechanisms.iter().map(|m| text_el("mechanism", m)).collect();
                        f.push(Node::Element(el("mechanisms", &[("xmlns", ns::SASL)], mechs)));
                    }
                    f
                })
                .await?;
            loop {
                let e = match wire.read().await? {
                    Some(Event::Stanza(e)) => e,
                    Some(Event::StreamClose) | None => return Err(End::Quiet),
                    Some(Event::StreamOpen(_)) => {
                        return Err(stream_error("not-well-formed", "a second stream header"))
                    }
                };
                match (e.name.as_str(), e.attr("xmlns")) {
                    ("starttls", Some(ns::TLS)) if offer_tls => {
                        wire.send(&el("proceed", &[("xmlns", ns::TLS)], vec![]));
                        wire.flush().await?;
                        let acceptor = self.tls.clone().expect("offered only with TLS");
                        wire.starttls(&acceptor).await?;
                        continue 'stream;
                    }
                    ("auth", Some(ns::SASL)) if !must_tls => {
                        match auth::authenticate(&self.accounts, wire, &e, &domain, plain_allowed).await {
                            auth::Outcome::Success(jid) => {
                                wire.restart();
                                return Ok((jid, domain));
                            }
                            auth::Outcome::Failed => {
                                failures += 1;
                                if failures >= MAX_AUTH_FAILURES {
                                    return Err(stream_error(
                                        "policy-violation",
                                        "too many failed authentication attempts",
                                    ));
                                }
                            }
                            auth::Outcome::Ended(Some(e)) => return Err(e.into()),
                            auth::Outcome::Ended(None) => return Err(End::Quiet),
                        }
                    }
                    ("auth", Some(ns::SASL)) => {
                        return Err(stream_error("policy-violation", "encryption is required: start TLS first"))
                    }
                    (name, _) => {
                        return Err(stream_error("not-authorized", format!("<{name}/> before authentication")));
                    }
                }
            }
        }
    }

    /// After authentication: the new stream, then resource binding or a resumption.
    async fn bind(&self, wire: &mut Wire, jid: &UserJid, domain: &Domain) -> Result<Session, End> {
        let mut opened = true;
        let d = self
            .open_stream(wire, &mut opened, |_| {
                vec![
                    Node::Element(el("bind", &[("xmlns", ns::BIND)], vec![])),
                    Node::Element(el(
                        "session",
                        &[("xmlns", ns::SESSION)],
                        vec![Node::Element(el("optional", &[], vec![]))],
                    )),
                    Node::Element(el("sm", &[("xmlns", ns::SM)], vec![])),
                ]
            })
            .await?;
        if &d != domain {
            return Err(stream_error("host-unknown", "the stream changed domain after authentication"));
        }
        loop {
            let e = match wire.read().await? {
                Some(Event::Stanza(e)) => e,
                Some(Event::StreamClose) | None => return Err(End::Quiet),
                Some(Event::StreamOpen(_)) => return Err(stream_error("not-well-formed", "a second stream header")),
            };
            match (e.name.as_str(), e.attr("xmlns")) {
                ("resume", Some(ns::SM)) => match self.resume(wire, jid, &e).await? {
                    Some(s) => return Ok(s),
                    None => continue,
                },
                ("enable", Some(ns::SM)) => {
                    wire.send(&sm_failed("unexpected-request", None));
                    wire.flush().await?;
                }
                ("iq", _) => {
                    let id = e.attr("id").unwrap_or_default().to_string();
                    let request = iq::request(e.attr("type").unwrap_or_default(), e.elements().next());
                    let Request::Bind { resource } = request else {
                        wire.send(&iq::error_reply(&e, "", "auth", "not-authorized", "bind a resource first"));
                        wire.flush().await?;
                        continue;
                    };
                    match self.open_session(jid, &resource).await {
                        Ok(s) => {
                            let bound = el("bind", &[("xmlns", ns::BIND)], vec![text_el("jid", &s.full)]);
                            wire.send(&iq::result(&id, "", Some(bound)));
                            wire.flush().await?;
                            return Ok(s);
                        }
                        Err(err) => {
                            let (cond, kind) = match err.code {
                                ErrorCode::InvalidArgument => ("bad-request", "modify"),
                                ErrorCode::ResourceExhausted => ("resource-constraint", "wait"),
                                ErrorCode::PermissionDenied => ("not-allowed", "cancel"),
                                _ => ("internal-server-error", "wait"),
                            };
                            wire.send(&iq::error_reply(&e, "", kind, cond, &err.message));
                            wire.flush().await?;
                        }
                    }
                }
                (name, _) => {
                    return Err(stream_error("not-authorized", format!("<{name}/> before binding a resource")))
                }
            }
        }
    }

    async fn open_session(&self, jid: &UserJid, resource: &str) -> Result<Session, TelexError> {
        let device = telex_accounts::device_name(resource)?;
        let (up, rx) = mpsc::channel(64);
        let inbound = ReceiverStream::new(rx).map(Ok);
        let frames = telex_api::open_session(&self.accounts, &self.messaging, jid.clone(), device.clone(), inbound)
            .await
            .map_err(|s| {
                let code = match s.code() {
                    tonic::Code::ResourceExhausted => ErrorCode::ResourceExhausted,
                    tonic::Code::PermissionDenied => ErrorCode::PermissionDenied,
                    _ => ErrorCode::Unavailable,
                };
                TelexError::new(code, s.message().to_string())
            })?;
        tracing::info!(user = %jid, device = %device, "XMPP session bound");
        Ok(Session {
            full: format!("{jid}/{device}"),
            jid: jid.clone(),
            up,
            backlog: VecDeque::new(),
            sending: None,
            next_send: None,
            retry_at: None,
            frames,
            inbound: sm::Inbound::default(),
            outbound: sm::Outbound::default(),
            sm: false,
            requested: false,
            carbons: false,
            to_ack: None,
            next_id: 0,
            resume_id: None,
            take: None,
            directed: Default::default(),
        })
    }

    /// `<resume/>`: takes the session over if it is this user's; otherwise says it failed.
    async fn resume(&self, wire: &mut Wire, jid: &UserJid, e: &Element) -> Result<Option<Session>, End> {
        let previd = e.attr("previd").unwrap_or_default();
        let h = e.attr("h").and_then(|h| h.parse::<u32>().ok());
        let taken = match h {
            Some(_) => self.resumable.take(previd, jid).await,
            None => None,
        };
        let Some(mut s) = taken else {
            metrics::counter!("telex_xmpp_resumptions_total", "outcome" => "failed").increment(1);
            wire.send(&sm_failed("item-not-found", None));
            wire.flush().await?;
            return Ok(None);
        };
        match s.outbound.ack(h.unwrap_or(0)) {
            Ok(Some(p)) => s.push_up(ack(p))?,
            Ok(None) => {}
            Err(too_high) => {
                return Err(stream_error(
                    "undefined-condition",
                    format!("h={} but only {} stanzas were sent", too_high.h, too_high.sent),
                ))
            }
        }
        metrics::counter!("telex_xmpp_resumptions_total", "outcome" => "resumed").increment(1);
        let h = s.inbound.h().to_string();
        wire.send(&el("resumed", &[("xmlns", ns::SM), ("previd", previd), ("h", &h)], vec![]));
        for stanza in s.outbound.unacked_stanzas() {
            wire.send(stanza);
        }
        s.requested = false;
        wire.flush().await?;
        tracing::info!(user = %jid, full = %s.full, "XMPP session resumed");
        Ok(Some(s))
    }

    /// The bound session: stanzas in, frames out, until the stream or the session ends.
    async fn established(&self, wire: &mut Wire, mut s: Session, domain: &Domain) -> End {
        match self.session_loop(wire, &mut s, domain).await {
            Flow::Park => End::Park(Box::new(s)),
            Flow::HandOver(give) => {
                let _ = give.send(s);
                End::Quiet
            }
            Flow::End(end) => {
                // Whoever got directed presence learns the device is gone (RFC 6121 §4.6.3).
                s.unavailable_to_directed();
                end
            }
        }
    }

    /// The bound session's loop; says how it ended.
    async fn session_loop(&self, wire: &mut Wire, s: &mut Session, domain: &Domain) -> Flow {
        loop {
            let step = tokio::select! {
                permit = s.up.clone().reserve_owned(), if !s.backlog.is_empty() => match permit {
                    Ok(p) => {
                        p.send(s.backlog.pop_front().expect("backlog is not empty"));
                        Ok(())
                    }
                    Err(_) => Err(stream_error("reset", "the session ended")),
                },
                _ = sleep_until(s.retry_at), if s.retry_at.is_some() => s.retry(),
                ev = wire.read(), if s.ready_for_input() => match ev {
                    // Boxed: the request handling is large and rare; an idle session keeps
                    // only the small waiting state.
                    Ok(Some(Event::Stanza(e))) => Box::pin(self.stanza(wire, s, e, domain)).await,
                    Ok(Some(Event::StreamClose)) => {
                        wire.close();
                        let _ = wire.flush().await;
                        return Flow::End(End::Quiet);
                    }
                    Ok(Some(Event::StreamOpen(_))) => Err(stream_error("not-well-formed", "a second stream header")),
                    Ok(None) | Err(WireError::Io(_)) => return dropped(s),
                    Err(e) => Err(e.into()),
                },
                f = s.frames.next() => self.frame(wire, s, Some(f)),
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
                let Some(f) = s.frames.next().now_or_never() else { break };
                if let Err(end) = self.frame(wire, s, Some(f)) {
                    return Flow::End(end);
                }
            }
            if wire.pending() {
                if s.sm && s.outbound.unacked() > 0 && !s.requested {
                    wire.send(&el("r", &[("xmlns", ns::SM)], vec![]));
                    s.requested = true;
                }
                if wire.flush().await.is_err() {
                    return dropped(s);
                }
                if let Some(p) = s.to_ack.take() {
                    if let Err(end) = s.push_up(ack(p)) {
                        return Flow::End(end);
                    }
                }
            }
            if s.overflowing() {
                return Flow::End(stream_error(
                    "policy-violation",
                    format!("more than {MAX_UNACKED} stanzas unacknowledged"),
                ));
            }
        }
    }

    fn frame(&self, wire: &mut Wire, s: &mut Session, f: Option<Option<FrameResult>>) -> Result<(), End> {
        let Some(f) = f else { return Ok(()) };
        if let Some(stanza) = s.accept(f)? {
            wire.send(&stanza);
        }
        Ok(())
    }

    /// Writes a stanza of ours, counted for stream management.
    fn emit(wire: &mut Wire, s: &mut Session, stanza: Element) {
        let stanza = s.record(stanza, None);
        wire.send(&stanza);
    }

    async fn stanza(&self, wire: &mut Wire, s: &mut Session, e: Element, domain: &Domain) -> Result<(), End> {
        if e.attr("xmlns") == Some(ns::SM) {
            return self.stream_management(wire, s, &e);
        }
        if let Some(from) = e.attr("from") {
            if from != s.full && from != s.jid.to_string() {
                return Err(stream_error("invalid-from", format!("you are {}, not {from}", s.full)));
            }
        }
        if e.name == "presence" {
            s.track_directed(&e);
        }
        match stanza::inbound(&e, || s.next_client_id()) {
            Inbound::Frame(f) => {
                match &f.frame {
                    Some(pb::client_frame::Frame::Send(m)) => s.inbound.sending(m.client_id.clone()),
                    _ => s.inbound.done(),
                }
                s.send_in_order(f)?;
            }
            Inbound::Iq { id, request } => {
                let reply = self.iq(wire, s, &e, &id, request, domain).await;
                s.inbound.done();
                Self::emit(wire, s, reply);
            }
            Inbound::Subscription { to, kind } => {
                s.inbound.done();
                let user = s.jid.clone();
                self.subscription(&user, &to, kind).await;
            }
            Inbound::Refuse { stanza, condition, text } => {
                s.inbound.done();
                Self::emit(wire, s, iq::error_reply(&stanza, &s.full.clone(), "modify", condition, &text));
            }
            Inbound::Ignore => s.inbound.done(),
        }
        Ok(())
    }

    fn stream_management(&self, wire: &mut Wire, s: &mut Session, e: &Element) -> Result<(), End> {
        match e.name.as_str() {
            "enable" if !s.sm => {
                s.sm = true;
                s.inbound.enable();
                let resume = matches!(e.attr("resume"), Some("true" | "1"));
                let mut attrs = vec![("xmlns", ns::SM)];
                let id;
                let max = self.config.resume_timeout.as_secs().to_string();
                if resume {
                    let (rid, take) = self.resumable.register(&s.jid);
                    id = rid;
                    s.resume_id = Some((id.clone(), self.resumable.clone()));
                    s.take = Some(take);
                    attrs.extend([("id", id.as_str()), ("resume", "true"), ("max", max.as_str())]);
                }
                wire.send(&el("enabled", &attrs, vec![]));
            }
            "enable" => wire.send(&sm_failed("unexpected-request", Some(s.inbound.h()))),
            "r" if s.sm => wire.send(&el("a", &[("xmlns", ns::SM), ("h", &s.inbound.h().to_string())], vec![])),
            "a" if s.sm => {
                let h = e.attr("h").and_then(|h| h.parse::<u32>().ok()).unwrap_or(0);
                s.requested = false;
                match s.outbound.ack(h) {
                    Ok(Some(p)) => s.push_up(ack(p))?,
                    Ok(None) => {}
                    Err(t) => {
                        return Err(stream_error(
                            "undefined-condition",
                            format!("handled-count-too-high: h={} but only {} stanzas were sent", t.h, t.sent),
                        ))
                    }
                }
            }
            "resume" => wire.send(&sm_failed("unexpected-request", Some(s.inbound.h()))),
            other => return Err(stream_error("unsupported-stanza-type", format!("<{other}/> of stream management"))),
        }
        Ok(())
    }

    async fn subscription(&self, user: &UserJid, to: &str, kind: Subscription) {
        let Ok(contact) = UserJid::parse(to) else { return };
        let op = match kind {
            Subscription::Subscribe => RosterOp::Subscribe { contact },
            Subscription::Subscribed => RosterOp::Approve { contact },
            Subscription::Unsubscribe => RosterOp::Unsubscribe { contact },
            Subscription::Unsubscribed => RosterOp::Deny { contact },
        };
        if let Err(e) = self.messaging.hub().roster(user, op).await {
            // Approving with nothing pending and the like are no-ops in XMPP.
            tracing::debug!(user = %user, error = %e, "subscription stanza not applied");
        }
    }

    async fn iq(
        &self,
        wire: &mut Wire,
        s: &mut Session,
        e: &Element,
        id: &str,
        req: Request,
        domain: &Domain,
    ) -> Element {
        let me = s.full.clone();
        let to = e.attr("to").map(bare);
        let to_server = to.is_none_or(|t| t == domain.as_str());
        let to_account = to == Some(s.jid.to_string().as_str());
        if let (Request::VCardGet, Some(other)) = (&req, to) {
            // Anyone's vCard may be read; the server answers for its users.
            return self.vcard_get(e, &me, id, other).await;
        }
        if !to_server && !to_account {
            return iq::error_reply(e, &me, "cancel", "service-unavailable", "requests are not routed to other users");
        }
        let fail = |err: TelexError| {
            let (cond, kind) = condition(&err);
            iq::error_reply(e, &me, kind, cond, &err.message)
        };
        let hub = self.messaging.hub();
        let user = s.jid.clone();
        let roster = |op| hub.roster(&user, op);
        let jid = |j: &str| UserJid::parse(j);
        match req {
            Request::Session => iq::result(id, &me, None),
            Request::Bind { .. } => iq::error_reply(e, &me, "cancel", "not-allowed", "a resource is already bound"),
            Request::RosterGet => match roster(RosterOp::Get).await {
                Ok(RosterReply::Items(items)) => {
                    let items = items
                        .iter()
                        .map(|(j, i)| {
                            Node::Element(stanza::roster_item(&pb::RosterItem {
                                jid: j.to_string(),
                                subscription: i.subscription.as_str().to_string(),
                                pending_out: i.pending_out,
                                pending_in: i.pending_in,
                                name: i.name.clone(),
                                groups: i.groups.clone(),
                            }))
                        })
                        .collect();
                    iq::result(id, &me, Some(el("query", &[("xmlns", ns::ROSTER)], items)))
                }
                Ok(_) => iq::result(id, &me, Some(el("query", &[("xmlns", ns::ROSTER)], vec![]))),
                Err(err) => fail(err),
            },
            Request::RosterSet { jid: j, name, groups } => match jid(&j) {
                Ok(contact) => match roster(RosterOp::Set { contact, name, groups }).await {
                    Ok(_) => iq::result(id, &me, None),
                    Err(err) => fail(err),
                },
                Err(err) => fail(err),
            },
            Request::RosterRemove { jid: j } => match jid(&j) {
                Ok(contact) => match roster(RosterOp::Remove { contact }).await {
                    Ok(_) => iq::result(id, &me, None),
                    Err(err) => fail(err),
                },
                Err(err) => fail(err),
            },
            Request::DiscoInfo => iq::result(id, &me, Some(iq::disco_info(to_account))),
            Request::DiscoItems => iq::result(id, &me, Some(iq::disco_items())),
            Request::Ping => iq::result(id, &me, None),
            Request::Carbons { enable } => {
                s.carbons = enable;
                iq::result(id, &me, None)
            }
            Request::Mam(q) => self.mam(wire, s, e, id, q),
            Request::BlockList => match roster(RosterOp::Blocked).await {
                Ok(RosterReply::Blocked(jids)) => {
                    let jids: Vec<String> = jids.iter().map(|j| j.to_string()).collect();
                    iq::result(id, &me, Some(iq::blocklist(&jids)))
                }
                Ok(_) => iq::result(id, &me, Some(iq::blocklist(&[]))),
                Err(err) => fail(err),
            },
            Request::Block { jids } | Request::Unblock { jids } if !jids.is_empty() => {
                let block = matches!(e.elements().next(), Some(p) if p.name == "block");
                for j in &jids {
                    let op = match jid(j) {
                        Ok(jid) if block => RosterOp::Block { jid },
                        Ok(jid) => RosterOp::Unblock { jid },
                        Err(err) => return fail(err),
                    };
                    if let Err(err) = roster(op).await {
                        return fail(err);
                    }
                }
                iq::result(id, &me, None)
            }
            Request::Block { .. } | Request::Unblock { .. } => match roster(RosterOp::Blocked).await {
                Ok(RosterReply::Blocked(all)) => {
                    for jid in all {
                        if let Err(err) = roster(RosterOp::Unblock { jid }).await {
                            return fail(err);
                        }
                    }
                    iq::result(id, &me, None)
                }
                Ok(_) => iq::result(id, &me, None),
                Err(err) => fail(err),
            },
            Request::VCardGet => self.vcard_get(e, &me, id, &s.jid.to_string()).await,
            Request::VCardSet(card) => {
                let mut xml = String::new();
                stanza::to_xml(&card, &mut xml);
                match self.accounts.set_vcard(&s.jid, xml).await {
                    Ok(()) => iq::result(id, &me, None),
                    Err(err) => fail(err),
                }
            }
            Request::Bad(text) => iq::error_reply(e, &me, "modify", "bad-request", &text),
            Request::Unsupported => iq::error_reply(e, &me, "cancel", "service-unavailable", "not supported"),
        }
    }

    /// XEP-0054: the stored vCard of `owner`, or an empty one (RFC: no vCard is not an error).
    async fn vcard_get(&self, e: &Element, me: &str, id: &str, owner: &str) -> Element {
        let Ok(owner) = UserJid::parse(owner) else {
            return iq::error_reply(e, me, "cancel", "service-unavailable", "no such user here");
        };
        let empty = || el("vCard", &[("xmlns", ns::VCARD)], vec![]);
        match self.accounts.vcard(&owner).await {
            Ok(Some(xml)) => iq::result(id, me, Some(crate::xml::parse_element(&xml).unwrap_or_else(empty))),
            Ok(None) => iq::result(id, me, Some(empty())),
            Err(err) => {
                let (cond, kind) = condition(&err);
                iq::error_reply(e, me, kind, cond, &err.message)
            }
        }
    }

    /// XEP-0313: the page's messages go out as results, the returned `<iq/>` closes it.
    fn mam(&self, wire: &mut Wire, s: &mut Session, e: &Element, id: &str, q: MamQuery) -> Element {
        let me = s.full.clone();
        let max = q.max.unwrap_or(50).min(499);
        let with = match q.with.as_deref().map(UserJid::parse).transpose() {
            Ok(w) => w,
            Err(err) => return iq::error_reply(e, &me, "modify", "bad-request", &err.message),
        };
        let last_page = matches!(q.before_id, Some(None));
        let backward = q.before_id.is_some() && q.after_id.is_none() && q.start_ms.is_none();
        let query = HistoryQuery {
            with,
            after: 0,
            before: if last_page { u64::MAX } else { 0 },
            after_id: q.after_id,
            before_id: q.before_id.flatten(),
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            limit: max + 1,
        };
        let mut page = match self.messaging.history(&s.jid, &query) {
            Ok(p) => p,
            Err(err) if err.code == ErrorCode::NotFound => {
                return iq::error_reply(e, &me, "cancel", "item-not-found", &err.message)
            }
            Err(err) => {
                let (cond, kind) = condition(&err);
                return iq::error_reply(e, &me, kind, cond, &err.message);
            }
        };
        let complete = page.len() <= max;
        if !complete {
            if backward {
                page.remove(0);
            } else {
                page.pop();
            }
        }
        for (_, m) in &page {
            let from =
                if m.from_device.is_empty() { m.from.to_string() } else { format!("{}/{}", m.from, m.from_device) };
            let to = m.to.to_string();
            let archived = iq::Archived {
                server_id: &m.server_id,
                from,
                to: &to,
                client_id: &m.client_id,
                body: &m.body,
                extras: &m.extras,
                sent_at_ms: m.sent_at,
            };
            Self::emit(wire, s, iq::mam_result(&me, &q.queryid, &archived));
        }
        let first = page.first().map(|(_, m)| m.server_id.as_str());
        let last = page.last().map(|(_, m)| m.server_id.as_str());
        iq::result(id, &me, Some(iq::mam_fin(first, last, complete)))
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

fn ack(position: u64) -> pb::ClientFrame {
    pb::ClientFrame { frame: Some(pb::client_frame::Frame::Ack(pb::Ack { position })) }
}

fn sm_failed(condition: &str, h: Option<u32>) -> Element {
    let h = h.map(|h| h.to_string()).unwrap_or_default();
    el("failed", &[("xmlns", ns::SM), ("h", &h)], vec![Node::Element(el(condition, &[("xmlns", ns::STANZAS)], vec![]))])
}

fn stream_id() -> String {
    use base64::Engine;
    use rand::Rng;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::thread_rng().gen::<[u8; 12]>())
}
