//! Admin identities: who may use the admin API, each with a role and a bearer token
//! `ta1.NAME.SECRET` of which only the secret's SHA-256 is stored (in the meta group). A
//! cluster also accepts a bootstrap token from its configuration (a super-admin that no one
//! can remove, for provisioning); without one, the first start writes a super-admin's token to
//! the data directory.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use telex_raft::reads;
use telex_types::admin::{admin_name, AdminIdentity, AdminRecord, AdminRole};
use telex_types::directory::AuditEntry;
use telex_types::{Command, Domain, ErrorCode, TelexError, META_GROUP};

use crate::{now_ms, Accounts};

const PREFIX: &str = "ta1";
/// The name the bootstrap token acts under.
pub const BOOTSTRAP: &str = "bootstrap";
/// The first start's super-admin.
pub const ROOT: &str = "root";
const MAX_TOKEN: usize = 512;
/// A bootstrap token shorter than this is refused at start.
pub const MIN_BOOTSTRAP_TOKEN: usize = 16;

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

fn unauthenticated(why: &str) -> TelexError {
    TelexError::new(ErrorCode::Unauthenticated, format!("admin token refused: {why}"))
}

/// A new token for `name` and the digest of its secret.
fn generate(name: &str) -> (String, Vec<u8>) {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    (format!("{PREFIX}.{name}.{hex}"), digest(hex.as_bytes()).to_vec())
}

impl Accounts {
    /// Accepts `token` as a super-admin's, besides the stored identities.
    pub fn with_bootstrap_admin(mut self, token: &str) -> Self {
        if !token.is_empty() {
            self.bootstrap_admin = Some(digest(token.as_bytes()));
        }
        self
    }

    pub fn has_bootstrap_admin(&self) -> bool {
        self.bootstrap_admin.is_some()
    }

    /// Who holds `token`; the same refusal for an unknown name and a wrong secret.
    pub fn authenticate_admin(&self, token: &str) -> Result<AdminIdentity, TelexError> {
        if token.is_empty() || token.len() > MAX_TOKEN {
            return Err(unauthenticated("malformed"));
        }
        if let Some(b) = &self.bootstrap_admin {
            if bool::from(digest(token.as_bytes()).ct_eq(b)) {
                return Ok(AdminIdentity { name: BOOTSTRAP.into(), role: AdminRole::SuperAdmin, tenant: None });
            }
        }
        let mut parts = token.splitn(3, '.');
        let (Some(PREFIX), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(unauthenticated("malformed"));
        };
        let record = reads::admin(self.groups.store(), name)?;
        let given = digest(secret.as_bytes());
        match record {
            Some(r) if bool::from(given.as_slice().ct_eq(&r.token_hash)) => Ok(r.identity()),
            _ => Err(unauthenticated("unknown or revoked")),
        }
    }

    /// Creates (or, with a new token, replaces) an admin identity; its token, shown only now.
    pub async fn add_admin(
        &self,
        actor: &str,
        name: &str,
        role: AdminRole,
        tenant: Option<Domain>,
    ) -> Result<(AdminRecord, String), TelexError> {
        let name = admin_name(name)?;
        if name == BOOTSTRAP {
            return Err(TelexError::invalid(format!("{BOOTSTRAP} is the configured token's name")));
        }
        if let Some(t) = &tenant {
            self.require_tenant(t)?;
        }
        let (token, token_hash) = generate(&name);
        let record =
            AdminRecord { name: name.clone(), role, tenant, token_hash, created_at: now_ms(), by: actor.into() };
        record.validate()?;
        let existing = reads::admin(self.groups.store(), &name)?;
        if existing.as_ref().is_some_and(|e| e.role == AdminRole::SuperAdmin) && role != AdminRole::SuperAdmin {
            self.keeps_a_super_admin(&name)?;
        }
        let before = existing.map(|r| describe(&r)).unwrap_or_default();
        let audit = audit_entry(actor, "admin.add", &name, before, describe(&record));
        let batch = Command::Batch(vec![
            Command::PutAdmin { record: record.clone(), only_first: false },
            Command::AppendAudit { tenant: None, entry: audit },
        ]);
        self.write_meta(batch).await?;
        Ok((record, token))
    }

