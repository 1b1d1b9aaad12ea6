//! `telex group …`, `telex user set`, `telex policy …`, `telex audit …`: the company directory,
//! the tenant's policy file and the admin audit trail, through the admin API.

use clap::Subcommand;
use serde::Serialize;
use telex_proto::v1 as pb;
use telex_proto::v1::directory_client::DirectoryClient;

use crate::output::{admin_channel, emit, status_line, when, AdminChannel};
use crate::{Cli, CliResult};

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create a group (NAME@DOMAIN), or change one.
    Add {
        group: String,
        /// Shown name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Groups whose members are members of this one too (repeat, or comma-separated).
        #[arg(long, value_delimiter = ',')]
        subgroups: Vec<String>,
        /// Groups that see this group's members in their rosters, with presence.
        #[arg(long, value_delimiter = ',')]
        shown_to: Vec<String>,
    },
    /// Remove a group (refused while the policy names it).
    Remove { group: String },
    /// The groups of a tenant.
    List { domain: String },
    /// One group and its members.
    Show { group: String },
    /// Group members.
    #[command(subcommand)]
    Member(MemberCmd),
}

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    Add { group: String, jid: String },
    Remove { group: String, jid: String },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Print the policy in force (or version N).
    Get {
        domain: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Check and store FILE as the new version (with --dry-run, only check it).
    Set {
        domain: String,
        file: String,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// How FILE differs from the policy in force.
    Diff { domain: String, file: String },
    /// Every version: who set it, when, why.
    History { domain: String },
    /// Put version VERSION back in force (as a new version).
    Rollback { domain: String, version: u64 },
    /// What the policy decides for --from doing --action to --to, and which rule decides.
    Test {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// see, message, join_room, create_room, invite, attach, e2ee or external.
        #[arg(long, default_value = "message")]
        action: String,
        /// Test a candidate file instead of the policy in force.
        #[arg(long)]
        file: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Admin actions, oldest first: a tenant's, or (no DOMAIN) the cluster's own.
    List {
        domain: Option<String>,
        /// Only entries of the last DURATION (e.g. 1h, 7d).
        #[arg(long)]
        since: Option<humantime::Duration>,
        /// Only this admin's entries.
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum DirectoryCmd {
    /// Read the tenant's LDAP server now and apply what changed (with --dry-run, only list it).
    Sync {
        domain: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// How each tenant's last LDAP sync went.
    Status { domain: Option<String> },
}

async fn client(cli: &Cli) -> Result<DirectoryClient<AdminChannel>, String> {
    Ok(DirectoryClient::new(admin_channel(&cli.admin, cli.admin_token.as_deref()).await?))
}

/// `NAME@DOMAIN` → (domain, name).
fn group_ref(s: &str) -> Result<(String, String), String> {
    match s.rsplit_once('@') {
        Some((name, domain)) if !name.is_empty() && !domain.is_empty() => Ok((domain.to_string(), name.to_string())),
        _ => Err(format!("invalid group {s:?}: expected NAME@DOMAIN")),
    }
}

fn read(file: &str) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))
}

#[derive(Serialize)]
struct GroupOut {
    name: String,
    display_name: String,
    description: String,
    subgroups: Vec<String>,
    shown_to: Vec<String>,
    members: Vec<String>,
    source: String,
}

impl From<pb::DirectoryGroup> for GroupOut {
    fn from(g: pb::DirectoryGroup) -> Self {
        GroupOut {
            name: g.name,
            display_name: g.display_name,
            description: g.description,
            subgroups: g.subgroups,
            shown_to: g.shown_to,
            members: g.members,
            source: g.source,
        }
    }
}

fn group_line(g: &GroupOut) -> String {
    let mut s = format!("{:<24} {:<24} {} members", g.name, g.display_name, g.members.len());
    if !g.subgroups.is_empty() {
        s.push_str(&format!("  includes {}", g.subgroups.join(",")));
    }
    if !g.shown_to.is_empty() {
        s.push_str(&format!("  shown to {}", g.shown_to.join(",")));
    }
    s
}

pub async fn group(cli: &Cli, cmd: &GroupCmd) -> CliResult {
    let mut c = client(cli).await?;
    match cmd {
        GroupCmd::Add { group, name, description, subgroups, shown_to } => {
            let (tenant, gname) = group_ref(group)?;
            // A change keeps what is not given.
            let current = c
                .list_groups(pb::TenantRef { tenant: tenant.clone() })
                .await
                .map_err(status_line)?
                .into_inner()
                .groups
                .into_iter()
                .find(|g| g.name == gname.to_ascii_lowercase());
            let keep = |given: &Option<String>, old: Option<&String>| {
                given.clone().or_else(|| old.cloned()).unwrap_or_default()
            };
            let list = |given: &Vec<String>, old: Option<&Vec<String>>| {
                if given.is_empty() {
                    old.cloned().unwrap_or_default()
                } else {
                    given.clone()
                }
            };
            let req = pb::PutGroupRequest {
                display_name: keep(name, current.as_ref().map(|g| &g.display_name)),
                description: keep(description, current.as_ref().map(|g| &g.description)),
                subgroups: list(subgroups, current.as_ref().map(|g| &g.subgroups)),
                shown_to: list(shown_to, current.as_ref().map(|g| &g.shown_to)),
                tenant,
                name: gname,
            };
            let out = GroupOut::from(c.put_group(req).await.map_err(status_line)?.into_inner());
            emit(cli.json, &out, || group_line(&out));
        }
        GroupCmd::Remove { group } => {
            let (tenant, name) = group_ref(group)?;
            c.remove_group(pb::GroupRef { tenant, name }).await.map_err(status_line)?;
            emit(cli.json, group, || format!("group {group} removed"));
        }
        GroupCmd::List { domain } => {
            let groups = c.list_groups(pb::TenantRef { tenant: domain.clone() }).await.map_err(status_line)?;
            let out: Vec<GroupOut> = groups.into_inner().groups.into_iter().map(GroupOut::from).collect();
            emit(cli.json, &out, || out.iter().map(group_line).collect::<Vec<_>>().join("\n"));
        }
        GroupCmd::Show { group } => {
            let (tenant, name) = group_ref(group)?;
            let groups = c.list_groups(pb::TenantRef { tenant }).await.map_err(status_line)?.into_inner().groups;
            let name = name.to_ascii_lowercase();
            let Some(g) = groups.into_iter().find(|g| g.name == name) else {
                return Err(format!("not found: no group {group}"));
            };
            let out = GroupOut::from(g);
            emit(cli.json, &out, || {
                let mut s = group_line(&out);
                for m in &out.members {
                    s.push_str(&format!("\n  {m}"));
                }
                s
            });
        }
        GroupCmd::Member(MemberCmd::Add { group, jid }) | GroupCmd::Member(MemberCmd::Remove { group, jid }) => {
            let member = matches!(cmd, GroupCmd::Member(MemberCmd::Add { .. }));
            let (tenant, name) = group_ref(group)?;
            let req = pb::GroupMemberRequest { tenant, group: name, jid: jid.clone(), member };
            c.set_group_member(req).await.map_err(status_line)?;
            let what = if member { "added to" } else { "removed from" };
            emit(cli.json, jid, || format!("{jid} {what} {group}"));
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct UserAttributesOut {
    jid: String,
    display_name: String,
    title: String,
    department: String,
    manager: String,
    email: String,
    source: String,
    groups: Vec<String>,
}

impl From<pb::DirectoryUser> for UserAttributesOut {
    fn from(u: pb::DirectoryUser) -> Self {
        UserAttributesOut {
            jid: u.jid,
            display_name: u.display_name,
            title: u.title,
            department: u.department,
            manager: u.manager,
            email: u.email,
            source: u.source,
            groups: u.groups,
        }
    }
}

fn attributes_line(out: &UserAttributesOut) -> String {
    format!(
        "{} name={:?} title={:?} department={:?} manager={:?} email={:?} groups={} source={}",
        out.jid,
        out.display_name,
        out.title,
        out.department,
        out.manager,
        out.email,
        out.groups.join(","),
        out.source
    )
}

/// `telex user set JID --title ...`: the directory's attributes of a user.
pub async fn set_user(cli: &Cli, req: pb::UserAttributesRequest) -> CliResult {
    let u = client(cli).await?.set_user_attributes(req).await.map_err(status_line)?.into_inner();
    let out = UserAttributesOut::from(u);
    emit(cli.json, &out, || attributes_line(&out));
    Ok(())
}

/// What the directory says of `jid` (for `telex user show`): JSON and a line.
pub async fn user_attributes(cli: &Cli, jid: &str) -> Result<(serde_json::Value, String), String> {
    let req = pb::UserRef { jid: jid.to_string() };
    let u = client(cli).await?.get_user_attributes(req).await.map_err(status_line)?.into_inner();
    let out = UserAttributesOut::from(u);
    Ok((serde_json::to_value(&out).unwrap_or_default(), attributes_line(&out)))
}

#[derive(Serialize)]
struct PolicyOut {
    version: u64,
    by: String,
    at_ms: u64,
    comment: String,
    text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    impact: Vec<String>,
}

impl From<pb::PolicyInfo> for PolicyOut {
    fn from(p: pb::PolicyInfo) -> Self {
        PolicyOut { version: p.version, by: p.by, at_ms: p.at_ms, comment: p.comment, text: p.text, impact: p.impact }
    }
}

pub async fn policy(cli: &Cli, cmd: &PolicyCmd) -> CliResult {
    let mut c = client(cli).await?;
    match cmd {
        PolicyCmd::Get { domain, version } => {
            let req = pb::GetPolicyRequest { tenant: domain.clone(), version: version.unwrap_or(0) };
            let out = PolicyOut::from(c.get_policy(req).await.map_err(status_line)?.into_inner());
            if out.version == 0 && !cli.json {
                println!("# {domain} has no policy: the built-in rules apply");
                return Ok(());
            }
            emit(cli.json, &out, || out.text.trim_end().to_string());
        }
        PolicyCmd::Set { domain, file, dry_run, comment } => {
            let req = pb::SetPolicyRequest {
                tenant: domain.clone(),
                text: read(file)?,
                comment: comment.clone(),
                dry_run: *dry_run,
            };
            let out = PolicyOut::from(
                c.set_policy(req).await.map_err(|s| format!("{file}: {}", status_line(s)))?.into_inner(),
            );
            emit(cli.json, &out, || {
                if *dry_run {
                    let mut lines =
                        vec![format!("{file}: the policy compiles against {domain}'s directory (not applied)")];
                    match out.impact.len() {
                        0 => lines.push("it would cut nothing that exists now".into()),
                        n => {
                            lines.push(format!("it would cut {n}:"));
                            lines.extend(out.impact.iter().map(|l| format!("  {l}")));
                        }
                    }
                    lines.join("\n")
                } else {
                    format!("policy version {} of {domain} in force", out.version)
                }
            });
        }
        PolicyCmd::Diff { domain, file } => {
            let req = pb::GetPolicyRequest { tenant: domain.clone(), version: 0 };
            let current = c.get_policy(req).await.map_err(status_line)?.into_inner();
            let candidate = read(file)?;
            let diff = similar::TextDiff::from_lines(current.text.as_str(), candidate.as_str());
            let text = diff.unified_diff().header(&format!("{domain} version {}", current.version), file).to_string();
            if cli.json {
                emit(true, &text, String::new);
            } else if text.is_empty() {
                println!("no difference from version {}", current.version);
            } else {
                print!("{text}");
            }
        }
        PolicyCmd::History { domain } => {
            let list = c.policy_history(pb::TenantRef { tenant: domain.clone() }).await.map_err(status_line)?;
            let out: Vec<PolicyOut> = list.into_inner().versions.into_iter().map(PolicyOut::from).collect();
            emit(cli.json, &out, || {
                out.iter()
                    .map(|p| format!("{:>4}  {}  {:<16} {}", p.version, when(p.at_ms), p.by, p.comment))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        PolicyCmd::Rollback { domain, version } => {
            let req = pb::GetPolicyRequest { tenant: domain.clone(), version: *version };
            let out = PolicyOut::from(c.rollback_policy(req).await.map_err(status_line)?.into_inner());
            emit(cli.json, &out, || format!("version {version} is in force again, as version {}", out.version));
        }
        PolicyCmd::Test { from, to, action, file } => {
            let text = file.as_deref().map(read).transpose()?;
            let req = pb::TestPolicyRequest { from: from.clone(), to: to.clone(), action: action.clone(), text };
            let d = c.test_policy(req).await.map_err(status_line)?.into_inner();
            #[derive(Serialize)]
            struct DecisionOut {
                allowed: bool,
                rule: String,
                description: String,
            }
            let out = DecisionOut { allowed: d.allowed, rule: d.rule, description: d.description };
            emit(cli.json, &out, || {
                let verdict = if out.allowed { "allow" } else { "deny" };
                let why = if out.description.is_empty() { String::new() } else { format!(": {}", out.description) };
                format!("{verdict} ({} {action} {}) by rule {}{why}", from, to, out.rule)
            });
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct AuditOut {
    seq: u64,
    at_ms: u64,
    actor: String,
    action: String,
    target: String,
    before: String,
    after: String,
}

pub async fn audit(cli: &Cli, cmd: &AuditCmd) -> CliResult {
    let AuditCmd::List { domain, since, actor, limit } = cmd;
    let since_ms = since.map_or(0, |d| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.saturating_sub(*d.as_ref()).as_millis() as u64
    });
    let req = pb::ListAuditRequest {
        tenant: domain.clone().unwrap_or_default(),
        after: 0,
        limit: *limit,
        actor: actor.clone().unwrap_or_default(),
        since_ms,
    };
    let list = client(cli).await?.list_audit(req).await.map_err(status_line)?.into_inner();
    let out: Vec<AuditOut> = list
        .entries
        .into_iter()
        .map(|e| AuditOut {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            target: e.target,
            before: e.before,
            after: e.after,
        })
        .collect();
    emit(cli.json, &out, || {
        out.iter()
            .map(|e| format!("{:>5}  {}  {:<12} {:<20} {}", e.seq, when(e.at_ms), e.actor, e.action, e.target))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

#[derive(Serialize)]
struct SyncOut {
    applied: bool,
    users: u32,
    groups: u32,
    changes: Vec<String>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct SyncStatusOut {
    tenant: String,
    url: String,
    last_attempt_ms: u64,
    last_success_ms: u64,
    last_error: String,
    users: u32,
    groups: u32,
    changes: u32,
    interval_secs: u64,
    password_bind: bool,
}

pub async fn directory(cli: &Cli, cmd: &DirectoryCmd) -> CliResult {
    let mut c = client(cli).await?;
    match cmd {
        DirectoryCmd::Sync { domain, dry_run } => {
            let req = pb::SyncDirectoryRequest { tenant: domain.clone(), dry_run: *dry_run };
            let r = c.sync_directory(req).await.map_err(status_line)?.into_inner();
            let out = SyncOut {
                applied: r.applied,
                users: r.users,
                groups: r.groups,
                changes: r.changes,
                warnings: r.warnings,
            };
            emit(cli.json, &out, || {
                let mut lines: Vec<String> = out.changes.clone();
                lines.extend(out.warnings.iter().map(|w| format!("! {w}")));
                let verb = match (out.applied, *dry_run) {
                    (true, _) => "applied",
                    (false, true) => "would apply (dry run)",
                    (false, false) => "nothing to change:",
                };
                lines.push(format!(
                    "{} changes {verb} from {} users and {} groups",
                    out.changes.len(),
                    out.users,
                    out.groups
                ));
                lines.join("\n")
            });
        }
        DirectoryCmd::Status { domain } => {
            let req = pb::TenantRef { tenant: domain.clone().unwrap_or_default() };
            let list = c.directory_sync_status(req).await.map_err(status_line)?.into_inner();
            let out: Vec<SyncStatusOut> = list
                .tenants
                .into_iter()
                .map(|s| SyncStatusOut {
                    tenant: s.tenant,
                    url: s.url,
                    last_attempt_ms: s.last_attempt_ms,
                    last_success_ms: s.last_success_ms,
                    last_error: s.last_error,
                    users: s.users,
                    groups: s.groups,
                    changes: s.changes,
                    interval_secs: s.interval_secs,
                    password_bind: s.password_bind,
                })
                .collect();
            emit(cli.json, &out, || {
                if out.is_empty() {
                    return "no tenant syncs from LDAP".into();
                }
                out.iter()
                    .map(|s| {
                        let last = match (s.last_success_ms, s.last_error.is_empty()) {
                            (0, true) => "never synced".to_string(),
                            (at, true) => format!("synced {} ({} users, {} groups)", when(at), s.users, s.groups),
                            (0, false) => format!("FAILING, never synced: {}", s.last_error),
                            (at, false) => format!(
                                "FAILING since {}: {} (last good {})",
                                when(s.last_attempt_ms),
                                s.last_error,
                                when(at)
                            ),
                        };
                        format!("{}  {}  {last}", s.tenant, s.url)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}
