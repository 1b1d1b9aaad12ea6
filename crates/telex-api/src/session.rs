//! One device session on the node where the user's actor lives: attaches the device to the
//! actor, runs its sends, acks and presence, and streams back what the actor queues for it.
//! Used by the client API on a single node, by the gateway for a local actor, and by
//! `Sessions.Attach` for a gateway on another node.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use telex_actors::{Messaging, Outbound, OutboundRx};
use telex_proto::v1 as pb;
use telex_types::presence::{DevicePresence, Show};
use telex_types::{TelexError, UserJid};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::Status;

use crate::client::{message, roster_item};
use crate::status::to_status;

/// Archive entries queued towards one device; when full the actor waits, and cuts the device
/// off if it stays full (see `Limits::stall_timeout`). Smaller than the delivery window on purpose.
const OUTBOUND: usize = 64;
/// Sends of one session being committed at once.
pub(crate) const SENDS_IN_FLIGHT: usize = 64;

pub type FrameResult = Result<pb::ServerFrame, Status>;
pub type FrameStream = Pin<Box<dyn Stream<Item = FrameResult> + Send>>;

/// A device's response stream, polled by its connection: archive entries, presence and roster
/// pushes from the actor's queue; send results from the session's reader; and the reason when
/// the server cuts the device off. No task or buffer of its own, so an idle session is cheap.
struct SessionFrames {
    out: OutboundRx,
    results: mpsc::Receiver<Box<FrameResult>>,
    kill: Option<oneshot::Receiver<String>>,
    ended: bool,
}

impl SessionFrames {
    fn end(&mut self, item: Option<FrameResult>) -> Poll<Option<FrameResult>> {
        self.ended = true;
        Poll::Ready(item)
    }
}

