//! Where each group's replicas should live: R of the cluster's nodes, spread evenly, in as many
//! failure domains (zones) as there are, and off nodes being drained; and the replica moves
//! that get there from today's replica sets, each moving as little as it can. Pure: no I/O.
//!
//! This is the planner only. Today every node replicates every group (see ARCHITECTURE.md,
//! Known limits); the driver that carries the moves out (learner, catch up, voter, then the old
//! replica removed) and the remote reads that let a node serve users of groups it does not hold
//! are still to come.

use std::collections::{BTreeMap, BTreeSet};

use telex_types::GroupId;

use crate::types::NodeId;

/// A node as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    /// Its failure domain (`topology.kubernetes.io/zone`); nodes with the same zone fail
    /// together. Empty: unknown (all such nodes count as one zone).
    pub zone: String,
    /// Being decommissioned: it keeps no replicas.
    pub draining: bool,
}

/// One replica move: `add` joins the group (as a learner that catches up, then a voter), then
/// `remove` leaves it. Either may be absent when a group only grows or only shrinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaMove {
    pub group: GroupId,
    pub add: Option<NodeId>,
    pub remove: Option<NodeId>,
}

/// Replica sets per group.
pub type Placement = BTreeMap<GroupId, BTreeSet<NodeId>>;

/// The placement to reach: every group on `min(r, usable nodes)` nodes, as many zones as
/// possible, replica counts per node evened out by single swaps (within one where those reach
/// it), keeping today's replicas where it can. `current` must list every group. Not tuned for
/// thousands of groups over dozens of nodes yet (each swap searches the groups).
pub fn target(nodes: &[Node], current: &Placement, r: usize) -> Placement {
    let usable: BTreeMap<NodeId, &Node> = nodes.iter().filter(|n| !n.draining).map(|n| (n.id, n)).collect();
    let want = r.min(usable.len());
    if want == 0 {
        // Nowhere to put anything (R = 0, or every node draining): move nothing.
        return current.clone();
    }
    let zone = |id: &NodeId| usable.get(id).map_or("", |n| n.zone.as_str());
    let mut plan: Placement = BTreeMap::new();
    let mut load: BTreeMap<NodeId, usize> = usable.keys().map(|id| (*id, 0)).collect();

    // A group may have two replicas in one zone only when there are fewer zones than replicas.
    let zones_available = usable.values().map(|n| n.zone.as_str()).collect::<BTreeSet<_>>().len();
    let shared_allowed = want - want.min(zones_available);

    // Keep today's replicas on usable nodes: one per zone, then as many sharing a zone as
    // allowed.
    for (group, replicas) in current {
        let mut kept = BTreeSet::new();
        let mut zones = BTreeSet::new();
        let alive: Vec<NodeId> = replicas.iter().copied().filter(|id| usable.contains_key(id)).collect();
        for pass in [true, false] {
            for id in &alive {
                let new_zone = !zones.contains(zone(id));
                let shared = kept.len() - zones.len();
                if kept.len() >= want
                    || kept.contains(id)
                    || (pass && !new_zone)
                    || (!new_zone && shared >= shared_allowed)
                {
                    continue;
                }
                kept.insert(*id);
                zones.insert(zone(id));
            }
        }
        for id in &kept {
            *load.entry(*id).or_default() += 1;
        }
        plan.insert(*group, kept);
    }

    // Fill each group up: a new zone first, then the least loaded node.
    for replicas in plan.values_mut() {
        while replicas.len() < want {
            let zones: BTreeSet<&str> = replicas.iter().map(zone).collect();
            let pick = usable
                .keys()
                .filter(|id| !replicas.contains(id))
                .min_by_key(|id| (zones.contains(zone(id)), load[*id], **id))
                .copied();
            let Some(id) = pick else { break };
            replicas.insert(id);
            *load.entry(id).or_default() += 1;
        }
    }

    // Even out: move a replica from a busier node to an idler one (the busiest and idlest
    // pair that can) where the group's zone spread does not get worse; stop when every node is
    // within one of the others, or when nothing can move.
    let zone_count = |set: &BTreeSet<NodeId>| set.iter().map(zone).collect::<BTreeSet<_>>().len();
    for _ in 0..plan.len() * want.max(1) {
        let mut by_load: Vec<(usize, NodeId)> = load.iter().map(|(id, l)| (*l, *id)).collect();
        by_load.sort();
        let mut chosen = None;
        'pairs: for &(high, busy) in by_load.iter().rev() {
            for &(low, idle) in &by_load {
                if high <= low + 1 {
                    break;
                }
                let movable = plan.iter().find(|(_, set)| {
                    if !set.contains(&busy) || set.contains(&idle) {
                        return false;
                    }
                    let mut after = (*set).clone();
                    after.remove(&busy);
                    after.insert(idle);
                    zone_count(&after) >= zone_count(set)
                });
                if let Some((group, _)) = movable {
                    chosen = Some((*group, busy, idle));
                    break 'pairs;
                }
            }
        }
        let Some((group, busy, idle)) = chosen else { break };
        if let Some(set) = plan.get_mut(&group) {
            set.remove(&busy);
            set.insert(idle);
        }
        *load.entry(busy).or_default() -= 1;
        *load.entry(idle).or_default() += 1;
    }
    plan
}

