//! The `RoomAdmin` gRPC service: operators' room calls on the admin listener (every room of a
//! tenant, destroying any, setting affiliations as an owner would), carried out by
//! `telex_actors::Rooms`.

use std::sync::Arc;

use telex_accounts::Accounts;
use telex_actors::Rooms;
use telex_proto::v1 as pb;
use telex_proto::v1::room_admin_server::RoomAdmin;
use telex_types::admin::{Access, AdminIdentity, Scope};
use telex_types::room::{Affiliation, RoomJid};
use telex_types::UserJid;
use tonic::{Request, Response, Status};

use crate::admin_auth::{allow, allow_tenant};
use crate::rooms::operator_info;
use crate::status::to_status;

pub struct RoomAdminService {
    rooms: Arc<Rooms>,
    accounts: Arc<Accounts>,
}

impl RoomAdminService {
    pub fn new(rooms: Arc<Rooms>, accounts: Arc<Accounts>) -> Self {
        RoomAdminService { rooms, accounts }
    }

    async fn audit(&self, who: &AdminIdentity, room: &RoomJid, action: &str, detail: String) {
        let (tenant, target) = (room.tenant(), room.to_string());
        if let Err(e) = self.accounts.audit_action(&who.name, Some(tenant), action, &target, detail).await {
            metrics::counter!("telex_audit_failures_total").increment(1);
            tracing::error!(admin = %who, action, %room, error = %e, "admin action not recorded in the audit trail");
        }
    }
}

/// The room, if the caller may do `access` on its tenant.
fn room_for<T>(r: &Request<T>, access: Access, s: &str) -> Result<(AdminIdentity, RoomJid), Status> {
    let room = room(s)?;
    Ok((allow(r, access, Scope::Tenant(room.tenant()))?, room))
}

type Reply<T> = Result<Response<T>, Status>;

fn room(s: &str) -> Result<RoomJid, Status> {
    RoomJid::parse(s).map_err(to_status)
}

#[tonic::async_trait]
impl RoomAdmin for RoomAdminService {
    async fn list_tenant_rooms(&self, r: Request<pb::ListTenantRoomsRequest>) -> Reply<pb::RoomList> {
        let (_, tenant) = allow_tenant(&r, Access::Read, &r.get_ref().tenant)?;
        let rooms = self.rooms.tenant_rooms(&tenant).await.map_err(to_status)?;
        Ok(Response::new(pb::RoomList { rooms: rooms.iter().map(operator_info).collect() }))
    }

    async fn get_room(&self, r: Request<pb::GetRoomRequest>) -> Reply<pb::RoomInfo> {
        let (_, room) = room_for(&r, Access::Read, &r.get_ref().room)?;
        let record = self.rooms.record(&room).await.map_err(to_status)?;
        Ok(Response::new(operator_info(&record)))
    }

    async fn destroy_room(&self, r: Request<pb::DestroyRoomRequest>) -> Reply<pb::DestroyRoomResponse> {
        let (who, room) = room_for(&r, Access::Write, &r.get_ref().room)?;
        self.rooms.destroy_any(&room).await.map_err(to_status)?;
        tracing::info!(%room, "room destroyed by an operator");
        self.audit(&who, &room, "room.destroy", String::new()).await;
        Ok(Response::new(pb::DestroyRoomResponse {}))
    }

    async fn set_room_affiliation(&self, r: Request<pb::SetAffiliationRequest>) -> Reply<pb::RoomInfo> {
        let (who, room) = room_for(&r, Access::Write, &r.get_ref().room)?;
        let q = r.into_inner();
        let user = UserJid::parse(&q.jid).map_err(to_status)?;
        let affiliation: Option<Affiliation> = Affiliation::parse(&q.affiliation).map_err(to_status)?;
        let record = self.rooms.affiliate_any(&room, user.clone(), affiliation).await.map_err(to_status)?;
        tracing::info!(room = %record.room, %user, affiliation = %q.affiliation, "room affiliation set by an operator");
        self.audit(&who, &room, "room.affiliation", format!("{user} {}", q.affiliation)).await;
        Ok(Response::new(operator_info(&record)))
    }
}
