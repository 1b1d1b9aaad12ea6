//! The XMPP driver: plain c2s with SASL PLAIN and stream management, as any XMPP server can be
//! configured to accept on loopback. Each connection has a writer task fed by a bounded queue
//! and a reader task that turns what arrives into measurements.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::driver::{stamped, Action, Conn, Event, Login, QUEUE};
use crate::stanzas::{attr, child_text, name, Item, Splitter};

/// Stanzas written since stream management was enabled and not yet acknowledged, in order:
/// a message's (intended send time, number), or `None` for any other stanza (the server's
/// `h` counts those too).
type InFlight = Arc<Mutex<VecDeque<Option<(u64, u64)>>>>;

/// Something the reader asks the writer to send: the XML, and whether it is a stanza.
type Answer = (String, bool);

struct Reader {
    r: OwnedReadHalf,
    split: Splitter,
    buf: Vec<u8>,
}

impl Reader {
    /// The next top-level element, or an error when the stream ends or stalls.
    async fn element(&mut self) -> anyhow::Result<String> {
        loop {
            match self.split.next() {
                Some(Item::Element(e)) => return Ok(e),
                Some(Item::StreamEnd) => bail!("the server closed the stream"),
                None => {}
            }
            let n = tokio::time::timeout(Duration::from_secs(30), self.r.read(&mut self.buf))
                .await
                .context("no answer in 30 s")??;
            if n == 0 {
                bail!("connection closed");
            }
            self.split.push(&String::from_utf8_lossy(&self.buf[..n]));
        }
    }

    /// Reads until an element named `want`; a SASL failure or stream error ends the login.
    async fn expect(&mut self, want: &str) -> anyhow::Result<String> {
        loop {
            let e = self.element().await?;
            match name(&e) {
                n if n == want => return Ok(e),
                "failure" | "stream:error" | "failed" => {
                    bail!("server said: {}", e.chars().take(300).collect::<String>())
                }
                _ => {}
            }
        }
    }
}

/// Connects, authenticates, binds and enables stream management; asks for the scenario's
/// subscriptions; then starts the writer and reader tasks.
pub async fn connect(login: Login) -> anyhow::Result<Conn> {
    let stream = match login.source {
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(ip, 0)).with_context(|| format!("binding {ip}"))?;
            socket.connect(login.server).await
        }
        None => TcpStream::connect(login.server).await,
    };
    let (r, mut w) = stream.with_context(|| format!("connecting to {}", login.server))?.into_split();
    let _ = w.as_ref().set_nodelay(true);
    let mut reader = Reader { r, split: Splitter::default(), buf: vec![0; 16384] };
    let domain = &login.domain;
    let open = format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    w.write_all(open.as_bytes()).await?;
    reader.expect("stream:features").await?;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0lt{}\0{}", login.user, login.password));
    w.write_all(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>").as_bytes())
        .await?;
    reader.expect("success").await?;
    w.write_all(open.as_bytes()).await?;
    reader.expect("stream:features").await?;
    let bind = format!(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>d{}</resource></bind></iq>",
        login.device
    );
    w.write_all(bind.as_bytes()).await?;
    let bound = reader.expect("iq").await?;
    if attr(&bound, "type") != Some("result") {
        bail!("bind refused: {}", bound.chars().take(300).collect::<String>());
    }
    // As clients do: the roster first (servers deliver subscription requests only to
    // resources that asked for it, RFC 6121 §3.1.3), then available.
    w.write_all(b"<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>").await?;
    reader.expect("iq").await?;
    if let Some(room) = &login.room {
        // A server busy with other occupants' stanzas keeps each read alive: bound the whole.
        tokio::time::timeout(Duration::from_secs(60), enter_room(&mut reader, &mut w, room, &login.nick()))
            .await
            .with_context(|| format!("{room}: not entered in 60 s"))??;
    }
    w.write_all(b"<enable xmlns='urn:xmpp:sm:3'/><presence/>").await?;
    reader.expect("enabled").await?;
    let mut subscribe = String::new();
    for c in &login.subscribe_to {
        subscribe.push_str(&format!("<presence type='subscribe' to='{}'/>", login.jid(*c)));
    }
    w.write_all(subscribe.as_bytes()).await?;
    // The initial presence and the subscription requests count towards `h`.
    let in_flight = InFlight::new(Mutex::new(vec![None; 1 + login.subscribe_to.len()].into()));
    let (out, actions) = mpsc::channel::<Action>(QUEUE);
    // The reader's answers to the server (acks, approvals) go out through the writer.
    let (answers_tx, answers) = mpsc::channel::<Answer>(QUEUE);
    let user = login.user;
    tokio::spawn(write_loop(w, actions, answers, in_flight.clone(), login.clone()));
    tokio::spawn(read_loop(reader, in_flight, answers_tx, login));
    Ok(Conn { user, out })
}

