//! Records kept in the replicated state machines. These are on-disk formats (see `wire`).

use serde::{Deserialize, Serialize};

use crate::{Domain, UnixMillis, UserJid};

/// A tenant, stored in the meta group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub domain: Domain,
    pub created_at: UnixMillis,
}

/// A cluster node as replica placement sees it (meta group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: u64,
    /// Its node-to-node address, as peers reach it.
    pub addr: String,
    /// Its failure domain (`topology.kubernetes.io/zone`); empty when unknown.
    pub zone: String,
    /// Being decommissioned: its replicas move away.
    pub draining: bool,
}

/// A tenant's overrides of the node's default limits (`None`: the default). Stored in the meta
/// group beside the tenant record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    pub max_message_bytes: Option<u32>,
    pub sends_per_second: Option<u32>,
    pub sessions_per_user: Option<u32>,
}

impl TenantLimits {
    pub const MAX_MESSAGE_BYTES: u32 = 1 << 20;
    pub const MAX_SENDS_PER_SECOND: u32 = 100_000;
    pub const MAX_SESSIONS_PER_USER: u32 = 1000;

    /// Refuses values outside what a node can honour, naming the field.
    pub fn validate(&self) -> Result<(), crate::TelexError> {
        let check = |name: &str, v: Option<u32>, max: u32| match v {
            Some(v) if v == 0 || v > max => {
                Err(crate::TelexError::invalid(format!("{name} must be between 1 and {max}, not {v}")))
            }
            _ => Ok(()),
        };
        check("max_message_bytes", self.max_message_bytes, Self::MAX_MESSAGE_BYTES)?;
        check("sends_per_second", self.sends_per_second, Self::MAX_SENDS_PER_SECOND)?;
        check("sessions_per_user", self.sessions_per_user, Self::MAX_SESSIONS_PER_USER)
    }
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

/// The server id of a message: the same for every retry of the same (sender, client id), so
/// the archive's id index also finds retries.
pub fn server_id(from: &UserJid, client_id: &str) -> String {
    let key = format!("{from}\0{client_id}");
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
}

/// One message in one user's archive. The same message is stored in the recipient's and the
/// sender's archive, each at its own position, with the same `server_id`.
///
/// Format version 2 (see `wire`) added `extras` and `to_device`; version-1 entries decode with
/// both empty (their extras live under a key of their own, read beside the entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
    /// Extension elements that travel with the message (XMPP: receipt requests, markers,
    /// replies, encrypted payloads; serialized XML, opaque to the server).
    pub extras: String,
    /// The recipient's device it was addressed to (an XMPP full JID), or empty.
    pub to_device: String,
}

/// The version-1 layout of [`ArchivedMessage`].
#[derive(Deserialize)]
struct ArchivedMessageV1 {
    server_id: String,
    from: UserJid,
    to: UserJid,
    from_device: String,
    client_id: String,
    body: String,
    sent_at: UnixMillis,
}

impl Serialize for ArchivedMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ArchivedMessage::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for ArchivedMessage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if crate::wire::layout() == 1 {
            let v1 = ArchivedMessageV1::deserialize(d)?;
            return Ok(ArchivedMessage {
                server_id: v1.server_id,
                from: v1.from,
                to: v1.to,
                from_device: v1.from_device,
                client_id: v1.client_id,
                body: v1.body,
                sent_at: v1.sent_at,
                extras: String::new(),
                to_device: String::new(),
            });
        }
        ArchivedMessage::deserialize(d)
    }
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
