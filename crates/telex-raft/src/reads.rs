//! Reads of applied state, straight from the local store. On a group's leader they reflect every
//! write it has acknowledged.

use telex_store::{group_key, Cf, Store};
use telex_types::records::{AccountRecord, TenantRecord, TokenRecord};
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

pub fn token(store: &Store, group: GroupId, jid: &UserJid, id: &str) -> Result<Option<TokenRecord>, TelexError> {
    get(store, group, &schema::token(jid, id))
}