    /// Removes an admin identity; refused when it is the last super-admin and no bootstrap
    /// token is configured (no one could administer the cluster any more).
    pub async fn remove_admin(&self, actor: &str, name: &str) -> Result<(), TelexError> {
        let name = admin_name(name)?;
        let all = reads::admins(self.groups.store())?;
        let Some(record) = all.iter().find(|a| a.name == name) else {
            return Err(TelexError::not_found(format!("no admin {name}")));
        };
        if record.role == AdminRole::SuperAdmin {
            self.keeps_a_super_admin(&name)?;
        }
        let audit = audit_entry(actor, "admin.remove", &name, describe(record), String::new());
        let batch =
            Command::Batch(vec![Command::RemoveAdmin { name }, Command::AppendAudit { tenant: None, entry: audit }]);
        self.write_meta(batch).await
    }

    /// Refuses taking super-admin `name` away when it is the last one and no bootstrap token
    /// is configured (no one could administer the cluster any more).
    fn keeps_a_super_admin(&self, name: &str) -> Result<(), TelexError> {
        let all = reads::admins(self.groups.store())?;
        let others = all.iter().filter(|a| a.role == AdminRole::SuperAdmin && a.name != name).count();
        if others == 0 && !self.has_bootstrap_admin() {
            return Err(TelexError::new(
                ErrorCode::FailedPrecondition,
                format!("{name} is the last super-admin: add another first, or no one could administer the cluster"),
            ));
        }
        Ok(())
    }

    pub fn admins(&self) -> Result<Vec<AdminRecord>, TelexError> {
        reads::admins(self.groups.store())
    }

    /// On a cluster with no admin identity and no bootstrap token: creates the super-admin
    /// `root` and returns its token (for the node to write to its data directory). `None`
    /// when there is nothing to do, or another node did it first.
    pub async fn first_admin(&self) -> Result<Option<String>, TelexError> {
        if self.has_bootstrap_admin() || !self.admins()?.is_empty() {
            return Ok(None);
        }
        let (token, token_hash) = generate(ROOT);
        let record = AdminRecord {
            name: ROOT.into(),
            role: AdminRole::SuperAdmin,
            tenant: None,
            token_hash,
            created_at: now_ms(),
            by: "first start".into(),
        };
        let audit = audit_entry("first start", "admin.add", ROOT, String::new(), describe(&record));
        // Not one batch: a refused `PutAdmin` (another node was first) must leave no entry.
        match self.write_meta(Command::PutAdmin { record, only_first: true }).await {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::AlreadyExists => return Ok(None),
            Err(e) => return Err(e),
        }
        self.write_meta(Command::AppendAudit { tenant: None, entry: audit }).await?;
        Ok(Some(token))
    }

    /// Records an admin action that is not itself a directory change (users, limits, sessions,
    /// nodes): after it succeeded, in the tenant's trail (`None`: the cluster's).
    pub async fn audit_action(
        &self,
        actor: &str,
        tenant: Option<&Domain>,
        action: &str,
        target: &str,
        detail: String,
    ) -> Result<(), TelexError> {
        let entry = audit_entry(actor, action, target, String::new(), detail);
        self.write_meta(Command::AppendAudit { tenant: tenant.cloned(), entry }).await
    }

    async fn write_meta(&self, cmd: Command) -> Result<(), TelexError> {
        match self.groups.write(META_GROUP, cmd).await? {
            telex_types::Response::Batch(rs) => rs.into_iter().try_for_each(|r| r.into_result().map(|_| ())),
            other => other.into_result().map(|_| ()),
        }
    }
}

fn audit_entry(actor: &str, action: &str, target: &str, before: String, after: String) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: now_ms(),
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        before,
        after,
    }
}

fn describe(r: &AdminRecord) -> String {
    match &r.tenant {
        Some(t) => format!("role={} tenant={t}", r.role.as_str()),
        None => format!("role={}", r.role.as_str()),
    }
}
