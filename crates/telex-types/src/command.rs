//! Commands proposed to Raft groups and their deterministic responses.
//!
//! Everything a command needs (timestamps, salts, token ids) is decided by the proposer before it
//! is proposed, so that every replica applies it to the same result.

use serde::{Deserialize, Serialize};

use crate::records::{ArchivedMessage, Credentials, TenantLimits, TokenRecord};
use crate::roster::RosterItem;
use crate::{Domain, TelexError, UnixMillis, UserJid};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Meta group.
    CreateTenant {
        domain: Domain,
        at: UnixMillis,
    },
    /// Shard groups, below: all keyed by the user, who must live on the group's shard.
    CreateAccount {
        jid: UserJid,
        credentials: Credentials,
        at: UnixMillis,
    },
    RemoveAccount {
        jid: UserJid,
    },
    SetDisabled {
        jid: UserJid,
        disabled: bool,
    },
    SetCredentials {
        jid: UserJid,
        credentials: Credentials,
        at: UnixMillis,
    },
    IssueToken {
        jid: UserJid,
        token: TokenRecord,
    },
    RevokeToken {
        jid: UserJid,
        token_id: String,
    },
    RevokeAllTokens {
        jid: UserJid,
    },
    /// Appends a message to `owner`'s archive unless the same (sender, client id) is already
    /// there; either way answers with its position.
    AppendArchive {
        owner: UserJid,
        message: ArchivedMessage,
    },
    /// Records that `device` of `owner` has received everything up to `position`. Never moves
    /// backwards.
    SetCursor {
        owner: UserJid,
        device: String,
        position: u64,
    },
    /// Stores `owner`'s roster item for `contact` (decided by `owner`'s actor).
    RosterPut {
        owner: UserJid,
        contact: UserJid,
        item: RosterItem,
    },
    RosterDelete {
        owner: UserJid,
        contact: UserJid,
    },
    /// Adds `jid` to (or removes it from) `owner`'s block list.
    SetBlocked {
        owner: UserJid,
        jid: UserJid,
        blocked: bool,
    },
    /// `AppendArchive` for a message with extension elements, stored beside the entry.
    AppendArchiveWithExtras {
        owner: UserJid,
        message: ArchivedMessage,
        extras: String,
    },
    /// Stores `owner`'s vCard (XEP-0054), serialized XML; empty deletes it.
    SetVCard {
        owner: UserJid,
        vcard: String,
    },
    /// Meta group: replaces a tenant's limit overrides.
    SetTenantLimits {
        domain: Domain,
        limits: TenantLimits,
    },
    /// Several commands in one log entry, applied in order (each sees the ones before it);
    /// answered with one response each. Formed by the group's proposer under load.
    Batch(Vec<Command>),
}

impl Command {
    /// Short name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::CreateTenant { .. } => "create_tenant",
            Command::CreateAccount { .. } => "create_account",
            Command::RemoveAccount { .. } => "remove_account",
            Command::SetDisabled { .. } => "set_disabled",
            Command::SetCredentials { .. } => "set_credentials",
            Command::IssueToken { .. } => "issue_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::RevokeAllTokens { .. } => "revoke_all_tokens",
            Command::AppendArchive { .. } => "append_archive",
            Command::SetCursor { .. } => "set_cursor",
            Command::RosterPut { .. } => "roster_put",
            Command::RosterDelete { .. } => "roster_delete",
            Command::SetBlocked { .. } => "set_blocked",
            Command::SetTenantLimits { .. } => "set_tenant_limits",
            Command::SetVCard { .. } => "set_vcard",
            Command::AppendArchiveWithExtras { .. } => "append_archive",
            Command::Batch(_) => "batch",
        }
    }
}

/// The outcome of applying one command. A refusal is a normal, replicated outcome (for example
/// "already exists"), not a storage failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Done,
    /// How many records the command changed (revocations).
    Changed(u64),
    Refused(TelexError),
    /// Where an archived message is; `duplicate` when a retry found the first copy.
    Appended {
        position: u64,
        duplicate: bool,
    },
    /// The responses to a `Command::Batch`, in order.
    Batch(Vec<Response>),
}

impl Response {
    pub fn into_result(self) -> Result<u64, TelexError> {
        match self {
            Response::Done => Ok(1),
            Response::Changed(n) => Ok(n),
            Response::Refused(e) => Err(e),
            Response::Appended { position, .. } => Ok(position),
            Response::Batch(_) => Err(TelexError::internal("a batch response where one response was expected")),
        }
    }
}
