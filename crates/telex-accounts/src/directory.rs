//! The company directory and the tenant's policy, as admins change them: groups and their
//! members, users' attributes, policy versions (checked against the directory before they are
//! stored). Every change is written with its audit entry in one Raft command.

use std::collections::BTreeSet;
use std::sync::Arc;

use telex_policy::directory::DirectoryView;
use telex_policy::rules::{Explanation, PolicyAction, TenantPolicy, ACTIONS};
use telex_raft::reads::{self, Query};
use telex_types::directory::{AuditEntry, GroupName, GroupRecord, PolicyVersion, Source, UserAttributes};
use telex_types::room::{Affiliation, RoomRecord};
use telex_types::roster::RosterItem;
use telex_types::{Command, Domain, TelexError, UserJid, META_GROUP};

use crate::{now_ms, Accounts};

/// Most lines `policy_impact` lists.
const MAX_IMPACT: usize = 1000;

/// A group as shown to admins: its record and its direct members.
#[derive(Clone, Debug)]
pub struct GroupListing {
    pub record: GroupRecord,
    pub members: Vec<UserJid>,
}

impl Accounts {
    fn view(&self, tenant: &Domain) -> Result<Arc<DirectoryView>, TelexError> {
        Ok(Arc::new(DirectoryView::build(reads::directory(self.groups.store(), tenant)?)))
    }

    /// Writes `change` with its audit entry (one Raft command: both or, refused, neither
    /// matters: changes are checked before they are written).
    async fn audited(&self, tenant: &Domain, change: Command, entry: AuditEntry) -> Result<(), TelexError> {
        let entry = AuditEntry { at: now_ms(), ..entry };
        let batch = Command::Batch(vec![change, Command::AppendAudit { tenant: Some(tenant.clone()), entry }]);
        match self.groups.write(META_GROUP, batch).await? {
            telex_types::Response::Batch(rs) => rs.into_iter().try_for_each(|r| r.into_result().map(|_| ())),
            other => other.into_result().map(|_| ()),
        }
    }

    /// Creates or changes a group (its subgroups must exist; its members are kept).
    pub async fn put_group(&self, actor: &str, record: GroupRecord) -> Result<GroupRecord, TelexError> {
        self.require_tenant(&record.tenant)?;
        record.validate()?;
        let store = self.groups.store();
        for sub in record.subgroups.iter().chain(record.shown_to.iter()) {
            if sub != &record.name && reads::group(store, &record.tenant, sub)?.is_none() {
                return Err(TelexError::not_found(format!("no group {sub} in {}", record.tenant)));
            }
        }
        let before = reads::group(store, &record.tenant, &record.name)?;
        // A synced group stays synced: the next sync sets all but `shown_to` from the server.
        let mut record = record;
        if let Some(b) = before.as_ref().filter(|_| record.source == Source::Local) {
            record.source = b.source.clone();
        }
        let action = if before.is_some() { "group.change" } else { "group.add" };
        let (b, a) = (before.map(|g| describe(&g)).unwrap_or_default(), describe(&record));
        let tenant = record.tenant.clone();
        let target = record.name.to_string();
        self.audited(&tenant, Command::PutGroup(record.clone()), entry(actor, action, target, b, a)).await?;
        Ok(record)
    }

    /// Removes a group, unless the tenant's policy names it (change the policy first).
    pub async fn remove_group(&self, actor: &str, tenant: &Domain, name: &GroupName) -> Result<(), TelexError> {
        let store = self.groups.store();
        let Some(before) = reads::group(store, tenant, name)? else {
            return Err(TelexError::not_found(format!("no group {name} in {tenant}")));
        };
        if let Some(why) = self.policy_needs(tenant, name)? {
            return Err(TelexError::new(
                telex_types::ErrorCode::FailedPrecondition,
                format!("{why}; change the policy first"),
            ));
        }
        let change = Command::RemoveGroup { tenant: tenant.clone(), name: name.clone() };
        self.audited(tenant, change, entry(actor, "group.remove", name.to_string(), describe(&before), String::new()))
            .await
    }

    /// Why the tenant's policy could not do without group `name`, if it could not.
    pub(crate) fn policy_needs(&self, tenant: &Domain, name: &GroupName) -> Result<Option<String>, TelexError> {
        let store = self.groups.store();
        let Some(p) = reads::policy(store, tenant, None)? else { return Ok(None) };
        let mut data = reads::directory(store, tenant)?;
        data.groups.retain(|g| &g.name != name);
        data.members.retain(|(g, _)| g != name);
        Ok(TenantPolicy::compile(tenant.clone(), p.version, &p.text, Arc::new(DirectoryView::build(data)))
            .err()
            .map(|e| format!("policy version {} needs group {name} ({e})", p.version)))
    }

