//! Tenants, accounts and sessions: the rules for creating them, checking passwords and issuing
//! and verifying session tokens, over the replicated state in `telex-raft`.
//!
//! Password hashing is CPU-heavy: it runs on the blocking pool behind a semaphore, so a login
//! storm neither blocks the async runtime nor queues without bound.
//! This crate knows nothing about gRPC or XMPP; gateways call it.

mod admins;
mod directory;
mod ldap;
mod token;

pub use telex_sasl::scram;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use telex_raft::reads::{self, Query};
use telex_raft::Groups;
use telex_types::records::{AccountRecord, ScramKeys, TenantLimits, TenantRecord, TokenRecord};
use telex_types::{Command, Domain, ErrorCode, TelexError, UnixMillis, UserJid, META_GROUP};
use tokio::sync::Semaphore;

pub use admins::{BOOTSTRAP, MIN_BOOTSTRAP_TOKEN, ROOT};
pub use directory::GroupListing;
pub use ldap::{LdapState, LdapStatus, SyncReport};
pub use token::SessionToken;

/// Longest password accepted; bounds the hashing work one request can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Largest vCard stored (photos belong in HTTP upload, not here).
pub const MAX_VCARD_BYTES: usize = 64 * 1024;
/// Longest device (resource) name.
pub const MAX_DEVICE_BYTES: usize = 256;

#[derive(Clone, Debug)]
pub struct AccountsConfig {
    pub scram_iterations: u32,
    pub token_ttl: Duration,
    /// Password hashes computed at once; the rest wait up to `hash_wait`.
    pub hash_concurrency: usize,
    pub hash_wait: Duration,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            scram_iterations: 4096,
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            hash_concurrency: 2,
            hash_wait: Duration::from_secs(5),
        }
    }
}

/// Who a valid session token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub jid: UserJid,
    pub device: String,
    pub token_id: String,
    pub expires_at: UnixMillis,
}

/// A token just issued by [`Accounts::login`].
#[derive(Clone, Debug)]
pub struct Issued {
    pub token: String,
    pub principal: Principal,
}

pub struct Accounts {
    groups: Arc<Groups>,
    config: AccountsConfig,
    hashing: Arc<Semaphore>,
    /// Tenants whose directory comes from an LDAP server.
    ldap: LdapState,
    /// SHA-256 of the configured bootstrap admin token, if any.
    bootstrap_admin: Option<[u8; 32]>,
}

