//! Scheduled directory syncs: each tenant with an LDAP server is synced soon after start and
//! then every `sync_interval_secs`, by whichever node leads the meta group then (one sync per
//! cluster, wherever the leadership moves).

use std::sync::Arc;
use std::time::Duration;

use telex_accounts::Accounts;
use telex_types::{Domain, META_GROUP};

/// Who the audit trail says ran a scheduled sync.
const SCHEDULER: &str = "ldap-sync (scheduled)";
/// The first sync waits this long (or the interval, if shorter) for the cluster to settle.
const FIRST: Duration = Duration::from_secs(5);

pub async fn scheduled_syncs(accounts: Arc<Accounts>, tenant: Domain) {
    let Some(interval) = accounts.ldap_config(&tenant).map(|c| c.sync_interval_secs) else { return };
    if interval == 0 {
        return;
    }
    tokio::time::sleep(FIRST.min(Duration::from_secs(interval))).await;
    loop {
        let groups = accounts.groups();
        if groups.leader_of(META_GROUP) == Some(groups.node_id()) {
            match accounts.ldap_sync(SCHEDULER, &tenant, false).await {
                Ok(r) if !r.changes.is_empty() => {
                    tracing::info!(%tenant, changes = r.changes.len(), "directory synced")
                }
                Ok(_) => tracing::debug!(%tenant, "directory in sync"),
                Err(e) => tracing::warn!(%tenant, error = %e, "directory sync failed; the last synced directory stays"),
            }
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
    }
}
