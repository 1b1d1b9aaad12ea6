//! Directory sync from LDAP and password checks against it: a sync reads the server, plans the
//! changes (`telex_ldap::plan`) and, unless it is a dry run, writes them (accounts in their
//! shards, the directory in the meta group in a few large batches) with one audit entry. The
//! outcome of each tenant's last sync is kept for `/readyz` and metrics: a server that cannot
//! be reached leaves the last synced directory in force.

use std::collections::HashMap;
use std::sync::Mutex;

use telex_ldap::LdapConfig;
use telex_raft::reads;
use telex_types::directory::{AuditEntry, DirectoryChange, Source};
use telex_types::{Command, Domain, TelexError, UserJid, META_GROUP};

use crate::{now_ms, Accounts};

/// Directory commands per Raft write.
const BATCH: usize = 256;
/// Longest list of changes kept in the audit entry.
const AUDIT_DETAIL: usize = 8 * 1024;

/// How a tenant's last sync went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LdapStatus {
    pub last_attempt_ms: u64,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
    pub users: usize,
    pub groups: usize,
    pub changes: usize,
}

/// What a sync did (or, dry, would do).
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
    pub users: usize,
    pub groups: usize,
    pub applied: bool,
}

/// The tenants' LDAP settings and their syncs' outcomes.
#[derive(Default)]
pub struct LdapState {
    configs: HashMap<Domain, LdapConfig>,
    status: Mutex<HashMap<Domain, LdapStatus>>,
}

impl LdapState {
    pub fn new(configs: Vec<LdapConfig>) -> Result<LdapState, String> {
        let mut map = HashMap::new();
        for c in configs {
            c.validate()?;
            let tenant = Domain::parse(&c.tenant).map_err(|e| format!("ldap: {}", e.message))?;
            if map.insert(tenant.clone(), c).is_some() {
                return Err(format!("ldap: two [[ldap]] tables for {tenant}"));
            }
        }
        Ok(LdapState { configs: map, status: Mutex::new(HashMap::new()) })
    }
}

impl Accounts {
    pub fn ldap_config(&self, tenant: &Domain) -> Option<&LdapConfig> {
        self.ldap.configs.get(tenant)
    }

    pub fn ldap_tenants(&self) -> Vec<Domain> {
        let mut t: Vec<Domain> = self.ldap.configs.keys().cloned().collect();
        t.sort();
        t
    }

    /// Every tenant's last sync, by tenant.
    pub fn ldap_status(&self) -> Vec<(Domain, LdapStatus)> {
        let mut out: Vec<(Domain, LdapStatus)> =
            self.ldap_tenants().into_iter().map(|t| (t, LdapStatus::default())).collect();
        if let Ok(s) = self.ldap.status.lock() {
            for (t, status) in out.iter_mut() {
                if let Some(now) = s.get(t) {
                    *status = now.clone();
                }
            }
        }
        out
    }

    fn record(&self, tenant: &Domain, update: impl FnOnce(&mut LdapStatus)) {
        if let Ok(mut s) = self.ldap.status.lock() {
            let status = s.entry(tenant.clone()).or_default();
            update(status);
            let ok = status.last_error.is_none();
            metrics::gauge!("telex_ldap_sync_ok", "tenant" => tenant.to_string()).set(if ok { 1.0 } else { 0.0 });
            if let Some(at) = status.last_success_ms {
                metrics::gauge!("telex_ldap_last_success_seconds", "tenant" => tenant.to_string())
                    .set(at as f64 / 1000.0);
            }
        }
    }

    /// Syncs `tenant`'s directory from its LDAP server; `dry_run` only says what would change.
    pub async fn ldap_sync(&self, actor: &str, tenant: &Domain, dry_run: bool) -> Result<SyncReport, TelexError> {
        let Some(config) = self.ldap_config(tenant).cloned() else {
            return Err(TelexError::new(
                telex_types::ErrorCode::FailedPrecondition,
                format!("{tenant} has no [[ldap]] directory server configured"),
            ));
        };
        self.require_tenant(tenant)?;
        let started = now_ms();
        let result = self.ldap_sync_inner(actor, tenant, &config, dry_run).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("telex_ldap_syncs_total", "tenant" => tenant.to_string(), "outcome" => outcome).increment(1);
        if !dry_run || result.is_err() {
            self.record(tenant, |s| {
                s.last_attempt_ms = started;
                match &result {
                    Ok(r) => {
                        s.last_success_ms = Some(started);
                        s.last_error = None;
                        (s.users, s.groups, s.changes) = (r.users, r.groups, r.changes.len());
                    }
                    Err(e) => s.last_error = Some(e.message.clone()),
                }
            });
        }
        result
    }

