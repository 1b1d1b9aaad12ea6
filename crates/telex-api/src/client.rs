use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use telex_accounts::{Accounts, Principal};
use telex_actors::{HistoryQuery, Messaging, Outbound, OutboundRx, RosterOp, RosterReply};
use telex_proto::v1 as pb;
use telex_proto::v1::client_server::Client;
use telex_types::presence::{DevicePresence, Show};
use telex_types::records::ArchivedMessage;
use telex_types::roster::RosterItem;
use telex_types::{ErrorCode, TelexError, UserJid};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::{Request, Response, Status, Streaming};

use crate::status::to_status;

/// Archive entries queued towards one device; when full the actor waits, and cuts the device
/// off if it stays full (see `Limits::stall_timeout`). Smaller than the delivery window on purpose.
const OUTBOUND: usize = 64;
/// Sends of one session being committed at once.
const SENDS_IN_FLIGHT: usize = 64;

/// `telex.v1.Client`: what IM clients call.
pub struct ClientService {
    accounts: Arc<Accounts>,
    messaging: Messaging,
}

impl ClientService {
    pub fn new(accounts: Arc<Accounts>, messaging: Messaging) -> Self {
        ClientService { accounts, messaging }
    }

    /// The caller of a request carrying `token` (see `bearer`).
    async fn principal(&self, token: Result<String, Status>) -> Result<Principal, Status> {
        self.accounts.verify_token_synced(&token?).await.map_err(to_status)
    }
}

/// The token in `authorization: Bearer <token>` metadata.
fn bearer<T>(r: &Request<T>) -> Result<String, Status> {
    let missing =
        || to_status(TelexError::new(ErrorCode::Unauthenticated, "missing `authorization: Bearer <token>` metadata"));
    let value = r.metadata().get("authorization").ok_or_else(missing)?;
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(missing)?;
    Ok(token.trim().to_string())
}

fn message(position: u64, m: ArchivedMessage) -> pb::Message {
    pb::Message {
        position,
        server_id: m.server_id,
        from: m.from.to_string(),
        from_device: m.from_device,
        to: m.to.to_string(),
        body: m.body,
        sent_at_ms: m.sent_at,
        client_id: m.client_id,
    }
}

fn frame(f: pb::server_frame::Frame) -> Result<pb::ServerFrame, Status> {
    Ok(pb::ServerFrame { frame: Some(f) })
}

