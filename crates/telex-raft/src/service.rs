//! The `telex.v1.Node` gRPC service: receives Raft RPCs and hands them to the right group.

use std::sync::Arc;

use serde::Serialize;
use telex_proto::v1::node_server::Node;
use telex_proto::v1::propose_reply::Outcome;
use telex_proto::v1::{
    read_reply, DropReplicaReply, DropReplicaRequest, LeaderClaims, LeadersAck, ReadReply, ReadRequest,
};
use telex_proto::v1::{
    CampaignReply, CampaignRequest, ChangeReplicaReply, ChangeReplicaRequest, DigestReply, DigestRequest, GroupDigest,
    JoinReply, JoinRequest, ProposeBatch, ProposeBatchReply, ProposeReply, Proposed, RaftKind, RaftReply, RaftRequest,
    ReadIndexReply, ReadIndexRequest, TransferLeaderReply, TransferLeaderRequest,
};
use telex_types::wire::{decode, encode};
use telex_types::{Command, TelexError};
use tonic::{Request, Response, Status};

use crate::{reads, Groups, ReplicaChange};

pub struct NodeService {
    groups: Arc<Groups>,
}

impl NodeService {
    pub fn new(groups: Arc<Groups>) -> Self {
        NodeService { groups }
    }

    /// A read for a node without a replica of `group`: only a replica answers (a node that is
    /// not says so, and the asker tries another).
    async fn answer_read(&self, group: u32, query: &[u8]) -> Result<Vec<u8>, TelexError> {
        if !self.groups.serves_reads(group) {
            return Err(TelexError::new(
                telex_types::ErrorCode::FailedPrecondition,
                format!("node {} holds no replica of group {group}", self.groups.node_id()),
            ));
        }
        let query: reads::Query = decode(query)?;
        self.groups.sync(group).await?;
        reads::answer(self.groups.store(), group, &query)
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(RaftReply { payload: encode(result) }))
}

fn bad(e: telex_types::TelexError) -> Status {
    Status::invalid_argument(format!("undecodable raft payload: {}", e.message))
}

/// Largest snapshot a replica accepts (snapshots are built and installed in memory).
const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

#[tonic::async_trait]
impl Node for NodeService {
    async fn raft(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let req = request.into_inner();
        let raft = self
            .groups
            .raft(req.group)
            .ok_or_else(|| Status::not_found(format!("this node has no raft group {}", req.group)))?;
        match RaftKind::try_from(req.kind) {
            Ok(RaftKind::Append) => reply(&raft.append_entries(decode(&req.payload).map_err(bad)?).await),
            Ok(RaftKind::Vote) => reply(&raft.vote(decode(&req.payload).map_err(bad)?).await),
            Ok(RaftKind::Snapshot) => {
                let chunk: openraft::raft::InstallSnapshotRequest<crate::types::TypeConfig> =
                    decode(&req.payload).map_err(bad)?;
                // The chunk lands in an in-memory buffer at its offset: a peer must not make it
                // reserve more than a snapshot can hold.
                if chunk.offset.saturating_add(chunk.data.len() as u64) > MAX_SNAPSHOT_BYTES {
                    return Err(Status::invalid_argument(format!(
                        "a snapshot chunk at offset {} would pass the {MAX_SNAPSHOT_BYTES}-byte limit",
                        chunk.offset
                    )));
                }
                reply(&raft.install_snapshot(chunk).await)
            }
            _ => Err(Status::invalid_argument(format!("unknown raft rpc kind {}", req.kind))),
        }
    }

