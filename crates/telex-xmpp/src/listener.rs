//! The c2s listeners: STARTTLS-capable (5222) and direct TLS (5223, XEP-0368).

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::conn::Xmpp;
use crate::wire::Transport;

/// Serves every connection to `listener` until the future is dropped; `direct_tls` starts TLS
/// before the stream (XEP-0368).
pub async fn serve_c2s(xmpp: Arc<Xmpp>, listener: TcpListener, direct_tls: bool) {
    {
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "XMPP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let xmpp = xmpp.clone();
            let loopback = peer.ip().is_loopback();
            tokio::spawn(async move {
                let transport = if direct_tls {
                    let Some(acceptor) = xmpp.tls().cloned() else { return };
                    match tokio::time::timeout(std::time::Duration::from_secs(10), Box::pin(acceptor.accept(socket)))
                        .await
                    {
                        Ok(Ok(tls)) => Transport::Tls { io: Box::pin(tls), loopback },
                        _ => return,
                    }
                } else {
                    Transport::Plain { socket, loopback }
                };
                xmpp.serve(transport).await;
            });
        }
    }
}
