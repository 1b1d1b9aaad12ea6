//! Reads of applied state, straight from the local store. On a group's leader they reflect every
//! write it has acknowledged.

use telex_store::{group_key, Cf, Store};
use telex_types::records::{AccountRecord, ArchivedMessage, TenantLimits, TenantRecord, TokenRecord};
use telex_types::roster::RosterItem;
use telex_types::wire::decode;
use telex_types::{Domain, GroupId, TelexError, UserJid, META_GROUP};

use crate::schema;

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
    counter(store, group, &schema::archive_head(jid))
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
    let rows = store.scan(Cf::State, &start, &end, limit).map_err(|e| TelexError::internal(e.to_string()))?;
    let position = |k: &[u8]| u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8-byte position suffix"));
    let mut page: Vec<(u64, ArchivedMessage)> =
        rows.iter().map(|(k, v)| Ok((position(k), decode(v)?))).collect::<Result<_, TelexError>>()?;
    // The extension elements of the same positions, one more range scan.
    if let (Some((first, _)), Some((last, _))) = (page.first(), page.last()) {
        let from = group_key(group, &schema::archive_extras(jid, *first));
        let to = group_key(group, &schema::archive_extras(jid, last + 1));
        let extras = store.scan(Cf::State, &from, &to, usize::MAX).map_err(|e| TelexError::internal(e.to_string()))?;
        let mut at = 0;
        for (k, v) in extras {
            let p = position(&k);
            while at < page.len() && page[at].0 < p {
                at += 1;
            }
            if at < page.len() && page[at].0 == p {
                page[at].1.extras = decode(&v)?;
            }
        }
    }
    Ok(page)
}

pub fn token(store: &Store, group: GroupId, jid: &UserJid, id: &str) -> Result<Option<TokenRecord>, TelexError> {
    get(store, group, &schema::token(jid, id))
}
