//! The `telex.v1.Node` gRPC service: receives Raft RPCs and hands them to the right group.

use std::sync::Arc;

use serde::Serialize;
use telex_proto::v1::node_server::Node;
use telex_proto::v1::{RaftKind, RaftReply, RaftRequest};
use telex_types::wire::{decode, encode};
use tonic::{Request, Response, Status};

use crate::Groups;

pub struct NodeService {
    groups: Arc<Groups>,
}

impl NodeService {
    pub fn new(groups: Arc<Groups>) -> Self {
        NodeService { groups }
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(RaftReply { payload: encode(result) }))
}

fn bad(e: telex_types::TelexError) -> Status {
    Status::invalid_argument(format!("undecodable raft payload: {}", e.message))
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn raft(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        let raft = self
            .groups
            .raft(req.group)
            .ok_or_else(|| Status::not_found(format!("this node has no raft group {}", req.group)))?;
        match RaftKind::try_from(req.kind) {
            Ok(RaftKind::Append) => reply(&raft.append_entries(decode(&req.payload).map_err(bad)?).await),
            Ok(RaftKind::Vote) => reply(&raft.vote(decode(&req.payload).map_err(bad)?).await),
            Ok(RaftKind::Snapshot) => reply(&raft.install_snapshot(decode(&req.payload).map_err(bad)?).await),
            _ => Err(Status::invalid_argument(format!("unknown raft rpc kind {}", req.kind))),
        }
    }
}
