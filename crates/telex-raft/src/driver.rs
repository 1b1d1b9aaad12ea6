//! The placement driver (which also balances leaderships, see `leadership`). The meta group records where each shard group's replicas are; on the
//! meta group's leader, this moves replicas until every group lives where `placement::target`
//! says: a new replica joins as a learner, catches up (log or snapshot), becomes a voter in
//! place of the replica it replaces, which is then removed and told to delete its copy. A
//! record is written only once its change is complete, so the record never names a node that
//! does not hold the group, except one still catching up during a join.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::DropReplicaRequest;
use telex_store::{group_range, Batch, Cf, Durability};
use telex_types::{shard, Command, GroupId, TelexError, META_GROUP};

use crate::placement::{self, Placement, ReplicaMove};
use crate::registry::WriteError;
use crate::types::NodeId;
use crate::{reads, Groups, ReplicaChange};

/// Replica moves in flight at once (each in a different group).
const MOVES_AT_ONCE: usize = 8;
/// How often the driver looks again when nothing woke it.
const DRIVE_EVERY: Duration = Duration::from_secs(1);

/// Where replicas are, where they should be, and the moves between.
#[derive(Clone, Debug)]
pub struct Plan {
    pub nodes: Vec<placement::Node>,
    pub current: Placement,
    pub target: Placement,
    pub moves: Vec<ReplicaMove>,
}

impl Groups {
    /// Every shard group's replicas as recorded in the meta group (this node's replica of it).
    pub fn placements(&self) -> Placement {
        let recorded = reads::placement(self.store()).unwrap_or_default();
        recorded.into_iter().map(|(g, nodes)| (g, nodes.into_iter().collect())).collect()
    }

    /// A group's replicas: as recorded, else (the driver has not recorded it yet) its
    /// membership, where this node holds a replica.
    pub fn placement_of(&self, group: GroupId) -> Option<Vec<NodeId>> {
        if let Some(nodes) = reads::placement(self.store()).ok()?.remove(&group) {
            return Some(nodes);
        }
        self.hosts(group).then(|| self.members(group).into_iter().map(|(id, _)| id).collect())
    }

    pub(crate) async fn record_placement(&self, group: GroupId, mut nodes: Vec<NodeId>) -> Result<(), WriteError> {
        nodes.sort_unstable();
        nodes.dedup();
        let fatal = |e: TelexError| WriteError::Fatal { group: META_GROUP, message: e.message };
        self.write(META_GROUP, Command::SetPlacement { group, nodes }).await?.into_result().map_err(fatal)?;
        Ok(())
    }

    /// The nodes placement works with: every member of the meta group, with its zone and
    /// whether it is being drained.
    pub fn placement_nodes(&self) -> Vec<placement::Node> {
        let records = reads::nodes(self.store()).unwrap_or_default();
        self.members(META_GROUP)
            .into_iter()
            .map(|(id, _)| {
                let record = records.iter().find(|r| r.node == id);
                placement::Node {
                    id,
                    zone: record.map(|r| r.zone.clone()).unwrap_or_default(),
                    draining: record.is_some_and(|r| r.draining),
                }
            })
            .collect()
    }

    /// Records this node's address and zone for placement where the meta group has them
    /// otherwise (a first start, or a new `--zone`); a drain in progress stays.
    pub async fn describe_self(&self) -> Result<(), WriteError> {
        self.sync(META_GROUP).await?;
        let me = self.node_id();
        let known = reads::nodes(self.store()).unwrap_or_default().into_iter().find(|n| n.node == me);
        let record = telex_types::records::NodeRecord {
            node: me,
            addr: self.config.node_addr.clone(),
            zone: self.config.zone.clone(),
            draining: known.as_ref().is_some_and(|k| k.draining),
        };
        if known.as_ref() != Some(&record) {
            let fatal = |e: TelexError| WriteError::Fatal { group: META_GROUP, message: e.message };
            self.write(META_GROUP, Command::SetNodeInfo(record)).await?.into_result().map_err(fatal)?;
        }
        Ok(())
    }

    /// Today's placement, the one to reach and the moves between, as this node sees them.
    pub fn plan(&self) -> Plan {
        let nodes = self.placement_nodes();
        let current: Placement = shard::shard_groups(self.shards())
            .filter_map(|g| Some((g, self.placement_of(g)?.into_iter().collect::<BTreeSet<_>>())))
            .collect();
        let target = placement::target(&nodes, &current, self.config.replicas);
        let moves = placement::moves(&current, &target);
        Plan { nodes, current, target, moves }
    }