    pub async fn set_group_member(
        &self,
        actor: &str,
        tenant: &Domain,
        group: &GroupName,
        user: &UserJid,
        member: bool,
    ) -> Result<(), TelexError> {
        if user.domain() != tenant {
            return Err(TelexError::invalid(format!("{user} is not a user of {tenant}")));
        }
        if reads::group(self.groups.store(), tenant, group)?.is_none() {
            return Err(TelexError::not_found(format!("no group {group} in {tenant}")));
        }
        let change =
            Command::SetGroupMember { tenant: tenant.clone(), group: group.clone(), user: user.clone(), member };
        let action = if member { "group.member.add" } else { "group.member.remove" };
        self.audited(tenant, change, entry(actor, action, format!("{group} {user}"), String::new(), String::new()))
            .await
    }

    /// A tenant's groups with their direct members, by name.
    pub fn list_groups(&self, tenant: &Domain) -> Result<Vec<GroupListing>, TelexError> {
        let data = reads::directory(self.groups.store(), tenant)?;
        let mut out: Vec<GroupListing> = data
            .groups
            .into_iter()
            .map(|record| {
                let members = data.members.iter().filter(|(g, _)| *g == record.name).map(|(_, u)| u.clone()).collect();
                GroupListing { record, members }
            })
            .collect();
        out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(out)
    }

    pub fn user_attributes(&self, user: &UserJid) -> Result<Option<UserAttributes>, TelexError> {
        reads::user_attributes(self.groups.store(), user)
    }

    pub async fn set_user_attributes(
        &self,
        actor: &str,
        user: &UserJid,
        attributes: UserAttributes,
    ) -> Result<(), TelexError> {
        attributes.validate()?;
        if let Some(m) = &attributes.manager {
            if m.domain() != user.domain() {
                return Err(TelexError::invalid(format!("manager {m} is not a user of {}", user.domain())));
            }
        }
        let before = self.user_attributes(user)?;
        let mut attributes = attributes;
        if let Some(b) = before.as_ref().filter(|_| attributes.source == Source::Local) {
            // A synced user stays synced (the next sync sets the attributes from the server).
            attributes.source = b.source.clone();
        }
        let before = before.map(|a| format!("{a:?}")).unwrap_or_default();
        let after = format!("{attributes:?}");
        let change = Command::SetUserAttributes { user: user.clone(), attributes: Some(attributes) };
        self.audited(user.domain(), change, entry(actor, "user.set", user.to_string(), before, after)).await
    }

    /// Compiles `text` against the tenant's directory now: the checks `set_policy` makes.
    pub fn check_policy(&self, tenant: &Domain, text: &str) -> Result<TenantPolicy, TelexError> {
        TenantPolicy::compile(tenant.clone(), 0, text, self.view(tenant)?)
            .map_err(|e| TelexError::invalid(e.to_string()))
    }

    /// What `text` would cut if it replaced the policy in force: roster contacts whose
    /// presence or messages it would stop, shared-roster contacts it would hide, room members
    /// it would keep apart, and users with more of `sessions` (user, devices connected) than
    /// it allows. One line each, at most `MAX_IMPACT` (then a count of the rest).
    pub async fn policy_impact(
        &self,
        tenant: &Domain,
        text: &str,
        sessions: &[(UserJid, usize)],
    ) -> Result<Vec<String>, TelexError> {
        let new = self.check_policy(tenant, text)?;
        let old_text = reads::policy(self.groups.store(), tenant, None)?.map(|p| p.text).unwrap_or_default();
        let old = self.check_policy(tenant, &old_text)?;
        let newly = |s: &UserJid, a: PolicyAction, o: &UserJid| match (old.check(s, a, o), new.check(s, a, o)) {
            (Ok(()), Err(r)) => Some(r.rule),
            _ => None,
        };
        let mut lines = Vec::new();
        for account in self.users(tenant.as_str())? {
            let user = &account.jid;
            let shard = self.groups.shard_of(user);
            let roster: Vec<(UserJid, RosterItem)> = self.groups.read(shard, Query::Roster(user.clone())).await?;
            for (contact, item) in &roster {
                if item.subscription.has_to() {
                    if let Some(rule) = newly(user, PolicyAction::See, contact) {
                        lines.push(format!("roster: {user} would no longer see {contact}'s presence (rule {rule})"));
                    }
                }
                if let Some(rule) = newly(user, PolicyAction::Message, contact) {
                    lines.push(format!("roster: {user} could no longer message {contact} (rule {rule})"));
                }
            }
            let after = new.shared_roster(user);
            for contact in old.shared_roster(user).keys().filter(|c| !after.contains_key(*c)) {
                lines.push(format!("shared roster: {contact} would leave {user}'s roster"));
            }
        }
        for shard in telex_types::shard::shard_groups(self.groups.shards()) {
            let rooms: Vec<RoomRecord> = self.groups.read(shard, Query::Rooms(tenant.clone())).await?;
            for room in rooms {
                let members: Vec<&UserJid> =
                    room.affiliations.iter().filter(|(_, a)| **a != Affiliation::Outcast).map(|(u, _)| u).collect();
                for (i, a) in members.iter().enumerate() {
                    for b in members.iter().skip(i + 1) {
                        if let Some(rule) = newly(a, PolicyAction::JoinRoom, b) {
                            lines.push(format!(
                                "room {}: members {a} and {b} would be kept apart (rule {rule}); they stay members until removed",
                                room.room
                            ));
                        }
                    }
                }
            }
        }
        for (user, connected) in sessions {
            if let Some(max) = new.max_sessions(user).filter(|m| (*m as usize) < *connected) {
                lines.push(format!(
                    "sessions: {user} has {connected} devices connected here, the new limit is {max} (new sessions are refused until fewer are)"
                ));
            }
        }
        if lines.len() > MAX_IMPACT {
            let more = lines.len() - MAX_IMPACT;
            lines.truncate(MAX_IMPACT);
            lines.push(format!("... and {more} more"));
        }
        Ok(lines)
    }

