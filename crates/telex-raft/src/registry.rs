//! The node's Raft groups: the meta group and every shard group, all over one store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::{ChangeReplicaRequest, JoinRequest, ReadIndexRequest};
use telex_store::Store;
use telex_types::records::NodeRecord;
use telex_types::{shard, Command, GroupId, Response, TelexError, UserJid, META_GROUP};
use tokio::sync::{mpsc, oneshot};

use crate::forwarder::Forwarder;
use crate::network::NetworkFactory;
use crate::proposer::{self, Proposal};
use crate::types::{NodeId, Raft};
use crate::{LogStore, StateMachine};

#[derive(Clone, Debug)]
pub struct GroupsConfig {
    pub node_id: NodeId,
    /// This node's node-to-node address, as peers reach it.
    pub node_addr: String,
    pub shards: u32,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and later purge the log) after this many applied entries.
    pub snapshot_after_entries: u64,
    /// How long a write may wait for commit before it is refused as unavailable.
    pub write_timeout: Duration,
    /// Voters per group (R): nodes that join become voters of groups with fewer.
    pub replicas: usize,
    /// Log entries kept behind a snapshot, so a lagging replica can catch up from the log.
    pub keep_log_entries: u64,
    /// Peers dialled at another address than the one they advertise.
    pub peer_routes: BTreeMap<NodeId, String>,
    /// mTLS between nodes, when configured.
    pub tls: Option<crate::identity::NodeTls>,
    /// This node's failure domain, for placement (empty: unknown).
    pub zone: String,
    /// Leaderships uneven this long (every node up, no replica moving) are spread again by
    /// the placement driver; `None`: only on request (`rebalance`).
    pub balance_leaders_after: Option<Duration>,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            node_id: 1,
            node_addr: "127.0.0.1:7401".into(),
            shards: 64,
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_after_entries: 20_000,
            write_timeout: Duration::from_secs(10),
            replicas: 3,
            keep_log_entries: 1000,
            peer_routes: BTreeMap::new(),
            tls: None,
            zone: String::new(),
            balance_leaders_after: None,
        }
    }
}

/// Why a write was not applied. Every variant maps to a retryable `Unavailable` except `Fatal`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    #[error("group {group} is led by another node ({leader:?}); retry there")]
    NotLeader { group: GroupId, leader: Option<NodeId> },
    #[error("group {group} did not commit within {timeout:?}; the write may or may not have happened")]
    Timeout { group: GroupId, timeout: Duration },
    #[error("group {group}: the write could not be forwarded to its leader (node {leader}): {message}")]
    Forward { group: GroupId, leader: NodeId, message: String },
    #[error("group {group} has no quorum of voters reachable ({message}); retry later")]
    NoQuorum { group: GroupId, message: String },
    #[error("group {group} is stopping on this node (shutdown); retry, or use another node")]
    Stopped { group: GroupId },
    #[error("group {group} is not running: {message}")]
    Fatal { group: GroupId, message: String },
}

impl From<WriteError> for TelexError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Fatal { .. } => TelexError::internal(e.to_string()),
            _ => TelexError::unavailable(e.to_string()),
        }
    }
}

fn fatal(group: GroupId) -> impl Fn(TelexError) -> WriteError {
    move |e| WriteError::Fatal { group, message: e.message }
}

/// A snapshot of one group's Raft state, for status pages.
#[derive(Clone, Debug)]
pub struct GroupInfo {
    pub group: GroupId,
    pub role: &'static str,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// Every member with its address.
    pub members: Vec<(NodeId, String)>,
    /// When this node leads the group: how many entries the slowest replica is behind.
    pub max_lag: Option<u64>,
}

impl GroupInfo {
    /// A group this node holds no replica of: its leader as announced, its replicas as placed.
    fn elsewhere(group: GroupId, leader: Option<NodeId>, voters: Vec<NodeId>) -> GroupInfo {
        GroupInfo {
            group,
            role: "none",
            leader,
            term: 0,
            last_log_index: 0,
            applied_index: 0,
            snapshot_index: 0,
            purged_index: 0,
            voters,
            learners: Vec::new(),
            members: Vec::new(),
            max_lag: None,
        }
    }
}

