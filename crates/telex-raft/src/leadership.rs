//! Moving group leaderships between voters, one group (`transfer_leader`), all of them
//! (`rebalance`), or a few at a time by themselves once they have stayed uneven
//! (`balance_leaders`, from the placement driver).
//!
//! openraft 0.9 has no leadership transfer, and a follower refuses votes while its leader
//! lease lasts, so a transfer is: the leader leaves the voters (staying a learner) and steps
//! down once that is committed; the target campaigns until the other voters' lease runs out
//! and it wins (before their own election timers fire); the old leader is added back as a
//! voter by the new one. The group refuses writes, retryably, for about one lease
//! (`election_timeout_max_ms`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::{CampaignRequest, TransferLeaderRequest};
use telex_types::GroupId;

use crate::types::NodeId;
use crate::{Groups, ReplicaChange, WriteError};

/// One planned leadership move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
}

/// A group as the planner sees it.
#[derive(Clone, Debug)]
pub struct Led {
    pub group: GroupId,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
}

/// Groups led per node (every voter of any group appears, with 0 if it leads none).
pub fn leader_counts(groups: &[Led]) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = groups.iter().flat_map(|g| g.voters.iter().map(|v| (*v, 0))).collect();
    for l in groups.iter().filter_map(|g| g.leader) {
        *counts.entry(l).or_default() += 1;
    }
    counts
}

/// Moves that leave every node leading within one group of every other, where the groups'
/// voters allow it: repeatedly from the busiest node to the idlest voter of one of its groups.
pub fn plan_moves(groups: &[Led]) -> Vec<Move> {
    let mut counts = leader_counts(groups);
    let mut moved = BTreeSet::new();
    let mut moves = Vec::new();
    'search: loop {
        let mut by_load: Vec<NodeId> = counts.keys().copied().collect();
        by_load.sort_by_key(|n| std::cmp::Reverse(counts[n]));
        for &from in &by_load {
            for &to in by_load.iter().rev() {
                if counts[&from] <= counts[&to] + 1 {
                    continue;
                }
                let candidate = groups
                    .iter()
                    .find(|g| g.leader == Some(from) && g.voters.contains(&to) && !moved.contains(&g.group));
                if let Some(g) = candidate {
                    moves.push(Move { group: g.group, from, to });
                    moved.insert(g.group);
                    *counts.get_mut(&from).unwrap() -= 1;
                    *counts.get_mut(&to).unwrap() += 1;
                    continue 'search;
                }
            }
        }
        return moves;
    }
}

/// Leadership moves the automatic balancer makes at once (each pauses its group's writes for
/// about one lease).
const BALANCE_AT_ONCE: usize = 4;

/// Before and after a rebalance.
#[derive(Clone, Debug)]
pub struct Rebalanced {
    pub moved: usize,
    pub before: BTreeMap<NodeId, usize>,
    pub after: BTreeMap<NodeId, usize>,
}

/// Where `me`'s leaderships go before it stops: each to its group's other voter, not known to
/// be `down`, that leads the fewest groups so far (counting the moves already planned).
pub fn hand_off_plan(groups: &[Led], me: NodeId, down: &BTreeSet<NodeId>) -> Vec<Move> {
    let mut counts = leader_counts(groups);
    let mut plan = Vec::new();
    for g in groups.iter().filter(|g| g.leader == Some(me)) {
        let others = g.voters.iter().copied().filter(|v| *v != me && !down.contains(v));
        if let Some(to) = others.min_by_key(|v| (counts.get(v).copied().unwrap_or(0), *v)) {
            *counts.entry(to).or_default() += 1;
            plan.push(Move { group: g.group, from: me, to });
        }
    }
    plan
}

impl Groups {
    /// Every group's leader and voters, as this node sees them.
    pub fn leadership(&self) -> Vec<Led> {
        let placed = self.placements();
        (0..self.group_count() as GroupId)
            .filter_map(|group| {
                if !self.hosts(group) {
                    // Held elsewhere: its leader as announced, its voters as placed.
                    let voters = placed.get(&group)?.iter().copied().collect();
                    return Some(Led { group, leader: self.leaders.get(group), voters });
                }
                let m = self.raft(group)?.metrics().borrow().clone();
                let voters = m.membership_config.membership().voter_ids().collect();
                Some(Led { group, leader: m.current_leader, voters })
            })
            .collect()
    }

