//! `telex`: administer a Telex node (`--admin`) and use it as a client (`--server`).
//!
//! Output is for people by default and JSON with `--json`. Any failure prints one line,
//! `telex: <reason>`, and exits non-zero.

mod admin;
mod backup;
mod chat;
mod cluster;
mod directory;
mod flags;
mod output;
mod room;
mod selftest;
mod session;
mod social;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "telex", version, about = "Telex command-line tool")]
pub struct Cli {
    /// Admin API address.
    #[arg(long, global = true, env = "TELEX_ADMIN", default_value = "127.0.0.1:7402")]
    admin: String,
    /// Client API address.
    #[arg(long, global = true, env = "TELEX_SERVER", default_value = "127.0.0.1:7400")]
    server: String,
    /// Admin token for the admin API [default: ./telex-data/admin-token, the one the first
    /// start of a node in this directory wrote].
    #[arg(long, global = true, env = "TELEX_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    session: flags::SessionFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage tenants (domains).
    #[command(subcommand)]
    Tenant(admin::TenantCmd),
    /// Manage user accounts.
    #[command(subcommand)]
    User(admin::UserCmd),
    /// Show this node's Raft groups.
    Status,
    /// The cluster: nodes, replicas, leaders.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Connected devices.
    #[command(subcommand)]
    Session(admin::SessionCmd),
    /// Back up the node's data (restore with `telexd --restore-from DIR`).
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Log in (--user, --password, --device) and print a session token.
    Login,
    /// Show who a session token (--token) belongs to.
    Whoami,
    /// Revoke a session token (--token).
    Logout,
    /// Send a message; prints its server id and position once it is durably stored.
    Send(chat::SendArgs),
    /// Print messages as they arrive (pending ones first) and acknowledge them.
    Listen(chat::ListenArgs),
    /// Page through your archive.
    History(chat::HistoryArgs),
    /// Interactive chat: type `bob@localhost: hi`; see messages and presence as they come.
    Chat,
    /// Your contacts and presence subscriptions.
    #[command(subcommand)]
    Roster(social::RosterCmd),
    /// Refuse someone's messages and hide presence both ways.
    Block { jid: String },
    /// Undo a block.
    Unblock { jid: String },
    /// List whom you block.
    Blocked,
    /// Search the company directory (names, titles, departments, emails).
    Search {
        query: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Set or watch presence.
    #[command(subcommand)]
    Presence(social::PresenceCmd),
    /// Directory groups (NAME@DOMAIN): departments, teams, roles; shared rosters.
    #[command(subcommand)]
    Group(directory::GroupCmd),
    /// The tenant's policy file: who sees and may message whom, barriers, limits.
    #[command(subcommand)]
    Policy(directory::PolicyCmd),
    /// The admin audit trail.
    #[command(subcommand)]
    Audit(directory::AuditCmd),
    /// Admin identities: who may use the admin API, and for what.
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// The company directory's sync from an LDAP server.
    #[command(subcommand)]
    Directory(directory::DirectoryCmd),
    /// Group chat rooms (room@conference.DOMAIN).
    #[command(subcommand)]
    Room(room::RoomCmd),
    /// Check a running cluster end to end: two throwaway users, one message, then removed.
    Selftest(selftest::SelftestArgs),
}

pub type CliResult = Result<(), String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Tenant(cmd) => admin::tenant(&cli, cmd).await,
            Command::User(cmd) => admin::user(&cli, cmd).await,
            Command::Status => admin::status(&cli).await,
            Command::Cluster(cmd) => cluster::cluster(&cli, cmd).await,
            Command::Session(cmd) => admin::session(&cli, cmd).await,
            Command::Backup(cmd) => backup::backup(&cli, cmd).await,
            Command::Login => session::login(&cli).await,
            Command::Whoami => session::whoami(&cli).await,
            Command::Logout => session::logout(&cli).await,
            Command::Send(args) => chat::send(&cli, args).await,
            Command::Listen(args) => chat::listen(&cli, args).await,
            Command::History(args) => chat::history(&cli, args).await,
            Command::Chat => chat::chat(&cli).await,
            Command::Roster(cmd) => social::roster(&cli, cmd).await,
            Command::Block { jid } => social::block(&cli, Some(jid), true).await,
            Command::Unblock { jid } => social::block(&cli, Some(jid), false).await,
            Command::Blocked => social::block(&cli, None, false).await,
            Command::Search { query, limit } => social::search(&cli, query, *limit).await,
            Command::Presence(cmd) => social::presence(&cli, cmd).await,
            Command::Selftest(args) => selftest::selftest(&cli, args).await,
            Command::Room(cmd) => room::room(&cli, cmd).await,
            Command::Group(cmd) => directory::group(&cli, cmd).await,
            Command::Policy(cmd) => directory::policy(&cli, cmd).await,
            Command::Audit(cmd) => directory::audit(&cli, cmd).await,
            Command::Directory(cmd) => directory::directory(&cli, cmd).await,
            Command::Admin(cmd) => admin::admins(&cli, cmd).await,
        }
    });
    // Do not wait for a blocked stdin read (`telex chat`) before exiting.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("telex: {reason}");
            ExitCode::FAILURE
        }
    }
}