pub struct Groups {
    pub(crate) config: GroupsConfig,
    store: Arc<Store>,
    /// Indexed by group id: 0 is meta, 1..=S are shards. Every node runs an instance of every
    /// group; one that holds no replica of a group has it uninitialised (no membership, no
    /// data) until placement adds it, and gets a fresh one when placement takes it out.
    rafts: Vec<std::sync::RwLock<Slot>>,
    pub(crate) raft_config: Arc<openraft::Config>,
    pub(crate) network: NetworkFactory,
    forwarder: Forwarder,
    appended: AppendHook,
    /// Peers the watchdog currently finds unreachable.
    pub(crate) down: std::sync::RwLock<std::collections::BTreeSet<NodeId>>,
    /// Who leads the groups this node holds no replica of (`leaders`).
    pub(crate) leaders: crate::leaders::Directory,
    /// Where clients reach this node, announced to peers while it accepts sessions.
    pub(crate) doors: std::sync::RwLock<Option<crate::leaders::Doors>>,
    /// This node is stopping (announced to peers, which then balance nothing onto it).
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// Wakes the placement driver (a node joined or is being drained).
    pub(crate) placement_changed: tokio::sync::Notify,
    /// Held while a replica is being dropped: one at a time.
    pub(crate) dropping: tokio::sync::Mutex<()>,
}

/// One group's Raft instance and the queue of its proposer.
#[derive(Clone)]
pub(crate) struct Slot {
    pub raft: Raft,
    pub proposer: mpsc::Sender<Proposal>,
}

/// Set once the actors exist; called by every group's state machine after it applies changes
/// that actors care about.
pub(crate) type AppendHook = Arc<std::sync::OnceLock<Box<dyn Fn(&Applied) + Send + Sync>>>;

/// One change to the set of nodes replicating a group.
#[derive(Clone, Debug)]
pub enum ReplicaChange {
    Add { node: NodeId, addr: String },
    Remove { node: NodeId },
}

/// Why a join through one seed did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// Nothing answered at the seed's address (not started yet, or not resolvable).
    Unreachable(String),
    /// The seed answered but is not part of a cluster itself.
    NoCluster,
    /// A cluster member answered and refused, or could not finish.
    Refused(String),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Unreachable(e) => write!(f, "unreachable: {e}"),
            JoinError::NoCluster => f.write_str("not part of a cluster yet"),
            JoinError::Refused(e) => f.write_str(e),
        }
    }
}

/// A change applied by this node's replica of a shard (on the leader and followers alike).
#[derive(Clone, Debug)]
pub enum Applied {
    /// The user's archive grew.
    Archive(UserJid),
    /// The user's roster or block list changed.
    Social(UserJid),
    /// The room's log grew.
    Room(telex_types::room::RoomJid),
    /// The room's record changed (created, configured, affiliations, destroyed).
    RoomChanged(telex_types::room::RoomJid),
    /// Meta group: the tenant's directory (attributes, groups, memberships) or policy changed.
    Directory(telex_types::Domain),
}

