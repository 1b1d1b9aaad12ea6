//! The node's Raft groups: the meta group and every shard group, all over one store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ServerState, SnapshotPolicy};
use telex_store::Store;
use telex_types::{shard, Command, GroupId, Response, TelexError, UserJid, META_GROUP};
use tokio::sync::{mpsc, oneshot};

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
}

pub struct Groups {
    config: GroupsConfig,
    store: Arc<Store>,
    /// Indexed by group id: 0 is meta, 1..=S are shards.
    rafts: Vec<Raft>,
    /// Each group's proposer queue, indexed like `rafts`.
    proposers: Vec<mpsc::Sender<Proposal>>,
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
            max_in_snapshot_log_to_keep: 1000,
            max_payload_entries: 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| TelexError::invalid(format!("raft settings: {e}")))?;
        let raft_config = Arc::new(raft_config);
        let network = NetworkFactory::default();
        let mut rafts = Vec::with_capacity(config.shards as usize + 1);
        for group in std::iter::once(META_GROUP).chain(shard::shard_groups(config.shards)) {
            let raft = Raft::new(
                config.node_id,
                raft_config.clone(),
                network.for_group(group),
                LogStore::new(store.clone(), group),
                StateMachine::new(store.clone(), group),
            )
            .await
            .map_err(|e| TelexError::internal(format!("starting raft group {group}: {e}")))?;
            rafts.push(raft);
        }
        let proposers = rafts
            .iter()
            .enumerate()
            .map(|(group, raft)| proposer::spawn(group as GroupId, raft.clone(), config.write_timeout))
            .collect();
        Ok(Arc::new(Groups { config, store, rafts, proposers }))
    }

    /// Makes this node the single voter of every group that has no membership yet. Idempotent:
    /// groups that were initialised before are left alone.
    pub async fn bootstrap_single_node(&self) -> Result<(), TelexError> {
        let members = BTreeMap::from([(self.config.node_id, BasicNode { addr: self.config.node_addr.clone() })]);
        for (group, raft) in self.rafts.iter().enumerate() {
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

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn raft(&self, group: GroupId) -> Option<&Raft> {
        self.rafts.get(group as usize)
    }

    /// The shard group holding `user`.
    pub fn shard_of(&self, user: &UserJid) -> GroupId {
        shard::shard_of(user, self.config.shards)
    }

    /// Proposes `cmd` to `group` and waits until it is committed (durable on a majority) and
    /// applied here. Concurrent writes to one group share log entries (see `proposer`).
    pub async fn write(&self, group: GroupId, cmd: Command) -> Result<Response, WriteError> {
        let queue = self
            .proposers
            .get(group as usize)
            .ok_or_else(|| WriteError::Fatal { group, message: "no such group".into() })?;
        let kind = cmd.kind();
        let started = Instant::now();
        let timeout = self.config.write_timeout;
        let stopped = || WriteError::Fatal { group, message: "the group is shutting down".into() };
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

    /// Waits until every group has a leader, or `timeout` passes. Returns whether all have one.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for raft in &self.rafts {
            let left = deadline.saturating_duration_since(Instant::now());
            let waited = raft.wait(Some(left)).metrics(|m| m.current_leader.is_some(), "leader elected").await;
            if waited.is_err() {
                return false;
            }
        }
        true
    }

    /// Whether every group currently knows a leader.
    pub fn all_led(&self) -> bool {
        self.rafts.iter().all(|r| r.metrics().borrow().current_leader.is_some())
    }

    pub fn status(&self) -> Vec<GroupInfo> {
        self.rafts
            .iter()
            .enumerate()
            .map(|(group, raft)| {
                let m = raft.metrics().borrow().clone();
                GroupInfo {
                    group: group as GroupId,
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
                }
            })
            .collect()
    }

    /// Stops every group. Writes already acknowledged are durable; the store is synced last.
    pub async fn shutdown(&self) {
        for (group, raft) in self.rafts.iter().enumerate() {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(group, error = %e, "raft group did not stop cleanly");
            }
        }
        if let Err(e) = self.store.sync() {
            tracing::error!(error = %e, "final store sync failed");
        }
    }
}
