//! `telex roster …`, `telex block`/`unblock`/`blocked`, `telex presence set|watch`.

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde::Serialize;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;

use crate::chat::{full_jid, open};
use crate::output::{connect, emit, status_line};
use crate::session::authed;
use crate::{Cli, CliResult};

#[derive(Subcommand, Debug)]
pub enum RosterCmd {
    /// Show your contacts and subscription states.
    List,
    /// Add a contact and ask to see their presence.
    Add {
        jid: String,
        #[arg(long, default_value = "")]
        name: String,
        /// A group to file the contact under (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Remove a contact (ends subscriptions both ways).
    Remove { jid: String },
    /// Let a contact who asked see your presence.
    Approve { jid: String },
    /// Refuse a request, or stop a contact seeing your presence.
    Deny { jid: String },
}

#[derive(Subcommand, Debug)]
pub enum PresenceCmd {
    /// Go online with this presence and stay until --timeout or Ctrl-C, printing contacts'
    /// presence changes.
    Set {
        /// available, chat, away, xa or dnd.
        show: String,
        #[arg(long, default_value = "")]
        status: String,
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        priority: i32,
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Go online and print contacts' presence, subscription requests and roster changes.
    Watch {
        #[arg(long)]
        timeout: Option<f64>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Serialize)]
struct ItemOut {
    jid: String,
    subscription: String,
    pending_out: bool,
    pending_in: bool,
    name: String,
    groups: Vec<String>,
}

fn item_out(i: pb::RosterItem) -> ItemOut {
    ItemOut {
        jid: i.jid,
        subscription: i.subscription,
        pending_out: i.pending_out,
        pending_in: i.pending_in,
        name: i.name,
        groups: i.groups,
    }
}

fn item_line(i: &ItemOut) -> String {
    let mut flags = Vec::new();
    if i.pending_out {
        flags.push("awaiting their approval");
    }
    if i.pending_in {
        flags.push("wants to see your presence: telex roster approve|deny");
    }
    let groups = if i.groups.is_empty() { String::new() } else { format!(" [{}]", i.groups.join(", ")) };
    let name = if i.name.is_empty() { String::new() } else { format!(" \"{}\"", i.name) };
    format!("{:<32} {:<5}{name}{groups} {}", i.jid, i.subscription, flags.join("; ")).trim_end().to_string()
}

pub async fn roster(cli: &Cli, cmd: &RosterCmd) -> CliResult {
    use pb::roster_update::Op;
    let op = match cmd {
        RosterCmd::List => None,
        RosterCmd::Add { jid, name, groups } => {
            Some(Op::Add(pb::RosterAdd { jid: jid.clone(), name: name.clone(), groups: groups.clone() }))
        }
        RosterCmd::Remove { jid } => Some(Op::Remove(jid.clone())),
        RosterCmd::Approve { jid } => Some(Op::Approve(jid.clone())),
        RosterCmd::Deny { jid } => Some(Op::Deny(jid.clone())),
    };
    let mut client = ClientClient::new(connect(&cli.server).await?);
    let token = cli.session.token(&mut client).await?;
    let resp = match op {
        None => client.get_roster(authed(pb::GetRosterRequest {}, &token)?).await,
        Some(op) => client.update_roster(authed(pb::RosterUpdate { op: Some(op) }, &token)?).await,
    };
    let items: Vec<ItemOut> = resp.map_err(status_line)?.into_inner().items.into_iter().map(item_out).collect();
    emit(cli.json, &items, || items.iter().map(item_line).collect::<Vec<_>>().join("\n"));
    Ok(())
}

pub async fn block(cli: &Cli, jid: Option<&str>, blocked: bool) -> CliResult {
    let mut client = ClientClient::new(connect(&cli.server).await?);
    let token = cli.session.token(&mut client).await?;
    let list = match jid {
        Some(jid) => {
            let req = pb::SetBlockedRequest { jid: jid.to_string(), blocked };
            client.set_blocked(authed(req, &token)?).await
        }
        None => client.get_block_list(authed(pb::GetBlockListRequest {}, &token)?).await,
    };
    let jids = list.map_err(status_line)?.into_inner().jids;
    emit(cli.json, &jids, || match jid {
        Some(j) if blocked => format!("{j} blocked"),
        Some(j) => format!("{j} unblocked"),
        None => jids.join("\n"),
    });
    Ok(())
}

#[derive(Serialize)]
struct EntryOut {
    jid: String,
    display_name: String,
    title: String,
    department: String,
    email: String,
}

/// `telex search QUERY`: the company directory, as the policy lets you see it.
pub async fn search(cli: &Cli, query: &str, limit: u32) -> CliResult {
    let mut client = ClientClient::new(connect(&cli.server).await?);
    let token = cli.session.token(&mut client).await?;
    let req = pb::SearchDirectoryRequest { query: query.to_string(), limit };
    let found = client.search_directory(authed(req, &token)?).await.map_err(status_line)?.into_inner();
    let out: Vec<EntryOut> = found
        .entries
        .into_iter()
        .map(|e| EntryOut {
            jid: e.jid,
            display_name: e.display_name,
            title: e.title,
            department: e.department,
            email: e.email,
        })
        .collect();
    emit(cli.json, &out, || {
        out.iter()
            .map(|e| format!("{:<32} {:<24} {:<20} {:<16} {}", e.jid, e.display_name, e.title, e.department, e.email))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum EventOut {
    Presence { from: String, device: String, show: String, status: String, priority: i32 },
    SubscriptionRequest { from: String },
    Roster { jid: String, subscription: Option<String> },
}

fn event_line(e: &EventOut) -> String {
    match e {
        EventOut::Presence { from, device, show, status, .. } if status.is_empty() => {
            format!("{} is {show}", full_jid(from, device))
        }
        EventOut::Presence { from, device, show, status, .. } => {
            format!("{} is {show}: {status}", full_jid(from, device))
        }
        EventOut::SubscriptionRequest { from } => {
            format!("{from} wants to see your presence (telex roster approve|deny {from})")
        }
        EventOut::Roster { jid, subscription: Some(s) } => format!("roster: {jid} is now {s}"),
        EventOut::Roster { jid, subscription: None } => format!("roster: {jid} removed"),
    }
}

pub async fn presence(cli: &Cli, cmd: &PresenceCmd) -> CliResult {
    let (show, status, priority, timeout, count) = match cmd {
        PresenceCmd::Set { show, status, priority, timeout } => {
            (show.as_str(), status.clone(), *priority, *timeout, None)
        }
        PresenceCmd::Watch { timeout, count } => ("available", String::new(), 0, *timeout, *count),
    };
    let mut s = open(cli).await?;
    let set = pb::SetPresence { show: show.to_string(), status, priority, ..Default::default() };
    s.up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(set)) })
        .await
        .map_err(|_| "the session closed")?;
    if matches!(cmd, PresenceCmd::Set { .. }) && !cli.json {
        eprintln!("you are {show}; Ctrl-C to go offline");
    }
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), s.down.message()).await {
                Ok(m) => m,
                Err(_) => break,
            },
            None => tokio::select! {
                m = s.down.message() => m,
                _ = tokio::signal::ctrl_c() => break,
            },
        };
        let Some(frame) = next.map_err(status_line)? else { break };
        let event = match frame.frame {
            Some(pb::server_frame::Frame::Presence(p)) if s.is_own(&p) => continue,
            Some(pb::server_frame::Frame::Presence(p)) => EventOut::Presence {
                from: p.from,
                device: p.from_device,
                show: p.show,
                status: p.status,
                priority: p.priority,
            },
            Some(pb::server_frame::Frame::SubscriptionRequest(r)) => EventOut::SubscriptionRequest { from: r.from },
            Some(pb::server_frame::Frame::Roster(r)) => {
                EventOut::Roster { jid: r.jid, subscription: r.item.map(|i| i.subscription) }
            }
            _ => continue,
        };
        emit(cli.json, &event, || event_line(&event));
        seen += 1;
    }
    Ok(())
}
