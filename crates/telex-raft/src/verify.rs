//! Comparing replicas: every member's fingerprint of a group's state, taken at the same applied
//! index, must be the same.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::DigestRequest;
use telex_types::GroupId;

use crate::state_machine::{state_digest, StateDigest};
use crate::types::NodeId;
use crate::Groups;

/// What the replicas of one group say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Identical,
    /// Same applied index, different state: a bug or a corrupted replica.
    Diverged,
    /// The replicas did not reach the same applied index in time (writes kept coming).
    Lagging,
    Unreachable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Identical => "identical",
            Verdict::Diverged => "diverged",
            Verdict::Lagging => "lagging",
            Verdict::Unreachable => "unreachable",
        }
    }
}

pub type Replica = (NodeId, Result<StateDigest, String>);

/// Judges one group from its replicas' digests.
pub fn judge(replicas: &[Replica]) -> Verdict {
    let mut digests = Vec::with_capacity(replicas.len());
    for (_, d) in replicas {
        match d {
            Ok(d) => digests.push(*d),
            Err(_) => return Verdict::Unreachable,
        }
    }
    let Some(first) = digests.first() else { return Verdict::Unreachable };
    if digests.iter().any(|d| d.applied_index != first.applied_index) {
        Verdict::Lagging
    } else if digests.iter().all(|d| d == first) {
        Verdict::Identical
    } else {
        Verdict::Diverged
    }
}

impl Groups {
    /// This node's digests of `groups` (all when empty); reads the store off the runtime.
    pub async fn local_digests(&self, groups: Vec<GroupId>) -> Result<Vec<(GroupId, StateDigest)>, String> {
        let groups = if groups.is_empty() { (0..self.group_count() as GroupId).collect() } else { groups };
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || {
            groups.into_iter().map(|g| state_digest(&store, g).map(|d| (g, d)).map_err(|e| e.to_string())).collect()
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Digests of `groups` from node `node`.
    async fn digests_from(&self, node: NodeId, groups: Vec<GroupId>) -> Result<Vec<(GroupId, StateDigest)>, String> {
        if node == self.node_id() {
            return self.local_digests(groups).await;
        }
        let addr = self.peers().into_iter().find(|(id, _)| *id == node).map(|(_, a)| a);
        let addr = addr.or_else(|| self.member_addr(groups[0], node)).ok_or(format!("node {node} has no address"))?;
        let mut client = NodeClient::new(self.network.channel(&addr)?);
        let call = client.digest(DigestRequest { groups });
        let reply = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .map_err(|_| "no answer within 30 s".to_string())?
            .map_err(|s| s.message().to_string())?;
        let digests = reply.into_inner().digests.into_iter();
        Ok(digests
            .map(|d| {
                let digest = StateDigest { applied_index: d.applied_index, keys: d.keys, hash: d.hash };
                (d.group, digest)
            })
            .collect())
    }

    /// Compares every group's replicas, asking again (for up to `patience`) while their applied
    /// indexes differ.
    pub async fn verify_replicas(&self, patience: Duration) -> Vec<(GroupId, Verdict, Vec<Replica>)> {
        let deadline = Instant::now() + patience;
        let members: BTreeMap<GroupId, Vec<NodeId>> =
            (0..self.group_count() as GroupId).map(|g| (g, self.replicas_of(g))).collect();
        let mut done = BTreeMap::new();
        let mut pending: BTreeSet<GroupId> = members.keys().copied().collect();
        loop {
            // One request per node, for the pending groups it replicates.
            let mut asks: BTreeMap<NodeId, Vec<GroupId>> = BTreeMap::new();
            for g in &pending {
                for n in &members[g] {
                    asks.entry(*n).or_default().push(*g);
                }
            }
            let answers = futures::future::join_all(
                asks.into_iter().map(|(n, gs)| async move { (n, self.digests_from(n, gs).await) }),
            )
            .await;
            let mut got: BTreeMap<GroupId, Vec<Replica>> = BTreeMap::new();
            for (node, answer) in answers {
                match answer {
                    Ok(ds) => ds.into_iter().for_each(|(g, d)| got.entry(g).or_default().push((node, Ok(d)))),
                    Err(e) => members
                        .iter()
                        .filter(|(g, ns)| pending.contains(g) && ns.contains(&node))
                        .for_each(|(g, _)| got.entry(*g).or_default().push((node, Err(e.clone())))),
                }
            }
            for (g, replicas) in got {
                let verdict = judge(&replicas);
                if verdict != Verdict::Lagging || Instant::now() >= deadline {
                    pending.remove(&g);
                    done.insert(g, (g, verdict, replicas));
                }
            }
            if pending.is_empty() {
                return done.into_values().collect();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(applied_index: u64, hash: u64) -> Result<StateDigest, String> {
        Ok(StateDigest { applied_index, keys: 3, hash })
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(&[(1, d(5, 9)), (2, d(5, 9))]), Verdict::Identical);
        assert_eq!(judge(&[(1, d(5, 9)), (2, d(5, 8))]), Verdict::Diverged);
        assert_eq!(judge(&[(1, d(5, 9)), (2, d(4, 9))]), Verdict::Lagging);
        assert_eq!(judge(&[(1, d(5, 9)), (2, Err("down".into()))]), Verdict::Unreachable);
        assert_eq!(judge(&[]), Verdict::Unreachable);
    }
}
