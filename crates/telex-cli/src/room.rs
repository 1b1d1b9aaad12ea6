//! `telex room …`: group chat rooms (room@conference.DOMAIN) through the Rooms API, as the
//! logged-in user.

use clap::{Args, Subcommand};
use serde::Serialize;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use telex_proto::v1::room_admin_client::RoomAdminClient;
use telex_proto::v1::rooms_client::RoomsClient;
use tonic::transport::Channel;

use crate::chat::fresh_client_id;
use crate::output::{connect, emit, status_line};
use crate::session::authed;
use crate::{Cli, CliResult};

#[derive(Subcommand, Debug)]
pub enum RoomCmd {
    /// Create a room; you become its owner.
    Create {
        /// room@conference.DOMAIN
        room: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Rooms of your domain you can see; with a DOMAIN, every room of that tenant (operators,
    /// through the admin API: no --user).
    List { domain: Option<String> },
    /// A room's configuration, subject and affiliations.
    Show { room: String },
    /// Say something in a room (printed once it is in the room's log).
    Say {
        room: String,
        text: String,
        /// Retry a send with the same id: the room keeps one copy.
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Set the room's subject (moderators).
    Subject { room: String, text: String },
    /// Page through a room's log.
    History {
        room: String,
        /// Entries after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Owners, admins, members and outcasts.
    Members { room: String },
    /// Make a user a member (the way into a members-only room).
    Invite { room: String, jid: String },
    /// Take a user's affiliation away.
    Kick { room: String, jid: String },
    /// Ban a user (outcast).
    Ban { room: String, jid: String },
    /// Set an affiliation: owner, admin, member, outcast or none.
    Affiliate { room: String, jid: String, affiliation: String },
    /// Give a user a role (moderators): participant gives voice in a moderated room, visitor
    /// takes it away, moderator (owners and admins) makes a moderator.
    Role { room: String, jid: String, role: String },
    /// Change the configuration (owners); unset flags keep their current values.
    Config {
        room: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete the room and its log (owners).
    Destroy { room: String },
    /// Become a member of an open room (members-only rooms need an invitation).
    Join { room: String },
    /// Give up your membership.
    Leave { room: String },
    /// Print the room's messages: first what this device missed since it last listened (the
    /// newest 200 at most), then as they arrive.
    Listen {
        room: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Exit after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
}

#[derive(Args, Debug, Default)]
pub struct ConfigArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Only members may enter and read.
    #[arg(long)]
    members_only: Option<Option<bool>>,
    /// Only participants may speak.
    #[arg(long)]
    moderated: Option<Option<bool>>,
    /// Listed in the room list.
    #[arg(long)]
    public: Option<Option<bool>>,
    /// Needed to enter (XMPP); native users need a membership. Empty: none.
    #[arg(id = "room_password", long = "room-password")]
    password: Option<String>,
    /// Occupants may message each other privately through the room (XMPP).
    #[arg(long)]
    private_messages: Option<Option<bool>>,
    #[arg(long)]
    max_members: Option<u32>,
    #[arg(long)]
    history_on_join: Option<u32>,
}

impl ConfigArgs {
    /// `base` with the flags given applied (`--members-only` alone means true).
    fn apply(&self, mut base: pb::RoomConfig) -> pb::RoomConfig {
        let flag = |v: &Option<Option<bool>>, old: bool| v.map_or(old, |v| v.unwrap_or(true));
        if let Some(v) = &self.name {
            base.name = v.clone();
        }
        if let Some(v) = &self.description {
            base.description = v.clone();
        }
        base.members_only = flag(&self.members_only, base.members_only);
        base.moderated = flag(&self.moderated, base.moderated);
        base.public = flag(&self.public, base.public);
        base.private_messages = flag(&self.private_messages, base.private_messages);
        if let Some(v) = &self.password {
            base.password = v.clone();
        }
        if let Some(v) = self.max_members {
            base.max_members = v;
        }
        if let Some(v) = self.history_on_join {
            base.history_on_join = v;
        }
        base
    }
}

/// The configuration a new room starts from (the server's defaults).
fn defaults() -> pb::RoomConfig {
    pb::RoomConfig {
        public: true,
        persistent: true,
        invite: "members".into(),
        max_members: 10_000,
        history_on_join: 20,
        anonymity: "semi".into(),
        private_messages: true,
        ..Default::default()
    }
}

#[derive(Serialize)]
struct RoomOut {
    room: String,
    name: String,
    subject: String,
    members_only: bool,
    moderated: bool,
    public: bool,
    yours: String,
    members: Vec<(String, String)>,
    /// Roles moderators gave, where they differ from the affiliation's.
    roles: Vec<(String, String)>,
}

fn room_out(r: pb::RoomInfo) -> RoomOut {
    let c = r.config.unwrap_or_default();
    RoomOut {
        room: r.room,
        name: c.name,
        subject: r.subject,
        members_only: c.members_only,
        moderated: c.moderated,
        public: c.public,
        yours: r.yours,
        members: r.affiliations.into_iter().map(|a| (a.jid, a.affiliation)).collect(),
        roles: r.roles.into_iter().map(|g| (g.jid, g.role)).collect(),
    }
}

fn room_line(r: &RoomOut) -> String {
    let mut flags = Vec::new();
    if r.members_only {
        flags.push("members-only");
    }
    if r.moderated {
        flags.push("moderated");
    }
    if !r.public {
        flags.push("hidden");
    }
    let name = if r.name.is_empty() { String::new() } else { format!(" \"{}\"", r.name) };
    format!("{}{name} [{}] you: {}", r.room, flags.join(", "), r.yours)
}

#[derive(Serialize)]
struct EntryOut {
    position: u64,
    kind: String,
    from: String,
    nick: String,
    body: String,
    server_id: String,
    sent_at_ms: u64,
}

async fn client(cli: &Cli) -> Result<(RoomsClient<Channel>, String), String> {
    let channel = connect(&cli.server).await?;
    let token = cli.session.token(&mut ClientClient::new(channel.clone())).await?;
    Ok((RoomsClient::new(channel), token))
}

/// Without --user or --token, `room list DOMAIN`, `show`, `members`, `destroy` and the
/// affiliation commands act as the operator, through the admin API (`--admin`); true if `cmd`
/// was one of those.
async fn as_operator(cli: &Cli, cmd: &RoomCmd) -> Result<bool, String> {
    let anonymous = cli.session.user.is_none() && cli.session.token.is_none();
    let affiliation = |room: &str, jid: &str, a: &str| Some((room.to_string(), jid.to_string(), a.to_string()));
    let change = match cmd {
        RoomCmd::List { domain: Some(_) } => None,
        _ if !anonymous => return Ok(false),
        RoomCmd::Show { .. } | RoomCmd::Members { .. } | RoomCmd::Destroy { .. } => None,
        RoomCmd::Invite { room, jid } => affiliation(room, jid, "member"),
        RoomCmd::Kick { room, jid } => affiliation(room, jid, "none"),
        RoomCmd::Ban { room, jid } => affiliation(room, jid, "outcast"),
        RoomCmd::Affiliate { room, jid, affiliation: a } => affiliation(room, jid, a),
        _ => return Ok(false),
    };
    let mut c = RoomAdminClient::new(crate::output::admin_channel(&cli.admin, cli.admin_token.as_deref()).await?);
    let show = |r: pb::RoomInfo| {
        let out = room_out(r);
        emit(cli.json, &out, || room_line(&out));
    };
    if let Some((room, jid, affiliation)) = change {
        let req = pb::SetAffiliationRequest { room, jid, affiliation };
        show(c.set_room_affiliation(req).await.map_err(status_line)?.into_inner());
        return Ok(true);
    }
    match cmd {
        RoomCmd::List { domain: Some(tenant) } => {
            let req = pb::ListTenantRoomsRequest { tenant: tenant.clone() };
            let rooms = c.list_tenant_rooms(req).await.map_err(status_line)?.into_inner();
            let out: Vec<RoomOut> = rooms.rooms.into_iter().map(room_out).collect();
            emit(cli.json, &out, || out.iter().map(room_line).collect::<Vec<_>>().join("\n"));
        }
        RoomCmd::Show { room } => {
            show(c.get_room(pb::GetRoomRequest { room: room.clone() }).await.map_err(status_line)?.into_inner())
        }
        RoomCmd::Members { room } => {
            let r = c.get_room(pb::GetRoomRequest { room: room.clone() }).await.map_err(status_line)?;
            let out = room_out(r.into_inner()).members;
            emit(cli.json, &out, || out.iter().map(|(j, a)| format!("{j:<32} {a}")).collect::<Vec<_>>().join("\n"));
        }
        RoomCmd::Destroy { room } => {
            c.destroy_room(pb::DestroyRoomRequest { room: room.clone() }).await.map_err(status_line)?;
            emit(cli.json, &room, || format!("room {room} destroyed"));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

pub async fn room(cli: &Cli, cmd: &RoomCmd) -> CliResult {
    if as_operator(cli, cmd).await? {
        return Ok(());
    }
    let (mut c, token) = client(cli).await?;
    let show = |r: pb::RoomInfo| {
        let out = room_out(r);
        emit(cli.json, &out, || room_line(&out));
    };
    let affiliate = |room: &str, jid: &str, affiliation: &str| pb::SetAffiliationRequest {
        room: room.into(),
        jid: jid.into(),
        affiliation: affiliation.into(),
    };
    match cmd {
        RoomCmd::Create { room, config } => {
            let req = pb::CreateRoomRequest { room: room.clone(), config: Some(config.apply(defaults())) };
            show(c.create(authed(req, &token)?).await.map_err(status_line)?.into_inner());
        }
        RoomCmd::List { domain: _ } => {
            let rooms = c.list(authed(pb::ListRoomsRequest {}, &token)?).await.map_err(status_line)?.into_inner();
            let out: Vec<RoomOut> = rooms.rooms.into_iter().map(room_out).collect();
            emit(cli.json, &out, || out.iter().map(room_line).collect::<Vec<_>>().join("\n"));
        }
        RoomCmd::Show { room } => {
            show(
                c.get(authed(pb::GetRoomRequest { room: room.clone() }, &token)?)
                    .await
                    .map_err(status_line)?
                    .into_inner(),
            );
        }
        RoomCmd::Members { room } => {
            let r = c.get(authed(pb::GetRoomRequest { room: room.clone() }, &token)?).await.map_err(status_line)?;
            let out = room_out(r.into_inner()).members;
            emit(cli.json, &out, || out.iter().map(|(j, a)| format!("{j:<32} {a}")).collect::<Vec<_>>().join("\n"));
        }
        RoomCmd::Say { room, text, client_id } => {
            let client_id = client_id.clone().unwrap_or_else(fresh_client_id);
            let req = pb::SayRequest { room: room.clone(), client_id, body: text.clone(), subject: false };
            let r = c.say(authed(req, &token)?).await.map_err(status_line)?.into_inner();
            #[derive(Serialize)]
            struct SaidOut {
                server_id: String,
                position: u64,
                duplicate: bool,
            }
            let out = SaidOut { server_id: r.server_id, position: r.position, duplicate: r.duplicate };
            emit(cli.json, &out, || format!("said in {room} at position {} ({})", out.position, out.server_id));
        }
        RoomCmd::Subject { room, text } => {
            let req =
                pb::SayRequest { room: room.clone(), client_id: fresh_client_id(), body: text.clone(), subject: true };
            let r = c.say(authed(req, &token)?).await.map_err(status_line)?.into_inner();
            emit(cli.json, &r.position, || format!("subject of {room} set (position {})", r.position));
        }
        RoomCmd::History { room, after, limit } => {
            let req = pb::RoomHistoryRequest { room: room.clone(), after: *after, limit: *limit };
            let r = c.history(authed(req, &token)?).await.map_err(status_line)?.into_inner();
            let out: Vec<EntryOut> = r.entries.into_iter().map(EntryOut::from).collect();
            emit(cli.json, &out, || out.iter().map(entry_line).collect::<Vec<_>>().join("\n"));
        }
        RoomCmd::Invite { room, jid } => {
            show(
                c.set_affiliation(authed(affiliate(room, jid, "member"), &token)?)
                    .await
                    .map_err(status_line)?
                    .into_inner(),
            );
        }
        RoomCmd::Kick { room, jid } => {
            show(
                c.set_affiliation(authed(affiliate(room, jid, "none"), &token)?)
                    .await
                    .map_err(status_line)?
                    .into_inner(),
            );
        }
        RoomCmd::Ban { room, jid } => {
            show(
                c.set_affiliation(authed(affiliate(room, jid, "outcast"), &token)?)
                    .await
                    .map_err(status_line)?
                    .into_inner(),
            );
        }
        RoomCmd::Affiliate { room, jid, affiliation } => {
            let req = affiliate(room, jid, affiliation);
            show(c.set_affiliation(authed(req, &token)?).await.map_err(status_line)?.into_inner());
        }
        RoomCmd::Role { room, jid, role } => {
            let req = pb::SetRoleRequest { room: room.clone(), jid: jid.clone(), role: role.clone() };
            show(c.set_role(authed(req, &token)?).await.map_err(status_line)?.into_inner());
        }
        RoomCmd::Config { room, config } => {
            let current =
                c.get(authed(pb::GetRoomRequest { room: room.clone() }, &token)?).await.map_err(status_line)?;
            // The password comes back masked; sent back as it is, the server keeps it.
            let base = current.into_inner().config.unwrap_or_default();
            let req = pb::ConfigureRoomRequest { room: room.clone(), config: Some(config.apply(base)) };
            show(c.configure(authed(req, &token)?).await.map_err(status_line)?.into_inner());
        }
        RoomCmd::Join { room } => {
            show(
                c.join(authed(pb::JoinRoomRequest { room: room.clone() }, &token)?)
                    .await
                    .map_err(status_line)?
                    .into_inner(),
            );
        }
        RoomCmd::Leave { room } => {
            c.leave(authed(pb::LeaveRoomRequest { room: room.clone() }, &token)?).await.map_err(status_line)?;
            emit(cli.json, &room, || format!("left {room}"));
        }
        RoomCmd::Listen { room, count, timeout } => listen(cli, room, *count, *timeout).await?,
        RoomCmd::Destroy { room } => {
            c.destroy(authed(pb::DestroyRoomRequest { room: room.clone() }, &token)?).await.map_err(status_line)?;
            emit(cli.json, &room, || format!("room {room} destroyed"));
        }
    }
    Ok(())
}

impl From<pb::RoomEntry> for EntryOut {
    fn from(e: pb::RoomEntry) -> Self {
        EntryOut {
            position: e.position,
            kind: e.kind,
            from: e.from,
            nick: e.nick,
            body: e.body,
            server_id: e.server_id,
            sent_at_ms: e.sent_at_ms,
        }
    }
}

fn entry_line(e: &EntryOut) -> String {
    match e.kind.as_str() {
        "subject" => format!("{:>6} {} set the subject: {}", e.position, e.nick, e.body),
        _ => format!("{:>6} <{}> {}", e.position, e.nick, e.body),
    }
}

/// Prints `room`'s entries as the session stream brings them (occupants coming and going as
/// lines starting with `*`, in text mode).
async fn listen(cli: &Cli, room: &str, count: Option<u64>, timeout: Option<f64>) -> CliResult {
    let mut s = crate::chat::open(cli).await?;
    let mut read = None;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(t));
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, s.down.message()).await {
                Ok(m) => m,
                Err(_) => break,
            },
            None => s.down.message().await,
        };
        let Some(frame) = next.map_err(status_line)? else { break };
        let Some(pb::server_frame::Frame::Room(ev)) = frame.frame else { continue };
        if !ev.room.eq_ignore_ascii_case(room) {
            continue;
        }
        match ev.event {
            Some(pb::room_event::Event::Entry(e)) => {
                let out = EntryOut::from(e);
                emit(cli.json, &out, || entry_line(&out));
                seen += 1;
                // This device has read it: its next session starts after it.
                let frame = pb::RoomRead { room: ev.room.clone(), position: out.position };
                let _ = s.up.try_send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::RoomRead(frame)) });
                read = Some((ev.room.clone(), out.position));
            }
            Some(pb::room_event::Event::Occupant(o)) if !cli.json => {
                let show = o.presence.map(|p| p.show).unwrap_or_default();
                println!("* {} ({}) is {show}", o.nick, o.jid);
            }
            _ => {}
        }
    }
    // The last one read, stored before exiting (the frames above are best effort).
    if let Some((room, position)) = read {
        let (mut c, token) = client(cli).await?;
        c.mark_read(authed(pb::MarkReadRequest { room, position }, &token)?).await.map_err(status_line)?;
    }
    Ok(())
}
