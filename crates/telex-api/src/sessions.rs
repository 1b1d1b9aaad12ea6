//! `telex.v1.Sessions` on the node-to-node listener: device sessions that gateways on other
//! nodes route to the user's actor here, on the leader of the user's shard.

use std::sync::Arc;

use telex_actors::Messaging;
use telex_proto::v1 as pb;
use telex_proto::v1::sessions_server::Sessions;
use telex_raft::Groups;
use telex_types::{shard, UserJid};
use tonic::{Request, Response, Status, Streaming};

use crate::gateway::{DEVICE_KEY, USER_KEY};
use crate::session::{local_session, FrameStream};
use crate::status::to_status;

pub struct SessionsService {
    groups: Arc<Groups>,
    messaging: Messaging,
}

impl SessionsService {
    pub fn new(groups: Arc<Groups>, messaging: Messaging) -> Self {
        SessionsService { groups, messaging }
    }
}

fn metadata_text(r: &Request<Streaming<pb::ClientFrame>>, key: &str) -> Result<String, Status> {
    let value = r.metadata().get_bin(key).ok_or_else(|| Status::invalid_argument(format!("missing {key} metadata")))?;
    let bytes = value.to_bytes().map_err(|_| Status::invalid_argument(format!("{key} is not base64")))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Status::invalid_argument(format!("{key} is not UTF-8")))
}

#[tonic::async_trait]
impl Sessions for SessionsService {
    type AttachStream = FrameStream;

    async fn attach(&self, r: Request<Streaming<pb::ClientFrame>>) -> Result<Response<FrameStream>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let user = UserJid::parse(&metadata_text(&r, USER_KEY)?).map_err(to_status)?;
        let device = metadata_text(&r, DEVICE_KEY)?;
        let group = shard::shard_of(&user, self.groups.shards());
        let leader = self.groups.serving_leader(group);
        if leader != Some(self.groups.node_id()) {
            let leader = leader.map_or("no node".to_string(), |l| format!("node {l}"));
            return Err(Status::failed_precondition(format!(
                "this node does not lead shard {group} of {user}; {leader} does"
            )));
        }
        Ok(Response::new(local_session(&self.messaging, user, device, r.into_inner()).await?))
    }
}
