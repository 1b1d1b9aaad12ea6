//! Authentication on the admin listener: an interceptor checks the bearer token of every call
//! and leaves the admin's identity in the request; each call then asks `allow` whether that
//! admin may do it (the decision itself is `AdminIdentity::may`).

use std::sync::Arc;

use telex_accounts::Accounts;
use telex_types::admin::{Access, AdminIdentity, Scope};
use telex_types::{Domain, UserJid};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::status::to_status;

#[derive(Clone)]
pub struct AdminAuth(Arc<Accounts>);

impl AdminAuth {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        AdminAuth(accounts)
    }
}

impl Interceptor for AdminAuth {
    fn call(&mut self, mut r: Request<()>) -> Result<Request<()>, Status> {
        let Some(header) = r.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "the admin API needs an admin token: pass --admin-token or set TELEX_ADMIN_TOKEN",
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("the authorization header must be `Bearer TOKEN`"))?;
        let who = self.0.authenticate_admin(token.trim()).map_err(to_status)?;
        r.extensions_mut().insert(who);
        Ok(r)
    }
}

/// The admin making the call (set by `AdminAuth`).
pub(crate) fn caller<T>(r: &Request<T>) -> Result<AdminIdentity, Status> {
    r.extensions().get::<AdminIdentity>().cloned().ok_or_else(|| Status::unauthenticated("no admin identity"))
}

/// The caller, if it may do `access` on `scope`.
pub(crate) fn allow<T>(r: &Request<T>, access: Access, scope: Scope<'_>) -> Result<AdminIdentity, Status> {
    let who = caller(r)?;
    who.may(access, scope).map_err(to_status)?;
    Ok(who)
}

/// The caller, if it may do `access` on tenant `domain` (as typed by the client).
pub(crate) fn allow_tenant<T>(r: &Request<T>, access: Access, domain: &str) -> Result<(AdminIdentity, Domain), Status> {
    let d = Domain::parse(domain).map_err(to_status)?;
    Ok((allow(r, access, Scope::Tenant(&d))?, d))
}

/// The caller, if it may do `access` on the tenant of user `jid`.
pub(crate) fn allow_user<T>(r: &Request<T>, access: Access, jid: &str) -> Result<(AdminIdentity, UserJid), Status> {
    let j = UserJid::parse(jid).map_err(to_status)?;
    Ok((allow(r, access, Scope::Tenant(j.domain()))?, j))
}
