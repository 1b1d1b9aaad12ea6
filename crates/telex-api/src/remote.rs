//! How this node's sessions reach users' actors on other nodes: `Sessions.Attach` on the node
//! that leads the user's shard, with the frames converted to and from protobuf at this edge.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use telex_proto::convert;
use telex_proto::v1 as pb;
use telex_proto::v1::sessions_client::SessionsClient;
use telex_raft::Groups;
use telex_session::{ClientFrame, Home, Remote, RemoteEvent, RemoteLink, SENDS_IN_FLIGHT};
use telex_types::{shard, TelexError, UserJid, META_GROUP};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;

use crate::sessions::{DEVICE_KEY, HOLD_KEY, USER_KEY};
use crate::status::to_error;

/// How long a remote node may take to accept an attachment (it may be cut off).
const REMOTE_ATTACH_TIMEOUT: Duration = Duration::from_secs(2);

/// The session core's `Remote` over this node's Raft groups and its node-to-node channels.
pub struct GrpcRemote {
    groups: Arc<Groups>,
}

impl GrpcRemote {
    pub fn new(groups: Arc<Groups>) -> Self {
        GrpcRemote { groups }
    }
}

fn down_event(d: Result<pb::AttachDown, tonic::Status>) -> Option<RemoteEvent> {
    use pb::attach_down::Event;
    match d {
        Ok(pb::AttachDown { event: Some(Event::Frame(f)) }) => match convert::from_server_frame(f) {
            Ok(Some(f)) => Some(RemoteEvent::Frame(Box::new(f))),
            Ok(None) => None,
            Err(e) => Some(RemoteEvent::Lost(format!("undecodable frame from the actor's node: {}", e.message))),
        },
        Ok(pb::AttachDown { event: Some(Event::End(e)) }) => Some(RemoteEvent::End(convert::cut_off(e))),
        Ok(pb::AttachDown { event: None }) => None,
        Err(s) => Some(RemoteEvent::Lost(s.message().to_string())),
    }
}

impl Remote for GrpcRemote {
    fn home(&self, user: &UserJid) -> Home {
        // A single node serves every actor itself, whatever its groups say.
        if self.groups.members(META_GROUP).len() <= 1 {
            return Home::Here;
        }
        match self.groups.serving_leader(shard::shard_of(user, self.groups.shards())) {
            Some(l) if l == self.groups.node_id() => Home::Here,
            Some(l) => Home::Node(l),
            None => Home::Unknown,
        }
    }

    fn attach(
        &self,
        node: u64,
        user: &UserJid,
        device: &str,
        hold: bool,
    ) -> BoxFuture<'static, Result<RemoteLink, TelexError>> {
        let group = shard::shard_of(user, self.groups.shards());
        let channel = self
            .groups
            .member_addr(group, node)
            .ok_or_else(|| TelexError::unavailable(format!("node {node} has no address")))
            .and_then(|addr| self.groups.peer_channel(&addr).map_err(TelexError::unavailable));
        let (user, device) = (user.to_string(), device.to_string());
        Box::pin(async move {
            let (up, rx) = mpsc::channel::<ClientFrame>(SENDS_IN_FLIGHT);
            let mut request = tonic::Request::new(ReceiverStream::new(rx).map(convert::to_client_frame));
            let md = request.metadata_mut();
            md.insert_bin(USER_KEY, MetadataValue::from_bytes(user.as_bytes()));
            md.insert_bin(DEVICE_KEY, MetadataValue::from_bytes(device.as_bytes()));
            md.insert_bin(HOLD_KEY, MetadataValue::from_bytes(if hold { b"1" } else { b"0" }));
            let mut client = SessionsClient::new(channel?);
            let down = tokio::time::timeout(REMOTE_ATTACH_TIMEOUT, client.attach(request))
                .await
                .map_err(|_| TelexError::unavailable(format!("node {node} did not answer an attach in time")))?
                .map_err(|s| to_error(&s))?
                .into_inner();
            Ok(RemoteLink { up, down: Box::pin(down.filter_map(|d| std::future::ready(down_event(d)))) })
        })
    }
}
