//! `telex.v1.Sessions` on the node-to-node listener: device sessions that gateways on other
//! nodes route to the user's actor here, on the leader of the user's shard.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use telex_proto::v1 as pb;
use telex_proto::v1::sessions_server::Sessions;
use telex_raft::Groups;
use telex_session::Core;
use telex_types::UserJid;
use tonic::{Request, Response, Status, Streaming};

use crate::status::to_status;
use crate::stream::{AttachStream, Served};

/// Metadata naming the session's user and device on `Sessions.Attach`, and whether to hold
/// delivery until the device's first presence.
pub(crate) const USER_KEY: &str = "x-telex-user-bin";
pub(crate) const DEVICE_KEY: &str = "x-telex-device-bin";
pub(crate) const HOLD_KEY: &str = "x-telex-hold-bin";

pub struct SessionsService {
    groups: Arc<Groups>,
    core: Core,
}

impl SessionsService {
    pub fn new(groups: Arc<Groups>, core: Core) -> Self {
        SessionsService { groups, core }
    }
}

fn metadata_text(r: &Request<Streaming<pb::ClientFrame>>, key: &str) -> Result<String, Status> {
    let value = r.metadata().get_bin(key).ok_or_else(|| Status::invalid_argument(format!("missing {key} metadata")))?;
    let bytes = value.to_bytes().map_err(|_| Status::invalid_argument(format!("{key} is not base64")))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Status::invalid_argument(format!("{key} is not UTF-8")))
}

type AttachResponse = Pin<Box<dyn Stream<Item = Result<pb::AttachDown, Status>> + Send>>;

#[tonic::async_trait]
impl Sessions for SessionsService {
    type AttachStream = AttachResponse;

    async fn attach(&self, r: Request<Streaming<pb::ClientFrame>>) -> Result<Response<AttachResponse>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let user = UserJid::parse(&metadata_text(&r, USER_KEY)?).map_err(to_status)?;
        let device = metadata_text(&r, DEVICE_KEY)?;
        let hold = metadata_text(&r, HOLD_KEY).is_ok_and(|h| h == "1");
        let session = self.core.open_here(user, &device, hold).await.map_err(to_status)?;
        Ok(Response::new(Box::pin(AttachStream(Served::new(session, r.into_inner())))))
    }
}