    /// Spreads leaderships evenly over the voters, in a few rounds (the move itself cannot pick
    /// the winner for sure: see the module comment).
    pub async fn rebalance(&self) -> Rebalanced {
        let before = leader_counts(&self.leadership());
        let mut moved = 0;
        for _round in 0..4 {
            let plan = plan_moves(&self.leadership());
            if plan.is_empty() {
                break;
            }
            tracing::info!(moves = plan.len(), "rebalancing group leaders");
            let results = futures::future::join_all(plan.iter().map(|m| self.transfer_anywhere(*m))).await;
            for (m, r) in plan.iter().zip(results) {
                match r {
                    Ok(Some(now)) if now == m.to => moved += 1,
                    Ok(now) => tracing::info!(group = m.group, wanted = m.to, ?now, "another voter won the election"),
                    Err(e) => tracing::warn!(group = m.group, error = %e, "leadership transfer failed"),
                }
            }
            self.wait_for_leaders(self.config.write_timeout).await;
        }
        Rebalanced { moved, before, after: leader_counts(&self.leadership()) }
    }

    /// One step of the automatic balancer, run by the placement driver when no replica moves:
    /// once shard group leaderships have been uneven for `balance_leaders_after` with every
    /// node up (none stopping) and every group led, moves up to `BALANCE_AT_ONCE` of them. `uneven_since` is the driver's
    /// memory between steps; a step in which no move landed starts the wait over.
    pub(crate) async fn balance_leaders(&self, uneven_since: &mut Option<Instant>) {
        let Some(after) = self.config.balance_leaders_after else { return };
        // Shard groups only: the meta group carries little load, wherever it is led.
        let led: Vec<Led> = self.leadership().into_iter().filter(|l| l.group != telex_types::META_GROUP).collect();
        let everyone_up = self.down.read().unwrap_or_else(|e| e.into_inner()).is_empty()
            && !self.leaders.someone_stopping()
            && !self.stopping.load(std::sync::atomic::Ordering::Acquire);
        let plan = plan_moves(&led);
        if !everyone_up || led.iter().any(|g| g.leader.is_none()) || plan.is_empty() {
            *uneven_since = None;
            return;
        }
        let since = *uneven_since.get_or_insert_with(Instant::now);
        if since.elapsed() < after {
            return;
        }
        let batch = &plan[..plan.len().min(BALANCE_AT_ONCE)];
        tracing::info!(moves = batch.len(), planned = plan.len(), "balancing group leaders");
        let results = futures::future::join_all(batch.iter().map(|m| self.transfer_anywhere(*m))).await;
        let landed = batch.iter().zip(&results).filter(|(m, r)| matches!(r, Ok(Some(now)) if *now == m.to)).count();
        metrics::counter!("telex_leader_balance_moves_total").increment(landed as u64);
        if landed == 0 {
            tracing::info!("no leadership move landed; waiting a full period before trying again");
            *uneven_since = Some(Instant::now());
        }
    }

    /// Before this node stops: hands every leadership it holds to the other voter of that group
    /// leading the fewest groups, all groups at once, giving up after `within`. Returns how many
    /// groups are now led elsewhere. Groups with no other voter stay (they stop with the node).
    pub async fn hand_off_leaderships(self: &std::sync::Arc<Self>, within: Duration) -> usize {
        let me = self.config.node_id;
        let down = self.down.read().unwrap_or_else(|e| e.into_inner()).clone();
        let plan = hand_off_plan(&self.leadership(), me, &down);
        if plan.is_empty() {
            return 0;
        }
        tracing::info!(groups = plan.len(), "handing this node's leaderships to other voters");
        // Each transfer runs to its end in its own task: one cut short between leaving the
        // voters and being added back would leave this node a learner (`rejoin_voters` repairs
        // that later, but the group would run one voter short meanwhile).
        let transfers = plan.iter().map(|m| {
            let (groups, m) = (self.clone(), *m);
            tokio::spawn(async move { (m.group, groups.transfer_leader(m.group, m.to).await) })
        });
        match tokio::time::timeout(within, futures::future::join_all(transfers)).await {
            Ok(results) => {
                for (group, r) in results.into_iter().flatten() {
                    if let Err(e) = r {
                        tracing::warn!(group, error = %e, "leadership hand-off failed");
                    }
                }
            }
            Err(_) => tracing::warn!(?within, "leadership hand-off did not finish in time"),
        }
        let led = self.leadership();
        plan.iter().filter(|m| led.iter().any(|g| g.group == m.group && g.leader != Some(me))).count()
    }

