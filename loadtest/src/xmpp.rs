//! The XMPP driver: plain c2s with SASL PLAIN and stream management, as any XMPP server can be
//! configured to accept on loopback. Each connection has a writer task fed by a bounded queue
//! and a reader task that turns what arrives into measurements.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::run::{Clock, Event};

/// Messages queued towards one connection before the scheduler counts a backlog error.
const QUEUE: usize = 1024;

/// A logged-in connection, ready to send.
pub struct Conn {
    pub user: usize,
    pub out: mpsc::Sender<Outgoing>,
}

/// One message: its stanza and its intended send time (µs since the clock's start); no time
/// for the client's own stream-management answers.
pub struct Outgoing {
    pub xml: String,
    pub intended_us: Option<u64>,
}

async fn expect(r: &mut OwnedReadHalf, got: &mut String, needle: &str) -> anyhow::Result<()> {
    let mut buf = [0u8; 4096];
    while !got.contains(needle) {
        if got.contains("<failure") || got.contains("<stream:error") {
            bail!("server said: {}", got.chars().take(300).collect::<String>());
        }
        let n =
            tokio::time::timeout(Duration::from_secs(30), r.read(&mut buf)).await.context("no answer in 30 s")??;
        if n == 0 {
            bail!("connection closed while waiting for {needle}");
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let at = got.find(needle).expect("just found") + needle.len();
    got.drain(..at);
    Ok(())
}

/// Connects, authenticates and binds; then starts the writer and reader tasks.
#[allow(clippy::too_many_arguments)]
pub async fn connect(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    domain: &str,
    user: usize,
    device: usize,
    password: &str,
    clock: Clock,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<Conn> {
    let stream = match source {
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("binding {ip}"))?;
            socket.connect(addr).await
        }
        None => TcpStream::connect(addr).await,
    };
    let (mut r, mut w) = stream.with_context(|| format!("connecting to {addr}"))?.into_split();
    let mut got = String::new();
    let open = format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    w.write_all(open.as_bytes()).await?;
    expect(&mut r, &mut got, "</stream:features>").await?;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0lt{user}\0{password}"));
    w.write_all(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>").as_bytes())
        .await?;
    expect(&mut r, &mut got, "<success").await?;
    w.write_all(open.as_bytes()).await?;
    expect(&mut r, &mut got, "</stream:features>").await?;
    let bind = format!(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>d{device}</resource></bind></iq>"
    );
    w.write_all(bind.as_bytes()).await?;
    expect(&mut r, &mut got, "</iq>").await?;
    w.write_all(b"<enable xmlns='urn:xmpp:sm:3'/><presence/>").await?;
    expect(&mut r, &mut got, "<enabled").await?;

    let in_flight: Arc<Mutex<VecDeque<u64>>> = Arc::default();
    let (out, mut rx) = mpsc::channel::<Outgoing>(QUEUE);
    let pending = in_flight.clone();
    tokio::spawn(async move {
        let mut batch = String::new();
        while let Some(first) = rx.recv().await {
            batch.clear();
            let mut messages = false;
            // Whatever else is queued goes in the same write.
            let mut next = Some(first);
            while let Some(m) = next.take().or_else(|| rx.try_recv().ok()) {
                if let Some(t) = m.intended_us {
                    pending.lock().expect("not poisoned").push_back(t);
                    messages = true;
                }
                batch.push_str(&m.xml);
            }
            if messages {
                batch.push_str("<r xmlns='urn:xmpp:sm:3'/>");
            }
            if w.write_all(batch.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = w.write_all(b"</stream:stream>").await;
    });
    tokio::spawn(read_loop(r, got, in_flight, out.clone(), clock, events));
    Ok(Conn { user, out })
}

/// Turns what the server sends into measurements: deliveries (from the send time in the
/// body), acknowledgements (stream management `h`), errors; answers the server's `<r/>`.
async fn read_loop(
    mut r: OwnedReadHalf,
    mut pending: String,
    in_flight: Arc<Mutex<VecDeque<u64>>>,
    answer: mpsc::Sender<Outgoing>,
    clock: Clock,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut buf = vec![0u8; 16384];
    let mut acked: u32 = 0;
    // Stanzas received since stream management was enabled (the server asks with <r/>).
    let mut received: u32 = 0;
    // What arrived, for counting stanzas: a tail that may hold a cut-off tag is kept.
    let mut scan = String::new();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        scan.push_str(&String::from_utf8_lossy(&buf[..n]));
        // Top-level stanzas (no carbons or archive queries here, so none are nested; both tags
        // are longer than the kept tail, so none is counted twice).
        for tag in ["<message ", "<presence"] {
            received += scan.matches(tag).count() as u32;
        }
        if scan.contains("<r xmlns='urn:xmpp:sm:3'/>") {
            let a = Outgoing { xml: format!("<a xmlns='urn:xmpp:sm:3' h='{received}'/>"), intended_us: None };
            let _ = answer.try_send(a);
        }
        let keep = (scan.len().saturating_sub(8)..=scan.len()).find(|&i| scan.is_char_boundary(i)).unwrap_or(0);
        scan.drain(..keep);
        let now = clock.now_us();
        let sec = clock.second(now);
        while let Some(at) = pending.find("<body>t") {
            let Some(end) = pending[at..].find(' ').map(|e| at + e) else { break };
            if let Ok(sent) = pending[at + 7..end].parse::<u64>() {
                let _ = events.send(Event::Delivered { sec, latency_us: now.saturating_sub(sent) });
            }
            pending.drain(..end);
        }
        while let Some(at) = pending.find("<a xmlns='urn:xmpp:sm:3' h='") {
            let rest = &pending[at + 28..];
            let Some(end) = rest.find('\'') else { break };
            if let Ok(h) = rest[..end].parse::<u32>() {
                let mut q = in_flight.lock().expect("not poisoned");
                while acked < h {
                    acked += 1;
                    if let Some(intended) = q.pop_front() {
                        let _ = events.send(Event::Acked { sec, latency_us: now.saturating_sub(intended) });
                    }
                }
            }
            pending.drain(..at + 28 + end);
        }
        for (needle, kind) in [("type='error'", "stanza error"), ("<stream:error", "stream error")] {
            while let Some(at) = pending.find(needle) {
                let _ = events.send(Event::Error { sec, kind: kind.to_string() });
                pending.drain(..at + needle.len());
            }
        }
        // Keep only a tail that may hold the start of something cut off.
        if pending.len() > 4096 {
            let cut = pending.len() - 1024;
            let cut = (cut..pending.len()).find(|&i| pending.is_char_boundary(i)).unwrap_or(pending.len());
            pending.drain(..cut);
        }
    }
}
