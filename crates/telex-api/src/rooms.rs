//! The `Rooms` gRPC service: native clients' group chat calls, authenticated by bearer token,
//! carried out by `telex_actors::Rooms`.

use std::sync::Arc;

use telex_accounts::{Accounts, Principal};
use telex_actors::{Rooms, Say};
use telex_proto::v1 as pb;
use telex_proto::v1::rooms_server;
use telex_types::room::{Affiliation, Anonymity, InvitePolicy, Role, RoomConfig, RoomJid, RoomRecord};
use telex_types::{TelexError, UserJid};
use tonic::{Request, Response, Status};

use crate::client::bearer;
use crate::status::to_status;

pub struct RoomsService {
    accounts: Arc<Accounts>,
    rooms: Arc<Rooms>,
}

impl RoomsService {
    pub fn new(accounts: Arc<Accounts>, rooms: Arc<Rooms>) -> Self {
        RoomsService { accounts, rooms }
    }

    async fn caller<T>(&self, r: &Request<T>) -> Result<Principal, Status> {
        self.accounts.verify_token_synced(&bearer(r)?).await.map_err(to_status)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// How a room's password is shown; sent back in `Configure`, it keeps the password as it is.
const PASSWORD_SHOWN: &str = "********";

fn room(s: &str) -> Result<RoomJid, Status> {
    RoomJid::parse(s).map_err(to_status)
}

fn config_from(c: pb::RoomConfig) -> Result<RoomConfig, TelexError> {
    let invite = match c.invite.as_str() {
        "" | "members" => InvitePolicy::Members,
        "admins" => InvitePolicy::Admins,
        other => return Err(TelexError::invalid(format!("invite must be members or admins, not {other:?}"))),
    };
    let anonymity = match c.anonymity.as_str() {
        "" | "semi" => Anonymity::Semi,
        "non" => Anonymity::Non,
        other => return Err(TelexError::invalid(format!("anonymity must be semi or non, not {other:?}"))),
    };
    let config = RoomConfig {
        name: c.name,
        description: c.description,
        members_only: c.members_only,
        moderated: c.moderated,
        password: c.password,
        public: c.public,
        persistent: c.persistent,
        invite,
        max_members: c.max_members,
        history_on_join: c.history_on_join,
        anonymity,
        private_messages: c.private_messages,
    };
    config.validate()?;
    Ok(config)
}

fn config_to(c: &RoomConfig) -> pb::RoomConfig {
    pb::RoomConfig {
        name: c.name.clone(),
        description: c.description.clone(),
        members_only: c.members_only,
        moderated: c.moderated,
        password: if c.password.is_empty() { String::new() } else { PASSWORD_SHOWN.into() },
        public: c.public,
        persistent: c.persistent,
        invite: match c.invite {
            InvitePolicy::Members => "members",
            InvitePolicy::Admins => "admins",
        }
        .into(),
        max_members: c.max_members,
        history_on_join: c.history_on_join,
        anonymity: match c.anonymity {
            Anonymity::Semi => "semi",
            Anonymity::Non => "non",
        }
        .into(),
        private_messages: c.private_messages,
    }
}

/// A room as `caller` may see it: the member list only for members, bans only for owners and
/// admins (XEP-0045 §9.5, §10.3 keep those lists to them).
fn info(r: &RoomRecord, caller: &UserJid) -> pb::RoomInfo {
    let yours = r.affiliation(caller);
    shown_to(r, yours, yours)
}

/// A room as an operator sees it: every list (the operator has no affiliation of its own).
pub(crate) fn operator_info(r: &RoomRecord) -> pb::RoomInfo {
    shown_to(r, None, Some(Affiliation::Owner))
}

/// `sees_as`: whose lists are shown (XEP-0045's rules for that affiliation).
fn shown_to(r: &RoomRecord, yours: Option<Affiliation>, sees_as: Option<Affiliation>) -> pb::RoomInfo {
    let admin = matches!(sees_as, Some(Affiliation::Owner | Affiliation::Admin));
    let member = admin || sees_as == Some(Affiliation::Member);
    let shown = |a: &Affiliation| if *a == Affiliation::Outcast { admin } else { member };
    pb::RoomInfo {
        room: r.room.to_string(),
        config: Some(config_to(&r.config)),
        subject: r.subject.clone(),
        affiliations: r
            .affiliations
            .iter()
            .filter(|(_, a)| shown(a))
            .map(|(u, a)| pb::Affiliate { jid: u.to_string(), affiliation: a.as_str().into() })
            .collect(),
        created_by: r.created_by.to_string(),
        created_at_ms: r.created_at,
        yours: yours.map_or("none", Affiliation::as_str).into(),
        roles: r
            .roles
            .iter()
            .filter(|_| member)
            .map(|(u, role)| pb::RoleGrant { jid: u.to_string(), role: role.as_str().into() })
            .collect(),
    }
}

#[tonic::async_trait]
impl rooms_server::Rooms for RoomsService {
    async fn create(&self, r: Request<pb::CreateRoomRequest>) -> Reply<pb::RoomInfo> {
        let me = self.caller(&r).await?.jid;
        let q = r.into_inner();
        let config = match q.config {
            Some(c) => config_from(c).map_err(to_status)?,
            None => RoomConfig::default(),
        };
        let record = self.rooms.create(&me, room(&q.room)?, config).await.map_err(to_status)?;
        tracing::info!(room = %record.room, owner = %me, "room created");
        Ok(Response::new(info(&record, &me)))
    }

    async fn list(&self, r: Request<pb::ListRoomsRequest>) -> Reply<pb::RoomList> {
        let me = self.caller(&r).await?.jid;
        let rooms = self.rooms.list(&me).await.map_err(to_status)?;
        Ok(Response::new(pb::RoomList { rooms: rooms.iter().map(|r| info(r, &me)).collect() }))
    }

    async fn get(&self, r: Request<pb::GetRoomRequest>) -> Reply<pb::RoomInfo> {
        let me = self.caller(&r).await?.jid;
        let record = self.rooms.get(&me, &room(&r.get_ref().room)?).await.map_err(to_status)?;
        Ok(Response::new(info(&record, &me)))
    }

    async fn say(&self, r: Request<pb::SayRequest>) -> Reply<pb::SayResponse> {
        let p = self.caller(&r).await?;
        let q = r.into_inner();
        let said = self
            .rooms
            .say(
                &p.jid,
                &p.device,
                &room(&q.room)?,
                Say { client_id: &q.client_id, body: &q.body, subject: q.subject, ..Say::default() },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SayResponse {
            server_id: said.server_id,
            position: said.position,
            duplicate: said.duplicate,
        }))
    }

    async fn history(&self, r: Request<pb::RoomHistoryRequest>) -> Reply<pb::RoomHistoryResponse> {
        let me = self.caller(&r).await?.jid;
        let q = r.into_inner();
        let (page, head) =
            self.rooms.history(&me, &room(&q.room)?, q.after, q.limit as usize).await.map_err(to_status)?;
        let entries = page.into_iter().map(|(position, e)| telex_proto::convert::room_entry(position, e)).collect();
        Ok(Response::new(pb::RoomHistoryResponse { entries, head }))
    }

    async fn mark_read(&self, r: Request<pb::MarkReadRequest>) -> Reply<pb::MarkReadResponse> {
        let p = self.caller(&r).await?;
        let q = r.into_inner();
        self.rooms.mark_read(&p.jid, &p.device, &room(&q.room)?, q.position).await.map_err(to_status)?;
        Ok(Response::new(pb::MarkReadResponse {}))
    }

    async fn set_affiliation(&self, r: Request<pb::SetAffiliationRequest>) -> Reply<pb::RoomInfo> {
        let me = self.caller(&r).await?.jid;
        let q = r.into_inner();
        let user = UserJid::parse(&q.jid).map_err(to_status)?;
        let affiliation = Affiliation::parse(&q.affiliation).map_err(to_status)?;
        let room = room(&q.room)?;
        let record = self.rooms.set_affiliation(&me, &room, user.clone(), affiliation).await.map_err(to_status)?;
        tracing::info!(%room, %user, affiliation = %q.affiliation, by = %me, "room affiliation set");
        Ok(Response::new(info(&record, &me)))
    }

    async fn set_role(&self, r: Request<pb::SetRoleRequest>) -> Reply<pb::RoomInfo> {
        let me = self.caller(&r).await?.jid;
        let q = r.into_inner();
        let user = UserJid::parse(&q.jid).map_err(to_status)?;
        let role = Role::parse(&q.role).map_err(to_status)?;
        let room = room(&q.room)?;
        let record = self.rooms.set_role(&me, &room, user.clone(), role).await.map_err(to_status)?;
        tracing::info!(%room, %user, role = %q.role, by = %me, "room role set");
        Ok(Response::new(info(&record, &me)))
    }

    async fn configure(&self, r: Request<pb::ConfigureRoomRequest>) -> Reply<pb::RoomInfo> {
        let me = self.caller(&r).await?.jid;
        let q = r.into_inner();
        let room = room(&q.room)?;
        let mut config = config_from(q.config.unwrap_or_default()).map_err(to_status)?;
        if config.password == PASSWORD_SHOWN {
            config.password = self.rooms.get(&me, &room).await.map_err(to_status)?.config.password;
        }
        let record = self.rooms.configure(&me, &room, config).await.map_err(to_status)?;
        Ok(Response::new(info(&record, &me)))
    }

    async fn join(&self, r: Request<pb::JoinRoomRequest>) -> Reply<pb::RoomInfo> {
        let me = self.caller(&r).await?.jid;
        let record = self.rooms.join(&me, &room(&r.get_ref().room)?).await.map_err(to_status)?;
        Ok(Response::new(info(&record, &me)))
    }

    async fn leave(&self, r: Request<pb::LeaveRoomRequest>) -> Reply<pb::LeaveRoomResponse> {
        let me = self.caller(&r).await?.jid;
        self.rooms.leave(&me, &room(&r.get_ref().room)?).await.map_err(to_status)?;
        Ok(Response::new(pb::LeaveRoomResponse {}))
    }

    async fn destroy(&self, r: Request<pb::DestroyRoomRequest>) -> Reply<pb::DestroyRoomResponse> {
        let me = self.caller(&r).await?.jid;
        let room = room(&r.get_ref().room)?;
        self.rooms.destroy(&me, &room).await.map_err(to_status)?;
        tracing::info!(%room, by = %me, "room destroyed");
        Ok(Response::new(pb::DestroyRoomResponse {}))
    }
}
