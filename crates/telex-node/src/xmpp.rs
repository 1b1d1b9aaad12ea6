//! Starts the XMPP gateway from the node's configuration, and carries XMPP over WebSocket
//! (RFC 7395) between axum and the gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use telex_session::Core;
use telex_xmpp::{Transport, Xmpp, XmppConfig};
use tokio::sync::mpsc;

use crate::Config;

pub(crate) async fn start(config: &Config, core: Core) -> anyhow::Result<Arc<Xmpp>> {
    let x = &config.xmpp;
    let tls = if x.cert.as_os_str().is_empty() {
        let mut names = vec!["localhost".to_string()];
        if !config.bootstrap_tenant.is_empty() && config.bootstrap_tenant != "localhost" {
            names.push(config.bootstrap_tenant.clone());
        }
        telex_xmpp::tls::self_signed(&names)
    } else {
        telex_xmpp::tls::from_files(&x.cert, &x.key)
    }
    .map_err(anyhow::Error::msg)
    .context("xmpp: TLS")?;
    let xmpp_config = XmppConfig {
        limits: telex_xmpp::xml::Limits { max_stanza: x.max_stanza_bytes, ..Default::default() },
        preauth_timeout: Duration::from_secs(x.preauth_timeout_secs),
        resume_timeout: Duration::from_secs(x.resume_timeout_secs),
        require_tls: x.require_tls,
    };
    Ok(Xmpp::new(core, xmpp_config, Some(tls)))
}

/// Messages queued each way between the WebSocket and the gateway.
const WS_QUEUE: usize = 32;

/// Serves one upgraded WebSocket as an XMPP connection.
pub(crate) async fn websocket(xmpp: Arc<Xmpp>, socket: WebSocket, peer: SocketAddr) {
    let (mut sink, mut stream) = socket.split();
    let (in_tx, in_rx) = mpsc::channel::<String>(WS_QUEUE);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(WS_QUEUE);
    let transport = Transport::WebSocket { rx: in_rx, tx: out_tx, tls: false, loopback: peer.ip().is_loopback() };
    let reader = async move {
        while let Some(Ok(m)) = stream.next().await {
            let text = match m {
                Message::Text(t) => t.to_string(),
                Message::Binary(_) => break, // RFC 7395: text frames only
                Message::Close(_) => break,
                _ => continue,
            };
            if in_tx.send(text).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some(text) = out_rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    // The reader ends when the client goes away, which the gateway sees as its input closing;
    // when the gateway ends the connection, the writer closes the socket.
    let reader = tokio::spawn(reader);
    tokio::join!(xmpp.serve(transport), writer);
    reader.abort();
}
