//! Reads of applied state, straight from the local store. On a group's leader they reflect every
//! write it has acknowledged.

use std::collections::BTreeMap;
use telex_store::{group_key, Cf, Store};

use telex_types::directory::{AuditEntry, DirectoryData, GroupName, GroupRecord, PolicyVersion, UserAttributes};
use telex_types::records::{AccountRecord, ArchivedMessage, NodeRecord, TenantLimits, TenantRecord, TokenRecord};
use telex_types::room::{RoomEntry, RoomJid, RoomRecord};
use telex_types::roster::RosterItem;
use telex_types::wire::{decode, encode, version_of};
use telex_types::{Domain, GroupId, TelexError, UserJid, META_GROUP};

use crate::schema;

/// Most archive entries one remote read returns (callers page through larger ranges).
pub const MAX_REMOTE_ROWS: usize = 1000;
/// Most positions one remote peer-index read returns (8 bytes each; history asks for at most
/// four pages' worth).
pub const MAX_REMOTE_POSITIONS: usize = 8192;

/// A read of one shard group's state by a node that holds no replica of it (`Node.Read`); a
/// replica runs it with [`answer`]. Each variant is one of the functions below.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Query {
    Account(UserJid),
    Accounts(Domain),
    Roster(UserJid),
    Blocked(UserJid),
    IsBlocked {
        owner: UserJid,
        jid: UserJid,
    },
    ArchiveHead(UserJid),
    ArchivePosition {
        owner: UserJid,
        server_id: String,
    },
    Cursor {
        owner: UserJid,
        device: String,
    },
    LatestCursor(UserJid),
    ArchiveRange {
        owner: UserJid,
        from: u64,
        to: u64,
        limit: u32,
    },
    PeerPositions {
        owner: UserJid,
        peer: UserJid,
        from: u64,
        to: u64,
        limit: u32,
        newest_first: bool,
    },
    PeerStart(UserJid),
    Entries {
        owner: UserJid,
        positions: Vec<u64>,
    },
    VCard(UserJid),
    Token {
        jid: UserJid,
        id: String,
    },
    /// Whether `object`'s account exists, and whether it blocks `subject`.
    ObjectFacts {
        object: UserJid,
        subject: UserJid,
    },
    Room(RoomJid),
    Rooms(Domain),
    RoomHead(RoomJid),
    RoomRange {
        room: RoomJid,
        from: u64,
        to: u64,
        limit: u32,
    },
    RoomPosition {
        room: RoomJid,
        server_id: String,
    },
    RoomCursor {
        room: RoomJid,
        user: UserJid,
        device: String,
    },
    Memberships(UserJid),
}

/// Runs `query` on this node's replica of `group`: the answer, wire-encoded.
pub fn answer(store: &Store, group: GroupId, query: &Query) -> Result<Vec<u8>, TelexError> {
    let rows = |limit: u32| (limit as usize).min(MAX_REMOTE_ROWS);
    Ok(match query {
        Query::Account(jid) => encode(&account(store, group, jid)?),
        Query::Accounts(domain) => encode(&accounts(store, group, domain)?),
        Query::Roster(jid) => encode(&roster(store, group, jid)?),
        Query::Blocked(jid) => encode(&blocked(store, group, jid)?),
        Query::IsBlocked { owner, jid } => encode(&is_blocked(store, group, owner, jid)?),
        Query::ArchiveHead(jid) => encode(&archive_head(store, group, jid)?),
        Query::ArchivePosition { owner, server_id } => encode(&archive_position(store, group, owner, server_id)?),
        Query::Cursor { owner, device } => encode(&cursor(store, group, owner, device)?),
        Query::LatestCursor(jid) => encode(&latest_cursor(store, group, jid)?),
        Query::ArchiveRange { owner, from, to, limit } => {
            encode(&archive_range(store, group, owner, *from, *to, rows(*limit))?)
        }
        Query::PeerPositions { owner, peer, from, to, limit, newest_first } => {
            let limit = (*limit as usize).min(MAX_REMOTE_POSITIONS);
            encode(&archive_peer_positions(store, group, owner, peer, *from, *to, limit, *newest_first)?)
        }
        Query::PeerStart(jid) => encode(&archive_peer_start(store, group, jid)?),
        Query::Entries { owner, positions } => {
            let positions = positions.get(..positions.len().min(MAX_REMOTE_ROWS)).unwrap_or_default();
            encode(&archive_entries(store, group, owner, positions)?)
        }
        Query::VCard(jid) => encode(&vcard(store, group, jid)?),
        Query::Token { jid, id } => encode(&token(store, group, jid, id)?),
        Query::ObjectFacts { object, subject } => {
            encode(&(account(store, group, object)?.is_some(), is_blocked(store, group, object, subject)?))
        }
        Query::Room(room) => encode(&self::room(store, group, room)?),
        Query::Rooms(tenant) => encode(&rooms(store, group, tenant)?),
        Query::RoomHead(room) => encode(&room_head(store, group, room)?),
        Query::RoomRange { room, from, to, limit } => {
            encode(&room_range(store, group, room, *from, *to, rows(*limit))?)
        }
        Query::RoomPosition { room, server_id } => encode(&room_position(store, group, room, server_id)?),
        Query::RoomCursor { room, user, device } => encode(&room_cursor(store, group, room, user, device)?),
        Query::Memberships(user) => encode(&memberships(store, group, user)?),
    })
}

