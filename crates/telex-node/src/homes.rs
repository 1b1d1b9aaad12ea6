//! Where users' actors live in a cluster (on their shard's leader), and the `telex.v1.Actors`
//! service through which other nodes reach them: roster operations that arrived through
//! another node's client API, subscription stanzas from contacts' actors, and signals for a
//! user's online devices.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use telex_actors::{Homes, Hub, RoomHub, RosterOp, RosterReply, Signal};
use telex_proto::convert;
use telex_proto::v1 as pb;
use telex_proto::v1::actors_client::ActorsClient;
use telex_proto::v1::actors_server::Actors;
use telex_raft::Groups;
use telex_types::occupancy::{RoomCall, RoomDelivery, RoomReply};
use telex_types::room::RoomJid;
use telex_types::roster::SubscriptionKind;
use telex_types::{shard, wire, GroupId, TelexError, UserJid};
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
        self.client_via(node, shard::shard_of(user, self.groups.shards()))
    }

    /// A client for `node`, whose address is known from `group`'s members (or the meta group).
    fn client_via(&self, node: u64, group: GroupId) -> Result<ActorsClient<tonic::transport::Channel>, TelexError> {
        let addr = self
            .groups
            .member_addr(group, node)
            .ok_or_else(|| TelexError::unavailable(format!("node {node} has no address; retry")))?;
        let channel = self.groups.peer_channel(&addr).map_err(TelexError::unavailable)?;
        // Room deliveries and histories carry up to hundreds of 64 KiB messages.
        Ok(ActorsClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20))
    }
}

fn unreachable(node: u64, e: impl std::fmt::Display) -> TelexError {
    TelexError::unavailable(format!("the user's actor on node {node} did not answer: {e}; retry"))
}

impl Homes for ClusterHomes {
    fn room_home(&self, room: &RoomJid) -> Option<u64> {
        let leader = self.groups.leader_of(shard::shard_of_room(room, self.groups.shards()))?;
        (leader != self.groups.node_id()).then_some(leader)
    }

    fn room_call(
        &self,
        node: u64,
        room: &RoomJid,
        call: RoomCall,
    ) -> BoxFuture<'static, Result<RoomReply, TelexError>> {
        let client = self.client_via(node, shard::shard_of_room(room, self.groups.shards()));
        let call = pb::RoomCallRequest { room: room.to_string(), call: wire::encode(&call) };
        Box::pin(async move {
            let mut client = client?;
            let reply = tokio::time::timeout(CALL_TIMEOUT, client.room_call(call))
                .await
                .map_err(|_| unreachable(node, "timed out"))?
                .map_err(|s| unreachable(node, s.message()))?;
            match reply.into_inner().outcome {
                Some(pb::room_call_reply::Outcome::Reply(bytes)) => wire::decode(&bytes),
                Some(pb::room_call_reply::Outcome::Error(e)) => Err(convert::telex_error(e)),
                None => Err(TelexError::internal("an empty room call reply")),
            }
        })
    }

    fn room_deliver(&self, node: u64, delivery: RoomDelivery) -> BoxFuture<'static, ()> {
        let client = self.client_via(node, shard::shard_of_room(&delivery.room, self.groups.shards()));
        let batch = pb::RoomDeliveryBatch { delivery: wire::encode(&delivery) };
        Box::pin(async move {
            let Ok(mut c) = client else {
                metrics::counter!("telex_room_deliveries_failed_total").increment(1);
                return;
            };
            if !matches!(tokio::time::timeout(CALL_TIMEOUT, c.room_deliver(batch)).await, Ok(Ok(_))) {
                // The devices there miss these live and read the room's log to catch up.
                metrics::counter!("telex_room_deliveries_failed_total").increment(1);
            }
        })
    }

    fn signal(&self, node: u64, to: &UserJid, signal: Signal) -> BoxFuture<'static, ()> {
        let client = self.client(node, to);
        let call = pb::SignalCall {
            to: to.to_string(),
            signal: Some(pb::Signal {
                from: signal.from.to_string(),
                from_device: signal.from_device,
                payload: signal.payload,
            }),
        };
        Box::pin(async move {
            if let Ok(mut c) = client {
                // Ephemeral: a lost signal is not retried.
                let _ = tokio::time::timeout(CALL_TIMEOUT, c.signal(call)).await;
            }
        })
    }

    fn remote_home(&self, user: &UserJid) -> Option<u64> {
        let group = shard::shard_of(user, self.groups.shards());
        let leader = self.groups.leader_of(group)?;
        (leader != self.groups.node_id()).then_some(leader)
    }

    fn roster(&self, node: u64, user: &UserJid, op: RosterOp) -> BoxFuture<'static, Result<RosterReply, TelexError>> {
        let client = self.client(node, user);
        let call = pb::RosterCall { user: user.to_string(), op: Some(convert::roster_op(op)) };
        Box::pin(async move {
            let mut client = client?;
            let reply = tokio::time::timeout(CALL_TIMEOUT, client.roster(call))
                .await
                .map_err(|_| unreachable(node, "timed out"))?
                .map_err(|s| unreachable(node, s.message()))?;
            convert::from_roster_reply(reply.into_inner())
        })
    }

    fn subscription(&self, node: u64, to: &UserJid, from: &UserJid, kind: SubscriptionKind) -> BoxFuture<'static, ()> {
        let client = self.client(node, to);
        let call = pb::SubscriptionCall {
            to: to.to_string(),
            from: from.to_string(),
            kind: convert::subscription_kind(kind) as i32,
        };
        let to = to.clone();
        Box::pin(async move {
            let sent = match client {
                Ok(mut c) => match tokio::time::timeout(CALL_TIMEOUT, c.subscription(call)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(s)) => Err(s.message().to_string()),
                    Err(_) => Err("timed out".to_string()),
                },
                Err(e) => Err(e.message),
            };
            // Only the sender's side is stored: the contact never learns of this stanza (best
            // effort; the user repeating the roster operation sends it again).
            if let Err(e) = sent {
                tracing::warn!(to = %to, node, error = %e, "subscription stanza not delivered to the contact's actor");
            }
        })
    }
}

