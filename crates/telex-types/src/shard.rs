//! Placement of users on Raft groups: `shard(user) = hash(tenant, user) mod S`.

use crate::UserJid;

/// A Raft group id. Group 0 is the meta group; shards are groups `1..=S`.
pub type GroupId = u32;

/// The meta group: tenants, and later membership and placement.
pub const META_GROUP: GroupId = 0;

/// The shard group of a user. The hash is xxh3 over `domain \0 local`, stable across versions
/// and machines: changing it would move every user, so it is part of the on-disk format.
pub fn shard_of(user: &UserJid, shards: u32) -> GroupId {
    assert!(shards > 0, "a cluster has at least one shard");
    let mut buf = Vec::with_capacity(user.domain().as_str().len() + 1 + user.local().len());
    buf.extend_from_slice(user.domain().as_str().as_bytes());
    buf.push(0);
    buf.extend_from_slice(user.local().as_bytes());
    let h = xxhash_rust::xxh3::xxh3_64(&buf);
    1 + (h % shards as u64) as GroupId
}

/// The shard group a room lives in: `hash(tenant, room)`, spread independently of a user of
/// the same name (the hash covers a marker byte first).
pub fn shard_of_room(room: &crate::room::RoomJid, shards: u32) -> GroupId {
    assert!(shards > 0, "a cluster has at least one shard");
    let mut buf = Vec::with_capacity(2 + room.tenant().as_str().len() + 1 + room.local().len());
    buf.extend_from_slice(b"R\0");
    buf.extend_from_slice(room.tenant().as_str().as_bytes());
    buf.push(0);
    buf.extend_from_slice(room.local().as_bytes());
    let h = xxhash_rust::xxh3::xxh3_64(&buf);
    1 + (h % shards as u64) as GroupId
}

/// All shard group ids of a cluster with `shards` shards.
pub fn shard_groups(shards: u32) -> impl Iterator<Item = GroupId> {
    1..=shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spread() {
        let alice = UserJid::parse("alice@localhost").unwrap();
        // Pinned: a change here would silently move stored users to other shards.
        const PINNED_ALICE_64: GroupId = 59;
        assert_eq!(shard_of(&alice, 64), PINNED_ALICE_64);
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            let u = UserJid::parse(&format!("user{i}@localhost")).unwrap();
            let s = shard_of(&u, 64);
            assert!((1..=64).contains(&s));
            seen.insert(s);
        }
        assert_eq!(seen.len(), 64, "2000 users should cover all 64 shards");
    }
}
