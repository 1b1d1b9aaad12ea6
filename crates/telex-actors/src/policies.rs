//! The tenants' policies as this node compiled them: read on every check, replaced whole when
//! the directory or the policy changes (the node recompiles from its meta-group replica), so a
//! check never waits on I/O or another node.

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;
use telex_policy::directory::SharedContact;
use telex_policy::rules::{PolicyAction, PolicyRefusal, TenantPolicy};
use telex_types::directory::UserAttributes;
use telex_types::{Domain, UserJid};

#[derive(Default)]
pub struct PolicyCache {
    tenants: DashMap<Domain, Arc<TenantPolicy>>,
}

impl PolicyCache {
    pub fn new() -> Arc<PolicyCache> {
        Arc::new(PolicyCache::default())
    }

    /// The tenant's compiled policy; `None` when it has none (everything is allowed).
    pub fn get(&self, tenant: &Domain) -> Option<Arc<TenantPolicy>> {
        self.tenants.get(tenant).map(|p| p.clone())
    }

    pub fn set(&self, policy: TenantPolicy) {
        metrics::gauge!("telex_policy_version", "tenant" => policy.tenant.to_string()).set(policy.version as f64);
        self.tenants.insert(policy.tenant.clone(), Arc::new(policy));
    }

    /// What the tenant's policy says of `subject` doing `action` to `object`.
    pub fn check(&self, subject: &UserJid, action: PolicyAction, object: &UserJid) -> Option<PolicyRefusal> {
        self.get(subject.domain())?.check(subject, action, object).err()
    }

    /// The contacts the tenant's shared roster groups give `user`.
    pub fn shared_roster(&self, user: &UserJid) -> BTreeMap<UserJid, SharedContact> {
        self.get(user.domain()).map(|p| p.shared_roster(user)).unwrap_or_default()
    }

    /// Whether shared roster groups make `a` and `b` contacts (so `a` sees `b`'s presence).
    pub fn shares(&self, a: &UserJid, b: &UserJid) -> bool {
        a.domain() == b.domain() && self.get(a.domain()).is_some_and(|p| p.shares(a, b))
    }

    /// Directory entries of `searcher`'s tenant matching `query` that it may see.
    pub fn search(
        &self,
        searcher: &UserJid,
        query: &str,
        limit: usize,
        keep: &dyn Fn(&UserJid, &UserAttributes) -> bool,
    ) -> Vec<(UserJid, UserAttributes)> {
        self.get(searcher.domain()).map(|p| p.search_where(searcher, query, limit, keep)).unwrap_or_default()
    }
}
