//! Where users' actors live in a cluster (on their shard's leader), and the `telex.v1.Actors`
//! service through which other nodes reach them: roster operations that arrived through
//! another node's client API, and subscription stanzas from contacts' actors.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use telex_actors::{Homes, Hub, RosterOp, RosterReply};
use telex_proto::v1 as pb;
use telex_proto::v1::actors_client::ActorsClient;
use telex_proto::v1::actors_server::Actors;
use telex_raft::Groups;
use telex_types::roster::SubscriptionKind;
use telex_types::wire::{decode, encode};
use telex_types::{shard, TelexError, UserJid};
use tonic::{Request, Response, Status};

/// A call to an actor on another node gives up after this long (the caller may retry).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ClusterHomes {
    groups: Arc<Groups>,
}

impl ClusterHomes {
    pub fn new(groups: Arc<Groups>) -> Self {
        ClusterHomes { groups }
    }

    fn client(&self, node: u64, user: &UserJid) -> Result<ActorsClient<tonic::transport::Channel>, TelexError> {
        let group = shard::shard_of(user, self.groups.shards());
        let addr = self
            .groups
            .member_addr(group, node)
            .ok_or_else(|| TelexError::unavailable(format!("node {node} has no address; retry")))?;
        let channel = self.groups.peer_channel(&addr).map_err(TelexError::unavailable)?;
        Ok(ActorsClient::new(channel))
    }
}

fn unreachable(node: u64, e: impl std::fmt::Display) -> TelexError {
    TelexError::unavailable(format!("the user's actor on node {node} did not answer: {e}; retry"))
}

impl Homes for ClusterHomes {
    fn signal(
        &self,
        node: u64,
        to: &UserJid,
        from: &UserJid,
        from_device: &str,
        payload: String,
    ) -> BoxFuture<'static, ()> {
        let client = self.client(node, to);
        let call = pb::ActorCall { payload: encode(&(to.clone(), from.clone(), from_device.to_string(), payload)) };
        Box::pin(async move {
            if let Ok(mut c) = client {
                // Ephemeral: a lost signal is not retried.
                let _ = tokio::time::timeout(CALL_TIMEOUT, c.signal(call)).await;
            }
        })
    }

    fn remote_home(&self, user: &UserJid) -> Option<u64> {
        let group = shard::shard_of(user, self.groups.shards());
        let leader = self.groups.raft(group)?.metrics().borrow().current_leader?;
        (leader != self.groups.node_id()).then_some(leader)
    }

    fn roster(&self, node: u64, user: &UserJid, op: RosterOp) -> BoxFuture<'static, Result<RosterReply, TelexError>> {
        let client = self.client(node, user);
        let payload = encode(&(user.clone(), op));
        Box::pin(async move {
            let mut client = client?;
            let call = client.roster(pb::ActorCall { payload });
            let reply = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| unreachable(node, "timed out"))?
                .map_err(|s| unreachable(node, s.message()))?;
            decode::<Result<RosterReply, TelexError>>(&reply.into_inner().payload)?
        })
    }

    fn subscription(&self, node: u64, to: &UserJid, from: &UserJid, kind: SubscriptionKind) -> BoxFuture<'static, ()> {
        let client = self.client(node, to);
        let payload = encode(&(to.clone(), from.clone(), kind));
        let to = to.clone();
        Box::pin(async move {
            let sent = match client {
                Ok(mut c) => {
                    match tokio::time::timeout(CALL_TIMEOUT, c.subscription(pb::ActorCall { payload })).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(s)) => Err(s.message().to_string()),
                        Err(_) => Err("timed out".to_string()),
                    }
                }
                Err(e) => Err(e.message),
            };
            // The subscription state is durable on both sides; only the push to online
            // devices is lost, and they see the request on their next roster fetch.
            if let Err(e) = sent {
                tracing::warn!(to = %to, node, error = %e, "subscription stanza not delivered to the contact's actor");
            }
        })
    }
}

/// The receiving side, on the node-to-node listener: runs the call on the actor here.
pub struct ActorsService {
    hub: Hub,
    groups: Arc<Groups>,
}

impl ActorsService {
    pub fn new(hub: Hub, groups: Arc<Groups>) -> Self {
        ActorsService { hub, groups }
    }
}

fn bad(e: TelexError) -> Status {
    Status::invalid_argument(format!("undecodable actor call: {}", e.message))
}

#[tonic::async_trait]
impl Actors for ActorsService {
    async fn roster(&self, r: Request<pb::ActorCall>) -> Result<Response<pb::ActorReply>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let (user, op): (UserJid, RosterOp) = decode(&r.into_inner().payload).map_err(bad)?;
        let result = self.hub.roster_here(&user, op).await;
        Ok(Response::new(pb::ActorReply { payload: encode(&result) }))
    }

    async fn signal(&self, r: Request<pb::ActorCall>) -> Result<Response<pb::ActorReply>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let (to, from, device, payload): (UserJid, UserJid, String, String) =
            decode(&r.into_inner().payload).map_err(bad)?;
        self.hub.signal_here(&to, &from, &device, payload);
        Ok(Response::new(pb::ActorReply { payload: encode(&()) }))
    }

    async fn subscription(&self, r: Request<pb::ActorCall>) -> Result<Response<pb::ActorReply>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let (to, from, kind): (UserJid, UserJid, SubscriptionKind) = decode(&r.into_inner().payload).map_err(bad)?;
        self.hub.subscription_here(&to, &from, kind).await;
        Ok(Response::new(pb::ActorReply { payload: encode(&()) }))
    }
}
