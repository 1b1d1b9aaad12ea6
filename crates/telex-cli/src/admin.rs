//! `telex tenant …`, `telex user …`, `telex session …`, `telex status`: the admin API.

use clap::Subcommand;
use serde::Serialize;
use telex_proto::v1 as pb;
use telex_proto::v1::admin_client::AdminClient;

use crate::output::{admin_channel, emit, status_line, when, AdminChannel};
use crate::{Cli, CliResult};

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant.
    Add { domain: String },
    /// List tenants.
    List,
    /// Show a tenant's limits, or change them (flags given replace those overrides; the rest stay).
    Limits {
        domain: String,
        /// Largest message body in bytes.
        #[arg(long)]
        max_message_bytes: Option<u32>,
        /// Messages a user may send per second (bursts of twice as many).
        #[arg(long)]
        sends_per_second: Option<u32>,
        /// Devices a user may have connected at once.
        #[arg(long)]
        sessions_per_user: Option<u32>,
        /// Drop every override first: the node's defaults apply.
        #[arg(long)]
        reset: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user.
    Add { jid: String },
    /// List the users of a tenant.
    List { domain: String },
    /// Show one user.
    Show { jid: String },
    /// Delete a user and revoke their sessions.
    Remove { jid: String },
    /// Stop a user from logging in and revoke their sessions.
    Disable { jid: String },
    /// Allow a disabled user to log in again.
    Enable { jid: String },
    /// Set a new password; revokes existing sessions.
    Passwd { jid: String },
    /// Revoke every session token of a user.
    RevokeTokens { jid: String },
    /// Set a user's directory attributes (those not given keep their values).
    Set {
        jid: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        department: Option<String>,
        /// The manager's JID (empty: none).
        #[arg(long)]
        manager: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
}

pub(crate) async fn client(cli: &Cli) -> Result<AdminClient<AdminChannel>, String> {
    Ok(AdminClient::new(admin_channel(&cli.admin, cli.admin_token.as_deref()).await?))
}

#[derive(Serialize)]
struct TenantOut {
    domain: String,
    created_at_ms: u64,
    /// Overrides only; absent fields use the node's defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_bytes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sends_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions_per_user: Option<u32>,
}

impl From<pb::Tenant> for TenantOut {
    fn from(t: pb::Tenant) -> Self {
        let l = t.limits.unwrap_or_default();
        TenantOut {
            domain: t.domain,
            created_at_ms: t.created_at_ms,
            max_message_bytes: l.max_message_bytes,
            sends_per_second: l.sends_per_second,
            sessions_per_user: l.sessions_per_user,
        }
    }
}

impl TenantOut {
    fn limits_line(&self) -> String {
        let show = |v: Option<u32>| v.map_or("default".to_string(), |v| v.to_string());
        format!(
            "max_message_bytes={} sends_per_second={} sessions_per_user={}",
            show(self.max_message_bytes),
            show(self.sends_per_second),
            show(self.sessions_per_user)
        )
    }
}

#[derive(Serialize)]
struct UserOut {
    jid: String,
    disabled: bool,
    created_at_ms: u64,
    password_changed_at_ms: u64,
}

impl From<pb::User> for UserOut {
    fn from(u: pb::User) -> Self {
        UserOut {
            jid: u.jid,
            disabled: u.disabled,
            created_at_ms: u.created_at_ms,
            password_changed_at_ms: u.password_changed_at_ms,
        }
    }
}

fn user_line(u: &UserOut) -> String {
    let state = if u.disabled { "disabled" } else { "active" };
    format!("{:<40} {:<8} created {}", u.jid, state, when(u.created_at_ms))
}

pub async fn tenant(cli: &Cli, cmd: &TenantCmd) -> CliResult {
    let mut c = client(cli).await?;
    match cmd {
        TenantCmd::Add { domain } => {
            let t =
                c.add_tenant(pb::AddTenantRequest { domain: domain.clone() }).await.map_err(status_line)?.into_inner();
            let out = TenantOut::from(t);
            emit(cli.json, &out, || format!("tenant {} added", out.domain));
        }
        TenantCmd::List => {
            let list = c.list_tenants(pb::ListTenantsRequest {}).await.map_err(status_line)?.into_inner();
            let out: Vec<TenantOut> = list.tenants.into_iter().map(TenantOut::from).collect();
            emit(cli.json, &out, || {
                out.iter()
                    .map(|t| format!("{:<40} created {}  {}", t.domain, when(t.created_at_ms), t.limits_line()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        TenantCmd::Limits { domain, max_message_bytes, sends_per_second, sessions_per_user, reset } => {
            let list = c.list_tenants(pb::ListTenantsRequest {}).await.map_err(status_line)?.into_inner();
            let current = list.tenants.into_iter().find(|t| &t.domain == domain);
            let current = current.ok_or_else(|| format!("not found: no such tenant {domain}"))?;
            let changes = max_message_bytes.is_some() || sends_per_second.is_some() || sessions_per_user.is_some();
            let t = if changes || *reset {
                let mut l = if *reset { pb::TenantLimits::default() } else { current.limits.unwrap_or_default() };
                l.max_message_bytes = max_message_bytes.or(l.max_message_bytes);
                l.sends_per_second = sends_per_second.or(l.sends_per_second);
                l.sessions_per_user = sessions_per_user.or(l.sessions_per_user);
                let req = pb::SetTenantLimitsRequest { domain: domain.clone(), limits: Some(l) };
                c.set_tenant_limits(req).await.map_err(status_line)?.into_inner()
            } else {
                current
            };
            let out = TenantOut::from(t);
            emit(cli.json, &out, || format!("{}: {}", out.domain, out.limits_line()));
        }
    }
    Ok(())
}

pub async fn user(cli: &Cli, cmd: &UserCmd) -> CliResult {
    let mut c = client(cli).await?;
    let show = |u: pb::User, verb: &str| {
        let out = UserOut::from(u);
        let verb = verb.to_string();
        emit(cli.json, &out, || format!("user {} {verb}", out.jid));
    };
    match cmd {
        UserCmd::Add { jid } => {
            let req = pb::AddUserRequest { jid: jid.clone(), password: cli.session.password()? };
            show(c.add_user(req).await.map_err(status_line)?.into_inner(), "added");
        }
        UserCmd::List { domain } => {
            let list =
                c.list_users(pb::ListUsersRequest { domain: domain.clone() }).await.map_err(status_line)?.into_inner();
            let out: Vec<UserOut> = list.users.into_iter().map(UserOut::from).collect();
            emit(cli.json, &out, || out.iter().map(user_line).collect::<Vec<_>>().join("\n"));
        }
        UserCmd::Show { jid } => {
            let u = c.get_user(pb::UserRef { jid: jid.clone() }).await.map_err(status_line)?.into_inner();
            let out = UserOut::from(u);
            let (directory, line) = crate::directory::user_attributes(cli, jid).await?;
            let mut json = serde_json::to_value(&out).unwrap_or_default();
            json["directory"] = directory;
            emit(cli.json, &json, || format!("{}\n  directory: {line}", user_line(&out)));
        }
        UserCmd::Remove { jid } => {
            c.remove_user(pb::UserRef { jid: jid.clone() }).await.map_err(status_line)?;
            emit(cli.json, &serde_json::json!({ "removed": jid }), || format!("user {jid} removed"));
        }
        UserCmd::Disable { jid } | UserCmd::Enable { jid } => {
            let disabled = matches!(cmd, UserCmd::Disable { .. });
            let req = pb::SetUserDisabledRequest { jid: jid.clone(), disabled };
            let u = c.set_user_disabled(req).await.map_err(status_line)?.into_inner();
            show(u, if disabled { "disabled" } else { "enabled" });
        }
        UserCmd::Passwd { jid } => {
            let req = pb::SetPasswordRequest { jid: jid.clone(), password: cli.session.password()? };
            show(c.set_password(req).await.map_err(status_line)?.into_inner(), "password changed");
        }
        UserCmd::Set { jid, display_name, title, department, manager, email } => {
            let req = pb::UserAttributesRequest {
                jid: jid.clone(),
                display_name: display_name.clone(),
                title: title.clone(),
                department: department.clone(),
                manager: manager.clone(),
                email: email.clone(),
            };
            return crate::directory::set_user(cli, req).await;
        }
        UserCmd::RevokeTokens { jid } => {
            let r = c.revoke_tokens(pb::UserRef { jid: jid.clone() }).await.map_err(status_line)?.into_inner();
            emit(cli.json, &serde_json::json!({ "jid": jid, "revoked": r.revoked }), || {
                format!("{} session token(s) of {jid} revoked", r.revoked)
            });
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Create an admin identity (or give it a new token); prints its token, shown only now.
    Add {
        name: String,
        /// super-admin, tenant-admin or auditor.
        #[arg(long)]
        role: String,
        /// The tenant a tenant admin or auditor is limited to (an auditor without one reads
        /// every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove an admin identity (its token stops working).
    Remove { name: String },
    /// Every admin identity.
    List,
    /// Who the admin token in use belongs to.
    Whoami,
}

#[derive(Serialize)]
struct AdminOut {
    name: String,
    role: String,
    tenant: String,
    created_at_ms: u64,
    by: String,
}

impl From<pb::AdminInfo> for AdminOut {
    fn from(a: pb::AdminInfo) -> Self {
        AdminOut { name: a.name, role: a.role, tenant: a.tenant, created_at_ms: a.created_at_ms, by: a.by }
    }
}

fn admin_line(a: &AdminOut) -> String {
    let scope = if a.tenant.is_empty() { "every tenant".to_string() } else { a.tenant.clone() };
    format!("{:<24} {:<13} {scope}", a.name, a.role)
}

pub async fn admins(cli: &Cli, cmd: &AdminCmd) -> CliResult {
    let mut c = client(cli).await?;
    match cmd {
        AdminCmd::Add { name, role, tenant } => {
            let req = pb::AddAdminRequest {
                name: name.clone(),
                role: role.clone(),
                tenant: tenant.clone().unwrap_or_default(),
            };
            let r = c.add_admin(req).await.map_err(status_line)?.into_inner();
            let admin = AdminOut::from(r.admin.unwrap_or_default());
            let token = r.token;
            emit(cli.json, &serde_json::json!({ "admin": &admin, "token": &token }), || {
                format!("{}\ntoken (shown only now): {token}", admin_line(&admin))
            });
        }
        AdminCmd::Remove { name } => {
            c.remove_admin(pb::AdminRef { name: name.clone() }).await.map_err(status_line)?;
            emit(cli.json, &serde_json::json!({ "removed": name }), || format!("admin {name} removed"));
        }
        AdminCmd::List => {
            let list = c.list_admins(pb::ListAdminsRequest {}).await.map_err(status_line)?.into_inner();
            let out: Vec<AdminOut> = list.admins.into_iter().map(AdminOut::from).collect();
            emit(cli.json, &out, || out.iter().map(admin_line).collect::<Vec<_>>().join("\n"));
        }
        AdminCmd::Whoami => {
            let a = AdminOut::from(c.who_am_i(pb::AdminWhoAmIRequest {}).await.map_err(status_line)?.into_inner());
            emit(cli.json, &a, || admin_line(&a));
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum SessionCmd {
    /// List connected devices (of one user, or all).
    List { jid: Option<String> },
    /// Disconnect one device: JID/DEVICE.
    Kick { target: String },
}

#[derive(Serialize)]
struct SessionOut {
    jid: String,
    device: String,
    connected_at_ms: u64,
}

pub async fn session(cli: &Cli, cmd: &SessionCmd) -> CliResult {
    let mut c = client(cli).await?;
    match cmd {
        SessionCmd::List { jid } => {
            let req = pb::ListSessionsRequest { jid: jid.clone().unwrap_or_default() };
            let list = c.list_sessions(req).await.map_err(status_line)?.into_inner();
            let out: Vec<SessionOut> = list
                .sessions
                .into_iter()
                .map(|s| SessionOut { jid: s.jid, device: s.device, connected_at_ms: s.connected_at_ms })
                .collect();
            emit(cli.json, &out, || {
                out.iter()
                    .map(|s| format!("{:<48} connected {}", format!("{}/{}", s.jid, s.device), when(s.connected_at_ms)))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        SessionCmd::Kick { target } => {
            let (jid, device) =
                target.split_once('/').ok_or_else(|| format!("invalid argument: {target:?} is not JID/DEVICE"))?;
            let req = pb::KickSessionRequest { jid: jid.to_string(), device: device.to_string() };
            c.kick_session(req).await.map_err(status_line)?;
            emit(cli.json, &serde_json::json!({ "kicked": target }), || format!("{target} disconnected"));
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct GroupOut {
    group: u32,
    role: String,
    leader: u64,
    term: u64,
    last_log_index: u64,
    applied_index: u64,
    snapshot_index: u64,
    purged_index: u64,
}

#[derive(Serialize)]
struct StatusOut {
    node_id: u64,
    shards: u32,
    version: String,
    groups: Vec<GroupOut>,
}

pub async fn status(cli: &Cli) -> CliResult {
    let s = client(cli).await?.node_status(pb::NodeStatusRequest {}).await.map_err(status_line)?.into_inner();
    let out = StatusOut {
        node_id: s.node_id,
        shards: s.shards,
        version: s.version,
        groups: s
            .groups
            .into_iter()
            .map(|g| GroupOut {
                group: g.group,
                role: g.role,
                leader: g.leader,
                term: g.term,
                last_log_index: g.last_log_index,
                applied_index: g.applied_index,
                snapshot_index: g.snapshot_index,
                purged_index: g.purged_index,
            })
            .collect(),
    };
    emit(cli.json, &out, || {
        let mut lines = vec![
            format!("node {}  telex {}  shards {}", out.node_id, out.version, out.shards),
            format!(
                "{:<6} {:<10} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10}",
                "group", "role", "leader", "term", "last_log", "applied", "snapshot", "purged"
            ),
        ];
        for g in &out.groups {
            let name = if g.group == 0 { "meta".to_string() } else { g.group.to_string() };
            lines.push(format!(
                "{:<6} {:<10} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10}",
                name, g.role, g.leader, g.term, g.last_log_index, g.applied_index, g.snapshot_index, g.purged_index
            ));
        }
        lines.join("\n")
    });
    Ok(())
}