    /// Where this node is only a learner of a group that has fewer than R voters (a hand-off
    /// cut short by the last stop, say), asks the group's leader to make it a voter again. Run
    /// once at start-up, when no hand-off of this node's can be in flight. Cheap when there is
    /// nothing to do: it reads this node's own Raft metrics.
    pub async fn rejoin_voters(&self) {
        let me = self.config.node_id;
        for group in 0..self.group_count() as GroupId {
            let Some(raft) = self.raft(group) else { continue };
            let (short, addr) = {
                let m = raft.metrics();
                let m = m.borrow();
                let membership = m.membership_config.membership();
                let learner = membership.learner_ids().any(|l| l == me);
                let voters = membership.voter_ids().count();
                let addr = membership.get_node(&me).map(|n| n.addr.clone());
                (learner && voters < self.config.replicas && m.current_leader.is_some(), addr)
            };
            let (true, Some(addr)) = (short, addr) else { continue };
            tracing::info!(group, "this node is a learner of a group short of voters; asking to vote again");
            let change = ReplicaChange::Add { node: me, addr };
            if let Err(e) = self.change_in_group(group, &change, Instant::now() + self.config.write_timeout).await {
                tracing::warn!(group, error = %e, "could not become a voter again");
            }
        }
    }

    /// Runs `transfer_leader` on the group's leader, here or on its node.
    async fn transfer_anywhere(&self, m: Move) -> Result<Option<NodeId>, WriteError> {
        if m.from == self.config.node_id {
            return self.transfer_leader(m.group, m.to).await;
        }
        let group = m.group;
        let addr = self.member_addr(group, m.from).ok_or(WriteError::NotLeader { group, leader: None })?;
        let fail = |message: String| WriteError::Forward { group, leader: m.from, message };
        let mut client = NodeClient::new(self.network.channel(&addr).map_err(fail)?);
        let call = client.transfer_leader(TransferLeaderRequest { group, to: m.to });
        let reply = tokio::time::timeout(self.config.write_timeout * 3, call)
            .await
            .map_err(|_| WriteError::Timeout { group, timeout: self.config.write_timeout * 3 })?
            .map_err(|s| fail(s.message().to_string()))?;
        Ok(Some(reply.into_inner().leader).filter(|l| *l != 0))
    }