    /// Stores a new version of the tenant's policy, if it compiles; its number.
    pub async fn set_policy(&self, actor: &str, tenant: &Domain, text: &str, comment: &str) -> Result<u64, TelexError> {
        self.require_tenant(tenant)?;
        self.check_policy(tenant, text)?;
        let before = reads::policy(self.groups.store(), tenant, None)?;
        let policy = PolicyVersion {
            version: 0,
            text: text.to_string(),
            by: actor.to_string(),
            at: now_ms(),
            comment: comment.to_string(),
        };
        let change = Command::SetPolicy { tenant: tenant.clone(), policy };
        let next = before.as_ref().map_or(1, |p| p.version + 1);
        let b = before.map(|p| p.text).unwrap_or_default();
        self.audited(tenant, change, entry(actor, "policy.set", format!("version {next}"), b, text.to_string()))
            .await?;
        Ok(reads::policy(self.groups.store(), tenant, None)?.map_or(next, |p| p.version))
    }

    /// Version `version` of the policy, or the newest.
    pub fn policy(&self, tenant: &Domain, version: Option<u64>) -> Result<Option<PolicyVersion>, TelexError> {
        reads::policy(self.groups.store(), tenant, version)
    }

    pub fn policy_history(&self, tenant: &Domain) -> Result<Vec<PolicyVersion>, TelexError> {
        reads::policy_history(self.groups.store(), tenant)
    }

    /// Puts version `version`'s text back in force, as a new version.
    pub async fn rollback_policy(&self, actor: &str, tenant: &Domain, version: u64) -> Result<u64, TelexError> {
        let Some(old) = self.policy(tenant, Some(version))? else {
            return Err(TelexError::not_found(format!("{tenant} has no policy version {version}")));
        };
        self.set_policy(actor, tenant, &old.text, &format!("rollback to version {version}")).await
    }

    /// What the tenant's policy (or `text`, a candidate) decides for `from` doing `action` to
    /// `to`, and why.
    pub fn test_policy(
        &self,
        from: &UserJid,
        action: &str,
        to: &UserJid,
        text: Option<&str>,
    ) -> Result<Explanation, TelexError> {
        let tenant = from.domain();
        if to.domain() != tenant {
            return Err(TelexError::invalid(format!("{to} is not a user of {tenant}")));
        }
        let Some(action) = PolicyAction::parse(action) else {
            let known: Vec<&str> = ACTIONS.iter().map(|a| a.as_str()).collect();
            return Err(TelexError::invalid(format!("unknown action {action:?} (one of {})", known.join(", "))));
        };
        let text = match text {
            Some(t) => t.to_string(),
            None => self.policy(tenant, None)?.map(|p| p.text).unwrap_or_default(),
        };
        Ok(self.check_policy(tenant, &text)?.explain(from, action, to))
    }

    /// Up to `limit` audit entries of `tenant` (`None`: the cluster's own) after `after`.
    pub fn audit(&self, tenant: Option<&Domain>, after: u64, limit: usize) -> Result<Vec<AuditEntry>, TelexError> {
        reads::audit(self.groups.store(), tenant, after, limit)
    }
}

/// An audit entry (its number and time are assigned when it is written).
fn entry(actor: &str, action: &str, target: String, before: String, after: String) -> AuditEntry {
    AuditEntry { seq: 0, at: 0, actor: actor.to_string(), action: action.to_string(), target, before, after }
}

/// A group's record as the audit trail shows it.
fn describe(g: &GroupRecord) -> String {
    let list = |s: &BTreeSet<GroupName>| s.iter().map(GroupName::as_str).collect::<Vec<_>>().join(",");
    let source = match &g.source {
        Source::Local => String::new(),
        Source::Ldap(dn) => format!(" ldap={dn}"),
    };
    format!("name={:?} subgroups=[{}] shown_to=[{}]{source}", g.display_name, list(&g.subgroups), list(&g.shown_to))
}