/// The moves from `current` to `target`: per group, each added node paired with a removed
/// one (adds first, so a group never drops below its size while it moves).
pub fn moves(current: &Placement, target: &Placement) -> Vec<ReplicaMove> {
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    for (group, want) in target {
        let have = current.get(group).unwrap_or(&empty);
        let mut adds = want.difference(have).copied();
        let mut removes = have.difference(want).copied();
        loop {
            let (add, remove) = (adds.next(), removes.next());
            if add.is_none() && remove.is_none() {
                break;
            }
            out.push(ReplicaMove { group: *group, add, remove });
        }
    }
    out
}

/// Replicas per node in a placement (every listed node appears, with 0 if it holds none).
pub fn replica_counts(nodes: &[Node], placement: &Placement) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (n.id, 0)).collect();
    for id in placement.values().flatten() {
        *counts.entry(*id).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(zones: &[&str]) -> Vec<Node> {
        zones.iter().enumerate().map(|(i, z)| Node { id: i as u64 + 1, zone: z.to_string(), draining: false }).collect()
    }

    fn everywhere(groups: u32, on: &[NodeId]) -> Placement {
        (0..groups).map(|g| (g, on.iter().copied().collect())).collect()
    }

    fn spread(counts: &BTreeMap<NodeId, usize>) -> usize {
        counts.values().max().unwrap() - counts.values().min().unwrap()
    }

    #[test]
    fn new_nodes_take_an_even_share_and_every_group_keeps_r() {
        let n = nodes(&["", "", "", "", ""]);
        let current = everywhere(65, &[1, 2, 3]);
        let t = target(&n, &current, 3);
        assert!(t.values().all(|s| s.len() == 3));
        let counts = replica_counts(&n, &t);
        assert!(spread(&counts) <= 1, "{counts:?}");
        // Each move keeps two of the three old replicas at least: 65 × 3 / 5 = 39 leave.
        let m = moves(&current, &t);
        assert!(m.iter().all(|m| m.add.is_some() && m.remove.is_some()));
        assert_eq!(m.len(), 65 * 3 - counts[&1] - counts[&2] - counts[&3]);
        // A plan reached is stable.
        assert!(moves(&t, &target(&n, &t, 3)).is_empty());
    }

    #[test]
    fn no_two_replicas_share_a_zone_when_there_are_enough_zones() {
        let n = nodes(&["a", "a", "b", "b", "c", "c"]);
        let current = everywhere(30, &[1, 2, 3]);
        let t = target(&n, &current, 3);
        for (g, set) in &t {
            let zones: BTreeSet<&str> = set.iter().map(|id| n[*id as usize - 1].zone.as_str()).collect();
            assert_eq!(zones.len(), 3, "group {g} on {set:?}");
        }
        assert!(spread(&replica_counts(&n, &t)) <= 1);
    }

    #[test]
    fn a_draining_node_keeps_nothing_and_small_clusters_hold_everything() {
        let mut n = nodes(&["", "", "", ""]);
        n[1].draining = true;
        let t = target(&n, &everywhere(8, &[1, 2, 3]), 3);
        assert!(t.values().all(|s| s.len() == 3 && !s.contains(&2)), "{t:?}");
        // Two usable nodes and R = 3: every group on both.
        let n = nodes(&["", ""]);
        let t = target(&n, &everywhere(4, &[1]), 3);
        assert!(t.values().all(|s| s.len() == 2), "{t:?}");
        let m = moves(&everywhere(4, &[1]), &t);
        assert!(m.iter().all(|m| m.add == Some(2) && m.remove.is_none()), "{m:?}");
    }

    #[test]
    fn many_clusters_keep_every_rule() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..200 {
            let (count, zones, r) = (1 + next(9) as usize, 1 + next(4) as usize, 1 + next(5) as usize);
            let mut n: Vec<Node> = (0..count)
                .map(|i| Node { id: i as u64 + 1, zone: format!("z{}", i % zones), draining: next(8) == 0 })
                .collect();
            if n.iter().all(|x| x.draining) {
                n[0].draining = false;
            }
            let groups = 1 + next(40) as u32;
            let current: Placement =
                (0..groups).map(|g| (g, (0..1 + next(4)).map(|_| 1 + next(count as u64)).collect())).collect();
            let t = target(&n, &current, r);
            let usable: Vec<&Node> = n.iter().filter(|x| !x.draining).collect();
            let want = r.min(usable.len());
            let zones_usable = usable.iter().map(|x| x.zone.as_str()).collect::<BTreeSet<_>>().len();
            for (g, set) in &t {
                assert_eq!(set.len(), want, "group {g}: {set:?} of {n:?}");
                assert!(set.iter().all(|id| usable.iter().any(|u| u.id == *id)), "{set:?} on a draining node");
                let spread_zones = set.iter().map(|id| n[*id as usize - 1].zone.as_str()).collect::<BTreeSet<_>>();
                assert_eq!(spread_zones.len(), want.min(zones_usable), "group {g}: {set:?} of {n:?}");
            }
            // Moves lead from the current sets to the target.
            let mut after = current.clone();
            for m in moves(&current, &t) {
                let set = after.entry(m.group).or_default();
                if let Some(a) = m.add {
                    set.insert(a);
                }
                if let Some(r) = m.remove {
                    set.remove(&r);
                }
            }
            assert_eq!(after, t);
        }
    }
}