/// A room's record, if it exists.
pub fn room(store: &Store, group: GroupId, room: &RoomJid) -> Result<Option<RoomRecord>, TelexError> {
    get(store, group, &schema::room(room))
}

/// The rooms of one tenant held by one shard, in name order.
pub fn rooms(store: &Store, group: GroupId, tenant: &Domain) -> Result<Vec<RoomRecord>, TelexError> {
    scan(store, group, &schema::rooms_of(tenant))
}

/// The last position of a room's log (0 when empty).
pub fn room_head(store: &Store, group: GroupId, room: &RoomJid) -> Result<u64, TelexError> {
    counter(store, group, &schema::room_head(room))
}

/// Entries `from..=to` of a room's log, at most `limit`.
pub fn room_range(
    store: &Store,
    group: GroupId,
    room: &RoomJid,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<(u64, RoomEntry)>, TelexError> {
    if from > to {
        return Ok(Vec::new());
    }
    let start = group_key(group, &schema::room_entry(room, from));
    let end = match to.checked_add(1) {
        Some(next) => group_key(group, &schema::room_entry(room, next)),
        None => schema::prefix_end(&group_key(group, &schema::room_log(room))),
    };
    let rows = store.scan(Cf::State, &start, &end, limit).map_err(storage)?;
    rows.iter().map(|(k, v)| Ok((position_suffix(k)?, decode::<RoomEntry>(v)?))).collect()
}

/// Where the entry with `server_id` is in a room's log.
pub fn room_position(
    store: &Store,
    group: GroupId,
    room: &RoomJid,
    server_id: &str,
) -> Result<Option<u64>, TelexError> {
    let key = group_key(group, &schema::room_id(room, server_id));
    match store.get(Cf::State, &key).map_err(storage)? {
        Some(b) => {
            let bytes: [u8; 8] = b.as_slice().try_into().map_err(|_| TelexError::internal("corrupt room id index"))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
        None => Ok(None),
    }
}

/// How far a member's device has received a room's log (0: nothing yet).
pub fn room_cursor(
    store: &Store,
    group: GroupId,
    room: &RoomJid,
    user: &UserJid,
    device: &str,
) -> Result<u64, TelexError> {
    counter(store, group, &schema::room_cursor(room, user, device))
}

/// The rooms `user` is a member of, as recorded in the user's shard.
pub fn memberships(store: &Store, group: GroupId, user: &UserJid) -> Result<Vec<RoomJid>, TelexError> {
    let from = group_key(group, &schema::memberships_of(user));
    let to = schema::prefix_end(&from);
    let rows = store.scan(Cf::State, &from, &to, usize::MAX).map_err(storage)?;
    Ok(rows.iter().filter_map(|(k, _)| RoomJid::parse(std::str::from_utf8(k.get(from.len()..)?).ok()?).ok()).collect())
}

fn get<T: serde::de::DeserializeOwned>(store: &Store, group: GroupId, key: &[u8]) -> Result<Option<T>, TelexError> {
    match store.get(Cf::State, &group_key(group, key)).map_err(|e| TelexError::internal(e.to_string()))? {
        Some(b) => decode(&b).map(Some),
        None => Ok(None),
    }
}

fn scan<T: serde::de::DeserializeOwned>(store: &Store, group: GroupId, prefix: &[u8]) -> Result<Vec<T>, TelexError> {
    let from = group_key(group, prefix);
    let to = schema::prefix_end(&from);
    let rows = store.scan(Cf::State, &from, &to, usize::MAX).map_err(|e| TelexError::internal(e.to_string()))?;
    rows.iter().map(|(_, v)| decode(v)).collect()
}

pub fn tenant(store: &Store, domain: &Domain) -> Result<Option<TenantRecord>, TelexError> {
    get(store, META_GROUP, &schema::tenant(domain))
}

/// A tenant's limit overrides (none set: all defaults).
pub fn tenant_limits(store: &Store, domain: &Domain) -> Result<TenantLimits, TelexError> {
    Ok(get(store, META_GROUP, &schema::tenant_limits(domain))?.unwrap_or_default())
}

pub fn tenants(store: &Store) -> Result<Vec<TenantRecord>, TelexError> {
    scan(store, META_GROUP, schema::TENANTS)
}

/// Where each shard group's replicas are, as the placement driver last recorded them (groups
/// it has not recorded yet are missing).
pub fn placement(store: &Store) -> Result<BTreeMap<GroupId, Vec<u64>>, TelexError> {
    let from = group_key(META_GROUP, schema::PLACEMENTS);
    let to = schema::prefix_end(&from);
    let rows = store.scan(Cf::State, &from, &to, usize::MAX).map_err(storage)?;
    let mut out = BTreeMap::new();
    for (k, v) in rows {
        let tail = k.len().checked_sub(4).and_then(|at| k.get(at..)).unwrap_or_default();
        let group = u32::from_be_bytes(tail.try_into().map_err(|_| TelexError::internal("corrupt placement key"))?);
        out.insert(group, decode(&v)?);
    }
    Ok(out)
}

/// Every node placement knows of, in id order.
pub fn nodes(store: &Store) -> Result<Vec<NodeRecord>, TelexError> {
    scan(store, META_GROUP, schema::NODES)
}

pub fn account(store: &Store, group: GroupId, jid: &UserJid) -> Result<Option<AccountRecord>, TelexError> {
    get(store, group, &schema::account(jid))
}

/// Accounts of one tenant held by one shard, in name order.
pub fn accounts(store: &Store, group: GroupId, domain: &Domain) -> Result<Vec<AccountRecord>, TelexError> {
    scan(store, group, &schema::accounts_of(domain))
}

/// A user's roster, in contact order.
pub fn roster(store: &Store, group: GroupId, jid: &UserJid) -> Result<Vec<(UserJid, RosterItem)>, TelexError> {
    scan(store, group, &schema::roster_of(jid))
}

/// The JIDs a user blocks.
pub fn blocked(store: &Store, group: GroupId, jid: &UserJid) -> Result<Vec<UserJid>, TelexError> {
    scan(store, group, &schema::blocked_of(jid))
}

/// Whether `owner` blocks `jid`.
pub fn is_blocked(store: &Store, group: GroupId, owner: &UserJid, jid: &UserJid) -> Result<bool, TelexError> {
    let key = group_key(group, &schema::blocked(owner, jid));
    Ok(store.get(Cf::State, &key).map_err(|e| TelexError::internal(e.to_string()))?.is_some())
}

/// The last position of a user's archive (0 when empty).
pub fn archive_head(store: &Store, group: GroupId, jid: &UserJid) -> Result<u64, TelexError> {
    Ok(head(store, group, jid)?.map_or(0, |h| h.position))
}

fn head(store: &Store, group: GroupId, jid: &UserJid) -> Result<Option<schema::Head>, TelexError> {
    match store
        .get(Cf::State, &group_key(group, &schema::archive_head(jid)))
        .map_err(|e| TelexError::internal(e.to_string()))?
    {
        Some(b) => schema::Head::decode(&b).map(Some).ok_or_else(|| TelexError::internal("corrupt archive head")),
        None => Ok(None),
    }
}

/// A device's durable delivery cursor (0 when it never acknowledged anything).
pub fn cursor(store: &Store, group: GroupId, jid: &UserJid, device: &str) -> Result<u64, TelexError> {
    counter(store, group, &schema::cursor(jid, device))
}

/// A user's stored vCard XML.
pub fn vcard(store: &Store, group: GroupId, jid: &UserJid) -> Result<Option<String>, TelexError> {
    get(store, group, &schema::vcard(jid))
}

/// The furthest any of a user's devices has acknowledged (0 when none has a cursor).
pub fn latest_cursor(store: &Store, group: GroupId, jid: &UserJid) -> Result<u64, TelexError> {
    let from = group_key(group, &schema::cursors_of(jid));
    let to = schema::prefix_end(&from);
    let rows = store.scan(Cf::State, &from, &to, usize::MAX).map_err(|e| TelexError::internal(e.to_string()))?;
    Ok(rows.iter().filter_map(|(_, v)| Some(u64::from_be_bytes(v.as_slice().try_into().ok()?))).max().unwrap_or(0))
}

/// Where the message with `server_id` is in a user's archive.
pub fn archive_position(
    store: &Store,
    group: GroupId,
    jid: &UserJid,
    server_id: &str,
) -> Result<Option<u64>, TelexError> {
    match counter(store, group, &schema::archive_id(jid, server_id))? {
        0 => Ok(None),
        p => Ok(Some(p)),
    }
}

fn counter(store: &Store, group: GroupId, key: &[u8]) -> Result<u64, TelexError> {
    match store.get(Cf::State, &group_key(group, key)).map_err(|e| TelexError::internal(e.to_string()))? {
        Some(b) => {
            Ok(u64::from_be_bytes(b.as_slice().try_into().map_err(|_| TelexError::internal("corrupt counter"))?))
        }
        None => Ok(0),
    }
}

/// Archived messages of a user with positions in `from..=to`, at most `limit`, in order.
pub fn archive_range(
    store: &Store,
    group: GroupId,
    jid: &UserJid,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
    if from > to {
        return Ok(Vec::new());
    }
    let start = group_key(group, &schema::archive_entry(jid, from));
    let end = match to.checked_add(1) {
        Some(next) => group_key(group, &schema::archive_entry(jid, next)),
        None => schema::prefix_end(&group_key(group, &schema::archive_of(jid))),
    };
    let rows = store.scan(Cf::State, &start, &end, limit).map_err(storage)?;
    let mut page = Vec::with_capacity(rows.len());
    let mut old = Vec::new();
    for (k, v) in rows {
        let position = position_suffix(&k)?;
        if version_of(&v) == Some(1) {
            old.push(page.len());
        }
        page.push((position, decode::<ArchivedMessage>(&v)?));
    }
    // Version-1 entries keep their extension elements under a key of their own.
    for i in old {
        let Some((position, message)) = page.get_mut(i) else { continue };
        if let Some(extras) = get::<String>(store, group, &schema::archive_extras(jid, *position))? {
            message.extras = extras;
        }
    }
    Ok(page)
}

/// The 8-byte big-endian position at the end of an archive key.
fn position_suffix(key: &[u8]) -> Result<u64, TelexError> {
    let tail = key.len().checked_sub(8).and_then(|at| key.get(at..)).unwrap_or_default();
    let bytes: [u8; 8] = tail.try_into().map_err(|_| TelexError::internal("corrupt archive key"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Positions of `jid`'s entries with `peer` in `from..=to`, at most `limit`, ascending or (with
/// `newest_first`) descending, from the peer index.
#[allow(clippy::too_many_arguments)]
pub fn archive_peer_positions(
    store: &Store,
    group: GroupId,
    jid: &UserJid,
    peer: &UserJid,
    from: u64,
    to: u64,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<u64>, TelexError> {
    if from > to {
        return Ok(Vec::new());
    }
    let start = group_key(group, &schema::archive_peer(jid, peer, from));
    let end = match to.checked_add(1) {
        Some(next) => group_key(group, &schema::archive_peer(jid, peer, next)),
        None => schema::prefix_end(&group_key(group, &schema::archive_peer_of(jid, peer))),
    };
    let rows = if newest_first {
        store.scan_rev(Cf::State, &start, &end, limit)
    } else {
        store.scan(Cf::State, &start, &end, limit)
    }
    .map_err(storage)?;
    rows.iter().map(|(k, _)| position_suffix(k)).collect()
}

/// The first position of `jid`'s archive covered by the peer index: entries before it were
/// appended before the index existed.
pub fn archive_peer_start(store: &Store, group: GroupId, jid: &UserJid) -> Result<u64, TelexError> {
    let head = head(store, group, jid)?;
    if let Some(start) = head.and_then(|h| h.peer_start) {
        return Ok(start);
    }
    match counter(store, group, &schema::archive_peer_start(jid))? {
        0 => Ok(head.map_or(0, |h| h.position) + 1),
        p => Ok(p),
    }
}

/// The archive entries at `positions` (those that exist), in the order given.
pub fn archive_entries(
    store: &Store,
    group: GroupId,
    jid: &UserJid,
    positions: &[u64],
) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
    let mut out = Vec::with_capacity(positions.len());
    for &p in positions {
        if let Some(entry) = archive_range(store, group, jid, p, p, 1)?.pop() {
            out.push(entry);
        }
    }
    Ok(out)
}

fn storage(e: impl ToString) -> TelexError {
    TelexError::internal(e.to_string())
}

pub fn token(store: &Store, group: GroupId, jid: &UserJid, id: &str) -> Result<Option<TokenRecord>, TelexError> {
    get(store, group, &schema::token(jid, id))
}

/// A tenant's whole directory: attributes, groups and memberships.
pub fn directory(store: &Store, tenant: &Domain) -> Result<DirectoryData, TelexError> {
    let rows = |prefix: &[u8]| {
        let from = group_key(META_GROUP, prefix);
        let to = schema::prefix_end(&from);
        let rows = store.scan(Cf::State, &from, &to, usize::MAX).map_err(storage)?;
        Ok::<_, TelexError>((from.len(), rows))
    };
    let mut data = DirectoryData::default();
    let (skip, attrs) = rows(&schema::user_attributes_of(tenant))?;
    for (k, v) in attrs {
        let Some(local) = k.get(skip..).and_then(|l| std::str::from_utf8(l).ok()) else { continue };
        let Ok(user) = UserJid::new(local, tenant.clone()) else { continue };
        data.users.push((user, decode(&v)?));
    }
    data.groups = scan(store, META_GROUP, &schema::groups_of(tenant))?;
    let (skip, members) = rows(&schema::group_memberships_of(tenant))?;
    for (k, _) in members {
        let Some(rest) = k.get(skip..).and_then(|l| std::str::from_utf8(l).ok()) else { continue };
        let Some((group, local)) = rest.split_once('\0') else { continue };
        let (Ok(group), Ok(user)) = (GroupName::parse(group), UserJid::new(local, tenant.clone())) else { continue };
        data.members.push((group, user));
    }
    Ok(data)
}

/// One group of a tenant's directory.
pub fn group(store: &Store, tenant: &Domain, name: &GroupName) -> Result<Option<GroupRecord>, TelexError> {
    get(store, META_GROUP, &schema::group(tenant, name))
}

/// A user's directory attributes.
pub fn user_attributes(store: &Store, user: &UserJid) -> Result<Option<UserAttributes>, TelexError> {
    get(store, META_GROUP, &schema::user_attributes(user))
}

/// A tenant's policy: version `version`, or the newest.
pub fn policy(store: &Store, tenant: &Domain, version: Option<u64>) -> Result<Option<PolicyVersion>, TelexError> {
    let version = match version {
        Some(v) => v,
        None => match counter(store, META_GROUP, &schema::policy_head(tenant))? {
            0 => return Ok(None),
            v => v,
        },
    };
    get(store, META_GROUP, &schema::policy_version(tenant, version))
}

/// Every version of a tenant's policy, oldest first.
pub fn policy_history(store: &Store, tenant: &Domain) -> Result<Vec<PolicyVersion>, TelexError> {
    scan(store, META_GROUP, &schema::policy_versions(tenant))
}

/// Up to `limit` entries of a tenant's audit trail (`None`: the cluster's own) after `after`.
pub fn audit(store: &Store, tenant: Option<&Domain>, after: u64, limit: usize) -> Result<Vec<AuditEntry>, TelexError> {
    let start = after.saturating_add(1);
    let from = group_key(META_GROUP, &schema::audit_entry(tenant, start));
    let to = schema::prefix_end(&group_key(META_GROUP, &schema::audit_entries(tenant)));
    let rows = store.scan(Cf::State, &from, &to, limit).map_err(storage)?;
    rows.iter().map(|(_, v)| decode(v)).collect()
}

/// An admin identity, by name.
pub fn admin(store: &Store, name: &str) -> Result<Option<telex_types::admin::AdminRecord>, TelexError> {
    get(store, META_GROUP, &schema::admin(name))
}

/// Every admin identity, by name.
pub fn admins(store: &Store) -> Result<Vec<telex_types::admin::AdminRecord>, TelexError> {
    scan(store, META_GROUP, schema::ADMINS)
}
