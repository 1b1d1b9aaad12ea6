//! The gateway half of a device session in a cluster. The device's connection stays with the
//! node it reached; the session itself is served where the user's actor lives, on the leader
//! of the user's shard: a local session there, or `Sessions.Attach` to that node. When the
//! attachment ends because the actor moved (leadership changed, that node died or is shutting
//! down), the gateway attaches again to the new leader without the device reconnecting: it
//! answers sends that were in flight with a retryable error (the device retries with the same
//! client id; the archive deduplicates), and replays the device's last presence.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use telex_actors::Messaging;
use telex_proto::v1 as pb;
use telex_proto::v1::sessions_client::SessionsClient;
use telex_raft::Groups;
use telex_types::{shard, UserJid};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::session::{frame, local_session, FrameResult, FrameStream, SENDS_IN_FLIGHT};

/// Metadata naming the session's user and device on `Sessions.Attach`.
pub(crate) const USER_KEY: &str = "x-telex-user-bin";
pub(crate) const DEVICE_KEY: &str = "x-telex-device-bin";

/// How long a session waits for its shard to have a reachable leader before it gives up.
const ATTACH_PATIENCE: Duration = Duration::from_secs(5);
/// How long a remote node may take to accept an attachment (it may be cut off).
const REMOTE_ATTACH_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a remote attachment checks that its node still leads the user's shard.
const LEADER_CHECK: Duration = Duration::from_millis(200);
/// Attachments in a row that end before the device got anything: something is wrong.
const MAX_EMPTY_ATTACHMENTS: usize = 20;

/// Starts serving a device session through this node once it is attached to the user's actor
/// (so a refusal, such as too many sessions, is the call's status); returns what the device
/// receives.
pub(crate) async fn start<S>(
    groups: Arc<Groups>,
    messaging: Messaging,
    jid: UserJid,
    device: String,
    inbound: S,
) -> Result<FrameStream, Status>
where
    S: Stream<Item = Result<pb::ClientFrame, Status>> + Send + Unpin + 'static,
{
    let gw = Gateway { groups, messaging, jid, device };
    let first = gw.attach().await?;
    let (down_tx, down_rx) = mpsc::channel(SENDS_IN_FLIGHT);
    tokio::spawn(run(gw, first, inbound, down_tx));
    Ok(Box::pin(ReceiverStream::new(down_rx)))
}

struct Gateway {
    groups: Arc<Groups>,
    messaging: Messaging,
    jid: UserJid,
    device: String,
}

/// A session attached to the user's actor: frames go up, frames come down.
struct Attachment {
    up: mpsc::Sender<pb::ClientFrame>,
    down: FrameStream,
    /// The node serving it, when not this one.
    remote: Option<u64>,
}

/// Whether an attachment ended because of where it ran (attach again) rather than because the
/// session itself was refused or cut off (tell the device).
fn actor_moved(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal | Code::FailedPrecondition | Code::Aborted
    )
}

impl Gateway {
    /// Attaches to the user's actor wherever it lives, waiting for a leader if there is none.
    /// The user's shard group.
    fn group(&self) -> u32 {
        shard::shard_of(&self.jid, self.groups.shards())
    }

    /// Whether this node knows a leader of the user's shard other than `remote`: a remote
    /// attachment to a node that was partitioned away would otherwise hang, not fail.
    fn leader_moved_from(&self, remote: Option<u64>) -> bool {
        let Some(node) = remote else { return false };
        let leader = self.groups.raft(self.group()).and_then(|r| r.metrics().borrow().current_leader);
        leader.is_some_and(|l| l != node)
    }

