//! One client connection's bytes: a TCP stream (plain, after STARTTLS, or direct TLS) or an
//! RFC 7395 WebSocket carried as text messages. Reading yields parser events; writing queues
//! serialized XML that goes out in one write per `flush` (one syscall for a burst of stanzas).

use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::ns;

use crate::xml::{to_xml, Element, Event, Limits, StreamParser, XmlError};

pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 4096;
/// Buffer capacity kept between bursts.
const KEEP_BUFFER: usize = 8192;

pub enum Transport {
    /// Unencrypted TCP. Read by readiness, so an idle connection holds no read buffer.
    Plain { socket: TcpStream, loopback: bool },
    /// TCP after STARTTLS, or direct TLS.
    Tls { io: Pin<Box<dyn Io>>, loopback: bool },
    /// Mid-upgrade to TLS (only if the upgrade failed, and then the connection ends).
    Gone,
    /// Text messages in and out; the HTTP server pumps them to and from the WebSocket.
    WebSocket { rx: mpsc::Receiver<String>, tx: mpsc::Sender<String>, tls: bool, loopback: bool },
}

#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    Xml(XmlError),
}

pub struct Wire {
    transport: Transport,
    parser: StreamParser,
    out: String,
    /// WebSocket: finished messages waiting for `flush`.
    frames: Vec<String>,
}

/// A top-level element as a transport writes it: a WebSocket message is a whole document, so
/// it carries its namespace.
pub fn serialize(e: &Element, websocket: bool) -> String {
    let mut out = String::new();
    if websocket && (e.name.starts_with("stream:") || e.attr("xmlns").is_none()) {
        let mut e = e.clone();
        if e.name.starts_with("stream:") {
            e.attrs.insert(0, ("xmlns:stream".into(), ns::STREAM.into()));
        } else {
            e.attrs.insert(0, ("xmlns".into(), ns::CLIENT.into()));
        }
        to_xml(&e, &mut out);
    } else {
        to_xml(e, &mut out);
    }
    out
}

