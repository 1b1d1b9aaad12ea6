//! Layout of application keys inside a group's state range (the group prefix is added by the
//! state machine). Strings never contain `\0`, so it separates key parts.

use telex_types::directory::GroupName;
use telex_types::room::RoomJid;
use telex_types::{Domain, UserJid};

pub fn tenant(domain: &Domain) -> Vec<u8> {
    [b"t/", domain.as_str().as_bytes()].concat()
}

pub const TENANTS: &[u8] = b"t/";

/// Meta group: the nodes holding a shard group's replicas.
pub fn placement(group: u32) -> Vec<u8> {
    [b"g/".as_slice(), &group.to_be_bytes()].concat()
}

pub const PLACEMENTS: &[u8] = b"g/";

/// Meta group: what placement knows of a node.
pub fn node(node: u64) -> Vec<u8> {
    [b"n/".as_slice(), &node.to_be_bytes()].concat()
}

pub const NODES: &[u8] = b"n/";

/// A tenant's limit overrides.
pub fn tenant_limits(domain: &Domain) -> Vec<u8> {
    [b"l/", domain.as_str().as_bytes()].concat()
}

pub fn account(jid: &UserJid) -> Vec<u8> {
    [b"u/", jid.domain().as_str().as_bytes(), b"\0", jid.local().as_bytes()].concat()
}

/// Prefix of all accounts of one tenant in a shard.
pub fn accounts_of(domain: &Domain) -> Vec<u8> {
    [b"u/", domain.as_str().as_bytes(), b"\0"].concat()
}

pub fn token(jid: &UserJid, token_id: &str) -> Vec<u8> {
    [tokens_of(jid).as_slice(), token_id.as_bytes()].concat()
}

/// Prefix of all tokens of one user.
pub fn tokens_of(jid: &UserJid) -> Vec<u8> {
    [b"k/", jid.domain().as_str().as_bytes(), b"\0", jid.local().as_bytes(), b"\0"].concat()
}

fn user_prefix(tag: &[u8], jid: &UserJid) -> Vec<u8> {
    [tag, jid.domain().as_str().as_bytes(), b"\0", jid.local().as_bytes(), b"\0"].concat()
}

/// The head of a user's archive: its last position and where the peer index begins
/// ([`Head`]).
pub fn archive_head(jid: &UserJid) -> Vec<u8> {
    user_prefix(b"h/", jid)
}

/// The value under [`archive_head`]: 16 bytes, the last position then the first position the
/// peer index covers, big-endian. Archives begun before the index existed have an 8-byte head
/// (the position alone) until their next append, and the index start under
/// [`archive_peer_start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub position: u64,
    /// `None` in an 8-byte head.
    pub peer_start: Option<u64>,
}

impl Head {
    pub fn encode(position: u64, peer_start: u64) -> Vec<u8> {
        [position.to_be_bytes(), peer_start.to_be_bytes()].concat()
    }

