//! One client connection: stream negotiation (`negotiate`: STARTTLS, SASL, bind or resume),
//! then the bound session (`session`: state and the loop that moves stanzas and frames) and
//! what each stanza from the client does (`handlers`).

mod handlers;
mod negotiate;
mod rooms;
mod session;

use std::sync::Arc;
use std::time::Duration;

use telex_session::Core;
use tokio_rustls::TlsAcceptor;

use crate::ns;
use crate::resume::{self, Registry};
use crate::wire::{Transport, Wire, WireError};
use crate::xml::{el, Limits, Node};

pub use session::Session;

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

/// The XMPP front door: shared by every connection of every transport.
pub struct Xmpp {
    core: Core,
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

pub(crate) fn stream_error(condition: &'static str, text: impl Into<String>) -> End {
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

impl Xmpp {
    pub fn new(core: Core, config: XmppConfig, tls: Option<TlsAcceptor>) -> Arc<Self> {
        Arc::new(Xmpp { core, config, tls, resumable: Arc::new(Registry::default()) })
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
        // see-other-host names a TCP address: not for WebSocket clients.
        let tcp = !matches!(transport, Transport::WebSocket { .. });
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
                // A stopping node sends its clients to another node (RFC 6120 §4.9.3.19)
                // where one is known, rather than leaving them to find one.
                let redirect = (tcp && condition == "system-shutdown").then(|| self.core.next_redirect(|r| &r.xmpp));
                let (condition, body) = match redirect.flatten() {
                    Some(to) => ("see-other-host", vec![Node::Text(to)]),
                    None => (condition, vec![]),
                };
                let children = vec![
                    Node::Element(el(condition, &[("xmlns", ns::STREAMS_ERR)], body)),
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
        self.established(wire, session).await
    }
}

pub(crate) fn stream_id() -> String {
    use base64::Engine;
    use rand::Rng;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::thread_rng().gen::<[u8; 12]>())
}
