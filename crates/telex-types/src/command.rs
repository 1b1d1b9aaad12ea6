//! Commands proposed to Raft groups and their deterministic responses.
//!
//! Everything a command needs (timestamps, salts, token ids) is decided by the proposer before it
//! is proposed, so that every replica applies it to the same result.

use serde::{Deserialize, Serialize};

use crate::admin::AdminRecord;
use crate::directory::{AuditEntry, GroupName, GroupRecord, PolicyVersion, UserAttributes};
use crate::records::{ArchivedMessage, Credentials, NodeRecord, TenantLimits, TokenRecord};
use crate::room::{RoomChange, RoomEntry, RoomJid, RoomRecord};
use crate::roster::RosterItem;
use crate::{Domain, TelexError, UnixMillis, UserJid};

/// A command of a Raft group's log. Its encoding is part of the log's format: format version 2
/// (see `wire`) dropped version 1's `AppendArchiveWithExtras` (the extras now live in the
/// archived message itself); version-1 log entries decode through [`CommandV1`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
    /// Meta group: the nodes holding a shard group's replicas, recorded by the placement driver
    /// once a replica change is complete. (Variants are appended: the order is the encoding.)
    SetPlacement {
        group: u32,
        nodes: Vec<u64>,
    },
    /// Meta group: what placement knows of a node (its address, failure domain, whether it is
    /// being drained of replicas). Written when it joins and by `cluster remove-node`.
    SetNodeInfo(NodeRecord),
    /// Meta group: forgets a node that left the cluster.
    ForgetNode {
        node: u64,
    },
    /// Room commands, below: keyed by the room, which must live on the group's shard
    /// (`shard::shard_of_room`). Creates a room; refused if it exists.
    CreateRoom(RoomRecord),
    /// Changes a room's configuration or one affiliation (decided by the room's actor).
    ChangeRoom {
        room: RoomJid,
        change: RoomChange,
    },
    /// Deletes a room: its record, log and cursors.
    DestroyRoom {
        room: RoomJid,
    },
    /// Appends to a room's log unless the same (sender, client id) is already there; either
    /// way answers with its position. A subject entry also becomes the room's subject.
    AppendRoom {
        room: RoomJid,
        entry: RoomEntry,
    },
    /// Records that `device` of `user` has received the room's log up to `position`. Never
    /// moves backwards.
    SetRoomCursor {
        room: RoomJid,
        user: UserJid,
        device: String,
        position: u64,
    },
    /// User shard: `user` is (or no longer is) a member of `room`: the rooms a user's devices
    /// follow, and `telex room list`.
    SetRoomMembership {
        user: UserJid,
        room: RoomJid,
        member: bool,
    },
    /// Meta group, below: the tenants' directories, policies and audit trails (every node
    /// holds them). `None` forgets the user's attributes.
    SetUserAttributes {
        user: UserJid,
        attributes: Option<UserAttributes>,
    },
    /// Creates or replaces a group's record (not its members).
    PutGroup(GroupRecord),
    /// Removes a group and its memberships.
    RemoveGroup {
        tenant: Domain,
        name: GroupName,
    },
    SetGroupMember {
        tenant: Domain,
        group: GroupName,
        user: UserJid,
        member: bool,
    },
    /// A new version of the tenant's policy (its number is assigned here: the next one).
    SetPolicy {
        tenant: Domain,
        policy: PolicyVersion,
    },
    /// An admin action for the trail (its sequence number is assigned here). `None`: not one
    /// tenant's (nodes, new tenants, admin identities).
    AppendAudit {
        tenant: Option<Domain>,
        entry: AuditEntry,
    },
    /// Meta group: creates or replaces an admin identity; with `only_first`, refused unless
    /// there is none yet (the first start's super-admin).
    PutAdmin {
        record: AdminRecord,
        only_first: bool,
    },
    RemoveAdmin {
        name: String,
    },
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
            Command::Batch(_) => "batch",
            Command::SetPlacement { .. } => "set_placement",
            Command::SetNodeInfo(_) => "set_node_info",
            Command::ForgetNode { .. } => "forget_node",
            Command::CreateRoom(_) => "create_room",
            Command::ChangeRoom { .. } => "change_room",
            Command::DestroyRoom { .. } => "destroy_room",
            Command::AppendRoom { .. } => "append_room",
            Command::SetRoomCursor { .. } => "set_room_cursor",
            Command::SetRoomMembership { .. } => "set_room_membership",
            Command::SetUserAttributes { .. } => "set_user_attributes",
            Command::PutGroup(_) => "put_group",
            Command::RemoveGroup { .. } => "remove_group",
            Command::SetGroupMember { .. } => "set_group_member",
            Command::SetPolicy { .. } => "set_policy",
            Command::AppendAudit { .. } => "append_audit",
            Command::PutAdmin { .. } => "put_admin",
            Command::RemoveAdmin { .. } => "remove_admin",
        }
    }
}

impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Command::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let too_deep = || serde::de::Error::custom("commands nested too deeply");
        crate::wire::nested(|| {
            if crate::wire::layout() == 1 {
                return CommandV1::deserialize(d).map(Command::from);
            }
            Command::deserialize(d)
        })
        .ok_or_else(too_deep)?
    }
}

/// The version-1 layout of [`Command`], for log entries written before version 2. Variant
/// order is the encoding: never reorder.
#[derive(Deserialize)]
#[serde(remote = "Self")]
enum CommandV1 {
    CreateTenant { domain: Domain, at: UnixMillis },
    CreateAccount { jid: UserJid, credentials: Credentials, at: UnixMillis },
    RemoveAccount { jid: UserJid },
    SetDisabled { jid: UserJid, disabled: bool },
    SetCredentials { jid: UserJid, credentials: Credentials, at: UnixMillis },
    IssueToken { jid: UserJid, token: TokenRecord },
    RevokeToken { jid: UserJid, token_id: String },
    RevokeAllTokens { jid: UserJid },
    AppendArchive { owner: UserJid, message: ArchivedMessage },
    SetCursor { owner: UserJid, device: String, position: u64 },
    RosterPut { owner: UserJid, contact: UserJid, item: RosterItem },
    RosterDelete { owner: UserJid, contact: UserJid },
    SetBlocked { owner: UserJid, jid: UserJid, blocked: bool },
    AppendArchiveWithExtras { owner: UserJid, message: ArchivedMessage, extras: String },
    SetVCard { owner: UserJid, vcard: String },
    SetTenantLimits { domain: Domain, limits: TenantLimits },
    Batch(Vec<CommandV1>),
}

impl<'de> Deserialize<'de> for CommandV1 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::wire::nested(|| CommandV1::deserialize(d))
            .ok_or_else(|| serde::de::Error::custom("commands nested too deeply"))?
    }
}

impl From<CommandV1> for Command {
    fn from(c: CommandV1) -> Command {
        match c {
            CommandV1::CreateTenant { domain, at } => Command::CreateTenant { domain, at },
            CommandV1::CreateAccount { jid, credentials, at } => Command::CreateAccount { jid, credentials, at },
            CommandV1::RemoveAccount { jid } => Command::RemoveAccount { jid },
            CommandV1::SetDisabled { jid, disabled } => Command::SetDisabled { jid, disabled },
            CommandV1::SetCredentials { jid, credentials, at } => Command::SetCredentials { jid, credentials, at },
            CommandV1::IssueToken { jid, token } => Command::IssueToken { jid, token },
            CommandV1::RevokeToken { jid, token_id } => Command::RevokeToken { jid, token_id },
            CommandV1::RevokeAllTokens { jid } => Command::RevokeAllTokens { jid },
            CommandV1::AppendArchive { owner, message } => Command::AppendArchive { owner, message },
            CommandV1::SetCursor { owner, device, position } => Command::SetCursor { owner, device, position },
            CommandV1::RosterPut { owner, contact, item } => Command::RosterPut { owner, contact, item },
            CommandV1::RosterDelete { owner, contact } => Command::RosterDelete { owner, contact },
            CommandV1::SetBlocked { owner, jid, blocked } => Command::SetBlocked { owner, jid, blocked },
            CommandV1::AppendArchiveWithExtras { owner, message, extras } => {
                Command::AppendArchive { owner, message: ArchivedMessage { extras, ..message } }
            }
            CommandV1::SetVCard { owner, vcard } => Command::SetVCard { owner, vcard },
            CommandV1::SetTenantLimits { domain, limits } => Command::SetTenantLimits { domain, limits },
            CommandV1::Batch(cmds) => Command::Batch(cmds.into_iter().map(Command::from).collect()),
        }
    }
}

/// The outcome of applying one command. A refusal is a normal, replicated outcome (for example
/// "already exists"), not a storage failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
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

impl Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Response::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Batches nest like commands' (a peer's reply is decoded here).
        crate::wire::nested(|| Response::deserialize(d))
            .ok_or_else(|| serde::de::Error::custom("responses nested too deeply"))?
    }
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
