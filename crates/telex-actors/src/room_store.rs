//! What room actors need from durable storage: a room's record and log in the room's shard,
//! and each user's list of rooms in the user's shard. Writes are committed when they return.

use futures::future::BoxFuture;
use telex_types::room::{RoomChange, RoomEntry, RoomJid, RoomRecord};
use telex_types::{Domain, TelexError, UserJid};

pub trait RoomStore: Send + Sync + 'static {
    /// Creates a room; `AlreadyExists` if it does.
    fn create(&self, record: RoomRecord) -> BoxFuture<'_, Result<(), TelexError>>;
    fn change(&self, room: RoomJid, change: RoomChange) -> BoxFuture<'_, Result<(), TelexError>>;
    /// Deletes the room's record, log and cursors.
    fn destroy(&self, room: RoomJid) -> BoxFuture<'_, Result<(), TelexError>>;
    /// Appends to the room's log (or finds the copy a retry stored): its position, and whether
    /// it was already there.
    fn append(&self, room: RoomJid, entry: RoomEntry) -> BoxFuture<'_, Result<(u64, bool), TelexError>>;
    fn set_cursor(
        &self,
        room: RoomJid,
        user: UserJid,
        device: String,
        position: u64,
    ) -> BoxFuture<'_, Result<(), TelexError>>;
    /// Records in `user`'s shard that they are (or are no longer) a member of `room`.
    fn set_membership(&self, user: UserJid, room: RoomJid, member: bool) -> BoxFuture<'_, Result<(), TelexError>>;
    fn record<'a>(&'a self, room: &'a RoomJid) -> BoxFuture<'a, Result<Option<RoomRecord>, TelexError>>;
    fn head<'a>(&'a self, room: &'a RoomJid) -> BoxFuture<'a, Result<u64, TelexError>>;
    /// Log entries with positions in `from..=to`, at most `limit`, in order.
    fn range<'a>(
        &'a self,
        room: &'a RoomJid,
        from: u64,
        to: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, RoomEntry)>, TelexError>>;
    /// Where the entry with this server id is in the room's log.
    fn position<'a>(&'a self, room: &'a RoomJid, server_id: &'a str) -> BoxFuture<'a, Result<Option<u64>, TelexError>>;
    fn cursor<'a>(
        &'a self,
        room: &'a RoomJid,
        user: &'a UserJid,
        device: &'a str,
    ) -> BoxFuture<'a, Result<u64, TelexError>>;
    /// The rooms `user` is a member of (as recorded in the user's shard).
    fn memberships<'a>(&'a self, user: &'a UserJid) -> BoxFuture<'a, Result<Vec<RoomJid>, TelexError>>;
    /// Every room of a tenant, over all shards, in name order.
    fn rooms<'a>(&'a self, tenant: &'a Domain) -> BoxFuture<'a, Result<Vec<RoomRecord>, TelexError>>;
}