impl Groups {
    /// Starts every group of this node. Groups resume from whatever the store holds.
    pub async fn start(store: Arc<Store>, config: GroupsConfig) -> Result<Arc<Groups>, TelexError> {
        let raft_config = openraft::Config {
            cluster_name: "telex".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_entries),
            max_in_snapshot_log_to_keep: config.keep_log_entries,
            max_payload_entries: 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| TelexError::invalid(format!("raft settings: {e}")))?;
        let raft_config = Arc::new(raft_config);
        let network = NetworkFactory::new(config.peer_routes.clone(), config.tls.as_ref().map(|t| t.client()));
        let appended = AppendHook::default();
        let mut rafts = Vec::with_capacity(config.shards as usize + 1);
        for group in std::iter::once(META_GROUP).chain(shard::shard_groups(config.shards)) {
            let slot = Self::new_slot(&config, &raft_config, &network, &store, &appended, group).await?;
            rafts.push(std::sync::RwLock::new(slot));
        }
        Ok(Arc::new(Groups {
            config,
            store,
            rafts,
            raft_config,
            network,
            forwarder: Forwarder::default(),
            appended,
            down: Default::default(),
            leaders: Default::default(),
            doors: Default::default(),
            stopping: Default::default(),
            placement_changed: Default::default(),
            dropping: Default::default(),
        }))
    }

    /// Starts `group`'s Raft instance over whatever the store holds for it.
    pub(crate) async fn new_slot(
        config: &GroupsConfig,
        raft_config: &Arc<openraft::Config>,
        network: &NetworkFactory,
        store: &Arc<Store>,
        appended: &AppendHook,
        group: GroupId,
    ) -> Result<Slot, TelexError> {
        let raft = Raft::new(
            config.node_id,
            raft_config.clone(),
            network.for_group(group),
            LogStore::new(store.clone(), group),
            StateMachine::new(store.clone(), group).with_append_hook(appended.clone()),
        )
        .await
        .map_err(|e| TelexError::internal(format!("starting raft group {group}: {e}")))?;
        let proposer = proposer::spawn(group, raft.clone(), config.write_timeout);
        Ok(Slot { raft, proposer })
    }

    pub(crate) fn slot(&self, group: GroupId) -> Option<Slot> {
        Some(self.rafts.get(group as usize)?.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    pub(crate) fn replace_slot(&self, group: GroupId, slot: Slot) {
        if let Some(s) = self.rafts.get(group as usize) {
            *s.write().unwrap_or_else(|e| e.into_inner()) = slot;
        }
    }

    pub(crate) fn appended(&self) -> &AppendHook {
        &self.appended
    }

    /// Makes this node the single voter of every group that has no membership yet. Idempotent:
    /// groups that were initialised before are left alone.
    pub async fn bootstrap_single_node(&self) -> Result<(), TelexError> {
        let members = BTreeMap::from([(self.config.node_id, BasicNode { addr: self.config.node_addr.clone() })]);
        for group in 0..self.group_count() as GroupId {
            let Some(raft) = self.raft(group) else { continue };
            let initialized = raft.is_initialized().await.map_err(|e| TelexError::internal(e.to_string()))?;
            if !initialized {
                raft.initialize(members.clone())
                    .await
                    .map_err(|e| TelexError::internal(format!("initialising group {group}: {e}")))?;
            }
        }
        Ok(())
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn shards(&self) -> u32 {
        self.config.shards
    }

    /// Replicas per shard group (R).
    pub fn replicas(&self) -> usize {
        self.config.replicas
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn raft(&self, group: GroupId) -> Option<Raft> {
        self.slot(group).map(|s| s.raft)
    }

    /// Whether this node holds a replica of `group` (as a voter or a learner).
    pub fn hosts(&self, group: GroupId) -> bool {
        let Some(raft) = self.raft(group) else { return false };
        let metrics = raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().get_node(&self.config.node_id).is_some()
    }

    /// Whether reads of `group` may be answered from this node's store: it is a voter (a
    /// learner may still be catching up: a new replica is made a voter only once it has).
    pub fn serves_reads(&self, group: GroupId) -> bool {
        let Some(raft) = self.raft(group) else { return false };
        let metrics = raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().voter_ids().any(|v| v == self.config.node_id)
    }

    /// The group's leader: from this node's replica, or (holding none) as its leader last
    /// announced (`leaders`).
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        if self.hosts(group) {
            return self.raft(group)?.metrics().borrow().current_leader;
        }
        self.leaders.get(group)
    }

    /// The group's leader as far as serving sessions goes: none while this node leads it but
    /// cannot reach a majority of its voters (openraft 0.9 keeps such a leader in office, yet it
    /// can commit nothing, so its sessions are better served elsewhere).
    pub fn serving_leader(&self, group: GroupId) -> Option<NodeId> {
        if !self.hosts(group) {
            return self.leaders.get(group);
        }
        // Polled often (every session attach, every group each 100 ms): borrow, do not clone.
        let metrics = self.raft(group)?.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        if leader != self.config.node_id {
            return Some(leader);
        }
        let down = self.down.read().unwrap_or_else(|e| e.into_inner());
        let (mut voters, mut up) = (0, 0);
        for v in m.membership_config.membership().voter_ids() {
            voters += 1;
            up += usize::from(!down.contains(&v));
        }
        (up * 2 > voters).then_some(leader)
    }

    /// Number of groups (meta and shards).
    pub fn group_count(&self) -> usize {
        self.rafts.len()
    }

    /// The shard group holding `user`.
    pub fn shard_of(&self, user: &UserJid) -> GroupId {
        shard::shard_of(user, self.config.shards)
    }

    /// Proposes `cmd` to `group` and waits until it is committed (durable on a majority) and
    /// applied here. A node that does not lead the group forwards the command to the leader and
    /// then waits until its own replica has applied it, so reads here see the write.
    pub async fn write(&self, group: GroupId, cmd: Command) -> Result<Response, WriteError> {
        let deadline = Instant::now() + self.config.write_timeout;
        loop {
            if !self.hosts(group) && group != META_GROUP {
                // No replica here: the leader's answer is all there is to wait for.
                match self.leaders.get(group) {
                    Some(leader) if leader != self.config.node_id => match self.forward(group, leader, &cmd).await {
                        Ok((response, _)) => return Ok(response),
                        // The announced leader may have just lost the group: ask again.
                        Err(WriteError::NotLeader { .. } | WriteError::Forward { .. }) if Instant::now() < deadline => {
                        }
                        Err(e) => return Err(e),
                    },
                    _ if Instant::now() < deadline => {}
                    _ => return Err(WriteError::NotLeader { group, leader: None }),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            match self.write_local(group, cmd.clone()).await {
                Ok((response, _)) => return Ok(response),
                Err(WriteError::NotLeader { leader: Some(leader), .. }) if leader != self.config.node_id => {
                    let (response, index) = self.forward(group, leader, &cmd).await?;
                    self.wait_applied(group, index, deadline).await;
                    return Ok(response);
                }
                // No leader yet (an election is running): nothing was proposed, so wait and retry.
                Err(WriteError::NotLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Proposes through this node's own replica; `NotLeader` when it does not lead the group.
    /// Returns the response and the log index of the entry that carried it.
    pub async fn write_local(&self, group: GroupId, cmd: Command) -> Result<(Response, u64), WriteError> {
        let queue =
            self.slot(group).ok_or_else(|| WriteError::Fatal { group, message: "no such group".into() })?.proposer;
        let kind = cmd.kind();
        let started = Instant::now();
        let timeout = self.config.write_timeout;
        let stopped = || WriteError::Stopped { group };
        let (reply, answer) = oneshot::channel();
        let result = tokio::time::timeout(timeout, async {
            queue.send(Proposal { cmd, reply }).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
        .await
        .unwrap_or(Err(WriteError::Timeout { group, timeout }));
        metrics::histogram!("telex_raft_write_seconds", "kind" => kind).record(started.elapsed().as_secs_f64());
        result
    }

    /// Sends a write to the group's leader on another node (batched per node, see `forwarder`).
    async fn forward(&self, group: GroupId, leader: NodeId, cmd: &Command) -> Result<(Response, u64), WriteError> {
        let addr = self.member_addr(group, leader).ok_or(WriteError::NotLeader { group, leader: None })?;
        let timeout = self.config.write_timeout;
        self.forwarder.forward(&self.network, &addr, group, leader, cmd.clone(), timeout).await
    }

    /// Waits until this node's replica of `group` has applied everything committed before the
    /// call, so a read here sees writes acknowledged through any node. On the leader that is a
    /// leadership check; on a follower, a read index from the leader. Best effort for reads: a
    /// replica still behind after the write timeout answers anyway (`catch_up` insists).
    pub async fn sync(&self, group: GroupId) -> Result<(), WriteError> {
        if !self.hosts(group) {
            // Nothing here to catch up: reads of this group go to a replica (`read_remote`).
            return Ok(());
        }
        self.catch_up_within(group).await.map(|_| ())
    }

    /// As `sync`, but an error unless this replica really applied everything committed before
    /// the call (backups rely on it).
    pub async fn catch_up(&self, group: GroupId) -> Result<(), WriteError> {
        match self.catch_up_within(group).await? {
            true => Ok(()),
            false => Err(WriteError::Timeout { group, timeout: self.config.write_timeout }),
        }
    }

    /// The read index of `group` (here on the leader, else asked of it) and whether this
    /// replica applied up to it within the write timeout.
    async fn catch_up_within(&self, group: GroupId) -> Result<bool, WriteError> {
        let deadline = Instant::now() + self.config.write_timeout;
        let leader = self.raft(group).and_then(|r| r.metrics().borrow().current_leader);
        let index = match leader {
            // On the leader the read index is confirmed and applied.
            Some(l) if l == self.config.node_id => return self.read_index_local(group).await.map(|_| true),
            Some(l) => {
                let addr = self.member_addr(group, l).ok_or(WriteError::NotLeader { group, leader: None })?;
                let fail = |message: String| WriteError::Forward { group, leader: l, message };
                let mut client = NodeClient::new(self.network.channel(&addr).map_err(fail)?);
                let call = client.read_index(ReadIndexRequest { group });
                let reply = tokio::time::timeout(self.config.write_timeout, call)
                    .await
                    .map_err(|_| WriteError::Timeout { group, timeout: self.config.write_timeout })?
                    .map_err(|s| fail(s.message().to_string()))?;
                reply.into_inner().index
            }
            None => return Err(WriteError::NotLeader { group, leader: None }),
        };
        Ok(self.wait_applied(group, index, deadline).await)
    }

    /// On the leader: the applied index after confirming leadership with a quorum.
    pub async fn read_index_local(&self, group: GroupId) -> Result<u64, WriteError> {
        let raft = self.raft(group).ok_or_else(|| WriteError::Fatal { group, message: "no such group".into() })?;
        match raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader { group, leader: f.leader_id })
            }
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(WriteError::NoQuorum { group, message: e.to_string() })
            }
            Err(e) => Err(WriteError::Fatal { group, message: e.to_string() }),
        }
    }

    /// Waits (until `deadline` at most) for this node's replica of `group` to apply `index`;
    /// whether it did.
    async fn wait_applied(&self, group: GroupId, index: u64, deadline: Instant) -> bool {
        let Some(raft) = self.raft(group) else { return false };
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        if raft.wait(Some(left)).applied_index_at_least(Some(index), "read your write").await.is_err() {
            tracing::warn!(group, index, "the local replica did not apply up to the leader's index in time");
            return false;
        }
        true
    }

    /// Every member of `group` with its node-to-node address.
    pub fn members(&self, group: GroupId) -> Vec<(NodeId, String)> {
        let Some(raft) = self.raft(group) else { return Vec::new() };
        let m = raft.metrics().borrow().membership_config.clone();
        m.nodes().map(|(id, n)| (*id, n.addr.clone())).collect()
    }

    /// The nodes holding `group`: its membership where this node holds a replica, else the
    /// meta group's placement record.
    pub fn replicas_of(&self, group: GroupId) -> Vec<NodeId> {
        if self.hosts(group) || group == META_GROUP {
            return self.members(group).into_iter().map(|(id, _)| id).collect();
        }
        crate::reads::placement(&self.store).ok().and_then(|mut p| p.remove(&group)).unwrap_or_default()
    }

    /// The shared HTTP/2 channel to a node.
    pub fn peer_channel(&self, addr: &str) -> Result<tonic::transport::Channel, String> {
        self.network.channel(addr)
    }

    /// The address to dial for a member of `group`: its advertised one unless routed.
    pub fn member_addr(&self, group: GroupId, node: NodeId) -> Option<String> {
        let in_group = |g: GroupId| {
            let m = self.raft(g)?.metrics().borrow().membership_config.clone();
            m.membership().get_node(&node).map(|n| self.network.route(node, &n.addr))
        };
        // Every node is in the meta group: its address is known there even for a group this
        // node holds no replica of.
        in_group(group).or_else(|| in_group(META_GROUP)).or_else(|| {
            let nodes = crate::reads::nodes(&self.store).ok()?;
            nodes.into_iter().find(|n| n.node == node).map(|n| self.network.route(node, &n.addr))
        })
    }

    /// Asks `node`'s node-to-node listener for its health; the round trip time.
    pub async fn probe(&self, node: NodeId) -> Result<Duration, String> {
        use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
        if node == self.config.node_id {
            return Ok(Duration::ZERO);
        }
        let addr = self.member_addr(META_GROUP, node).ok_or(format!("node {node} is not a member"))?;
        let mut client = HealthClient::new(self.network.channel(&addr)?);
        let started = Instant::now();
        let call = client.check(HealthCheckRequest { service: String::new() });
        match tokio::time::timeout(Duration::from_secs(1), call).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(s)) => Err(s.message().to_string()),
            Err(_) => Err("no answer within 1 s".into()),
        }
    }

    /// Every other member of the cluster (the meta group) with the address to dial.
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        let me = self.config.node_id;
        let members = self.members(META_GROUP).into_iter().filter(|(id, _)| *id != me);
        members.map(|(id, addr)| (id, self.network.route(id, &addr))).collect()
    }

    /// On this group's leader: adds `node` as a learner, waits for it to catch up, and makes it
    /// a voter while the group has fewer than `max_voters`. Idempotent.
    pub async fn add_replica(
        &self,
        group: GroupId,
        node: NodeId,
        addr: &str,
        max_voters: usize,
    ) -> Result<(), WriteError> {
        let raft = self.raft(group).ok_or_else(|| WriteError::Fatal { group, message: "no such group".into() })?;
        let fail = |e: String| WriteError::Fatal { group, message: e };
        let not_leader = |leader| WriteError::NotLeader { group, leader };
        let metrics = raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.config.node_id) {
            return Err(not_leader(metrics.current_leader));
        }
        let voters: std::collections::BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        if voters.contains(&node) {
            return Ok(());
        }
        let map = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f.leader_id),
            e => fail(e.to_string()),
        };
        raft.add_learner(node, BasicNode { addr: addr.to_string() }, true).await.map_err(map)?;
        if voters.len() < max_voters {
            let mut next = voters;
            next.insert(node);
            raft.change_membership(next, false).await.map_err(map)?;
        }
        Ok(())
    }

    /// Calls `f` for every archive append and roster or block change applied on this node
    /// (leader or not), so actors here learn of changes committed through other nodes.
    pub fn on_applied(&self, f: impl Fn(&Applied) + Send + Sync + 'static) {
        let _ = self.appended.set(Box::new(f));
    }

    /// Adds `node` to the cluster: to the meta group (a voter while it has fewer than R), with
    /// its zone recorded for placement; the placement driver (on the meta group's leader) then
    /// moves its share of shard replicas to it, and this waits until it has. Where the node has
    /// no data (`fresh` for that group) but is still a member (its volume was replaced), it is
    /// taken out first and placed again as a new replica, so it catches up instead of voting
    /// with a log it lost. Returns how many groups it holds.
    pub async fn join(
        &self,
        node: NodeId,
        addr: &str,
        zone: &str,
        fresh: impl Fn(GroupId) -> bool,
    ) -> Result<usize, WriteError> {
        let deadline = Instant::now() + self.config.write_timeout * 6;
        let add = ReplicaChange::Add { node, addr: addr.to_string() };
        let gone = ReplicaChange::Remove { node };
        if fresh(META_GROUP) && self.members(META_GROUP).iter().any(|(id, _)| *id == node) {
            tracing::info!(node, "a member came back without its data; replacing its meta replica");
            self.change_in_group(META_GROUP, &gone, deadline).await?;
        }
        self.change_in_group(META_GROUP, &add, deadline).await?;
        let record = NodeRecord { node, addr: addr.to_string(), zone: zone.to_string(), draining: false };
        self.write(META_GROUP, Command::SetNodeInfo(record)).await?.into_result().map_err(fatal(META_GROUP))?;
        self.sync(META_GROUP).await?;
        for group in shard::shard_groups(self.config.shards) {
            let Some(mut replicas) = self.placement_of(group) else { continue };
            if fresh(group) && replicas.contains(&node) {
                tracing::info!(group, node, "a member came back without its data; replacing its replica");
                self.change_in_group(group, &gone, Instant::now() + self.config.write_timeout * 6).await?;
                replicas.retain(|n| *n != node);
                self.record_placement(group, replicas).await?;
            }
        }
        self.placement_changed.notify_waiters();
        let held = self.await_placement(|plan| !plan.moves.iter().any(|m| m.add == Some(node)), node).await?;
        tracing::info!(node, addr, groups = held, "node joined");
        Ok(held)
    }

    /// Drains `node` of its replicas (the placement driver moves them to other nodes), then
    /// takes it out of the meta group; a learner takes its vote first, so groups keep R voters
    /// when they can. Returns how many groups it held.
    pub async fn remove_node(&self, node: NodeId) -> Result<usize, WriteError> {
        self.sync(META_GROUP).await?;
        let held = self.placements().values().filter(|r| r.contains(&node)).count();
        let mut record = crate::reads::nodes(&self.store)
            .map_err(|e| WriteError::Fatal { group: META_GROUP, message: e.message })?
            .into_iter()
            .find(|n| n.node == node)
            .unwrap_or_else(|| NodeRecord {
                node,
                addr: self.member_addr(META_GROUP, node).unwrap_or_default(),
                ..NodeRecord::default()
            });
        record.draining = true;
        self.write(META_GROUP, Command::SetNodeInfo(record)).await?.into_result().map_err(fatal(META_GROUP))?;
        self.placement_changed.notify_waiters();
        self.await_placement(|plan| !plan.current.values().any(|r| r.contains(&node)), node).await?;
        let deadline = Instant::now() + self.config.write_timeout * 6;
        self.change_in_group(META_GROUP, &ReplicaChange::Remove { node }, deadline).await?;
        self.write(META_GROUP, Command::ForgetNode { node }).await?.into_result().map_err(fatal(META_GROUP))?;
        tracing::info!(node, groups = held, "node removed from the cluster");
        Ok(held)
    }

    /// Makes `change` through the group's leader, wherever it is, retrying until `deadline`.
    pub(crate) async fn change_in_group(
        &self,
        group: GroupId,
        change: &ReplicaChange,
        deadline: Instant,
    ) -> Result<(), WriteError> {
        loop {
            // Bounded: a learner that stops answering must not hold the change (openraft waits
            // for a blocking add_learner indefinitely).
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
            let attempt = async {
                match self.leader_of(group) {
                    Some(l) if l == self.config.node_id => self.change_replica(group, change).await,
                    Some(l) => self.remote_change_replica(group, l, change).await,
                    None => Err(WriteError::NotLeader { group, leader: None }),
                }
            };
            let result =
                tokio::time::timeout(left, attempt).await.unwrap_or(Err(WriteError::Timeout { group, timeout: left }));
            match result {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < deadline && !matches!(e, WriteError::Fatal { .. }) => {
                    tracing::debug!(group, error = %e, ?change, "changing replicas; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// On this group's leader: makes one replica change.
    pub async fn change_replica(&self, group: GroupId, change: &ReplicaChange) -> Result<(), WriteError> {
        match change {
            ReplicaChange::Add { node, addr } => self.add_replica(group, *node, addr, self.config.replicas).await,
            ReplicaChange::Remove { node } => self.remove_replica(group, *node).await,
        }
    }

    async fn remote_change_replica(
        &self,
        group: GroupId,
        leader: NodeId,
        change: &ReplicaChange,
    ) -> Result<(), WriteError> {
        let leader_addr = self.member_addr(group, leader).ok_or(WriteError::NotLeader { group, leader: None })?;
        let fail = |message: String| WriteError::Forward { group, leader, message };
        let mut client = NodeClient::new(self.network.channel(&leader_addr).map_err(fail)?);
        let max_voters = self.config.replicas as u32;
        let req = match change {
            ReplicaChange::Add { node, addr } => {
                ChangeReplicaRequest { group, node_id: *node, addr: addr.clone(), max_voters, remove: false }
            }
            ReplicaChange::Remove { node } => {
                ChangeReplicaRequest { group, node_id: *node, addr: String::new(), max_voters, remove: true }
            }
        };
        client.change_replica(req).await.map_err(|s| fail(s.message().to_string()))?;
        Ok(())
    }

    /// On this group's leader: removes `node`, promoting a learner in its place when there is
    /// one. Idempotent. Refuses to remove the last voter.
    async fn remove_replica(&self, group: GroupId, node: NodeId) -> Result<(), WriteError> {
        let raft = self.raft(group).ok_or_else(|| WriteError::Fatal { group, message: "no such group".into() })?;
        let metrics = raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.config.node_id) {
            return Err(WriteError::NotLeader { group, leader: metrics.current_leader });
        }
        let membership = metrics.membership_config.membership().clone();
        let mut voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().filter(|l| *l != node).collect();
        if !voters.contains(&node) && !membership.learner_ids().any(|l| l == node) {
            return Ok(());
        }
        voters.remove(&node);
        if voters.len() < self.config.replicas {
            voters.extend(learners.iter().take(self.config.replicas - voters.len()));
        }
        if voters.is_empty() {
            return Err(WriteError::Fatal { group, message: format!("node {node} is the group's only voter") });
        }
        let map = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                WriteError::NotLeader { group, leader: f.leader_id }
            }
            e => WriteError::Fatal { group, message: e.to_string() },
        };
        raft.change_membership(voters, false).await.map_err(map)?;
        // A node that was only a learner is still listed: take it out of the group as well.
        let still = raft.metrics().borrow().membership_config.membership().get_node(&node).is_some();
        if still {
            let gone = openraft::ChangeMembers::RemoveNodes(std::collections::BTreeSet::from([node]));
            raft.change_membership(gone, false).await.map_err(map)?;
        }
        Ok(())
    }

    /// Asks a member at `seed` (node-to-node address) to add this node, which started with no
    /// data, to every group; the groups it still has no state in are sent as fresh (see
    /// `join`), the others it joined earlier in this life.
    pub async fn join_via(&self, seed: &str) -> Result<(), JoinError> {
        let channel = self.network.channel(seed).map_err(JoinError::Refused)?;
        let mut fresh_groups = Vec::new();
        for group in 0..self.group_count() as GroupId {
            let Some(raft) = self.raft(group) else { continue };
            if !raft.is_initialized().await.unwrap_or(false) {
                fresh_groups.push(group);
            }
        }
        let req = JoinRequest {
            node_id: self.config.node_id,
            addr: self.config.node_addr.clone(),
            fresh: false,
            fresh_groups,
            zone: self.config.zone.clone(),
        };
        match NodeClient::new(channel).join(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(JoinError::NoCluster),
            // Transport failures (refused, unresolvable, timed out) come back as `Unavailable`
            // with no answer from a Telex service behind them.
            Err(s) if s.code() == tonic::Code::Unavailable && s.metadata().is_empty() => {
                Err(JoinError::Unreachable(s.message().to_string()))
            }
            Err(s) => Err(JoinError::Refused(s.message().to_string())),
        }
    }

    /// Whether any group of this node has a membership (it is, or was, part of a cluster).
    pub async fn initialized(&self) -> bool {
        for group in 0..self.group_count() as GroupId {
            let Some(raft) = self.raft(group) else { continue };
            if raft.is_initialized().await.unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// Waits until every group has a leader, or `timeout` passes. Returns whether all have one.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for group in 0..self.group_count() as GroupId {
            loop {
                let Some(raft) = self.raft(group) else { break };
                if !self.hosts(group) {
                    // Announced by its leader (`leaders`), a few hundred milliseconds apart.
                    if self.leaders.get(group).is_some() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(500));
                let waited = raft.wait(Some(left)).metrics(|m| m.current_leader.is_some(), "leader elected").await;
                if waited.is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    return false;
                }
            }
        }
        true
    }

    /// Whether every group currently knows a leader.
    pub fn all_led(&self) -> bool {
        (0..self.group_count() as GroupId).all(|g| self.leader_of(g).is_some())
    }

    pub fn status(&self) -> Vec<GroupInfo> {
        let placement = self.placements();
        (0..self.group_count() as GroupId)
            .filter_map(|group| {
                let m = self.raft(group)?.metrics().borrow().clone();
                if !self.hosts(group) {
                    let voters = placement.get(&group).map(|v| v.iter().copied().collect()).unwrap_or_default();
                    return Some(GroupInfo::elsewhere(group, self.leaders.get(group), voters));
                }
                Some(GroupInfo {
                    group,
                    role: match m.state {
                        ServerState::Leader => "leader",
                        ServerState::Follower => "follower",
                        ServerState::Candidate => "candidate",
                        ServerState::Learner => "learner",
                        ServerState::Shutdown => "shutdown",
                    },
                    leader: m.current_leader,
                    term: m.current_term,
                    last_log_index: m.last_log_index.unwrap_or(0),
                    applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
                    snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
                    purged_index: m.purged.map(|l| l.index).unwrap_or(0),
                    voters: m.membership_config.membership().voter_ids().collect(),
                    learners: m.membership_config.membership().learner_ids().collect(),
                    members: m.membership_config.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
                    max_lag: m.replication.as_ref().map(|r| {
                        let last = m.last_log_index.unwrap_or(0);
                        r.values().map(|matched| last - matched.map_or(0, |l| l.index).min(last)).max().unwrap_or(0)
                    }),
                })
            })
            .collect()
    }

    /// Stops every group. Writes already acknowledged are durable; the store is synced last.
    pub async fn shutdown(&self) {
        for group in 0..self.group_count() as GroupId {
            let Some(raft) = self.raft(group) else { continue };
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(group, error = %e, "raft group did not stop cleanly");
            }
        }
        if let Err(e) = self.store.sync() {
            tracing::error!(error = %e, "final store sync failed");
        }
    }
}
