//! Raft RPCs to other nodes over the node-to-node gRPC listener. One HTTP/2 channel per peer
//! address is shared by every group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::{de::DeserializeOwned, Serialize};
use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::{RaftKind, RaftRequest};
use telex_types::GroupId;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::types::{NodeId, TypeConfig};

/// Creates per-group connections; shares channels between them.
#[derive(Clone, Default)]
pub struct NetworkFactory {
    channels: Arc<DashMap<String, Channel>>,
    /// Peers reached at another address than the one they advertise (a tunnel, a NAT, or a
    /// test's fault-injecting proxy).
    routes: Arc<BTreeMap<NodeId, String>>,
    /// mTLS towards peers, when configured.
    tls: Option<ClientTlsConfig>,
}

impl NetworkFactory {
    pub fn new(routes: BTreeMap<NodeId, String>, tls: Option<ClientTlsConfig>) -> NetworkFactory {
        NetworkFactory { channels: Arc::default(), routes: Arc::new(routes), tls }
    }

    /// The address to dial for `node`, which advertises `advertised`.
    pub(crate) fn route(&self, node: NodeId, advertised: &str) -> String {
        self.routes.get(&node).cloned().unwrap_or_else(|| advertised.to_string())
    }

    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, String> {
        if let Some(c) = self.channels.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad node address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| format!("node TLS settings: {e}"))?;
        }
        let channel = endpoint.connect_lazy();
        self.channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// A factory bound to one group, as openraft wants one per `Raft`.
    pub fn for_group(&self, group: GroupId) -> GroupNetwork {
        GroupNetwork { shared: self.clone(), group }
    }
}

pub struct GroupNetwork {
    shared: NetworkFactory,
    group: GroupId,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        let addr = self.shared.route(target, &node.addr);
        Connection { channel: self.shared.channel(&addr), group: self.group, target }
    }
}

pub struct Connection {
    channel: Result<Channel, String>,
    group: GroupId,
    target: NodeId,
}

/// A transport failure, as an error openraft can carry.
#[derive(Debug)]
struct Transport(String);

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transport {}

impl Connection {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: RaftKind,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = match &self.channel {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Transport(e.clone())))),
        };
        let request = RaftRequest { group: self.group, kind: kind as i32, payload: telex_types::wire::encode(req) };
        let reply = tokio::time::timeout(ttl, NodeClient::new(channel).raft(request)).await;
        let reply = match reply {
            Err(_) => return Err(RPCError::Network(NetworkError::new(&Transport(format!("timed out after {ttl:?}"))))),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&Transport(status.message().to_string()))))
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&Transport(status.to_string())))),
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = telex_types::wire::decode(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&Transport(e.message))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftKind::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(RaftKind::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftKind::Vote, &rpc, option.hard_ttl()).await
    }
}