impl Stream for SessionFrames {
    type Item = FrameResult;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(kill) = self.kill.as_mut() {
            if let Poll::Ready(reason) = Pin::new(kill).poll(cx) {
                self.kill = None;
                if let Ok(reason) = reason {
                    // Cut off by the server: the device learns why once it reads again.
                    return self.end(Some(Err(cutoff(reason))));
                }
            }
        }
        if let Poll::Ready(Some(r)) = self.results.poll_recv(cx) {
            return match *r {
                Ok(f) => Poll::Ready(Some(Ok(f))),
                Err(status) => self.end(Some(Err(status))),
            };
        }
        match self.out.poll_recv(cx) {
            Poll::Ready(Some(o)) => Poll::Ready(Some(frame(outbound_frame(*o)))),
            // The actor let go of the session: ended by the server if it said why.
            Poll::Ready(None) => {
                let reason = self.kill.as_mut().and_then(|k| k.try_recv().ok());
                self.end(reason.map(|r| Err(cutoff(r))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// How a cut-off reaches the device: a move of the user's actor is retryable (`unavailable`, and
/// a gateway re-attaches at once); anything else is `resource_exhausted` with the reason.
fn cutoff(reason: String) -> Status {
    if reason.starts_with(telex_actors::MOVED) {
        Status::unavailable(reason)
    } else {
        Status::resource_exhausted(reason)
    }
}

/// Attaches `device` to `jid`'s actor on this node and serves the session: frames from
/// `inbound` are carried out until it ends; the returned stream is what the device receives.
pub(crate) async fn local_session<S>(
    messaging: &Messaging,
    jid: UserJid,
    device: String,
    inbound: S,
) -> Result<FrameStream, Status>
where
    S: Stream<Item = Result<pb::ClientFrame, Status>> + Send + Unpin + 'static,
{
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND);
    let (kill_tx, kill_rx) = oneshot::channel::<String>();
    let hub = messaging.hub().clone();
    let session = hub.attach(&jid, &device, out_tx, kill_tx).await.map_err(to_status)?;
    tracing::info!(user = %jid, device = %device, "session attached");
    let (resp_tx, resp_rx) = mpsc::channel(SENDS_IN_FLIGHT);
    let frames = SessionFrames { out: out_rx, results: resp_rx, kill: Some(kill_rx), ended: false };

    let mut inbound = inbound;
    let messaging = messaging.clone();
    tokio::spawn(async move {
        let sends = Arc::new(Semaphore::new(SENDS_IN_FLIGHT));
        loop {
            let next = tokio::select! {
                f = inbound.next() => f,
                // The connection dropped the response stream: the device is gone or cut off.
                _ = resp_tx.closed() => break,
            };
            let Some(Ok(f)) = next else { break };
            match f.frame {
                Some(pb::client_frame::Frame::Send(s)) => {
                    let Ok(permit) = sends.clone().acquire_owned().await else { break };
                    let (messaging, jid, device, tx) =
                        (messaging.clone(), jid.clone(), device.clone(), resp_tx.clone());
                    tokio::spawn(async move {
                        let result = messaging.send(&jid, &device, &s.to, &s.client_id, &s.body, &s.extras).await;
                        let sent = frame(pb::server_frame::Frame::Sent(send_result(s.client_id, result)));
                        let _ = tx.send(Box::new(sent)).await;
                        drop(permit);
                    });
                }
                Some(pb::client_frame::Frame::Ack(a)) => hub.ack(&jid, &device, session, a.position).await,
                Some(pb::client_frame::Frame::Signal(s)) => {
                    // Best effort, no answer: a refused signal is only logged.
                    if let Err(r) = messaging.signal(&jid, &device, &s.to, s.payload).await {
                        tracing::debug!(user = %jid, error = %r.error, "signal dropped");
                    }
                }
                Some(pb::client_frame::Frame::Presence(p)) => match device_presence(p) {
                    Ok(p) => hub.set_presence(&jid, &device, session, p).await,
                    Err(e) => {
                        let _ = resp_tx.send(Box::new(Err(to_status(e)))).await;
                        break;
                    }
                },
                None => {}
            }
        }
        hub.detach(&jid, &device, session);
        tracing::info!(user = %jid, device = %device, "session detached");
    });
    Ok(Box::pin(frames))
}

pub(crate) fn frame(f: pb::server_frame::Frame) -> Result<pb::ServerFrame, Status> {
    Ok(pb::ServerFrame { frame: Some(f) })
}

const MAX_STATUS_BYTES: usize = 1024;
const MAX_PRESENCE_EXTRAS_BYTES: usize = 2048;

pub fn device_presence(p: pb::SetPresence) -> Result<DevicePresence, TelexError> {
    let show = Show::parse(&p.show).ok_or_else(|| {
        TelexError::invalid(format!("presence show {:?} is not available, chat, away, xa, dnd or unavailable", p.show))
    })?;
    let priority = i8::try_from(p.priority)
        .map_err(|_| TelexError::invalid(format!("presence priority {} is outside -128..127", p.priority)))?;
    if p.status.len() > MAX_STATUS_BYTES {
        return Err(TelexError::invalid(format!("presence status is longer than {MAX_STATUS_BYTES} bytes")));
    }
    if p.extras.len() > MAX_PRESENCE_EXTRAS_BYTES {
        return Err(TelexError::invalid(format!("presence extras are longer than {MAX_PRESENCE_EXTRAS_BYTES} bytes")));
    }
    Ok(DevicePresence { show, status: p.status, priority, extras: p.extras })
}

fn outbound_frame(o: Outbound) -> pb::server_frame::Frame {
    use pb::server_frame::Frame;
    match o {
        Outbound::Message { position, message: m } => Frame::Message(message(position, m)),
        Outbound::Presence { from, presence } => Frame::Presence(match presence {
            Some(p) => pb::PresenceUpdate {
                from: from.to_string(),
                show: p.show.as_str().to_string(),
                status: p.status,
                priority: i32::from(p.priority),
                extras: p.extras,
            },
            None => pb::PresenceUpdate { from: from.to_string(), show: "unavailable".into(), ..Default::default() },
        }),
        Outbound::Roster { contact, item } => {
            Frame::Roster(pb::RosterPush { jid: contact.to_string(), item: item.map(|i| roster_item(&contact, &i)) })
        }
        Outbound::SubscriptionRequest { from } => {
            Frame::SubscriptionRequest(pb::SubscriptionRequest { from: from.to_string() })
        }
        Outbound::Signal { from, from_device, payload } => {
            Frame::Signal(pb::Signal { from: from.to_string(), from_device, payload })
        }
    }
}

pub(crate) fn send_result(
    client_id: String,
    result: Result<telex_actors::Sent, telex_actors::Refused>,
) -> pb::SendResult {
    match result {
        Ok(s) => pb::SendResult {
            client_id,
            server_id: s.server_id,
            position: s.position,
            recipient_position: s.recipient_position,
            ..Default::default()
        },
        Err(r) => pb::SendResult {
            client_id,
            error_code: r.error.code.as_str().to_string(),
            retryable: r.error.code.retryable(),
            error: r.error.message,
            retry_after_ms: r.retry_after.map(|d| d.as_millis() as u64).unwrap_or(0),
            ..Default::default()
        },
    }
}