pub fn now_ms() -> UnixMillis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Accounts {
    pub fn new(groups: Arc<Groups>, config: AccountsConfig) -> Self {
        let hashing = Arc::new(Semaphore::new(config.hash_concurrency.max(1)));
        Accounts { groups, config, hashing, ldap: LdapState::default(), bootstrap_admin: None }
    }

    /// Tenants whose directory (and perhaps passwords) an LDAP server holds.
    pub fn with_ldap(mut self, ldap: LdapState) -> Self {
        self.ldap = ldap;
        self
    }

    pub fn groups(&self) -> &Arc<Groups> {
        &self.groups
    }

    /// Runs CPU-heavy work on the blocking pool, at most `hash_concurrency` at once.
    async fn hash<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, TelexError> {
        let permit = tokio::time::timeout(self.config.hash_wait, self.hashing.clone().acquire_owned())
            .await
            .map_err(|_| {
                metrics::counter!("telex_accounts_hash_rejected_total").increment(1);
                TelexError::new(ErrorCode::ResourceExhausted, "too many password checks in progress; retry shortly")
            })?
            .map_err(|_| TelexError::unavailable("server is shutting down"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| TelexError::internal(format!("hashing task failed: {e}")))
    }

    // ---- tenants ----

    pub async fn add_tenant(&self, domain: &str) -> Result<TenantRecord, TelexError> {
        let domain = Domain::parse(domain)?;
        if let Some(owner) = telex_types::room::service_tenant(domain.as_str()) {
            let msg = format!("{domain} is the room service of {owner}; a tenant cannot be named so");
            return Err(TelexError::invalid(msg));
        }
        let at = now_ms();
        self.groups.write(META_GROUP, Command::CreateTenant { domain: domain.clone(), at }).await?.into_result()?;
        Ok(TenantRecord { domain, created_at: at })
    }

    /// Creates the tenant unless it exists. For bootstrap.
    pub async fn ensure_tenant(&self, domain: &str) -> Result<(), TelexError> {
        match self.add_tenant(domain).await {
            Err(e) if e.code == ErrorCode::AlreadyExists => Ok(()),
            other => other.map(|_| ()),
        }
    }

    pub fn tenants(&self) -> Result<Vec<TenantRecord>, TelexError> {
        reads::tenants(self.groups.store())
    }

    /// Replaces `domain`'s limit overrides.
    pub async fn set_tenant_limits(&self, domain: &str, limits: TenantLimits) -> Result<(), TelexError> {
        let domain = Domain::parse(domain)?;
        limits.validate()?;
        self.groups.write(META_GROUP, Command::SetTenantLimits { domain, limits }).await?.into_result().map(|_| ())
    }

    pub fn tenant_limits(&self, domain: &Domain) -> Result<TenantLimits, TelexError> {
        reads::tenant_limits(self.groups.store(), domain)
    }

    fn require_tenant(&self, domain: &Domain) -> Result<(), TelexError> {
        match reads::tenant(self.groups.store(), domain)? {
            Some(_) => Ok(()),
            None => Err(TelexError::not_found(format!("no such tenant {domain}"))),
        }
    }

    // ---- accounts ----

    pub async fn add_user(&self, jid: &str, password: &str) -> Result<AccountRecord, TelexError> {
        let jid = UserJid::parse(jid)?;
        check_password(password)?;
        self.require_tenant(jid.domain())?;
        let shard = self.groups.shard_of(&jid);
        let existing: Option<AccountRecord> = self.groups.read(shard, Query::Account(jid.clone())).await?;
        if existing.is_some() {
            return Err(TelexError::exists(format!("user {jid} already exists")));
        }
        let credentials = self.derive(password).await?;
        let at = now_ms();
        self.groups.write(shard, Command::CreateAccount { jid: jid.clone(), credentials, at }).await?.into_result()?;
        self.account(&jid)
    }

    async fn derive(&self, password: &str) -> Result<telex_types::records::Credentials, TelexError> {
        let (password, iterations) = (password.to_string(), self.config.scram_iterations);
        self.hash(move || scram::new_credentials(&password, iterations)).await
    }

    fn account(&self, jid: &UserJid) -> Result<AccountRecord, TelexError> {
        let g = self.groups.shard_of(jid);
        self.groups
            .read_now(g, |s| reads::account(s, g, jid), || Query::Account(jid.clone()))?
            .ok_or_else(|| TelexError::not_found(format!("no such user {jid}")))
    }

    /// Looks up a user, checking that the tenant exists first so the error names what is missing.
    pub fn user(&self, jid: &str) -> Result<AccountRecord, TelexError> {
        let jid = UserJid::parse(jid)?;
        self.require_tenant(jid.domain())?;
        self.account(&jid)
    }

    /// Every account of a tenant, in name order, gathered from all shards.
    pub fn users(&self, domain: &str) -> Result<Vec<AccountRecord>, TelexError> {
        let domain = Domain::parse(domain)?;
        self.require_tenant(&domain)?;
        let mut all = Vec::new();
        for g in telex_types::shard::shard_groups(self.groups.shards()) {
            all.extend(self.groups.read_now(
                g,
                |s| reads::accounts(s, g, &domain),
                || Query::Accounts(domain.clone()),
            )?);
        }
        all.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(all)
    }

    pub async fn remove_user(&self, jid: &str) -> Result<(), TelexError> {
        let jid = UserJid::parse(jid)?;
        self.require_tenant(jid.domain())?;
        let shard = self.groups.shard_of(&jid);
        self.groups.write(shard, Command::RemoveAccount { jid }).await?.into_result().map(|_| ())
    }

    /// Disabling also revokes every session token of the user.
    pub async fn set_disabled(&self, jid: &str, disabled: bool) -> Result<AccountRecord, TelexError> {
        let jid = UserJid::parse(jid)?;
        self.require_tenant(jid.domain())?;
        let shard = self.groups.shard_of(&jid);
        self.groups.write(shard, Command::SetDisabled { jid: jid.clone(), disabled }).await?.into_result()?;
        self.account(&jid)
    }

    /// Replaces the password; every session opened with the old one is revoked.
    pub async fn set_password(&self, jid: &str, password: &str) -> Result<AccountRecord, TelexError> {
        let jid = UserJid::parse(jid)?;
        check_password(password)?;
        self.require_tenant(jid.domain())?;
        self.account(&jid)?;
        let credentials = self.derive(password).await?;
        let shard = self.groups.shard_of(&jid);
        let cmd = Command::SetCredentials { jid: jid.clone(), credentials, at: now_ms() };
        self.groups.write(shard, cmd).await?.into_result()?;
        self.account(&jid)
    }

    pub async fn revoke_tokens(&self, jid: &str) -> Result<u64, TelexError> {
        let jid = UserJid::parse(jid)?;
        self.require_tenant(jid.domain())?;
        self.account(&jid)?;
        let shard = self.groups.shard_of(&jid);
        self.groups.write(shard, Command::RevokeAllTokens { jid }).await?.into_result()
    }

    // ---- sessions ----

    /// Checks a password and issues a session token. A wrong password, an unknown user and an
    /// unknown tenant all get the same answer, after the same amount of hashing.
    pub async fn login(&self, jid: &str, password: &str, device: &str) -> Result<Issued, TelexError> {
        let started = std::time::Instant::now();
        let result = self.login_inner(jid, password, device).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.code == ErrorCode::Unauthenticated => "bad_credentials",
            Err(_) => "error",
        };
        metrics::counter!("telex_accounts_logins_total", "outcome" => outcome).increment(1);
        metrics::histogram!("telex_accounts_login_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    async fn login_inner(&self, jid: &str, password: &str, device: &str) -> Result<Issued, TelexError> {
        let jid = UserJid::parse(jid)?;
        let device = device_name(device)?;
        self.check_password(&jid, password).await?;
        let shard = self.groups.shard_of(&jid);
        let now = now_ms();
        let (token, secret_hash) = SessionToken::generate(&jid);
        let record = TokenRecord {
            id: token.id.clone(),
            secret_hash,
            device: device.clone(),
            issued_at: now,
            expires_at: now + self.config.token_ttl.as_millis() as u64,
        };
        let expires_at = record.expires_at;
        self.groups.write(shard, Command::IssueToken { jid: jid.clone(), token: record }).await?.into_result()?;
        Ok(Issued { token: token.encode(), principal: Principal { jid, device, token_id: token.id, expires_at } })
    }

    /// Checks a password (SASL PLAIN, or the password behind a login). A wrong password, an
    /// unknown user and an unknown tenant all get the same answer after the same hashing work;
    /// a disabled account is told so only once its password is right.
    pub async fn check_password(&self, jid: &UserJid, password: &str) -> Result<AccountRecord, TelexError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(TelexError::bad_credentials());
        }
        if let Some(bound) = self.ldap_password(jid, password).await {
            let account: Option<AccountRecord> =
                self.groups.read(self.groups.shard_of(jid), Query::Account(jid.clone())).await?;
            let account = account.filter(|_| matches!(bound, Ok(true)));
            return match (account, bound) {
                (_, Err(e)) => Err(e),
                (Some(a), _) => enabled(a),
                (None, _) => Err(TelexError::bad_credentials()),
            };
        }
        let (account, keys) = self.scram_keys(jid, scram::Hash::Sha256).await?;
        let pw = password.to_string();
        let ok = self.hash(move || scram::verify(scram::Hash::Sha256, &pw, &keys)).await?;
        let account = account.filter(|_| ok).ok_or_else(TelexError::bad_credentials)?;
        enabled(account)
    }

    /// The stored SCRAM keys for a SASL exchange: the account's, or (for an unknown user or
    /// tenant) keys that match no password, so the exchange fails only at the proof.
    pub async fn scram_keys(
        &self,
        jid: &UserJid,
        hash: scram::Hash,
    ) -> Result<(Option<AccountRecord>, ScramKeys), TelexError> {
        let shard = self.groups.shard_of(jid);
        let tenant_known = reads::tenant(self.groups.store(), jid.domain())?.is_some();
        // Caught up with the shard's leader: accounts created or passwords changed through
        // other nodes are seen.
        let account: Option<AccountRecord> =
            if tenant_known { self.groups.read(shard, Query::Account(jid.clone())).await? } else { None };
        let keys = match (&account, hash) {
            (Some(a), scram::Hash::Sha256) => a.credentials.sha256.clone(),
            (Some(a), scram::Hash::Sha1) => a.credentials.sha1.clone(),
            (None, _) => {
                use sha2::Digest;
                // A salt derived from the name, so asking twice looks like a real account.
                let salt = sha2::Sha256::digest(jid.to_string().as_bytes())[..16].to_vec();
                let len = if hash == scram::Hash::Sha256 { 32 } else { 20 };
                ScramKeys {
                    salt,
                    iterations: self.config.scram_iterations,
                    stored_key: vec![0; len],
                    server_key: vec![0; len],
                }
            }
        };
        Ok((account, keys))
    }

    /// Stores a user's vCard (serialized XML; empty deletes it).
    pub async fn set_vcard(&self, jid: &UserJid, vcard: String) -> Result<(), TelexError> {
        if vcard.len() > MAX_VCARD_BYTES {
            return Err(TelexError::new(
                ErrorCode::ResourceExhausted,
                format!("a vCard may hold at most {MAX_VCARD_BYTES} bytes"),
            ));
        }
        let shard = self.groups.shard_of(jid);
        self.groups.write(shard, Command::SetVCard { owner: jid.clone(), vcard }).await?.into_result().map(|_| ())
    }

    /// A user's vCard, if one is stored (read after catching up with the user's shard).
    pub async fn vcard(&self, jid: &UserJid) -> Result<Option<String>, TelexError> {
        let shard = self.groups.shard_of(jid);
        self.groups.read(shard, Query::VCard(jid.clone())).await
    }

    /// Who a session token belongs to, if it is valid, unexpired and unrevoked.
    pub fn verify_token(&self, token: &str) -> Result<Principal, TelexError> {
        let invalid = || TelexError::new(ErrorCode::Unauthenticated, "invalid, expired or revoked session token");
        let token = SessionToken::decode(token).ok_or_else(invalid)?;
        let g = self.groups.shard_of(&token.jid);
        let query = || Query::Token { jid: token.jid.clone(), id: token.id.clone() };
        let record =
            self.groups.read_now(g, |s| reads::token(s, g, &token.jid, &token.id), query)?.ok_or_else(invalid)?;
        if !token.matches(&record.secret_hash) || record.expires_at <= now_ms() {
            return Err(invalid());
        }
        Ok(Principal { jid: token.jid, device: record.device, token_id: record.id, expires_at: record.expires_at })
    }

    /// `verify_token`, but a token this node does not know yet (issued through another node a
    /// moment ago) is looked up again after catching up with the token's shard.
    pub async fn verify_token_synced(&self, token: &str) -> Result<Principal, TelexError> {
        match self.verify_token(token) {
            Err(e) if e.code == ErrorCode::Unauthenticated => {
                let Some(t) = SessionToken::decode(token) else { return Err(e) };
                if self.groups.sync(self.groups.shard_of(&t.jid)).await.is_err() {
                    return Err(e);
                }
                self.verify_token(token)
            }
            other => other,
        }
    }

    /// Revokes one token (logout).
    pub async fn revoke(&self, principal: &Principal) -> Result<(), TelexError> {
        let shard = self.groups.shard_of(&principal.jid);
        let cmd = Command::RevokeToken { jid: principal.jid.clone(), token_id: principal.token_id.clone() };
        self.groups.write(shard, cmd).await?.into_result().map(|_| ())
    }
}

/// The account, unless it is disabled.
pub fn enabled(account: AccountRecord) -> Result<AccountRecord, TelexError> {
    if account.disabled {
        return Err(TelexError::new(ErrorCode::PermissionDenied, format!("account {} is disabled", account.jid)));
    }
    Ok(account)
}

fn check_password(password: &str) -> Result<(), TelexError> {
    if password.is_empty() {
        return Err(TelexError::invalid("password must not be empty"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(TelexError::invalid(format!("password longer than {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(())
}

/// A valid device name, or a fresh one when none is given.
pub fn device_name(device: &str) -> Result<String, TelexError> {
    if device.is_empty() {
        use rand::Rng;
        return Ok(format!("telex-{:08x}", rand::thread_rng().gen::<u32>()));
    }
    telex_types::session::check_device(device)?;
    Ok(device.to_string())
}