    pub fn decode(bytes: &[u8]) -> Option<Head> {
        let word = |i: usize| bytes.get(i..i + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        match bytes.len() {
            8 => Some(Head { position: word(0)?, peer_start: None }),
            16 => Some(Head { position: word(0)?, peer_start: Some(word(8)?) }),
            _ => None,
        }
    }
}

/// One archived message: positions are big-endian so keys sort in archive order.
pub fn archive_entry(jid: &UserJid, position: u64) -> Vec<u8> {
    [user_prefix(b"a/", jid).as_slice(), &position.to_be_bytes()].concat()
}

/// Extension elements of the version-1 archive entry at `position` (only for entries that have
/// some; version 2 keeps them in the entry). Shares the `x/` tag with `archive_dedup`: a
/// position's 8 bytes never start like a JID, so the two never collide.
pub fn archive_extras(jid: &UserJid, position: u64) -> Vec<u8> {
    [user_prefix(b"x/", jid).as_slice(), &position.to_be_bytes()].concat()
}

pub fn archive_of(jid: &UserJid) -> Vec<u8> {
    user_prefix(b"a/", jid)
}

/// Retry dedup of archives written before version 0.2: (sender, client message id) → position
/// in `owner`'s archive. No longer written: the server id is derived from the same pair, so
/// [`archive_id`] finds retries.
pub fn archive_dedup(owner: &UserJid, sender: &UserJid, client_id: &str) -> Vec<u8> {
    [user_prefix(b"x/", owner).as_slice(), sender.to_string().as_bytes(), b"\0", client_id.as_bytes()].concat()
}

/// Peer index: an (empty) key per archive entry, by the other party of the message, so a
/// query "with X" reads only X's entries.
pub fn archive_peer(owner: &UserJid, peer: &UserJid, position: u64) -> Vec<u8> {
    [archive_peer_of(owner, peer).as_slice(), &position.to_be_bytes()].concat()
}

pub fn archive_peer_of(owner: &UserJid, peer: &UserJid) -> Vec<u8> {
    [user_prefix(b"w/", owner).as_slice(), peer.to_string().as_bytes(), b"\0"].concat()
}

/// The first position of `owner`'s archive in the peer index, for archives whose [`Head`] is
/// of 8 bytes (begun before the index existed, so older entries lack it).
pub fn archive_peer_start(owner: &UserJid) -> Vec<u8> {
    user_prefix(b"p/", owner)
}

/// Server id → position in `owner`'s archive: paging relative to a message, and retry dedup
/// (the server id is derived from the sender and the client's id).
pub fn archive_id(owner: &UserJid, server_id: &str) -> Vec<u8> {
    [user_prefix(b"i/", owner).as_slice(), server_id.as_bytes()].concat()
}

/// `owner`'s roster item for `contact`.
pub fn roster_item(owner: &UserJid, contact: &UserJid) -> Vec<u8> {
    [user_prefix(b"r/", owner).as_slice(), contact.to_string().as_bytes()].concat()
}

pub fn roster_of(owner: &UserJid) -> Vec<u8> {
    user_prefix(b"r/", owner)
}

/// `jid` on `owner`'s block list.
pub fn blocked(owner: &UserJid, jid: &UserJid) -> Vec<u8> {
    [user_prefix(b"b/", owner).as_slice(), jid.to_string().as_bytes()].concat()
}

pub fn blocked_of(owner: &UserJid) -> Vec<u8> {
    user_prefix(b"b/", owner)
}

/// A user's vCard (XEP-0054).
pub fn vcard(owner: &UserJid) -> Vec<u8> {
    user_prefix(b"v/", owner)
}

/// Every delivery cursor of a user.
pub fn cursors_of(owner: &UserJid) -> Vec<u8> {
    user_prefix(b"c/", owner)
}

/// Delivery cursor of one device.
pub fn cursor(owner: &UserJid, device: &str) -> Vec<u8> {
    [user_prefix(b"c/", owner).as_slice(), device.as_bytes()].concat()
}

fn room_prefix(tag: &[u8], room: &RoomJid) -> Vec<u8> {
    [tag, room.tenant().as_str().as_bytes(), b"\0", room.local().as_bytes(), b"\0"].concat()
}

/// A room's record ([`telex_types::room::RoomRecord`]).
pub fn room(room: &RoomJid) -> Vec<u8> {
    room_prefix(b"R/", room)
}

/// Prefix of every room record of one tenant in a shard.
pub fn rooms_of(tenant: &Domain) -> Vec<u8> {
    [b"R/", tenant.as_str().as_bytes(), b"\0"].concat()
}

/// The last position of a room's log (8 bytes, big-endian).
pub fn room_head(room: &RoomJid) -> Vec<u8> {
    room_prefix(b"RH/", room)
}

/// One entry of a room's log, by position.
pub fn room_entry(room: &RoomJid, position: u64) -> Vec<u8> {
    [room_prefix(b"RA/", room).as_slice(), &position.to_be_bytes()].concat()
}

pub fn room_log(room: &RoomJid) -> Vec<u8> {
    room_prefix(b"RA/", room)
}

/// Server id → position in a room's log (retry dedup, paging from a message).
pub fn room_id(room: &RoomJid, server_id: &str) -> Vec<u8> {
    [room_prefix(b"RI/", room).as_slice(), server_id.as_bytes()].concat()
}

pub fn room_ids(room: &RoomJid) -> Vec<u8> {
    room_prefix(b"RI/", room)
}

/// How far one device of a member has received a room's log.
pub fn room_cursor(room: &RoomJid, user: &UserJid, device: &str) -> Vec<u8> {
    [room_cursors_of(room, user).as_slice(), device.as_bytes()].concat()
}

pub fn room_cursors_of(room: &RoomJid, user: &UserJid) -> Vec<u8> {
    [room_cursors(room).as_slice(), user.domain().as_str().as_bytes(), b"\0", user.local().as_bytes(), b"\0"].concat()
}

pub fn room_cursors(room: &RoomJid) -> Vec<u8> {
    room_prefix(b"RC/", room)
}

/// User shard: `user` is a member of `room` (an empty value).
pub fn membership(user: &UserJid, room: &RoomJid) -> Vec<u8> {
    [user_prefix(b"m/", user).as_slice(), room.to_string().as_bytes()].concat()
}

pub fn memberships_of(user: &UserJid) -> Vec<u8> {
    user_prefix(b"m/", user)
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

fn of_tenant(tag: &[u8], tenant: &str) -> Vec<u8> {
    [tag, tenant.as_bytes(), b"\0"].concat()
}

/// Meta group: a user's directory attributes.
pub fn user_attributes(user: &UserJid) -> Vec<u8> {
    [of_tenant(b"da/", user.domain().as_str()), user.local().as_bytes().to_vec()].concat()
}

pub fn user_attributes_of(tenant: &Domain) -> Vec<u8> {
    of_tenant(b"da/", tenant.as_str())
}

/// Meta group: a directory group's record.
pub fn group(tenant: &Domain, name: &GroupName) -> Vec<u8> {
    [of_tenant(b"dg/", tenant.as_str()), name.as_str().as_bytes().to_vec()].concat()
}

pub fn groups_of(tenant: &Domain) -> Vec<u8> {
    of_tenant(b"dg/", tenant.as_str())
}

/// Meta group: one member of a group (the value is empty).
pub fn group_member(tenant: &Domain, name: &GroupName, user: &UserJid) -> Vec<u8> {
    [group_members(tenant, name), user.local().as_bytes().to_vec()].concat()
}

pub fn group_members(tenant: &Domain, name: &GroupName) -> Vec<u8> {
    [of_tenant(b"dm/", tenant.as_str()), name.as_str().as_bytes().to_vec(), b"\0".to_vec()].concat()
}

/// Every membership of a tenant (`dm/<tenant>\0<group>\0<local>`).
pub fn group_memberships_of(tenant: &Domain) -> Vec<u8> {
    of_tenant(b"dm/", tenant.as_str())
}

/// Meta group: a tenant's policy version `v`, and the number of the newest.
pub fn policy_version(tenant: &Domain, version: u64) -> Vec<u8> {
    [policy_versions(tenant), version.to_be_bytes().to_vec()].concat()
}

pub fn policy_versions(tenant: &Domain) -> Vec<u8> {
    of_tenant(b"pv/", tenant.as_str())
}

pub fn policy_head(tenant: &Domain) -> Vec<u8> {
    of_tenant(b"ph/", tenant.as_str())
}

/// Meta group: entry `seq` of a tenant's audit trail (`None`: the cluster's own), and the
/// newest number.
pub fn audit_entry(tenant: Option<&Domain>, seq: u64) -> Vec<u8> {
    [audit_entries(tenant), seq.to_be_bytes().to_vec()].concat()
}

pub fn audit_entries(tenant: Option<&Domain>) -> Vec<u8> {
    of_tenant(b"au/", tenant.map_or("", Domain::as_str))
}

pub fn audit_head(tenant: Option<&Domain>) -> Vec<u8> {
    of_tenant(b"ah/", tenant.map_or("", Domain::as_str))
}

/// Meta group: the admin identities, by name.
pub const ADMINS: &[u8] = b"ad/";

pub fn admin(name: &str) -> Vec<u8> {
    [ADMINS, name.as_bytes()].concat()
}