impl Wire {
    pub fn new(transport: Transport, limits: Limits) -> Self {
        let mut parser = StreamParser::new(limits);
        if matches!(transport, Transport::WebSocket { .. }) {
            // Each message is one element (RFC 7395); one parser reads them all as a stream.
            parser.feed(format!("<stream:stream xmlns='{}' xmlns:stream='{}'>", ns::CLIENT, ns::STREAM).as_bytes());
            let _ = parser.next_event();
        }
        Wire { transport, parser, out: String::new(), frames: Vec::new() }
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self.transport, Transport::WebSocket { .. })
    }

    pub fn is_tls(&self) -> bool {
        match &self.transport {
            Transport::Tls { .. } => true,
            Transport::WebSocket { tls, .. } => *tls,
            Transport::Plain { .. } | Transport::Gone => false,
        }
    }

    pub fn is_loopback(&self) -> bool {
        match &self.transport {
            Transport::Plain { loopback, .. } | Transport::Tls { loopback, .. } => *loopback,
            Transport::WebSocket { loopback, .. } => *loopback,
            Transport::Gone => false,
        }
    }

    /// The next event; `None` when the peer closed the connection. Cancel-safe: bytes read are
    /// fed to the parser before anything else can run. Parses one event at a time, so bytes a
    /// client pipelined after `<auth/>` are read as the new stream they belong to.
    pub async fn read(&mut self) -> Result<Option<Event>, WireError> {
        loop {
            if let Some(e) = self.parser.next_event().map_err(WireError::Xml)? {
                return Ok(Some(self.websocket_event(e)));
            }
            match &mut self.transport {
                Transport::Plain { socket, .. } => {
                    socket.readable().await.map_err(WireError::Io)?;
                    let mut buf = [0u8; READ_CHUNK];
                    match socket.try_read(&mut buf) {
                        Ok(0) => return Ok(None),
                        Ok(n) => self.parser.feed(buf.get(..n).unwrap_or_default()),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(WireError::Io(e)),
                    }
                }
                Transport::Gone => return Ok(None),
                Transport::Tls { io, .. } => {
                    // Straight into the parser's buffer: no buffer of its own held while idle.
                    let input = self.parser.input();
                    input.reserve(READ_CHUNK.min(input.capacity().max(256)));
                    let n = io.read_buf(input).await.map_err(WireError::Io)?;
                    if n == 0 {
                        return Ok(None);
                    }
                }
                Transport::WebSocket { rx, .. } => match rx.recv().await {
                    Some(text) => self.parser.feed(text.as_bytes()),
                    None => return Ok(None),
                },
            }
        }
    }

    /// RFC 7395 framing: `<open/>` and `<close/>` stand for the stream header and end.
    fn websocket_event(&self, e: Event) -> Event {
        match e {
            Event::Stanza(el) if self.is_websocket() && el.attr("xmlns") == Some(ns::FRAMING) => match el.name.as_str()
            {
                "open" => Event::StreamOpen(el),
                "close" => Event::StreamClose,
                _ => Event::Stanza(el),
            },
            other => other,
        }
    }

    /// Queues the stream header (`<open/>` on a WebSocket). `from` must be a served domain (or
    /// empty): it is written as is.
    pub fn open(&mut self, from: &str, id: &str) {
        if self.is_websocket() {
            self.out.push_str(&format!(
                "<open xmlns='{}' from='{from}' id='{id}' version='1.0' xml:lang='en'/>",
                ns::FRAMING
            ));
            self.end_frame();
        } else {
            self.out.push_str(&format!(
                "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' from='{from}' id='{id}' version='1.0' xml:lang='en'>",
                ns::CLIENT,
                ns::STREAM
            ));
        }
    }

    /// Queues a top-level element; `stream:` elements get their namespace on a WebSocket.
    pub fn send(&mut self, e: &Element) {
        if self.is_websocket() {
            let text = serialize(e, true);
            self.send_text(&text);
        } else {
            to_xml(e, &mut self.out);
        }
    }

    /// Queues an element already serialized by `serialize`.
    pub fn send_text(&mut self, text: &str) {
        self.out.push_str(text);
        if self.is_websocket() {
            self.end_frame();
        }
    }

    /// Queues the end of the stream.
    pub fn close(&mut self) {
        if self.is_websocket() {
            self.out.push_str(&format!("<close xmlns='{}'/>", ns::FRAMING));
            self.end_frame();
        } else {
            self.out.push_str("</stream:stream>");
        }
    }

    fn end_frame(&mut self) {
        self.frames.push(std::mem::take(&mut self.out));
    }

    /// Whether anything is queued.
    pub fn pending(&self) -> bool {
        !self.out.is_empty() || !self.frames.is_empty()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        match &mut self.transport {
            Transport::Plain { socket, .. } => {
                if !self.out.is_empty() {
                    socket.write_all(self.out.as_bytes()).await?;
                    self.out.clear();
                }
            }
            Transport::Tls { io, .. } => {
                if !self.out.is_empty() {
                    io.write_all(self.out.as_bytes()).await?;
                    self.out.clear();
                    io.flush().await?;
                }
            }
            Transport::Gone => return Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            Transport::WebSocket { tx, .. } => {
                for f in self.frames.drain(..) {
                    tx.send(f).await.map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
                }
            }
        }
        self.trim();
        Ok(())
    }

    /// Gives back buffer space a burst left behind, so idle connections stay small.
    fn trim(&mut self) {
        if self.out.capacity() > KEEP_BUFFER {
            self.out = String::new();
        }
        self.parser.trim(KEEP_BUFFER);
    }

    /// A new stream starts after SASL success; what the client already sent belongs to it.
    pub fn restart(&mut self) {
        if !self.is_websocket() {
            self.parser.restart();
        }
    }

    /// Upgrades a TCP stream to TLS (after `<proceed/>` was flushed).
    pub async fn starttls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let Transport::Plain { socket, loopback } = std::mem::replace(&mut self.transport, Transport::Gone) else {
            return Err(io::Error::other("STARTTLS on a stream that is not plain TCP"));
        };
        let secured = acceptor.accept(socket).await?;
        self.transport = Transport::Tls { io: Box::pin(secured), loopback };
        // Nothing sent in the clear before the handshake may count as sent inside TLS.
        self.parser.reset();
        Ok(())
    }
}
