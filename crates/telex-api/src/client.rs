use std::sync::Arc;

use telex_accounts::{Accounts, Principal};
use telex_actors::{HistoryQuery, Messaging, RosterOp, RosterReply};
use telex_proto::v1 as pb;
use telex_proto::v1::client_server::Client;
use telex_types::records::ArchivedMessage;
use telex_types::roster::RosterItem;
use telex_types::{ErrorCode, TelexError, UserJid};
use tonic::{Request, Response, Status, Streaming};

use crate::session::{local_session, FrameStream};
use crate::status::to_status;

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

/// Opens a device session for an authenticated user, whatever protocol the device speaks:
/// `inbound` is what the device sends, the result what it receives. On a single node the
/// session is served here; in a cluster it goes to the user's actor on the leader of the
/// user's shard, and follows it when leadership moves.
pub async fn open_session<S>(
    accounts: &Accounts,
    messaging: &Messaging,
    jid: UserJid,
    device: String,
    inbound: S,
) -> Result<FrameStream, Status>
where
    S: futures::Stream<Item = Result<pb::ClientFrame, Status>> + Send + Unpin + 'static,
{
    let groups = accounts.groups();
    if groups.members(telex_types::META_GROUP).len() > 1 {
        crate::gateway::start(groups.clone(), messaging.clone(), jid, device, inbound).await
    } else {
        local_session(messaging, jid, device, inbound).await
    }
}

pub(crate) fn message(position: u64, m: ArchivedMessage) -> pb::Message {
    pb::Message {
        position,
        server_id: m.server_id,
        from: m.from.to_string(),
        from_device: m.from_device,
        to: m.to.to_string(),
        body: m.body,
        sent_at_ms: m.sent_at,
        client_id: m.client_id,
        extras: m.extras,
    }
}

type Reply<T> = Result<Response<T>, Status>;

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
        let frames = open_session(&self.accounts, &self.messaging, p.jid, p.device, r.into_inner()).await?;
        Ok(Response::new(frames))
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

pub(crate) fn roster_item(jid: &UserJid, i: &RosterItem) -> pb::RosterItem {
    pb::RosterItem {
        jid: jid.to_string(),
        subscription: i.subscription.as_str().to_string(),
        pending_out: i.pending_out,
        pending_in: i.pending_in,
        name: i.name.clone(),
        groups: i.groups.clone(),
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
