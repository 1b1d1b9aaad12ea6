use std::sync::Arc;

use telex_accounts::Accounts;
use telex_proto::v1 as pb;
use telex_proto::v1::admin_server::Admin;
use telex_session::{CutOff, Hub};
use telex_types::admin::{Access, AdminIdentity, AdminRole, Scope};
use telex_types::records::{AccountRecord, TenantLimits, TenantRecord};
use telex_types::{Domain, TelexError, UserJid};
use tonic::{Request, Response, Status};

use crate::admin_auth::{allow, allow_tenant, allow_user, caller};
use crate::status::to_status;

/// `telex.v1.Admin`, served on the admin listener only.
pub struct AdminService {
    accounts: Arc<Accounts>,
    hub: Hub,
}

impl AdminService {
    pub fn new(accounts: Arc<Accounts>, hub: Hub) -> Self {
        AdminService { accounts, hub }
    }
}

fn tenant(t: TenantRecord, l: TenantLimits) -> pb::Tenant {
    let limits = pb::TenantLimits {
        max_message_bytes: l.max_message_bytes,
        sends_per_second: l.sends_per_second,
        sessions_per_user: l.sessions_per_user,
    };
    pb::Tenant { domain: t.domain.to_string(), created_at_ms: t.created_at, limits: Some(limits) }
}

impl AdminService {
    fn tenant(&self, t: TenantRecord) -> Result<pb::Tenant, Status> {
        let limits = self.accounts.tenant_limits(&t.domain).map_err(to_status)?;
        Ok(tenant(t, limits))
    }

    /// Records a done action in the audit trail (a failure to record it is logged: the action
    /// itself took effect).
    async fn audit(&self, who: &AdminIdentity, tenant: Option<&Domain>, action: &str, target: &str, detail: String) {
        if let Err(e) = self.accounts.audit_action(&who.name, tenant, action, target, detail).await {
            metrics::counter!("telex_audit_failures_total").increment(1);
            tracing::error!(admin = %who, action, target, error = %e, "admin action not recorded in the audit trail");
        }
    }
}

fn admin_info(a: &telex_types::admin::AdminRecord) -> pb::AdminInfo {
    pb::AdminInfo {
        name: a.name.clone(),
        role: a.role.as_str().to_string(),
        tenant: a.tenant.as_ref().map(|t| t.to_string()).unwrap_or_default(),
        created_at_ms: a.created_at,
        by: a.by.clone(),
    }
}