/// The receiving side, on the node-to-node listener: runs the call on the actor here.
pub struct ActorsService {
    hub: Hub,
    rooms: RoomHub,
    groups: Arc<Groups>,
}

impl ActorsService {
    pub fn new(hub: Hub, rooms: RoomHub, groups: Arc<Groups>) -> Self {
        ActorsService { hub, rooms, groups }
    }
}

fn bad(e: TelexError) -> Status {
    Status::invalid_argument(format!("bad actor call: {}", e.message))
}

#[tonic::async_trait]
impl Actors for ActorsService {
    async fn roster(&self, r: Request<pb::RosterCall>) -> Result<Response<pb::RosterCallReply>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let call = r.into_inner();
        let user = UserJid::parse(&call.user).map_err(bad)?;
        let op = convert::from_roster_op(call.op.unwrap_or_default()).map_err(bad)?;
        let result = self.hub.roster_here(&user, op).await;
        Ok(Response::new(convert::roster_reply(result)))
    }

    async fn signal(&self, r: Request<pb::SignalCall>) -> Result<Response<pb::ActorAck>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let call = r.into_inner();
        let to = UserJid::parse(&call.to).map_err(bad)?;
        let s = call.signal.ok_or_else(|| bad(TelexError::invalid("a signal call without a signal")))?;
        let signal =
            Signal { from: UserJid::parse(&s.from).map_err(bad)?, from_device: s.from_device, payload: s.payload };
        self.hub.signal_here(&to, signal);
        Ok(Response::new(pb::ActorAck {}))
    }

    async fn room_call(&self, r: Request<pb::RoomCallRequest>) -> Result<Response<pb::RoomCallReply>, Status> {
        use pb::room_call_reply::Outcome;
        self.groups.admit(r.peer_certs(), None)?;
        let req = r.into_inner();
        let room = RoomJid::parse(&req.room).map_err(bad)?;
        let call: RoomCall = wire::decode(&req.call).map_err(bad)?;
        let outcome = match self.rooms.call_here(&room, call).await {
            Ok(reply) => Outcome::Reply(wire::encode(&reply)),
            Err(e) => Outcome::Error(convert::error(&e)),
        };
        Ok(Response::new(pb::RoomCallReply { outcome: Some(outcome) }))
    }

    async fn room_deliver(&self, r: Request<pb::RoomDeliveryBatch>) -> Result<Response<pb::ActorAck>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let delivery: RoomDelivery = wire::decode(&r.into_inner().delivery).map_err(bad)?;
        self.hub.room_deliver_here(&delivery.room, Arc::new(delivery.events), &delivery.to);
        Ok(Response::new(pb::ActorAck {}))
    }

    async fn subscription(&self, r: Request<pb::SubscriptionCall>) -> Result<Response<pb::ActorAck>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        let call = r.into_inner();
        let (to, from) = (UserJid::parse(&call.to).map_err(bad)?, UserJid::parse(&call.from).map_err(bad)?);
        let kind = convert::from_subscription_kind(call.kind).map_err(bad)?;
        self.hub.subscription_here(&to, &from, kind).await;
        Ok(Response::new(pb::ActorAck {}))
    }
}