    async fn attach(&self) -> Result<Attachment, Status> {
        let group = self.group();
        let deadline = Instant::now() + ATTACH_PATIENCE;
        let mut last = Status::unavailable("the user's shard has no leader yet");
        while Instant::now() < deadline {
            match self.groups.serving_leader(group) {
                Some(l) if l == self.groups.node_id() => return self.attach_local().await,
                Some(l) => match self.attach_remote(group, l).await {
                    Ok(a) => return Ok(a),
                    Err(s) if actor_moved(&s) => last = s,
                    Err(s) => return Err(s),
                },
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Status::unavailable(format!("could not reach the user's actor: {}", last.message())))
    }

    async fn attach_local(&self) -> Result<Attachment, Status> {
        let (up, rx) = mpsc::channel(SENDS_IN_FLIGHT);
        let inbound = ReceiverStream::new(rx).map(Ok);
        let down = local_session(&self.messaging, self.jid.clone(), self.device.clone(), inbound).await?;
        Ok(Attachment { up, down, remote: None })
    }

    async fn attach_remote(&self, group: u32, leader: u64) -> Result<Attachment, Status> {
        let addr = self
            .groups
            .member_addr(group, leader)
            .ok_or_else(|| Status::unavailable(format!("node {leader} has no address")))?;
        let channel = self.groups.peer_channel(&addr).map_err(Status::unavailable)?;
        let (up, rx) = mpsc::channel(SENDS_IN_FLIGHT);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        let md = request.metadata_mut();
        md.insert_bin(USER_KEY, MetadataValue::from_bytes(self.jid.to_string().as_bytes()));
        md.insert_bin(DEVICE_KEY, MetadataValue::from_bytes(self.device.as_bytes()));
        let mut client = SessionsClient::new(channel);
        let call = client.attach(request);
        let down = tokio::time::timeout(REMOTE_ATTACH_TIMEOUT, call)
            .await
            .map_err(|_| Status::unavailable(format!("node {leader} did not answer an attach in time")))??
            .into_inner();
        Ok(Attachment { up, down: Box::pin(down), remote: Some(leader) })
    }
}

/// The answer to a send the session could not carry: retryable, with the same client id.
fn not_attached(client_id: String) -> pb::SendResult {
    pb::SendResult {
        client_id,
        error_code: "unavailable".into(),
        retryable: true,
        error: "the user's actor is moving to another node; retry with the same client id".into(),
        ..Default::default()
    }
}

async fn run<S>(gw: Gateway, first: Attachment, mut inbound: S, down: mpsc::Sender<FrameResult>)
where
    S: Stream<Item = Result<pb::ClientFrame, Status>> + Send + Unpin,
{
    let mut presence: Option<pb::SetPresence> = None;
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut closing = gw.messaging.hub().closing();
    let mut empty_attachments = 0;
    let mut first = Some(first);
    loop {
        // While attaching, the device is told at once that its sends must wait.
        let next = first.take();
        let attaching = async {
            match next {
                Some(a) => Ok(a),
                None => gw.attach().await,
            }
        };
        tokio::pin!(attaching);
        let attached = loop {
            tokio::select! {
                a = &mut attaching => break a,
                f = inbound.next() => {
                    let Some(Ok(f)) = f else { return };
                    let refused = match f.frame {
                        Some(pb::client_frame::Frame::Send(s)) => not_attached(s.client_id),
                        Some(pb::client_frame::Frame::Presence(p)) => {
                            presence = Some(p);
                            continue;
                        }
                        _ => continue,
                    };
                    if down.send(frame(pb::server_frame::Frame::Sent(refused))).await.is_err() {
                        return;
                    }
                }
                _ = down.closed() => return,
            }
        };
        let mut att = match attached {
            Ok(a) => a,
            Err(s) => {
                let _ = down.send(Err(s)).await;
                return;
            }
        };
        if let Some(p) = &presence {
            let replay = pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(p.clone())) };
            let _ = att.up.send(replay).await;
        }
        let mut got_any = false;
        let mut check = tokio::time::interval(LEADER_CHECK);
        loop {
            tokio::select! {
                _ = check.tick() => if gw.leader_moved_from(att.remote) { break },
                f = inbound.next() => {
                    // The device is gone: dropping the attachment ends it there too.
                    let Some(Ok(f)) = f else { return };
                    match &f.frame {
                        Some(pb::client_frame::Frame::Send(s)) => { in_flight.insert(s.client_id.clone()); }
                        Some(pb::client_frame::Frame::Presence(p)) => presence = Some(p.clone()),
                        _ => {}
                    }
                    let _ = att.up.send(f).await;
                }
                d = att.down.next() => match d {
                    Some(Ok(f)) => {
                        got_any = true;
                        if let Some(pb::server_frame::Frame::Sent(r)) = &f.frame {
                            in_flight.remove(&r.client_id);
                        }
                        if down.send(Ok(f)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(s)) if !actor_moved(&s) => {
                        let _ = down.send(Err(s)).await;
                        return;
                    }
                    // Moved, or the node serving it went away: attach again.
                    Some(Err(_)) | None => break,
                },
                _ = closing.changed() => {
                    let _ = down.send(Err(Status::unavailable("this node is shutting down; reconnect to another"))).await;
                    return;
                }
                _ = down.closed() => return,
            }
        }
        // Sends the old attachment never answered may or may not have been stored.
        for client_id in in_flight.drain() {
            if down.send(frame(pb::server_frame::Frame::Sent(not_attached(client_id)))).await.is_err() {
                return;
            }
        }
        empty_attachments = if got_any { 0 } else { empty_attachments + 1 };
        if empty_attachments >= MAX_EMPTY_ATTACHMENTS {
            let _ = down.send(Err(Status::unavailable("the session keeps losing its actor; reconnect"))).await;
            return;
        }
        metrics::counter!("telex_sessions_reattached_total").increment(1);
        tracing::info!(user = %gw.jid, device = %gw.device, "re-attaching session to the user's actor");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