    async fn propose(&self, request: Request<ProposeBatch>) -> Result<Response<ProposeBatchReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let writes = request.into_inner().requests.into_iter().map(|req| async move {
            let result = match decode::<Command>(&req.command) {
                // Only this node's own replica: a forwarded write is never forwarded again.
                Ok(cmd) => self.groups.write_local(req.group, cmd).await.map_err(TelexError::from),
                Err(e) => Err(e),
            };
            let outcome = match result {
                Ok((response, index)) => Outcome::Done(Proposed { response: encode(&response), index }),
                Err(e) => Outcome::Error(telex_proto::convert::error(&e)),
            };
            ProposeReply { outcome: Some(outcome) }
        });
        // Concurrently, so the writes share log entries in each group's proposer.
        let replies = futures::future::join_all(writes).await;
        Ok(Response::new(ProposeBatchReply { replies }))
    }

    async fn read_index(&self, request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let group = request.into_inner().group;
        let index = self.groups.read_index_local(group).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ReadIndexReply { index }))
    }

    async fn change_replica(
        &self,
        request: Request<ChangeReplicaRequest>,
    ) -> Result<Response<ChangeReplicaReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let r = request.into_inner();
        let change = if r.remove {
            ReplicaChange::Remove { node: r.node_id }
        } else {
            ReplicaChange::Add { node: r.node_id, addr: r.addr }
        };
        self.groups.change_replica(r.group, &change).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ChangeReplicaReply {}))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let claimed = request.get_ref().node_id;
        self.groups.admit(request.peer_certs(), Some(claimed))?;
        let r = request.into_inner();
        if r.node_id == 0 || r.addr.is_empty() {
            return Err(Status::invalid_argument("a joining node needs a non-zero node id and its node address"));
        }
        if r.node_id == self.groups.node_id() {
            return Err(Status::already_exists(format!("node id {} is this node's own id", r.node_id)));
        }
        if !self.groups.initialized().await {
            return Err(Status::failed_precondition("this node is not part of a cluster yet"));
        }
        tracing::info!(node = r.node_id, addr = %r.addr, fresh = r.fresh, fresh_groups = r.fresh_groups.len(), "node asks to join");
        let fresh = |g: u32| r.fresh || r.fresh_groups.contains(&g);
        let groups = self
            .groups
            .join(r.node_id, &r.addr, &r.zone, fresh)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(JoinReply { groups: groups as u32 }))
    }

    async fn digest(&self, request: Request<DigestRequest>) -> Result<Response<DigestReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let groups = request.into_inner().groups;
        if let Some(g) = groups.iter().find(|g| **g as usize >= self.groups.group_count()) {
            return Err(Status::not_found(format!("this node has no raft group {g}")));
        }
        let digests = self.groups.local_digests(groups).await.map_err(Status::internal)?;
        let digests = digests
            .into_iter()
            .map(|(group, d)| GroupDigest { group, applied_index: d.applied_index, keys: d.keys, hash: d.hash })
            .collect();
        Ok(Response::new(DigestReply { digests }))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let r = request.into_inner();
        let leader =
            self.groups.transfer_leader(r.group, r.to).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(TransferLeaderReply { leader: leader.unwrap_or(0) }))
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let r = request.into_inner();
        let outcome = match self.answer_read(r.group, &r.query).await {
            Ok(answer) => read_reply::Outcome::Answer(answer),
            Err(e) => read_reply::Outcome::Error(telex_proto::convert::error(&e)),
        };
        Ok(Response::new(ReadReply { outcome: Some(outcome) }))
    }

    async fn leaders(&self, request: Request<LeaderClaims>) -> Result<Response<LeadersAck>, Status> {
        let claimed = request.get_ref().node_id;
        self.groups.admit(request.peer_certs(), Some(claimed))?;
        let r = request.into_inner();
        let claims: Vec<(u32, u64)> = r.claims.iter().map(|c| (c.group, c.term)).collect();
        self.groups.leaders.learn(r.node_id, &claims);
        self.groups.leaders.learn_stopping(r.node_id, r.stopping);
        // Only members name doors a draining node sends clients to.
        let member = self.groups.members(telex_types::META_GROUP).iter().any(|(id, _)| *id == r.node_id);
        let doors = r.doors.filter(|_| member).map(|d| crate::leaders::Doors { client: d.client, xmpp: d.xmpp });
        self.groups.leaders.learn_doors(r.node_id, doors.unwrap_or_default());
        Ok(Response::new(LeadersAck {}))
    }

    async fn drop_replica(&self, request: Request<DropReplicaRequest>) -> Result<Response<DropReplicaReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let group = request.into_inner().group;
        if group as usize >= self.groups.group_count() {
            return Err(Status::not_found(format!("this node has no raft group {group}")));
        }
        // In a task of its own: a caller that gives up must not leave it half done.
        let groups = self.groups.clone();
        let dropped = tokio::spawn(async move { groups.drop_replica(group).await })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::failed_precondition(e.message))?;
        Ok(Response::new(DropReplicaReply { dropped }))
    }

    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignReply>, Status> {
        self.groups.admit(request.peer_certs(), None)?;
        let r = request.into_inner();
        if r.group as usize >= self.groups.group_count() {
            return Err(Status::not_found(format!("this node has no raft group {}", r.group)));
        }
        let for_ = std::time::Duration::from_millis(u64::from(r.for_ms).min(30_000));
        let old_leader = Some(r.old_leader).filter(|l| *l != 0);
        Ok(Response::new(CampaignReply { leader: self.groups.campaign(r.group, for_, old_leader).await }))
    }
}
