//! Faster failover: notice a dead leader and make one chosen follower campaign.
//!
//! openraft 0.9 followers wait the leader lease plus an election timeout that is drawn once per
//! node, and two survivors with close timeouts can split their votes, or back off for twice the
//! maximum timeout after seeing a longer log. So each node probes its peers' node listeners;
//! when a peer stops answering, for every group that peer led, the voters still answering
//! campaign one at a time in order of node id (so no split votes), each for one lease and a
//! margin: the first one wins as soon as the others' leases run out, unless its log is shorter
//! than another's, and then the next one wins. The leases also keep a leader that is alive but
//! unreachable from one node from being deposed while the others still hear it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use telex_types::GroupId;

use crate::types::NodeId;
use crate::Groups;

/// How often peers are probed, and how many failed probes in a row mean "down".
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
const DOWN_AFTER: u32 = 2;

/// Groups this node should campaign for, with its turn: it is a voter following a leader that
/// is down, and its turn is its rank by node id among the voters that are up.
pub fn to_campaign(
    me: NodeId,
    groups: &[(GroupId, ServerState, Option<NodeId>, Vec<NodeId>)],
    down: &BTreeSet<NodeId>,
) -> Vec<(GroupId, usize)> {
    groups
        .iter()
        .filter(|(_, state, leader, _)| *state != ServerState::Leader && leader.is_some_and(|l| down.contains(&l)))
        .filter_map(|(g, _, leader, voters)| {
            let mut up: Vec<NodeId> =
                voters.iter().copied().filter(|v| !down.contains(v) && Some(*v) != *leader).collect();
            up.sort();
            Some((*g, up.iter().position(|v| *v == me)?))
        })
        .collect()
}

impl Groups {
    /// Runs until the task is dropped: probes peers, campaigns where a dead leader left a
    /// group to this node (see the module comment).
    pub async fn watch_leaders(self: Arc<Self>) {
        let mut failures: BTreeMap<NodeId, u32> = BTreeMap::new();
        let campaigning = Arc::new(dashmap::DashSet::<GroupId>::new());
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let peers: Vec<NodeId> = self.peers().into_iter().map(|(id, _)| id).collect();
            let me = &self;
            let probes = futures::future::join_all(peers.iter().map(|p| async move {
                let up = tokio::time::timeout(PROBE_TIMEOUT, me.probe(*p)).await.is_ok_and(|r| r.is_ok());
                (*p, up)
            }))
            .await;
            for (peer, up) in probes {
                let n = failures.entry(peer).or_default();
                *n = if up { 0 } else { n.saturating_add(1) };
            }
            failures.retain(|p, _| peers.contains(p));
            let down: BTreeSet<NodeId> = failures.iter().filter(|(_, n)| **n >= DOWN_AFTER).map(|(p, _)| *p).collect();
            down.clone_into(&mut self.down.write().unwrap_or_else(|e| e.into_inner()));
            if down.is_empty() {
                continue;
            }
            let view: Vec<_> = (0..self.group_count() as GroupId)
                .filter_map(|g| {
                    let m = self.raft(g)?.metrics().borrow().clone();
                    let voters = m.membership_config.membership().voter_ids().collect();
                    Some((g, m.state, m.current_leader, voters))
                })
                .collect();
            let leaders: BTreeMap<GroupId, Option<NodeId>> = view.iter().map(|(g, _, l, _)| (*g, *l)).collect();
            // One turn: a lease (from the last heartbeat, shortly before the leader was seen
            // down) and a margin for the election itself.
            let turn = Duration::from_millis(self.config.election_timeout_max_ms + 200);
            for (group, rank) in to_campaign(self.node_id(), &view, &down) {
                let dead = leaders[&group];
                if !campaigning.insert(group) {
                    continue;
                }
                let (groups, campaigning) = (self.clone(), campaigning.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(turn * rank as u32).await;
                    let still_dead = groups.raft(group).is_some_and(|r| {
                        let l = r.metrics().borrow().current_leader;
                        l.is_none() || l == dead
                    });
                    if still_dead {
                        let won = groups.campaign(group, turn, dead).await;
                        tracing::info!(group, rank, won, "campaigned after the leader stopped answering");
                    }
                    campaigning.remove(&group);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_voters_take_turns_by_node_id_for_a_dead_leaders_groups() {
        let f = ServerState::Follower;
        let groups = vec![
            (0, f, Some(1), vec![1, 2, 3]),
            (1, f, Some(2), vec![1, 2, 3]),
            (2, f, Some(1), vec![1, 3, 4]),
            (3, ServerState::Leader, Some(2), vec![1, 2, 3]),
        ];
        let down = BTreeSet::from([1]);
        assert_eq!(to_campaign(2, &groups, &down), [(0, 0)]);
        assert_eq!(to_campaign(3, &groups, &down), [(0, 1), (2, 0)]);
        assert_eq!(to_campaign(4, &groups, &down), [(2, 1)]);
        assert!(to_campaign(2, &groups, &BTreeSet::new()).is_empty());
    }
}