type Reply<T> = Result<Response<T>, Status>;
type FrameResult = Result<pb::ServerFrame, Status>;

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
                    return self.end(Some(Err(Status::resource_exhausted(reason))));
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
                self.end(reason.map(|r| Err(Status::resource_exhausted(r))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
type FrameStream = Pin<Box<dyn Stream<Item = Result<pb::ServerFrame, Status>> + Send>>;

#[tonic::async_trait]
impl Client for ClientService {
    async fn login(&self, r: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        let r = r.into_inner();
        let issued = self.accounts.login(&r.jid, &r.password, &r.device).await.map_err(to_status)?;
        tracing::info!(user = %issued.principal.jid, device = %issued.principal.device, "login");
        Ok(Response::new(pb::LoginResponse {
            token: issued.token,
            jid: issued.principal.jid.to_string(),
            device: issued.principal.device,
            expires_at_ms: issued.principal.expires_at,
        }))
    }

    async fn logout(&self, r: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        let p = self.principal(bearer(&r)).await?;
        self.accounts.revoke(&p).await.map_err(to_status)?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn who_am_i(&self, r: Request<pb::WhoAmIRequest>) -> Reply<pb::WhoAmIResponse> {
        let p = self.principal(bearer(&r)).await?;
        Ok(Response::new(pb::WhoAmIResponse { jid: p.jid.to_string(), device: p.device, expires_at_ms: p.expires_at }))
    }

    type SessionStream = FrameStream;

    async fn session(&self, r: Request<Streaming<pb::ClientFrame>>) -> Reply<FrameStream> {
        let p = self.principal(bearer(&r)).await?;
        let (out_tx, out_rx) = mpsc::channel(OUTBOUND);
        let (kill_tx, kill_rx) = oneshot::channel::<String>();
        let hub = self.messaging.hub().clone();
        let session = hub.attach(&p.jid, &p.device, out_tx, kill_tx).await.map_err(to_status)?;
        tracing::info!(user = %p.jid, device = %p.device, "session attached");
        let (resp_tx, resp_rx) = mpsc::channel(SENDS_IN_FLIGHT);
        let frames = SessionFrames { out: out_rx, results: resp_rx, kill: Some(kill_rx), ended: false };

        let mut inbound = r.into_inner();
        let messaging = self.messaging.clone();
        let (jid, device) = (p.jid.clone(), p.device.clone());
        tokio::spawn(async move {
            let sends = Arc::new(Semaphore::new(SENDS_IN_FLIGHT));
            loop {
                let next = tokio::select! {
                    f = inbound.message() => f,
                    // The connection dropped the response stream: the device is gone or cut off.
                    _ = resp_tx.closed() => break,
                };
                let Ok(Some(f)) = next else { break };
                match f.frame {
                    Some(pb::client_frame::Frame::Send(s)) => {
                        let Ok(permit) = sends.clone().acquire_owned().await else { break };
                        let (messaging, jid, device, tx) =
                            (messaging.clone(), jid.clone(), device.clone(), resp_tx.clone());
                        tokio::spawn(async move {
                            let result = messaging.send(&jid, &device, &s.to, &s.client_id, &s.body).await;
                            let sent = frame(pb::server_frame::Frame::Sent(send_result(s.client_id, result)));
                            let _ = tx.send(Box::new(sent)).await;
                            drop(permit);
                        });
                    }
                    Some(pb::client_frame::Frame::Ack(a)) => hub.ack(&jid, &device, session, a.position).await,
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
        Ok(Response::new(Box::pin(frames)))
    }

    async fn get_roster(&self, r: Request<pb::GetRosterRequest>) -> Reply<pb::RosterResponse> {
        let p = self.principal(bearer(&r)).await?;
        let reply = self.messaging.hub().roster(&p.jid, RosterOp::Get).await.map_err(to_status)?;
        Ok(Response::new(roster_response(reply)))
    }

    async fn update_roster(&self, r: Request<pb::RosterUpdate>) -> Reply<pb::RosterResponse> {
        use pb::roster_update::Op;
        let p = self.principal(bearer(&r)).await?;
        let jid = |s: &str| UserJid::parse(s).map_err(to_status);
        let op = match r.into_inner().op {
            Some(Op::Add(a)) => RosterOp::Add { contact: jid(&a.jid)?, name: a.name, groups: a.groups },
            Some(Op::Remove(j)) => RosterOp::Remove { contact: jid(&j)? },
            Some(Op::Approve(j)) => RosterOp::Approve { contact: jid(&j)? },
            Some(Op::Deny(j)) => RosterOp::Deny { contact: jid(&j)? },
            None => return Err(Status::invalid_argument("roster update without an operation")),
        };
        let reply = self.messaging.hub().roster(&p.jid, op).await.map_err(to_status)?;
        Ok(Response::new(roster_response(reply)))
    }

    async fn set_blocked(&self, r: Request<pb::SetBlockedRequest>) -> Reply<pb::BlockList> {
        let p = self.principal(bearer(&r)).await?;
        let r = r.into_inner();
        let jid = UserJid::parse(&r.jid).map_err(to_status)?;
        let op = if r.blocked { RosterOp::Block { jid } } else { RosterOp::Unblock { jid } };
        let reply = self.messaging.hub().roster(&p.jid, op).await.map_err(to_status)?;
        Ok(Response::new(block_list(reply)))
    }

    async fn get_block_list(&self, r: Request<pb::GetBlockListRequest>) -> Reply<pb::BlockList> {
        let p = self.principal(bearer(&r)).await?;
        let reply = self.messaging.hub().roster(&p.jid, RosterOp::Blocked).await.map_err(to_status)?;
        Ok(Response::new(block_list(reply)))
    }

    async fn history(&self, r: Request<pb::HistoryRequest>) -> Reply<pb::HistoryResponse> {
        let p = self.principal(bearer(&r)).await?;
        let q = r.into_inner();
        let with = match q.with.as_str() {
            "" => None,
            w => Some(UserJid::parse(w).map_err(to_status)?),
        };
        let id = |s: String| (!s.is_empty()).then_some(s);
        let time = |t: u64| (t != 0).then_some(t);
        let query = HistoryQuery {
            with,
            after: q.after,
            before: q.before,
            after_id: id(q.after_id),
            before_id: id(q.before_id),
            start_ms: time(q.start_ms),
            end_ms: time(q.end_ms),
            limit: q.limit as usize,
        };
        let page = self.messaging.history(&p.jid, &query).map_err(to_status)?;
        Ok(Response::new(pb::HistoryResponse { messages: page.into_iter().map(|(pos, m)| message(pos, m)).collect() }))
    }
}

const MAX_STATUS_BYTES: usize = 1024;

fn device_presence(p: pb::SetPresence) -> Result<DevicePresence, TelexError> {
    let show = Show::parse(&p.show).ok_or_else(|| {
        TelexError::invalid(format!("presence show {:?} is not available, chat, away, xa, dnd or unavailable", p.show))
    })?;
    let priority = i8::try_from(p.priority)
        .map_err(|_| TelexError::invalid(format!("presence priority {} is outside -128..127", p.priority)))?;
    if p.status.len() > MAX_STATUS_BYTES {
        return Err(TelexError::invalid(format!("presence status is longer than {MAX_STATUS_BYTES} bytes")));
    }
    Ok(DevicePresence { show, status: p.status, priority })
}

fn roster_item(jid: &UserJid, i: &RosterItem) -> pb::RosterItem {
    pb::RosterItem {
        jid: jid.to_string(),
        subscription: i.subscription.as_str().to_string(),
        pending_out: i.pending_out,
        pending_in: i.pending_in,
        name: i.name.clone(),
        groups: i.groups.clone(),
    }
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
            },
            None => pb::PresenceUpdate { from: from.to_string(), show: "unavailable".into(), ..Default::default() },
        }),
        Outbound::Roster { contact, item } => {
            Frame::Roster(pb::RosterPush { jid: contact.to_string(), item: item.map(|i| roster_item(&contact, &i)) })
        }
        Outbound::SubscriptionRequest { from } => {
            Frame::SubscriptionRequest(pb::SubscriptionRequest { from: from.to_string() })
        }
    }
}

fn roster_response(reply: RosterReply) -> pb::RosterResponse {
    match reply {
        RosterReply::Items(items) => {
            pb::RosterResponse { items: items.iter().map(|(jid, i)| roster_item(jid, i)).collect() }
        }
        RosterReply::Blocked(_) => pb::RosterResponse::default(),
    }
}

fn block_list(reply: RosterReply) -> pb::BlockList {
    match reply {
        RosterReply::Blocked(jids) => pb::BlockList { jids: jids.iter().map(|j| j.to_string()).collect() },
        RosterReply::Items(_) => pb::BlockList::default(),
    }
}

fn send_result(client_id: String, result: Result<telex_actors::Sent, telex_actors::Refused>) -> pb::SendResult {
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