    /// Waits until `done` holds for the plan (re-read as the driver records its moves), while
    /// the driver keeps making progress. Returns how many groups `node` then holds.
    pub(crate) async fn await_placement(
        &self,
        done: impl Fn(&Plan) -> bool,
        node: NodeId,
    ) -> Result<usize, WriteError> {
        let patience = self.config.write_timeout * 6;
        let mut last = Placement::new();
        let mut progress = Instant::now();
        loop {
            self.sync(META_GROUP).await?;
            let plan = self.plan();
            if done(&plan) {
                return Ok(plan.current.values().filter(|r| r.contains(&node)).count());
            }
            if plan.current != last {
                last = plan.current;
                progress = Instant::now();
            } else if progress.elapsed() > patience {
                return Err(WriteError::Timeout { group: META_GROUP, timeout: patience });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs the driver on whichever node leads the meta group, until the task is dropped.
    pub fn spawn_placement_driver(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let groups = self.clone();
        tokio::spawn(async move {
            let mut uneven_since = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(DRIVE_EVERY) => {}
                    _ = groups.placement_changed.notified() => {}
                }
                if groups.serving_leader(META_GROUP) != Some(groups.node_id()) {
                    uneven_since = None;
                    continue;
                }
                match groups.drive_once().await {
                    // Leaderships are balanced only among replicas that stay put.
                    Ok(0) => groups.balance_leaders(&mut uneven_since).await,
                    Ok(_) => uneven_since = None,
                    Err(e) => {
                        uneven_since = None;
                        tracing::warn!(error = %e, "placement: moving replicas failed; trying again");
                    }
                }
            }
        })
    }

    /// One round of the driver: records groups not recorded yet, then makes up to
    /// `MOVES_AT_ONCE` moves (one per group). Returns how many it made.
    pub async fn drive_once(&self) -> Result<usize, WriteError> {
        self.sync(META_GROUP).await?;
        let recorded = reads::placement(self.store()).unwrap_or_default();
        for group in shard::shard_groups(self.shards()).filter(|g| !recorded.contains_key(g)) {
            if let Some(nodes) = self.placement_of(group) {
                self.record_placement(group, nodes).await?;
            }
        }
        let plan = self.plan();
        let mut first_per_group: BTreeMap<GroupId, ReplicaMove> = BTreeMap::new();
        for m in plan.moves {
            first_per_group.entry(m.group).or_insert(m);
        }
        let batch: Vec<ReplicaMove> = first_per_group.into_values().take(MOVES_AT_ONCE).collect();
        if batch.is_empty() {
            return Ok(0);
        }
        tracing::info!(moves = batch.len(), "placement: moving replicas");
        let results = futures::future::join_all(batch.iter().map(|m| self.make_move(m))).await;
        let made = results.iter().filter(|r| r.is_ok()).count();
        results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(())).map(|_| made)
    }

    /// One move: the new replica first (learner, caught up, then a voter when the group is
    /// short of R), then the old one out (a caught-up learner taking its vote), each recorded
    /// once complete; the removed node is told to delete its copy.
    async fn make_move(&self, m: &ReplicaMove) -> Result<(), WriteError> {
        let group = m.group;
        let deadline = Instant::now() + self.config.write_timeout * 6;
        let mut replicas = self.placement_of(group).unwrap_or_default();
        if let Some(node) = m.add {
            let addr = self.member_addr(META_GROUP, node).ok_or(WriteError::NotLeader { group, leader: None })?;
            let started = Instant::now();
            self.change_in_group(group, &ReplicaChange::Add { node, addr }, deadline).await?;
            metrics::histogram!("telex_placement_add_seconds").record(started.elapsed().as_secs_f64());
            replicas.push(node);
            self.still_driving(group)?;
            self.record_placement(group, replicas.clone()).await?;
        }
        if let Some(node) = m.remove {
            self.change_in_group(group, &ReplicaChange::Remove { node }, deadline).await?;
            replicas.retain(|n| *n != node);
            self.still_driving(group)?;
            self.record_placement(group, replicas).await?;
            metrics::counter!("telex_placement_moves_total").increment(1);
            if let Err(e) = self.tell_to_drop(group, node).await {
                tracing::info!(group, node, error = %e, "placement: a removed replica was not told to drop its copy");
            }
        }
        tracing::info!(group, add = ?m.add, remove = ?m.remove, "placement: replica moved");
        Ok(())
    }

