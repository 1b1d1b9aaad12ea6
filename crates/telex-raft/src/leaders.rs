//! Where the leaders of groups this node holds no replica of are. With groups placed on R of N
//! nodes, a gateway must still route a user's session and writes to the leader of the user's
//! shard: every node tells every other, a few times a second, which groups it leads and at
//! which term (`Node.Leaders`, one small message per peer), and each keeps the newest claim
//! per group. A claim is dropped when its node stops making it. The same message carries
//! where clients reach the node (`Doors`), for a draining node to send its clients to.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::ServerState;
use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::{ClientDoors, LeaderClaim, LeaderClaims};
use telex_types::GroupId;

use crate::types::NodeId;
use crate::Groups;

/// How often each node announces its leaderships.
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(300);

/// Where clients reach a node: its native API and XMPP addresses as clients dial them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Doors {
    pub client: String,
    pub xmpp: String,
}

/// Doors heard of longer ago than this are not offered to clients (their node may be gone).
const DOORS_FRESH_FOR: Duration = Duration::from_secs(2);
/// How long a node that said it is stopping keeps leaderships from being balanced.
const STOPPING_REMEMBERED: Duration = Duration::from_secs(60);

/// The newest leadership claim per group, and the doors each node last announced.
#[derive(Default)]
pub struct Directory {
    claims: RwLock<BTreeMap<GroupId, (NodeId, u64)>>,
    doors: RwLock<BTreeMap<NodeId, (Doors, Instant)>>,
    /// Nodes that lately said they are stopping, and when.
    stopping: RwLock<BTreeMap<NodeId, Instant>>,
}

impl Directory {
    /// Takes `node`'s announced doors (empty ones: it accepts no sessions now).
    pub fn learn_doors(&self, node: NodeId, doors: Doors) {
        let mut all = self.doors.write().unwrap_or_else(|e| e.into_inner());
        if doors == Doors::default() {
            all.remove(&node);
        } else {
            all.insert(node, (doors, Instant::now()));
        }
    }

    /// Records whether `node` says it is stopping.
    pub fn learn_stopping(&self, node: NodeId, stopping: bool) {
        let mut all = self.stopping.write().unwrap_or_else(|e| e.into_inner());
        if stopping {
            all.insert(node, Instant::now());
        } else {
            all.remove(&node);
        }
    }

    /// Whether some node said lately that it is stopping (a stopped node's word lasts a
    /// while: it may still be going).
    pub fn someone_stopping(&self) -> bool {
        let all = self.stopping.read().unwrap_or_else(|e| e.into_inner());
        all.values().any(|at| at.elapsed() < STOPPING_REMEMBERED)
    }

    /// The doors of nodes that announced them lately, by node id.
    pub fn fresh_doors(&self) -> Vec<(NodeId, Doors)> {
        let all = self.doors.read().unwrap_or_else(|e| e.into_inner());
        all.iter().filter(|(_, (_, at))| at.elapsed() < DOORS_FRESH_FOR).map(|(n, (d, _))| (*n, d.clone())).collect()
    }

    pub fn get(&self, group: GroupId) -> Option<NodeId> {
        self.claims.read().unwrap_or_else(|e| e.into_inner()).get(&group).map(|(node, _)| *node)
    }

    /// Takes `node`'s current claims: each replaces an older-term claim (or one by the same
    /// node), and groups `node` claimed before but no longer does are forgotten.
    pub fn learn(&self, node: NodeId, claims: &[(GroupId, u64)]) {
        let mut all = self.claims.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|group, (by, _)| *by != node || claims.iter().any(|(g, _)| g == group));
        for &(group, term) in claims {
            match all.get(&group) {
                Some((by, known)) if *by != node && *known > term => {}
                _ => {
                    all.insert(group, (node, term));
                }
            }
        }
    }

    /// Forgets every claim of a node that left.
    pub fn forget(&self, node: NodeId) {
        self.learn(node, &[]);
        self.learn_doors(node, Doors::default());
    }
}

impl Groups {
    /// From now on, this node tells its peers that it is stopping.
    pub fn set_stopping(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Announces (or, with `None`, withdraws) where clients reach this node.
    pub fn set_doors(&self, doors: Option<Doors>) {
        *self.doors.write().unwrap_or_else(|e| e.into_inner()) = doors;
    }

    /// Other nodes' doors, as lately announced: where a draining node sends its clients.
    pub fn peer_doors(&self) -> Vec<(NodeId, Doors)> {
        let me = self.node_id();
        self.leaders.fresh_doors().into_iter().filter(|(n, _)| *n != me).collect()
    }

    /// The groups this node leads now, with their terms.
    pub fn led_groups(&self) -> Vec<(GroupId, u64)> {
        (0..self.group_count() as GroupId)
            .filter_map(|group| {
                let raft = self.raft(group)?;
                let metrics = raft.metrics();
                let m = metrics.borrow();
                (m.state == ServerState::Leader).then_some((group, m.current_term))
            })
            .collect()
    }

    /// Announces this node's leaderships to every other member, every `ANNOUNCE_EVERY`, until
    /// the task is dropped.
    pub fn spawn_leader_announcer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let groups = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let claims: Vec<LeaderClaim> =
                    groups.led_groups().into_iter().map(|(group, term)| LeaderClaim { group, term }).collect();
                let doors = groups.doors.read().unwrap_or_else(|e| e.into_inner()).clone();
                let doors = doors.map(|d| ClientDoors { client: d.client, xmpp: d.xmpp });
                let calls = groups.peers().into_iter().map(|(_, addr)| {
                    let stopping = groups.stopping.load(std::sync::atomic::Ordering::Acquire);
                    let msg = LeaderClaims {
                        node_id: groups.node_id(),
                        claims: claims.clone(),
                        doors: doors.clone(),
                        stopping,
                    };
                    let channel = groups.peer_channel(&addr);
                    async move {
                        let Ok(channel) = channel else { return };
                        let mut client = NodeClient::new(channel);
                        let _ = tokio::time::timeout(ANNOUNCE_EVERY * 3, client.leaders(msg)).await;
                    }
                });
                futures::future::join_all(calls).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_terms_win_and_withdrawn_claims_go() {
        let d = Directory::default();
        d.learn(1, &[(3, 5), (4, 5)]);
        assert_eq!(d.get(3), Some(1));
        // An older claim by another node does not replace a newer one.
        d.learn(2, &[(3, 4)]);
        assert_eq!(d.get(3), Some(1));
        // A newer one does.
        d.learn(2, &[(3, 6)]);
        assert_eq!(d.get(3), Some(2));
        // Node 1 no longer claims group 4: forgotten; it no longer holds 3 either way.
        d.learn(1, &[]);
        assert_eq!(d.get(4), None);
        assert_eq!(d.get(3), Some(2));
        d.forget(2);
        assert_eq!(d.get(3), None);
    }

    #[test]
    fn doors_are_offered_until_withdrawn() {
        let d = Directory::default();
        let doors = Doors { client: "10.0.0.2:7400".into(), xmpp: "10.0.0.2:5222".into() };
        d.learn_doors(2, doors.clone());
        assert_eq!(d.fresh_doors(), vec![(2, doors)]);
        // A draining node announces none.
        d.learn_doors(2, Doors::default());
        assert!(d.fresh_doors().is_empty());
    }
}