fn user(a: AccountRecord) -> pb::User {
    pb::User {
        jid: a.jid.to_string(),
        disabled: a.disabled,
        created_at_ms: a.created_at,
        password_changed_at_ms: a.password_changed_at,
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn add_tenant(&self, r: Request<pb::AddTenantRequest>) -> Reply<pb::Tenant> {
        let who = allow(&r, Access::Write, Scope::Cluster)?;
        let t = self.accounts.add_tenant(&r.into_inner().domain).await.map_err(to_status)?;
        tracing::info!(tenant = %t.domain, "tenant added");
        self.audit(&who, None, "tenant.add", t.domain.as_str(), String::new()).await;
        Ok(Response::new(self.tenant(t)?))
    }

    async fn list_tenants(&self, r: Request<pb::ListTenantsRequest>) -> Reply<pb::ListTenantsResponse> {
        let who = caller(&r)?;
        let mut tenants = self.accounts.tenants().map_err(to_status)?;
        tenants.retain(|t| who.sees(&t.domain));
        let tenants = tenants.into_iter().map(|t| self.tenant(t)).collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListTenantsResponse { tenants }))
    }

    async fn set_tenant_limits(&self, r: Request<pb::SetTenantLimitsRequest>) -> Reply<pb::Tenant> {
        // Limits are the hosting provider's, not the tenant's own.
        let who = allow(&r, Access::Write, Scope::Cluster)?;
        let r = r.into_inner();
        let l = r.limits.unwrap_or_default();
        let limits = TenantLimits {
            max_message_bytes: l.max_message_bytes,
            sends_per_second: l.sends_per_second,
            sessions_per_user: l.sessions_per_user,
        };
        self.accounts.set_tenant_limits(&r.domain, limits.clone()).await.map_err(to_status)?;
        tracing::info!(tenant = %r.domain, ?limits, "tenant limits set");
        let domain = Domain::parse(&r.domain).map_err(to_status)?;
        self.audit(&who, Some(&domain), "tenant.limits", &r.domain, format!("{limits:?}")).await;
        let t = self.accounts.tenants().map_err(to_status)?.into_iter().find(|t| t.domain.as_str() == r.domain);
        let t = t.ok_or_else(|| Status::not_found(format!("no such tenant {}", r.domain)))?;
        Ok(Response::new(self.tenant(t)?))
    }

    async fn add_user(&self, r: Request<pb::AddUserRequest>) -> Reply<pb::User> {
        let (who, jid) = allow_user(&r, Access::Write, &r.get_ref().jid)?;
        let r = r.into_inner();
        let a = self.accounts.add_user(&r.jid, &r.password).await.map_err(to_status)?;
        tracing::info!(user = %a.jid, "user added");
        self.audit(&who, Some(jid.domain()), "user.add", &a.jid.to_string(), String::new()).await;
        Ok(Response::new(user(a)))
    }

    async fn list_users(&self, r: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        allow_tenant(&r, Access::Read, &r.get_ref().domain)?;
        let users = self.accounts.users(&r.into_inner().domain).map_err(to_status)?;
        Ok(Response::new(pb::ListUsersResponse { users: users.into_iter().map(user).collect() }))
    }

    async fn get_user(&self, r: Request<pb::UserRef>) -> Reply<pb::User> {
        allow_user(&r, Access::Read, &r.get_ref().jid)?;
        Ok(Response::new(user(self.accounts.user(&r.into_inner().jid).map_err(to_status)?)))
    }

    async fn remove_user(&self, r: Request<pb::UserRef>) -> Reply<pb::RemoveUserResponse> {
        let (who, user) = allow_user(&r, Access::Write, &r.get_ref().jid)?;
        let jid = r.into_inner().jid;
        self.accounts.remove_user(&jid).await.map_err(to_status)?;
        tracing::info!(user = %jid, "user removed");
        self.audit(&who, Some(user.domain()), "user.remove", &user.to_string(), String::new()).await;
        Ok(Response::new(pb::RemoveUserResponse {}))
    }

    async fn set_user_disabled(&self, r: Request<pb::SetUserDisabledRequest>) -> Reply<pb::User> {
        let (who, jid) = allow_user(&r, Access::Write, &r.get_ref().jid)?;
        let r = r.into_inner();
        let a = self.accounts.set_disabled(&r.jid, r.disabled).await.map_err(to_status)?;
        tracing::info!(user = %a.jid, disabled = a.disabled, "user disabled flag set");
        let action = if a.disabled { "user.disable" } else { "user.enable" };
        self.audit(&who, Some(jid.domain()), action, &jid.to_string(), String::new()).await;
        Ok(Response::new(user(a)))
    }

    async fn set_password(&self, r: Request<pb::SetPasswordRequest>) -> Reply<pb::User> {
        let (who, jid) = allow_user(&r, Access::Write, &r.get_ref().jid)?;
        let r = r.into_inner();
        let a = self.accounts.set_password(&r.jid, &r.password).await.map_err(to_status)?;
        tracing::info!(user = %a.jid, "password changed");
        self.audit(&who, Some(jid.domain()), "user.passwd", &jid.to_string(), String::new()).await;
        Ok(Response::new(user(a)))
    }

    async fn revoke_tokens(&self, r: Request<pb::UserRef>) -> Reply<pb::RevokeTokensResponse> {
        let (who, user) = allow_user(&r, Access::Write, &r.get_ref().jid)?;
        let revoked = self.accounts.revoke_tokens(&r.into_inner().jid).await.map_err(to_status)?;
        self.audit(&who, Some(user.domain()), "user.revoke-tokens", &user.to_string(), format!("{revoked} revoked"))
            .await;
        Ok(Response::new(pb::RevokeTokensResponse { revoked }))
    }

    async fn list_sessions(&self, r: Request<pb::ListSessionsRequest>) -> Reply<pb::ListSessionsResponse> {
        let who = caller(&r)?;
        let jid = r.into_inner().jid;
        let user = match jid.as_str() {
            "" => None,
            j => Some(UserJid::parse(j).map_err(to_status)?),
        };
        if let Some(u) = &user {
            who.may(Access::Read, Scope::Tenant(u.domain())).map_err(to_status)?;
        }
        // Without a user: every session the admin may see.
        let sessions = self
            .hub
            .sessions(user.as_ref())
            .into_iter()
            .filter(|s| who.sees(s.user.domain()))
            .map(|s| pb::Session { jid: s.user.to_string(), device: s.device, connected_at_ms: s.connected_at_ms })
            .collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }

    async fn kick_session(&self, r: Request<pb::KickSessionRequest>) -> Reply<pb::KickSessionResponse> {
        let (who, user) = allow_user(&r, Access::Write, &r.get_ref().jid)?;
        let r = r.into_inner();
        if !self.hub.cut_off(&user, &r.device, CutOff::Kicked).await {
            return Err(to_status(TelexError::not_found(format!("{user}/{} is not connected", r.device))));
        }
        tracing::info!(user = %user, device = %r.device, "session kicked");
        self.audit(&who, Some(user.domain()), "session.kick", &format!("{user}/{}", r.device), String::new()).await;
        Ok(Response::new(pb::KickSessionResponse {}))
    }

    async fn add_node(&self, r: Request<pb::AddNodeRequest>) -> Reply<pb::AddNodeResponse> {
        let who = allow(&r, Access::Write, Scope::Cluster)?;
        let r = r.into_inner();
        let groups = self.accounts.groups();
        if r.node_id == 0 || r.node_id == groups.node_id() || r.addr.is_empty() {
            return Err(Status::invalid_argument("add-node needs the new node's own non-zero id and its node address"));
        }
        let n = groups
            .join(r.node_id, &r.addr, &r.zone, |_| false)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::info!(node = r.node_id, addr = %r.addr, "node added");
        self.audit(&who, None, "node.add", &r.node_id.to_string(), r.addr.clone()).await;
        Ok(Response::new(pb::AddNodeResponse { groups: n as u32 }))
    }

    async fn remove_node(&self, r: Request<pb::RemoveNodeRequest>) -> Reply<pb::RemoveNodeResponse> {
        let who = allow(&r, Access::Write, Scope::Cluster)?;
        let node = r.into_inner().node_id;
        let groups = self.accounts.groups();
        if !groups.members(telex_types::META_GROUP).iter().any(|(id, _)| *id == node) {
            return Err(Status::not_found(format!("node {node} is not a member of the cluster")));
        }
        let n = groups.remove_node(node).await.map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::info!(node, "node removed");
        self.audit(&who, None, "node.remove", &node.to_string(), String::new()).await;
        Ok(Response::new(pb::RemoveNodeResponse { groups: n as u32 }))
    }

    async fn placement(&self, r: Request<pb::PlacementRequest>) -> Reply<pb::PlacementResponse> {
        allow(&r, Access::Read, Scope::Cluster)?;
        let groups = self.accounts.groups();
        groups.sync(telex_types::META_GROUP).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let plan = groups.plan();
        let leaders: std::collections::BTreeMap<u32, u64> =
            groups.leadership().into_iter().filter_map(|l| Some((l.group, l.leader?))).collect();
        let current = telex_raft::placement::replica_counts(&plan.nodes, &plan.current);
        let target = telex_raft::placement::replica_counts(&plan.nodes, &plan.target);
        let nodes = plan
            .nodes
            .iter()
            .map(|n| pb::PlacedNode {
                node_id: n.id,
                zone: n.zone.clone(),
                draining: n.draining,
                replicas: current.get(&n.id).copied().unwrap_or(0) as u32,
                target: target.get(&n.id).copied().unwrap_or(0) as u32,
                leaders: leaders.iter().filter(|(g, l)| **g != telex_types::META_GROUP && **l == n.id).count() as u32,
            })
            .collect();
        let placed = plan
            .current
            .iter()
            .map(|(group, replicas)| pb::PlacedGroup {
                group: *group,
                replicas: replicas.iter().copied().collect(),
                target: plan.target.get(group).map(|t| t.iter().copied().collect()).unwrap_or_default(),
                leader: leaders.get(group).copied().unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::PlacementResponse {
            replication: groups.replicas() as u32,
            nodes,
            groups: placed,
            pending_moves: plan.moves.len() as u32,
        }))
    }

    async fn rebalance(&self, r: Request<pb::RebalanceRequest>) -> Reply<pb::RebalanceResponse> {
        let who = allow(&r, Access::Write, Scope::Cluster)?;
        let r = self.accounts.groups().rebalance().await;
        self.audit(&who, None, "cluster.rebalance", "", format!("{} leaderships moved", r.moved)).await;
        let counts = |c: std::collections::BTreeMap<u64, usize>| {
            c.into_iter().map(|(node_id, n)| pb::LeaderCount { node_id, groups: n as u32 }).collect()
        };
        tracing::info!(moved = r.moved, before = ?r.before, after = ?r.after, "rebalanced");
        Ok(Response::new(pb::RebalanceResponse {
            moved: r.moved as u32,
            before: counts(r.before),
            after: counts(r.after),
        }))
    }

    type BackupStream = tokio_stream::wrappers::ReceiverStream<Result<pb::BackupChunk, Status>>;

    async fn backup(&self, r: Request<pb::BackupRequest>) -> Reply<Self::BackupStream> {
        // A copy of every tenant's data: super-admins only.
        let who = allow(&r, Access::Write, Scope::Cluster)?;
        self.audit(&who, None, "cluster.backup", "", String::new()).await;
        let groups = self.accounts.groups().clone();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = groups.store().dir().join(format!(".backup-tmp-{nanos}"));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // In a task of its own: a client that goes away mid-way still leaves no checkpoint
        // behind (its hard links would keep old files on disk).
        tokio::spawn(async move {
            match groups.backup(&dir).await {
                Ok(manifest) => {
                    tracing::info!(dir = %dir.display(), groups = manifest.groups.len(), "backup taken; streaming it");
                    let manifest = serde_json::to_string(&manifest).unwrap_or_default();
                    let first = pb::BackupChunk { manifest, ..Default::default() };
                    if tx.send(Ok(first)).await.is_ok() {
                        if let Err(e) = crate::backup::stream_files(&dir, &tx).await {
                            let _ = tx.send(Err(Status::internal(format!("reading the backup: {e}")))).await;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(Status::unavailable(format!("backup failed: {e}")))).await;
                }
            }
            let _ = tokio::fs::remove_dir_all(&dir).await;
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn verify_replicas(&self, r: Request<pb::VerifyReplicasRequest>) -> Reply<pb::VerifyReplicasResponse> {
        allow(&r, Access::Read, Scope::Cluster)?;
        let verdicts = self.accounts.groups().verify_replicas(std::time::Duration::from_secs(10)).await;
        let groups = verdicts
            .into_iter()
            .map(|(group, verdict, replicas)| pb::GroupVerdict {
                group,
                verdict: verdict.as_str().to_string(),
                replicas: replicas
                    .into_iter()
                    .map(|(node_id, d)| match d {
                        Ok(d) => pb::ReplicaDigest {
                            node_id,
                            applied_index: d.applied_index,
                            keys: d.keys,
                            hash: d.hash,
                            error: String::new(),
                        },
                        Err(error) => pb::ReplicaDigest { node_id, error, ..Default::default() },
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::VerifyReplicasResponse { groups }))
    }

    async fn node_status(&self, r: Request<pb::NodeStatusRequest>) -> Reply<pb::NodeStatusResponse> {
        allow(&r, Access::Read, Scope::Cluster)?;
        let groups = self.accounts.groups();
        let status = groups.status();
        let members = status.first().map(|meta| meta.members.clone()).unwrap_or_default();
        let plan = groups.plan();
        let replica_counts = telex_raft::placement::replica_counts(&plan.nodes, &plan.current);
        let shards: Vec<_> = groups.leadership().into_iter().filter(|l| l.group != telex_types::META_GROUP).collect();
        let leader_counts = telex_raft::leadership::leader_counts(&shards);
        let (replica_counts, leader_counts, plan) = (&replica_counts, &leader_counts, &plan);
        let status = status
            .into_iter()
            .map(|g| pb::GroupStatus {
                group: g.group,
                role: g.role.to_string(),
                leader: g.leader.unwrap_or(0),
                term: g.term,
                last_log_index: g.last_log_index,
                applied_index: g.applied_index,
                snapshot_index: g.snapshot_index,
                purged_index: g.purged_index,
                voters: g.voters,
                learners: g.learners,
                max_lag: g.max_lag,
            })
            .collect();
        Ok(Response::new(pb::NodeStatusResponse {
            node_id: groups.node_id(),
            shards: groups.shards(),
            groups: status,
            version: env!("CARGO_PKG_VERSION").to_string(),
            members: futures::future::join_all(members.into_iter().map(|(node_id, addr)| async move {
                let placed = plan.nodes.iter().find(|n| n.id == node_id);
                let member = pb::Member {
                    node_id,
                    addr,
                    replicas: replica_counts.get(&node_id).copied().unwrap_or(0) as u32,
                    leaders: leader_counts.get(&node_id).copied().unwrap_or(0) as u32,
                    zone: placed.map(|n| n.zone.clone()).unwrap_or_default(),
                    draining: placed.is_some_and(|n| n.draining),
                    ..Default::default()
                };
                match groups.probe(node_id).await {
                    Ok(rtt) => pb::Member { reachable: true, rtt_ms: rtt.as_millis() as u32, ..member },
                    Err(error) => pb::Member { reachable: false, error, ..member },
                }
            }))
            .await,
        }))
    }

    async fn add_admin(&self, r: Request<pb::AddAdminRequest>) -> Reply<pb::AddAdminResponse> {
        let who = allow(&r, Access::Write, Scope::Cluster)?;
        let q = r.into_inner();
        let Some(role) = AdminRole::parse(&q.role) else {
            return Err(Status::invalid_argument(format!(
                "unknown role {:?} (super-admin, tenant-admin or auditor)",
                q.role
            )));
        };
        let tenant = match q.tenant.as_str() {
            "" => None,
            t => Some(Domain::parse(t).map_err(to_status)?),
        };
        let (record, token) = self.accounts.add_admin(&who.name, &q.name, role, tenant).await.map_err(to_status)?;
        tracing::info!(admin = %record.name, role = record.role.as_str(), "admin added");
        Ok(Response::new(pb::AddAdminResponse { admin: Some(admin_info(&record)), token }))
    }

    async fn remove_admin(&self, r: Request<pb::AdminRef>) -> Reply<pb::RemoveAdminResponse> {
        let who = allow(&r, Access::Write, Scope::Cluster)?;
        self.accounts.remove_admin(&who.name, &r.into_inner().name).await.map_err(to_status)?;
        Ok(Response::new(pb::RemoveAdminResponse {}))
    }

    async fn list_admins(&self, r: Request<pb::ListAdminsRequest>) -> Reply<pb::ListAdminsResponse> {
        allow(&r, Access::Read, Scope::Cluster)?;
        let admins = self.accounts.admins().map_err(to_status)?;
        Ok(Response::new(pb::ListAdminsResponse { admins: admins.iter().map(admin_info).collect() }))
    }

    async fn who_am_i(&self, r: Request<pb::AdminWhoAmIRequest>) -> Reply<pb::AdminInfo> {
        let who = caller(&r)?;
        Ok(Response::new(pb::AdminInfo {
            name: who.name,
            role: who.role.as_str().to_string(),
            tenant: who.tenant.map(|t| t.to_string()).unwrap_or_default(),
            ..Default::default()
        }))
    }
}
