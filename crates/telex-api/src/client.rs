use std::sync::Arc;

use telex_accounts::{Accounts, Principal};
use telex_proto::v1 as pb;
use telex_proto::v1::client_server::Client;
use telex_types::{ErrorCode, TelexError};
use tonic::{Request, Response, Status};

use crate::status::to_status;

/// `telex.v1.Client`: what IM clients call.
pub struct ClientService {
    accounts: Arc<Accounts>,
}

impl ClientService {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        ClientService { accounts }
    }

    /// The caller, from `authorization: Bearer <token>` metadata.
    fn principal<T>(&self, r: &Request<T>) -> Result<Principal, Status> {
        let missing = || {
            to_status(TelexError::new(ErrorCode::Unauthenticated, "missing `authorization: Bearer <token>` metadata"))
        };
        let value = r.metadata().get("authorization").ok_or_else(missing)?;
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(missing)?;
        self.accounts.verify_token(token.trim()).map_err(to_status)
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
        let p = self.principal(&r)?;
        self.accounts.revoke(&p).await.map_err(to_status)?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn who_am_i(&self, r: Request<pb::WhoAmIRequest>) -> Reply<pb::WhoAmIResponse> {
        let p = self.principal(&r)?;
        Ok(Response::new(pb::WhoAmIResponse { jid: p.jid.to_string(), device: p.device, expires_at_ms: p.expires_at }))
    }
}