/// Enters `room` as `nick` without history (before stream management, so `h` does not count
/// it); the occupant who created it accepts the default configuration (an instant room,
/// XEP-0045 §10.1.2), which servers that lock new rooms wait for: until then, others retry.
async fn enter_room(reader: &mut Reader, w: &mut OwnedWriteHalf, room: &str, nick: &str) -> anyhow::Result<()> {
    let me = format!("{room}/{nick}");
    let join = format!(
        "<presence to='{me}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
    );
    for _ in 0..50 {
        w.write_all(join.as_bytes()).await?;
        let entered = loop {
            let e = reader.element().await?;
            if name(&e) != "presence" || attr(&e, "from") != Some(me.as_str()) {
                continue;
            }
            if attr(&e, "type") == Some("error") {
                break None;
            }
            if e.contains("code='110'") || e.contains("code=\"110\"") {
                break Some(e.contains("code='201'") || e.contains("code=\"201\""));
            }
        };
        match entered {
            Some(true) => {
                let instant = format!(
                    "<iq type='set' id='instant' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
                     <x xmlns='jabber:x:data' type='submit'/></query></iq>"
                );
                w.write_all(instant.as_bytes()).await?;
                loop {
                    let e = reader.element().await?;
                    if name(&e) == "iq" && attr(&e, "id") == Some("instant") {
                        if attr(&e, "type") != Some("result") {
                            bail!("{room}: the instant room was refused: {}", e.chars().take(300).collect::<String>());
                        }
                        return Ok(());
                    }
                }
            }
            Some(false) => return Ok(()),
            // A room its creator has not unlocked yet.
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    bail!("{room}: not entered in 50 tries")
}

/// Writes actions and answers, batching whatever is queued into one write; ends the stream
/// when the scheduler drops the connection.
async fn write_loop(
    mut w: OwnedWriteHalf,
    mut actions: mpsc::Receiver<Action>,
    mut answers: mpsc::Receiver<Answer>,
    in_flight: InFlight,
    login: Login,
) {
    let mut batch = String::new();
    // A server that counts a message as handled only once it is stored (Telex) may answer an
    // `<r/>` before the last ones are: ask again while any are unacknowledged.
    let mut again = tokio::time::interval(Duration::from_millis(250));
    loop {
        batch.clear();
        let mut messages = false;
        tokio::select! {
            a = actions.recv() => match a {
                Some(a) => messages |= push_action(&mut batch, a, &in_flight, &login),
                None => break,
            },
            Some(a) = answers.recv() => push_answer(&mut batch, a, &in_flight),
            _ = again.tick() => messages = in_flight.lock().expect("not poisoned").iter().any(Option::is_some),
        }
        while let Ok(a) = actions.try_recv() {
            messages |= push_action(&mut batch, a, &in_flight, &login);
        }
        while let Ok(a) = answers.try_recv() {
            push_answer(&mut batch, a, &in_flight);
        }
        if messages {
            batch.push_str("<r xmlns='urn:xmpp:sm:3'/>");
        }
        if w.write_all(batch.as_bytes()).await.is_err() {
            return;
        }
    }
    let _ = w.write_all(b"<presence type='unavailable'/></stream:stream>").await;
}

fn push_answer(batch: &mut String, (xml, stanza): Answer, in_flight: &InFlight) {
    if stanza {
        in_flight.lock().expect("not poisoned").push_back(None);
    }
    batch.push_str(&xml);
}

/// Adds the action's stanza to `batch`; true for a message (which wants an ack).
fn push_action(batch: &mut String, a: Action, in_flight: &InFlight, login: &Login) -> bool {
    match a {
        Action::Message { to, n, intended_us } => {
            in_flight.lock().expect("not poisoned").push_back(Some((intended_us, n)));
            let (to, kind) = match &login.room {
                Some(room) => (room.clone(), "groupchat"),
                None => (login.jid(to), "chat"),
            };
            batch.push_str(&format!(
                "<message to='{to}' id='{}' type='{kind}'><body>{}</body></message>",
                login.message_id(n),
                login.body(intended_us)
            ));
            true
        }
        Action::Presence { intended_us } => {
            in_flight.lock().expect("not poisoned").push_back(None);
            batch.push_str(&format!("<presence><status>t{intended_us}</status></presence>"));
            false
        }
    }
}

/// Turns what the server sends into measurements: deliveries and presence (from the send
/// time they carry), acknowledgements (stream management `h`), refusals and errors; answers
/// the server's `<r/>` and approves subscription requests.
async fn read_loop(mut reader: Reader, in_flight: InFlight, answers: mpsc::Sender<Answer>, login: Login) {
    let me = login.jid(login.user);
    // In a room, the room reflects this connection's own messages: not deliveries.
    let own_echo = login.room.as_ref().map(|room| format!("{room}/{}", login.nick()));
    // Approvals: a `subscribed` presence or a roster push saying so (servers differ).
    let asked: HashSet<String> = login.subscribe_to.iter().map(|c| login.jid(*c)).collect();
    let mut approved = HashSet::new();
    let mut acked: u32 = 0;
    // Stanzas received since stream management was enabled (the server asks with <r/>).
    let mut received: u32 = 0;
    let (clock, events) = (&login.clock, &login.events);
    while let Ok(e) = reader.element().await {
        let now = clock.now_us();
        let sec = clock.second(now);
        let kind = attr(&e, "type");
        match name(&e) {
            "message" => {
                received = received.wrapping_add(1);
                if kind == Some("error") {
                    let n = attr(&e, "id").and_then(|id| login.number_of(id));
                    let why = error_condition(&e);
                    let _ = events.send(match n {
                        Some(n) => Event::Refused { sec, n, kind: format!("message refused: {why}") },
                        None => Event::Error { sec, kind: format!("message error: {why}") },
                    });
                } else if own_echo.is_some() && attr(&e, "from") == own_echo.as_deref() {
                    // Its own message, reflected by the room.
                } else if let Some(sent) = child_text(&e, "body").and_then(stamped) {
                    let _ = events.send(Event::Delivered { sec, latency_us: now.saturating_sub(sent) });
                }
            }
            "presence" => {
                received = received.wrapping_add(1);
                let from = attr(&e, "from").unwrap_or_default();
                match kind {
                    Some("subscribe") => {
                        let _ = answers.try_send((format!("<presence type='subscribed' to='{from}'/>"), true));
                    }
                    Some("subscribed") if asked.contains(from) && approved.insert(from.to_string()) => {
                        let _ = events.send(Event::Subscribed);
                    }
                    Some("error") => {
                        let _ =
                            events.send(Event::Error { sec, kind: format!("presence error: {}", error_condition(&e)) });
                    }
                    _ if from.split('/').next() != Some(me.as_str()) => {
                        if let Some(sent) = child_text(&e, "status").and_then(stamped) {
                            let _ = events.send(Event::PresenceSeen { sec, latency_us: now.saturating_sub(sent) });
                        }
                    }
                    _ => {}
                }
            }
            "iq" => {
                received = received.wrapping_add(1);
                // Answer what the server asks (pings, ...) rather than leave it waiting.
                if matches!(kind, Some("get" | "set")) {
                    let id = attr(&e, "id").unwrap_or_default();
                    let _ = answers.try_send((format!("<iq type='result' id='{id}'/>"), true));
                }
                if let Some(at) = e.find("<item ") {
                    let item = &e[at..];
                    let sees = matches!(attr(item, "subscription"), Some("to" | "both"));
                    let jid = attr(item, "jid").unwrap_or_default();
                    if sees && asked.contains(jid) && approved.insert(jid.to_string()) {
                        let _ = events.send(Event::Subscribed);
                    }
                }
            }
            "r" => {
                let _ = answers.try_send((format!("<a xmlns='urn:xmpp:sm:3' h='{received}'/>"), false));
            }
            "a" => {
                let Some(h) = attr(&e, "h").and_then(|h| h.parse::<u32>().ok()) else { continue };
                let mut q = in_flight.lock().expect("not poisoned");
                while acked != h {
                    acked = acked.wrapping_add(1);
                    if let Some(Some((intended, n))) = q.pop_front() {
                        let _ = events.send(Event::Acked { sec, latency_us: now.saturating_sub(intended), n });
                    }
                }
            }
            "stream:error" => {
                let _ = events.send(Event::Error { sec, kind: format!("stream error: {}", error_condition(&e)) });
            }
            _ => {}
        }
    }
    let _ = events.send(login.closed());
}

/// The defined condition of a stanza or stream error (its first child element in the error).
fn error_condition(e: &str) -> String {
    let inner = e.find("<error").or_else(|| e.find("<stream:error")).map(|at| &e[at + 1..]).unwrap_or(e);
    let inner = inner.find('<').map(|at| &inner[at..]).unwrap_or("");
    let n = name(inner);
    if n.is_empty() {
        "unknown".to_string()
    } else {
        n.to_string()
    }
}