    /// On the group's leader: hands leadership to voter `to`; returns the leader afterwards
    /// (another voter may win; see the module comment).
    pub async fn transfer_leader(&self, group: GroupId, to: NodeId) -> Result<Option<NodeId>, WriteError> {
        let me = self.config.node_id;
        let raft = self.raft(group).ok_or_else(|| WriteError::Fatal { group, message: "no such group".into() })?;
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(me) {
            return Err(WriteError::NotLeader { group, leader: m.current_leader });
        }
        if to == me {
            return Ok(Some(me));
        }
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&to) {
            let message = format!("node {to} is not a voter of group {group}");
            return Err(WriteError::Fatal { group, message });
        }
        let my_addr = membership.get_node(&me).map(|n| n.addr.clone()).unwrap_or_default();
        // The target must have the log, or the others would not vote for it.
        let timeout = self.config.write_timeout;
        let caught_up = raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    let last = m.last_log_index.unwrap_or(0);
                    let matched = m.replication.as_ref().and_then(|r| r.get(&to).copied().flatten());
                    matched.is_some_and(|l| l.index + 64 >= last)
                },
                "target caught up",
            )
            .await;
        if caught_up.is_err() {
            return Err(WriteError::Timeout { group, timeout });
        }
        let rest: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != me).collect();
        raft.change_membership(rest, true).await.map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                WriteError::NotLeader { group, leader: f.leader_id }
            }
            e => WriteError::Fatal { group, message: e.to_string() },
        })?;
        let campaign_for = Duration::from_millis(self.config.election_timeout_max_ms * 3);
        if let Err(e) = self.remote_campaign(group, to, campaign_for, me).await {
            tracing::warn!(group, to, error = %e, "the transfer target could not campaign");
        }
        let back = ReplicaChange::Add { node: me, addr: my_addr };
        self.change_in_group(group, &back, Instant::now() + timeout).await?;
        Ok(self.raft(group).and_then(|r| r.metrics().borrow().current_leader))
    }

    async fn remote_campaign(
        &self,
        group: GroupId,
        node: NodeId,
        for_: Duration,
        old_leader: NodeId,
    ) -> Result<bool, String> {
        let addr = self.member_addr(group, node).ok_or(format!("node {node} has no address in group {group}"))?;
        let mut client = NodeClient::new(self.network.channel(&addr)?);
        let req = CampaignRequest { group, for_ms: for_.as_millis() as u32, old_leader };
        let reply = client.campaign(req).await.map_err(|s| s.message().to_string())?;
        Ok(reply.into_inner().leader)
    }

    /// Campaigns for `group` until this node leads it, another node than `old_leader` does, or
    /// `for_` passes; whether this node leads.
    pub async fn campaign(&self, group: GroupId, for_: Duration, old_leader: Option<NodeId>) -> bool {
        let Some(raft) = self.raft(group) else { return false };
        let me = self.config.node_id;
        let deadline = Instant::now() + for_;
        loop {
            let (state, leader) = {
                let m = raft.metrics();
                let m = m.borrow();
                (m.state, m.current_leader)
            };
            if state == ServerState::Leader {
                return true;
            }
            let other = leader.is_some_and(|l| l != me && Some(l) != old_leader);
            if other || Instant::now() >= deadline {
                return false;
            }
            if raft.trigger().elect().await.is_err() {
                return false;
            }
            let _ = raft.wait(Some(Duration::from_millis(50))).state(ServerState::Leader, "campaign").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led(group: GroupId, leader: NodeId, voters: &[NodeId]) -> Led {
        Led { group, leader: Some(leader), voters: voters.to_vec() }
    }

    #[test]
    fn all_on_one_node_spreads_evenly() {
        let groups: Vec<Led> = (0..9).map(|g| led(g, 1, &[1, 2, 3])).collect();
        let moves = plan_moves(&groups);
        assert_eq!(moves.len(), 6);
        let mut after = groups.clone();
        for m in &moves {
            after[m.group as usize].leader = Some(m.to);
        }
        assert_eq!(leader_counts(&after).values().copied().collect::<Vec<_>>(), [3, 3, 3]);
    }

    #[test]
    fn a_stopping_node_hands_its_groups_out_evenly() {
        let mut groups: Vec<Led> = (0..6).map(|g| led(g, 1, &[1, 2, 3])).collect();
        groups.push(led(6, 2, &[1, 2, 3]));
        groups.push(led(7, 1, &[1]));
        let none = BTreeSet::new();
        let plan = hand_off_plan(&groups, 1, &none);
        assert_eq!(plan.len(), 6, "a group with no other voter stays: {plan:?}");
        let to2 = plan.iter().filter(|m| m.to == 2).count();
        let to3 = plan.iter().filter(|m| m.to == 3).count();
        assert_eq!((to2, to3), (3, 3), "node 2 already led one, so they end at 4 and 3: {plan:?}");
        assert!(hand_off_plan(&groups, 3, &none).is_empty());
        // A voter known to be down is not handed anything.
        let plan = hand_off_plan(&groups, 1, &BTreeSet::from([3]));
        assert!(plan.iter().all(|m| m.to == 2), "{plan:?}");
    }

    #[test]
    fn balanced_needs_nothing_and_moves_respect_voters() {
        let groups = vec![led(0, 1, &[1, 2]), led(1, 2, &[1, 2]), led(2, 3, &[3, 4])];
        assert!(plan_moves(&groups).is_empty());
        // Node 1 leads two groups whose voters do not include node 3: only node 2 can take one.
        let groups = vec![led(0, 1, &[1, 2]), led(1, 1, &[1, 2]), led(2, 1, &[1, 2]), led(3, 3, &[3])];
        let moves = plan_moves(&groups);
        assert!(moves.iter().all(|m| m.to == 2), "{moves:?}");
        assert_eq!(moves.len(), 1);
    }
}