    /// A driver that lost the meta group's leadership mid-move must not record what it read
    /// before (the new leader's driver plans again from the records).
    fn still_driving(&self, group: GroupId) -> Result<(), WriteError> {
        match self.serving_leader(META_GROUP) {
            Some(me) if me == self.node_id() => Ok(()),
            leader => Err(WriteError::NotLeader { group: META_GROUP, leader }).inspect_err(|_| {
                tracing::info!(group, "placement: no longer leading the meta group; leaving the move to the new leader")
            }),
        }
    }

    async fn tell_to_drop(&self, group: GroupId, node: NodeId) -> Result<bool, String> {
        if node == self.node_id() {
            return self.drop_replica(group).await.map_err(|e| e.message);
        }
        let addr = self.member_addr(META_GROUP, node).ok_or("no address")?;
        let mut client = NodeClient::new(self.peer_channel(&addr)?);
        let call = client.drop_replica(DropReplicaRequest { group });
        let reply = tokio::time::timeout(self.config.write_timeout, call).await.map_err(|_| "no answer")?;
        Ok(reply.map_err(|s| s.message().to_string())?.into_inner().dropped)
    }

    /// An error unless the meta group, caught up with its leader, places `group` elsewhere.
    async fn still_placed_elsewhere(&self, group: GroupId) -> Result<(), TelexError> {
        self.catch_up(META_GROUP).await?;
        let listed = reads::placement(self.store())?.get(&group).is_none_or(|n| n.contains(&self.node_id()));
        if listed {
            return Err(TelexError::new(
                telex_types::ErrorCode::FailedPrecondition,
                format!("group {group} is still placed on node {} (or not placed yet)", self.node_id()),
            ));
        }
        Ok(())
    }

    /// Deletes this node's copy of `group` once the meta group's placement (caught up with its
    /// leader) no longer lists this node: the Raft instance is stopped, its log, vote and state
    /// deleted, and an empty instance started in its place. Whether there was a copy to drop.
    pub async fn drop_replica(&self, group: GroupId) -> Result<bool, TelexError> {
        if group == META_GROUP {
            return Err(TelexError::invalid("the meta group is on every node; it is never dropped"));
        }
        let _one_at_a_time = self.dropping.lock().await;
        self.still_placed_elsewhere(group).await?;
        let Some(raft) = self.raft(group) else { return Ok(false) };
        if !raft.is_initialized().await.unwrap_or(false) {
            return Ok(false);
        }
        if let Err(e) = raft.shutdown().await {
            tracing::warn!(group, error = %e, "a dropped replica did not stop cleanly");
        }
        // Placed here again while it stopped: start it again over its data, delete nothing.
        if let Err(e) = self.still_placed_elsewhere(group).await {
            let slot =
                Self::new_slot(&self.config, &self.raft_config, &self.network, self.store(), self.appended(), group);
            self.replace_slot(group, slot.await?);
            return Err(e);
        }
        let range = group_range(group);
        let mut batch = Batch::new();
        for cf in [Cf::Log, Cf::Raft, Cf::State] {
            batch.delete_range(cf, range.start.clone(), range.end.clone());
        }
        self.store().write(batch, Durability::Synced).map_err(|e| TelexError::internal(e.to_string()))?;
        let slot = Self::new_slot(&self.config, &self.raft_config, &self.network, self.store(), self.appended(), group);
        self.replace_slot(group, slot.await?);
        // Give the space back now: a dropped replica is usually a large one moving away.
        let store = self.store().clone();
        let compacted = tokio::task::spawn_blocking(move || {
            for cf in [Cf::Log, Cf::Raft, Cf::State] {
                store.compact_range(cf, &range.start, &range.end);
            }
        });
        if let Err(e) = compacted.await {
            tracing::warn!(group, error = %e, "compacting a dropped replica's keys failed");
        }
        metrics::counter!("telex_placement_dropped_total").increment(1);
        tracing::info!(group, "placement: this node's copy of the group was deleted");
        Ok(true)
    }
}
