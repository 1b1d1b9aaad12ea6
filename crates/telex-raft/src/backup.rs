//! Backups and restores. A backup is a RocksDB checkpoint of this node's store taken once its
//! replica of every group has applied everything committed before the backup began, with a
//! manifest of each group's applied index and state fingerprint. A restore starts a new
//! cluster from it: every group's log is dropped (its applied state stays), and its membership
//! becomes this node alone, so the node elects itself and others can join it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{BasicNode, Membership, StoredMembership, Vote};
use serde::{Deserialize, Serialize};
use telex_store::{group_key, Batch, Cf, Durability, Store, StoreOptions};
use telex_types::GroupId;

use crate::codec::encode;
use crate::log_store::{PURGED, VOTE};
use crate::state_machine::{state_digest, APPLIED, MEMBERSHIP, SNAP_DATA, SNAP_META};
use crate::types::{LogId, NodeId};
use crate::Groups;

/// What a backup holds, written beside it as `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub node_id: NodeId,
    pub created_at_ms: u64,
    pub shards: u32,
    pub groups: Vec<GroupBackup>,
}

/// One group in a backup: its applied index and the fingerprint of its state there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBackup {
    pub group: GroupId,
    pub applied_index: u64,
    pub keys: u64,
    pub hash: u64,
}

pub const MANIFEST_FORMAT: u32 = 1;

impl Groups {
    /// Writes a backup of this node's replicas into `dir` (a new directory): every group first
    /// catches up with its leader (a read index), so the copy holds every write acknowledged
    /// before the call; then one checkpoint of the store, fingerprinted group by group.
    pub async fn backup(&self, dir: &Path) -> Result<Manifest, String> {
        let missing: Vec<String> =
            (0..self.group_count() as GroupId).filter(|g| !self.hosts(*g)).map(|g| g.to_string()).collect();
        if !missing.is_empty() {
            // With more nodes than replicas per group, no node holds everything (ARCHITECTURE.md,
            // Known limits).
            return Err(format!(
                "node {} holds no replica of groups {}: back up from a node that holds every group",
                self.node_id(),
                missing.join(",")
            ));
        }
        for group in 0..self.group_count() as GroupId {
            self.catch_up(group).await.map_err(|e| format!("group {group} cannot catch up for the backup: {e}"))?;
        }
        let (store, dir) = (self.store().clone(), dir.to_path_buf());
        let (node_id, shards) = (self.node_id(), self.shards());
        let groups = self.group_count() as GroupId;
        tokio::task::spawn_blocking(move || {
            store.checkpoint(&dir).map_err(|e| format!("checkpoint: {e}"))?;
            let copy =
                Store::open(&dir, &StoreOptions::default()).map_err(|e| format!("opening the checkpoint: {e}"))?;
            let mut manifest =
                Manifest { format: MANIFEST_FORMAT, node_id, created_at_ms: now_ms(), shards, groups: vec![] };
            for group in 0..groups {
                let d = state_digest(&copy, group).map_err(|e| format!("group {group}: {e}"))?;
                manifest.groups.push(GroupBackup { group, applied_index: d.applied_index, keys: d.keys, hash: d.hash });
            }
            Ok(manifest)
        })
        .await
        .map_err(|e| format!("backup task: {e}"))?
    }
}

/// Turns a restored store into a new cluster of one: for each group that has state, its log is
/// dropped up to the applied entry (marked purged there), its membership becomes `node` at
/// `addr` alone, its vote this node's at the applied term, and its stored snapshot is dropped
/// (the next one is built with the new membership). Every group must have state (a backup of
/// a node that had joined every group). Returns how many groups were rewritten.
pub fn restore_single_node(store: &Store, groups: GroupId, node: NodeId, addr: &str) -> Result<usize, String> {
    let mut rewritten = 0;
    let mut b = Batch::new();
    for group in 0..groups {
        let applied: Option<LogId> = match store.get(Cf::Raft, &group_key(group, APPLIED)).map_err(|e| e.to_string())? {
            Some(bytes) => telex_types::wire::decode(&bytes).map_err(|e| format!("group {group}: applied id: {e}"))?,
            None => None,
        };
        let Some(applied) = applied else {
            return Err(format!("group {group} has no applied state in the backup: it cannot be restored"));
        };
        let nodes = BTreeMap::from([(node, BasicNode { addr: addr.to_string() })]);
        let membership = Membership::new(vec![BTreeSet::from([node])], nodes);
        let stored = StoredMembership::new(Some(applied), membership);
        b.delete_range(Cf::Log, group_key(group, &0u64.to_be_bytes()), group_key(group + 1, b""));
        b.put(Cf::Raft, group_key(group, PURGED.as_bytes()), encode(&applied));
        b.put(Cf::Raft, group_key(group, VOTE.as_bytes()), encode(&Vote::new(applied.leader_id.term, node)));
        b.put(Cf::Raft, group_key(group, MEMBERSHIP), encode(&stored));
        b.delete(Cf::Raft, group_key(group, SNAP_META));
        b.delete(Cf::Raft, group_key(group, SNAP_DATA));
        rewritten += 1;
    }
    store.write(b, Durability::Synced).map_err(|e| e.to_string())?;
    Ok(rewritten)
}

/// Checks a restored store against the backup's manifest: every group's state fingerprint.
pub fn check_against(store: &Store, manifest: &Manifest) -> Result<(), String> {
    for g in &manifest.groups {
        let d = state_digest(store, g.group).map_err(|e| format!("group {}: {e}", g.group))?;
        if (d.keys, d.hash) != (g.keys, g.hash) {
            return Err(format!(
                "group {}: the restored state ({} keys, {:016x}) differs from the backup's ({} keys, {:016x})",
                g.group, d.keys, d.hash, g.keys, g.hash
            ));
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
