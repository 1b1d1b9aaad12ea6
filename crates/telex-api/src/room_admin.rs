//! The `RoomAdmin` gRPC service: operators' room calls on the admin listener (every room of a
//! tenant, destroying any, setting affiliations as an owner would), carried out by
//! `telex_actors::Rooms`.

use std::sync::Arc;

use telex_actors::Rooms;
use telex_proto::v1 as pb;
use telex_proto::v1::room_admin_server::RoomAdmin;
use telex_types::room::{Affiliation, RoomJid};
use telex_types::{Domain, UserJid};
use tonic::{Request, Response, Status};

use crate::rooms::operator_info;
use crate::status::to_status;

pub struct RoomAdminService {
    rooms: Arc<Rooms>,
}

impl RoomAdminService {
    pub fn new(rooms: Arc<Rooms>) -> Self {
        RoomAdminService { rooms }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn room(s: &str) -> Result<RoomJid, Status> {
    RoomJid::parse(s).map_err(to_status)
}

#[tonic::async_trait]
impl RoomAdmin for RoomAdminService {
    async fn list_tenant_rooms(&self, r: Request<pb::ListTenantRoomsRequest>) -> Reply<pb::RoomList> {
        let tenant = Domain::parse(&r.get_ref().tenant).map_err(to_status)?;
        let rooms = self.rooms.tenant_rooms(&tenant).await.map_err(to_status)?;
        Ok(Response::new(pb::RoomList { rooms: rooms.iter().map(operator_info).collect() }))
    }

    async fn get_room(&self, r: Request<pb::GetRoomRequest>) -> Reply<pb::RoomInfo> {
        let record = self.rooms.record(&room(&r.get_ref().room)?).await.map_err(to_status)?;
        Ok(Response::new(operator_info(&record)))
    }

    async fn destroy_room(&self, r: Request<pb::DestroyRoomRequest>) -> Reply<pb::DestroyRoomResponse> {
        let room = room(&r.get_ref().room)?;
        self.rooms.destroy_any(&room).await.map_err(to_status)?;
        tracing::info!(%room, "room destroyed by an operator");
        Ok(Response::new(pb::DestroyRoomResponse {}))
    }

    async fn set_room_affiliation(&self, r: Request<pb::SetAffiliationRequest>) -> Reply<pb::RoomInfo> {
        let q = r.into_inner();
        let user = UserJid::parse(&q.jid).map_err(to_status)?;
        let affiliation: Option<Affiliation> = Affiliation::parse(&q.affiliation).map_err(to_status)?;
        let record = self.rooms.affiliate_any(&room(&q.room)?, user.clone(), affiliation).await.map_err(to_status)?;
        tracing::info!(room = %record.room, %user, affiliation = %q.affiliation, "room affiliation set by an operator");
        Ok(Response::new(operator_info(&record)))
    }
}
