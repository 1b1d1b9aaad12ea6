//! `telex.v1.Client`: what IM clients call, over the accounts (login, tokens) and the core.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use telex_accounts::{Accounts, Principal};
use telex_proto::convert;
use telex_proto::v1 as pb;
use telex_proto::v1::client_server::Client;
use telex_session::{Core, HistoryQuery, RosterOp, RosterReply};
use telex_types::{ErrorCode, TelexError, UserJid};
use tonic::{Request, Response, Status, Streaming};

use crate::status::to_status;
use crate::stream::{ClientStream, Served};

/// `telex.v1.Client`: what IM clients call.
pub struct ClientService {
    accounts: Arc<Accounts>,
    core: Core,
}

impl ClientService {
    pub fn new(accounts: Arc<Accounts>, core: Core) -> Self {
        ClientService { accounts, core }
    }

    /// The caller of a request carrying `token` (see `bearer`).
    async fn principal(&self, token: Result<String, Status>) -> Result<Principal, Status> {
        self.accounts.verify_token_synced(&token?).await.map_err(to_status)
    }
}

/// The token in `authorization: Bearer <token>` metadata.
pub(crate) fn bearer<T>(r: &Request<T>) -> Result<String, Status> {
    let missing =
        || to_status(TelexError::new(ErrorCode::Unauthenticated, "missing `authorization: Bearer <token>` metadata"));
    let value = r.metadata().get("authorization").ok_or_else(missing)?;
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(missing)?;
    Ok(token.trim().to_string())
}

type Reply<T> = Result<Response<T>, Status>;
type FrameStream = Pin<Box<dyn Stream<Item = Result<pb::ServerFrame, Status>> + Send>>;

fn roster_response(reply: RosterReply) -> pb::RosterResponse {
    match reply {
        RosterReply::Items(items) => convert::roster_response(&items),
        RosterReply::Blocked(_) => pb::RosterResponse::default(),
    }
}

fn block_list(reply: RosterReply) -> pb::BlockList {
    match reply {
        RosterReply::Blocked(jids) => convert::block_list(&jids),
        RosterReply::Items(_) => pb::BlockList::default(),
    }
}

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
        let session = self.core.open(p.jid, &p.device, false).await.map_err(to_status)?;
        Ok(Response::new(Box::pin(ClientStream(Served::new(session, r.into_inner())))))
    }

    async fn search_directory(&self, r: Request<pb::SearchDirectoryRequest>) -> Reply<pb::SearchDirectoryResponse> {
        let p = self.principal(bearer(&r)).await?;
        let q = r.into_inner();
        if q.query.len() > 256 {
            return Err(Status::invalid_argument("a search is at most 256 bytes"));
        }
        let limit = if q.limit == 0 { 50 } else { q.limit as usize };
        let entries = self
            .core
            .search_directory(&p.jid, &q.query, limit, &|_, _| true)
            .into_iter()
            .map(|(jid, a)| pb::DirectoryEntry {
                jid: jid.to_string(),
                display_name: a.display_name,
                title: a.title,
                department: a.department,
                email: a.email,
            })
            .collect();
        Ok(Response::new(pb::SearchDirectoryResponse { entries }))
    }

    async fn get_roster(&self, r: Request<pb::GetRosterRequest>) -> Reply<pb::RosterResponse> {
        let p = self.principal(bearer(&r)).await?;
        let reply = self.core.roster(&p.jid, RosterOp::Get).await.map_err(to_status)?;
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
        let reply = self.core.roster(&p.jid, op).await.map_err(to_status)?;
        Ok(Response::new(roster_response(reply)))
    }

    async fn set_blocked(&self, r: Request<pb::SetBlockedRequest>) -> Reply<pb::BlockList> {
        let p = self.principal(bearer(&r)).await?;
        let r = r.into_inner();
        let jid = UserJid::parse(&r.jid).map_err(to_status)?;
        let op = if r.blocked { RosterOp::Block { jid } } else { RosterOp::Unblock { jid } };
        let reply = self.core.roster(&p.jid, op).await.map_err(to_status)?;
        Ok(Response::new(block_list(reply)))
    }

    async fn get_block_list(&self, r: Request<pb::GetBlockListRequest>) -> Reply<pb::BlockList> {
        let p = self.principal(bearer(&r)).await?;
        let reply = self.core.roster(&p.jid, RosterOp::Blocked).await.map_err(to_status)?;
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
        let page = self.core.history(&p.jid, &p.jid, query).await.map_err(to_status)?;
        let messages = page.into_iter().map(|(pos, m)| convert::message(pos, m, false)).collect();
        Ok(Response::new(pb::HistoryResponse { messages }))
    }
}
