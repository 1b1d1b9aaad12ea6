//! Sessions that can be resumed (XEP-0198). A resumable session registers here under an
//! unguessable id; whoever holds it (its connection, or the parking task after the connection
//! dropped) listens for a take-over and hands the session to the new connection, which must
//! have authenticated as the same user.

use std::time::Duration;

use dashmap::DashMap;
use telex_types::UserJid;
use tokio::sync::{mpsc, oneshot};

use crate::conn::Session;

/// A request to hand a session over to a new connection.
pub type Take = oneshot::Sender<Session>;

#[derive(Default)]
pub struct Registry {
    sessions: DashMap<String, (UserJid, mpsc::Sender<Take>)>,
}

impl Registry {
    /// Registers a session; the returned receiver is where take-overs arrive.
    pub fn register(&self, jid: &UserJid) -> (String, mpsc::Receiver<Take>) {
        use base64::Engine;
        use rand::Rng;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::thread_rng().gen::<[u8; 18]>());
        let (tx, rx) = mpsc::channel(1);
        self.sessions.insert(id.clone(), (jid.clone(), tx));
        (id, rx)
    }

    pub fn remove(&self, id: &str) {
        self.sessions.remove(id);
    }

    /// Takes over session `id` for `jid`: `None` if there is no such session of that user
    /// (another user's id looks exactly like an expired one).
    pub async fn take(&self, id: &str, jid: &UserJid) -> Option<Session> {
        let tx = {
            let entry = self.sessions.get(id)?;
            if &entry.0 != jid {
                return None;
            }
            entry.1.clone()
        };
        let (give, taken) = oneshot::channel();
        tx.send(give).await.ok()?;
        tokio::time::timeout(Duration::from_secs(5), taken).await.ok()?.ok()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }
}

/// The next take-over request, if the session is resumable (else never).
pub async fn next_take(take: &mut Option<mpsc::Receiver<Take>>) -> Option<Take> {
    match take {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Keeps a session whose connection dropped until it is resumed, it ends, or `timeout`
/// passes. What arrives meanwhile is queued as unacknowledged, to be sent on resumption.
pub async fn park(mut session: Session, timeout: Duration) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    metrics::gauge!("telex_xmpp_parked_sessions").increment(1.0);
    loop {
        tokio::select! {
            t = next_take(&mut session.take) => {
                if let Some(give) = t {
                    let _ = give.send(session);
                }
                break;
            }
            f = session.device.next() => {
                if session.accept(f).is_err() || session.overflowing() {
                    break;
                }
            }
            _ = &mut deadline => break,
        }
    }
    metrics::gauge!("telex_xmpp_parked_sessions").decrement(1.0);
}
