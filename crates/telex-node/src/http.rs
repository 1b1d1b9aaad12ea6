//! The HTTP listener: liveness, readiness, Prometheus metrics, and XMPP over WebSocket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use telex_raft::Groups;

#[derive(Clone)]
pub(crate) struct HttpState {
    pub groups: Arc<Groups>,
    /// Set once start-up (leaders elected, bootstrap tenant present) is complete.
    pub ready: Arc<AtomicBool>,
    pub xmpp: Arc<telex_xmpp::Xmpp>,
    pub accounts: Arc<telex_accounts::Accounts>,
}

pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|| async { crate::telemetry::prometheus().render() }))
        .route("/xmpp-websocket", get(xmpp_websocket))
        .with_state(state)
}

/// XMPP over WebSocket (RFC 7395): the `xmpp` subprotocol, one element per text message.
async fn xmpp_websocket(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.protocols(["xmpp"])
        .max_message_size(s.xmpp.max_stanza() + 1024)
        .on_upgrade(move |socket| crate::xmpp::websocket(s.xmpp, socket, peer))
}

async fn readyz(State(s): State<HttpState>) -> (StatusCode, String) {
    if !s.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into());
    }
    let leaderless: Vec<String> =
        s.groups.status().iter().filter(|g| g.leader.is_none()).map(|g| g.group.to_string()).collect();
    if leaderless.is_empty() {
        // A directory server that cannot be read leaves the last synced directory in force:
        // the node serves, and says so.
        let mut body = String::from("ready\n");
        for (tenant, status) in s.accounts.ldap_status() {
            if let Some(e) = status.last_error {
                let last = status.last_success_ms.map_or("never".to_string(), |ms| format!("at {ms} (unix ms)"));
                body.push_str(&format!("ldap {tenant}: sync failing ({e}); last good sync {last}\n"));
            }
        }
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("groups without a leader: {}\n", leaderless.join(",")))
    }
}