    async fn ldap_sync_inner(
        &self,
        actor: &str,
        tenant: &Domain,
        config: &LdapConfig,
        dry_run: bool,
    ) -> Result<SyncReport, TelexError> {
        let snapshot = telex_ldap::fetch(config).await.map_err(TelexError::unavailable)?;
        let current = reads::directory(self.groups.store(), tenant)?;
        let accounts = self.users(tenant.as_str())?;
        let plan = telex_ldap::plan(tenant, &snapshot, &current, &accounts);
        if let Some(why) = plan.refused {
            return Err(TelexError::new(
                telex_types::ErrorCode::FailedPrecondition,
                format!("sync not applied: {why}"),
            ));
        }
        let mut report = SyncReport {
            changes: plan.changes.iter().map(|(_, line)| line.clone()).collect(),
            warnings: plan.warnings.clone(),
            users: snapshot.users.len(),
            groups: snapshot.groups.len(),
            applied: false,
        };
        if dry_run || plan.changes.is_empty() {
            return Ok(report);
        }
        let mut meta = Vec::new();
        for (change, _) in plan.changes {
            match change {
                DirectoryChange::CreateUser(user) => self.create_directory_user(&user).await?,
                DirectoryChange::SetDisabled { user, disabled } => {
                    self.set_disabled(&user.to_string(), disabled).await?;
                }
                DirectoryChange::SetAttributes { user, attributes } => {
                    meta.push(Command::SetUserAttributes { user, attributes: Some(attributes) })
                }
                DirectoryChange::PutGroup(record) => meta.push(Command::PutGroup(record)),
                DirectoryChange::RemoveGroup(name) => match self.policy_needs(tenant, &name)? {
                    Some(why) => report.warnings.push(format!("group {name} is gone from the server but {why}; kept")),
                    None => meta.push(Command::RemoveGroup { tenant: tenant.clone(), name }),
                },
                DirectoryChange::Member { group, user, member } => {
                    meta.push(Command::SetGroupMember { tenant: tenant.clone(), group, user, member })
                }
            }
        }
        let mut detail = report.changes.join("\n");
        if detail.len() > AUDIT_DETAIL {
            let cut = (0..=AUDIT_DETAIL).rev().find(|i| detail.is_char_boundary(*i)).unwrap_or(0);
            detail.truncate(cut);
            detail.push_str("\n...");
        }
        let entry = AuditEntry {
            seq: 0,
            at: now_ms(),
            actor: actor.to_string(),
            action: "ldap.sync".into(),
            target: config.url.clone(),
            before: String::new(),
            after: format!("{} changes\n{detail}", report.changes.len()),
        };
        meta.push(Command::AppendAudit { tenant: Some(tenant.clone()), entry });
        for chunk in meta.chunks(BATCH) {
            match self.groups.write(META_GROUP, Command::Batch(chunk.to_vec())).await? {
                telex_types::Response::Batch(rs) => rs.into_iter().try_for_each(|r| r.into_result().map(|_| ()))?,
                other => other.into_result().map(|_| ())?,
            }
        }
        report.applied = true;
        Ok(report)
    }

    /// An account for a synced user: its password is random and never told (an admin sets
    /// one, or the directory server checks it).
    async fn create_directory_user(&self, user: &UserJid) -> Result<(), TelexError> {
        use rand::RngCore;
        let mut secret = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut secret);
        let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        match self.add_user(&user.to_string(), &password).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == telex_types::ErrorCode::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Checks `password` by binding to the tenant's directory server as the user; `None` when
    /// the tenant does not check passwords there (or the user is not from it).
    pub(crate) async fn ldap_password(&self, jid: &UserJid, password: &str) -> Option<Result<bool, TelexError>> {
        let config = self.ldap_config(jid.domain()).filter(|c| c.password_bind)?;
        let dn = match reads::user_attributes(self.groups.store(), jid) {
            Ok(Some(a)) => match a.source {
                Source::Ldap(dn) => dn,
                Source::Local => return None,
            },
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        // As many binds at once as password hashes: a login storm cannot flood the server.
        let permit = match tokio::time::timeout(self.config.hash_wait, self.hashing.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                let busy = "too many password checks in progress; retry shortly";
                return Some(Err(TelexError::new(telex_types::ErrorCode::ResourceExhausted, busy)));
            }
        };
        let r = telex_ldap::bind(config, &dn, password).await;
        drop(permit);
        metrics::counter!("telex_ldap_binds_total", "outcome" => match &r { Ok(true) => "ok", Ok(false) => "refused", Err(_) => "error" }).increment(1);
        Some(r.map_err(TelexError::unavailable))
    }

    /// Whether `tenant` checks its users' passwords on its directory server (SCRAM, which
    /// needs a stored key, then cannot serve them).
    pub fn passwords_in_ldap(&self, tenant: &Domain) -> bool {
        self.ldap_config(tenant).is_some_and(|c| c.password_bind)
    }
}
