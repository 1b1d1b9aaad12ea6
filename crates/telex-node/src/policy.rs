//! Keeps this node's compiled tenant policies in step with its meta-group replica: compiled
//! for every tenant at start, and again (off the async runtime, coalesced) whenever a tenant's
//! directory or policy changes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use telex_actors::policies::PolicyCache;
use telex_policy::directory::DirectoryView;
use telex_policy::rules::TenantPolicy;
use telex_raft::reads;
use telex_store::Store;
use telex_types::Domain;

/// Compiles `tenant`'s current policy against its current directory.
pub fn compile(store: &Store, tenant: &Domain) -> Result<TenantPolicy, String> {
    let data = reads::directory(store, tenant).map_err(|e| e.message)?;
    let view = Arc::new(DirectoryView::build(data));
    for w in &view.warnings {
        tracing::warn!(%tenant, "directory: {w}");
    }
    match reads::policy(store, tenant, None).map_err(|e| e.message)? {
        None => Ok(TenantPolicy::open(tenant.clone(), view)),
        Some(p) => TenantPolicy::compile(tenant.clone(), p.version, &p.text, view)
            .map_err(|e| format!("policy version {} no longer compiles: {e}", p.version)),
    }
}

/// Recompiles tenants' policies as their directories change.
pub struct PolicyWatch {
    store: Arc<Store>,
    cache: Arc<PolicyCache>,
    /// Tenants changed since their recompile was scheduled (one recompile covers a burst).
    pending: Mutex<HashSet<Domain>>,
    /// Told of each tenant recompiled after a change (the actors update shared rosters).
    on_change: Box<dyn Fn(&Domain) + Send + Sync>,
    /// One compile at a time: the one that runs last read the newest state, so an older
    /// compile can never finish after a newer one and win.
    compiling: Mutex<()>,
}

impl PolicyWatch {
    pub fn start(
        store: Arc<Store>,
        cache: Arc<PolicyCache>,
        on_change: Box<dyn Fn(&Domain) + Send + Sync>,
    ) -> Arc<PolicyWatch> {
        let watch = Arc::new(PolicyWatch {
            store,
            cache,
            pending: Mutex::new(HashSet::new()),
            on_change,
            compiling: Mutex::new(()),
        });
        match reads::tenants(&watch.store) {
            Ok(tenants) => tenants.into_iter().for_each(|t| {
                watch.recompile(&t.domain);
            }),
            Err(e) => tracing::warn!(error = %e, "cannot list tenants to compile their policies"),
        }
        watch
    }

    fn recompile(&self, tenant: &Domain) -> bool {
        let _one = self.compiling.lock();
        match compile(&self.store, tenant) {
            Ok(p) => {
                self.cache.set(p);
                true
            }
            Err(e) => {
                // The last good policy stays in force.
                metrics::counter!("telex_policy_compile_failures_total").increment(1);
                tracing::error!(%tenant, error = %e, "tenant policy not recompiled; the previous one stays in force");
                false
            }
        }
    }

    /// The tenant's directory or policy changed in this node's replica.
    pub fn changed(self: &Arc<Self>, tenant: &Domain) {
        let fresh = self.pending.lock().map(|mut p| p.insert(tenant.clone())).unwrap_or(false);
        if !fresh {
            return;
        }
        let (watch, tenant) = (self.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || {
            if let Ok(mut p) = watch.pending.lock() {
                p.remove(&tenant);
            }
            if watch.recompile(&tenant) {
                (watch.on_change)(&tenant);
            }
        });
    }
}
