//! Records kept in the replicated state machines. These are on-disk formats (see `wire`).

use serde::{Deserialize, Serialize};

use crate::{Domain, UnixMillis, UserJid};

/// A tenant, stored in the meta group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub domain: Domain,
    pub created_at: UnixMillis,
}

/// SCRAM keys for one hash function (RFC 5802). The password itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// What a user authenticates with: SCRAM-SHA-256 for current clients, SCRAM-SHA-1 for old XMPP
/// clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub sha256: ScramKeys,
    pub sha1: ScramKeys,
}

/// An account, stored in the user's shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub jid: UserJid,
    pub credentials: Credentials,
    pub disabled: bool,
    pub created_at: UnixMillis,
    pub password_changed_at: UnixMillis,
}

/// One message in one user's archive. The same message is stored in the recipient's and the
/// sender's archive, each at its own position, with the same `server_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedMessage {
    /// Stable across retries: derived from the sender and the client's message id.
    pub server_id: String,
    pub from: UserJid,
    pub to: UserJid,
    /// Device (resource) the message was sent from.
    pub from_device: String,
    pub client_id: String,
    pub body: String,
    /// When the sender's actor accepted it.
    pub sent_at: UnixMillis,
}

/// A session token issued at login, stored under its user. Only a hash of the secret is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public, random identifier (hex) used to find and revoke the token.
    pub id: String,
    /// SHA-256 of the secret part of the token.
    pub secret_hash: [u8; 32],
    pub device: String,
    pub issued_at: UnixMillis,
    pub expires_at: UnixMillis,
}
