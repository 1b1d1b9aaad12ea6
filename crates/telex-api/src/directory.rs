//! The `Directory` gRPC service on the admin listener: groups, users' attributes, the policy
//! file and the audit trail, carried out by `telex_accounts`.

use std::sync::Arc;

use telex_accounts::{Accounts, GroupListing};
use telex_policy::directory::DirectoryView;
use telex_proto::v1 as pb;
use telex_proto::v1::directory_server::Directory;
use telex_types::directory::{GroupName, GroupRecord, PolicyVersion, Source, UserAttributes};
use telex_types::{TelexError, UserJid};
use tonic::{Request, Response, Status};

use crate::admin_auth::{allow, allow_tenant, allow_user};
use crate::status::to_status;
use telex_types::admin::{Access, Scope};

pub struct DirectoryService {
    accounts: Arc<Accounts>,
    /// This node's sessions, for what a policy's session limits would cut.
    hub: Option<telex_session::Hub>,
}

impl DirectoryService {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        DirectoryService { accounts, hub: None }
    }

    pub fn with_sessions(mut self, hub: telex_session::Hub) -> Self {
        self.hub = Some(hub);
        self
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn names(list: &[String]) -> Result<std::collections::BTreeSet<GroupName>, Status> {
    list.iter().map(|n| GroupName::parse(n).map_err(to_status)).collect()
}

fn source(s: &Source) -> String {
    match s {
        Source::Local => "local".into(),
        Source::Ldap(dn) => dn.clone(),
    }
}

fn group_out(g: GroupListing) -> pb::DirectoryGroup {
    let list = |s: &std::collections::BTreeSet<GroupName>| s.iter().map(|n| n.to_string()).collect();
    pb::DirectoryGroup {
        name: g.record.name.to_string(),
        display_name: g.record.display_name.clone(),
        description: g.record.description.clone(),
        subgroups: list(&g.record.subgroups),
        shown_to: list(&g.record.shown_to),
        members: g.members.iter().map(|u| u.to_string()).collect(),
        source: source(&g.record.source),
    }
}

fn policy_out(p: PolicyVersion) -> pb::PolicyInfo {
    pb::PolicyInfo { version: p.version, text: p.text, by: p.by, at_ms: p.at, comment: p.comment, impact: Vec::new() }
}

impl DirectoryService {
    fn user_out(&self, user: &UserJid) -> Result<pb::DirectoryUser, TelexError> {
        let a = self.accounts.user_attributes(user)?.unwrap_or_default();
        let data = self.accounts.list_groups(user.domain())?;
        let view = DirectoryView::build(telex_types::directory::DirectoryData {
            users: Vec::new(),
            groups: data.iter().map(|g| g.record.clone()).collect(),
            members: data.iter().flat_map(|g| g.members.iter().map(|m| (g.record.name.clone(), m.clone()))).collect(),
        });
        Ok(pb::DirectoryUser {
            jid: user.to_string(),
            display_name: a.display_name,
            title: a.title,
            department: a.department,
            manager: a.manager.map(|m| m.to_string()).unwrap_or_default(),
            email: a.email,
            source: source(&a.source),
            groups: view.groups_of(user).into_iter().map(|g| g.to_string()).collect(),
        })
    }
}

#[tonic::async_trait]
impl Directory for DirectoryService {
    async fn put_group(&self, r: Request<pb::PutGroupRequest>) -> Reply<pb::DirectoryGroup> {
        let (who, t) = allow_tenant(&r, Access::Write, &r.get_ref().tenant)?;
        let q = r.into_inner();
        let record = GroupRecord {
            tenant: t,
            name: GroupName::parse(&q.name).map_err(to_status)?,
            display_name: q.display_name,
            description: q.description,
            subgroups: names(&q.subgroups)?,
            shown_to: names(&q.shown_to)?,
            source: Source::Local,
        };
        let record = self.accounts.put_group(&who.name, record).await.map_err(to_status)?;
        let members = self
            .accounts
            .list_groups(&record.tenant)
            .map_err(to_status)?
            .into_iter()
            .find(|g| g.record.name == record.name)
            .map(|g| g.members)
            .unwrap_or_default();
        Ok(Response::new(group_out(GroupListing { record, members })))
    }

    async fn remove_group(&self, r: Request<pb::GroupRef>) -> Reply<pb::DirectoryDone> {
        let (who, t) = allow_tenant(&r, Access::Write, &r.get_ref().tenant)?;
        let name = GroupName::parse(&r.get_ref().name).map_err(to_status)?;
        self.accounts.remove_group(&who.name, &t, &name).await.map_err(to_status)?;
        Ok(Response::new(pb::DirectoryDone {}))
    }

    async fn list_groups(&self, r: Request<pb::TenantRef>) -> Reply<pb::DirectoryGroupList> {
        let (_, t) = allow_tenant(&r, Access::Read, &r.get_ref().tenant)?;
        let groups = self.accounts.list_groups(&t).map_err(to_status)?;
        Ok(Response::new(pb::DirectoryGroupList { groups: groups.into_iter().map(group_out).collect() }))
    }

    async fn set_group_member(&self, r: Request<pb::GroupMemberRequest>) -> Reply<pb::DirectoryDone> {
        let (who, t) = allow_tenant(&r, Access::Write, &r.get_ref().tenant)?;
        let q = r.into_inner();
        let group = GroupName::parse(&q.group).map_err(to_status)?;
        let user = UserJid::parse(&q.jid).map_err(to_status)?;
        self.accounts.set_group_member(&who.name, &t, &group, &user, q.member).await.map_err(to_status)?;
        Ok(Response::new(pb::DirectoryDone {}))
    }

    async fn set_user_attributes(&self, r: Request<pb::UserAttributesRequest>) -> Reply<pb::DirectoryUser> {
        let (who, user) = allow_user(&r, Access::Write, &r.get_ref().jid)?;
        let q = r.into_inner();
        let mut a: UserAttributes = self.accounts.user_attributes(&user).map_err(to_status)?.unwrap_or_default();
        if let Some(v) = q.display_name {
            a.display_name = v;
        }
        if let Some(v) = q.title {
            a.title = v;
        }
        if let Some(v) = q.department {
            a.department = v;
        }
        if let Some(v) = q.email {
            a.email = v;
        }
        if let Some(v) = q.manager {
            a.manager = if v.is_empty() { None } else { Some(UserJid::parse(&v).map_err(to_status)?) };
        }
        self.accounts.set_user_attributes(&who.name, &user, a).await.map_err(to_status)?;
        Ok(Response::new(self.user_out(&user).map_err(to_status)?))
    }

    async fn get_user_attributes(&self, r: Request<pb::UserRef>) -> Reply<pb::DirectoryUser> {
        let (_, user) = allow_user(&r, Access::Read, &r.get_ref().jid)?;
        Ok(Response::new(self.user_out(&user).map_err(to_status)?))
    }

    async fn set_policy(&self, r: Request<pb::SetPolicyRequest>) -> Reply<pb::PolicyInfo> {
        // A dry run changes nothing, but is a change being prepared: writers only.
        let (who, t) = allow_tenant(&r, Access::Write, &r.get_ref().tenant)?;
        let q = r.into_inner();
        if q.dry_run {
            let mut connected: std::collections::BTreeMap<UserJid, usize> = Default::default();
            for s in self.hub.iter().flat_map(|h| h.sessions(None)).filter(|s| s.user.domain() == &t) {
                *connected.entry(s.user).or_default() += 1;
            }
            let sessions: Vec<(UserJid, usize)> = connected.into_iter().collect();
            let impact = self.accounts.policy_impact(&t, &q.text, &sessions).await.map_err(to_status)?;
            return Ok(Response::new(pb::PolicyInfo {
                version: 0,
                text: q.text,
                comment: q.comment,
                impact,
                ..Default::default()
            }));
        }
        let version = self.accounts.set_policy(&who.name, &t, &q.text, &q.comment).await.map_err(to_status)?;
        tracing::info!(tenant = %t, version, "policy set");
        let p = self.accounts.policy(&t, Some(version)).map_err(to_status)?;
        Ok(Response::new(p.map(policy_out).unwrap_or_default()))
    }

    async fn get_policy(&self, r: Request<pb::GetPolicyRequest>) -> Reply<pb::PolicyInfo> {
        let (_, t) = allow_tenant(&r, Access::Read, &r.get_ref().tenant)?;
        let q = r.into_inner();
        let version = (q.version != 0).then_some(q.version);
        match self.accounts.policy(&t, version).map_err(to_status)? {
            Some(p) => Ok(Response::new(policy_out(p))),
            None if version.is_none() => Ok(Response::new(pb::PolicyInfo::default())),
            None => Err(Status::not_found(format!("{t} has no policy version {}", q.version))),
        }
    }

    async fn policy_history(&self, r: Request<pb::TenantRef>) -> Reply<pb::PolicyList> {
        let (_, t) = allow_tenant(&r, Access::Read, &r.get_ref().tenant)?;
        let versions = self.accounts.policy_history(&t).map_err(to_status)?;
        Ok(Response::new(pb::PolicyList { versions: versions.into_iter().map(policy_out).collect() }))
    }

    async fn rollback_policy(&self, r: Request<pb::GetPolicyRequest>) -> Reply<pb::PolicyInfo> {
        let (who, t) = allow_tenant(&r, Access::Write, &r.get_ref().tenant)?;
        let q = r.into_inner();
        let version = self.accounts.rollback_policy(&who.name, &t, q.version).await.map_err(to_status)?;
        let p = self.accounts.policy(&t, Some(version)).map_err(to_status)?;
        Ok(Response::new(p.map(policy_out).unwrap_or_default()))
    }

    async fn test_policy(&self, r: Request<pb::TestPolicyRequest>) -> Reply<pb::PolicyDecision> {
        let (_, from) = allow_user(&r, Access::Read, &r.get_ref().from)?;
        let q = r.into_inner();
        let to = UserJid::parse(&q.to).map_err(to_status)?;
        let e = self.accounts.test_policy(&from, &q.action, &to, q.text.as_deref()).map_err(to_status)?;
        Ok(Response::new(pb::PolicyDecision { allowed: e.allowed, rule: e.rule, description: e.description }))
    }

    async fn list_audit(&self, r: Request<pb::ListAuditRequest>) -> Reply<pb::AuditList> {
        let t = match r.get_ref().tenant.as_str() {
            "" => {
                allow(&r, Access::Read, Scope::Cluster)?;
                None
            }
            t => Some(allow_tenant(&r, Access::Read, t)?.1),
        };
        let q = r.into_inner();
        let limit = if q.limit == 0 { 100 } else { q.limit.min(1000) } as usize;
        let mut entries = Vec::new();
        let mut after = q.after;
        // Filters apply after the read: page until `limit` entries pass or the trail ends.
        while entries.len() < limit {
            let page = self.accounts.audit(t.as_ref(), after, limit).map_err(to_status)?;
            let Some(last) = page.last().map(|e| e.seq) else { break };
            after = last;
            entries.extend(
                page.into_iter()
                    .filter(|e| q.actor.is_empty() || e.actor == q.actor)
                    .filter(|e| e.at >= q.since_ms)
                    .map(|e| pb::AuditEntry {
                        seq: e.seq,
                        at_ms: e.at,
                        actor: e.actor,
                        action: e.action,
                        target: e.target,
                        before: e.before,
                        after: e.after,
                    }),
            );
        }
        entries.truncate(limit);
        Ok(Response::new(pb::AuditList { entries }))
    }

    async fn sync_directory(&self, r: Request<pb::SyncDirectoryRequest>) -> Reply<pb::SyncDirectoryReply> {
        let access = if r.get_ref().dry_run { Access::Read } else { Access::Write };
        let (who, t) = allow_tenant(&r, access, &r.get_ref().tenant)?;
        let report = self.accounts.ldap_sync(&who.name, &t, r.get_ref().dry_run).await.map_err(to_status)?;
        Ok(Response::new(pb::SyncDirectoryReply {
            changes: report.changes,
            warnings: report.warnings,
            users: report.users as u32,
            groups: report.groups as u32,
            applied: report.applied,
        }))
    }

    async fn directory_sync_status(&self, r: Request<pb::TenantRef>) -> Reply<pb::SyncStatusList> {
        let who = crate::admin_auth::caller(&r)?;
        let only = r.into_inner().tenant;
        let tenants = self
            .accounts
            .ldap_status()
            .into_iter()
            .filter(|(t, _)| (only.is_empty() || t.as_str() == only) && who.sees(t))
            .map(|(t, s)| {
                let config = self.accounts.ldap_config(&t);
                pb::SyncStatus {
                    tenant: t.to_string(),
                    url: config.map(|c| c.url.clone()).unwrap_or_default(),
                    last_attempt_ms: s.last_attempt_ms,
                    last_success_ms: s.last_success_ms.unwrap_or(0),
                    last_error: s.last_error.unwrap_or_default(),
                    users: s.users as u32,
                    groups: s.groups as u32,
                    changes: s.changes as u32,
                    interval_secs: config.map_or(0, |c| c.sync_interval_secs),
                    password_bind: config.is_some_and(|c| c.password_bind),
                }
            })
            .collect();
        Ok(Response::new(pb::SyncStatusList { tenants }))
    }
}
