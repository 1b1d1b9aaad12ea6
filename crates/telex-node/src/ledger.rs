//! The actors' `Ledger` over this node's Raft groups: archive appends and cursors are Raft
//! writes to the owner's shard; reads come from the local store.

use std::sync::Arc;

use futures::future::BoxFuture;
use telex_actors::Ledger;
use telex_raft::{reads, Groups};
use telex_types::records::{ArchivedMessage, TenantLimits};
use telex_types::roster::RosterItem;
use telex_types::{Command, Domain, TelexError, UserJid};

pub struct RaftLedger {
    groups: Arc<Groups>,
}

impl RaftLedger {
    pub fn new(groups: Arc<Groups>) -> Self {
        RaftLedger { groups }
    }
}

impl Ledger for RaftLedger {
    fn append(&self, owner: UserJid, message: ArchivedMessage) -> BoxFuture<'_, Result<u64, TelexError>> {
        Box::pin(async move {
            let group = self.groups.shard_of(&owner);
            self.groups.write(group, Command::AppendArchive { owner, message }).await?.into_result()
        })
    }

    fn set_cursor(&self, owner: UserJid, device: String, position: u64) -> BoxFuture<'_, Result<(), TelexError>> {
        Box::pin(async move {
            let group = self.groups.shard_of(&owner);
            self.groups.write(group, Command::SetCursor { owner, device, position }).await?.into_result().map(|_| ())
        })
    }

    fn head(&self, owner: &UserJid) -> Result<u64, TelexError> {
        reads::archive_head(self.groups.store(), self.groups.shard_of(owner), owner)
    }

    fn position_of(&self, owner: &UserJid, server_id: &str) -> Result<Option<u64>, TelexError> {
        reads::archive_position(self.groups.store(), self.groups.shard_of(owner), owner, server_id)
    }

    fn cursor(&self, owner: &UserJid, device: &str) -> Result<u64, TelexError> {
        reads::cursor(self.groups.store(), self.groups.shard_of(owner), owner, device)
    }

    fn latest_cursor(&self, owner: &UserJid) -> Result<u64, TelexError> {
        reads::latest_cursor(self.groups.store(), self.groups.shard_of(owner), owner)
    }

    fn range(
        &self,
        owner: &UserJid,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        reads::archive_range(self.groups.store(), self.groups.shard_of(owner), owner, from, to, limit)
    }

    fn peer_positions(
        &self,
        owner: &UserJid,
        peer: &UserJid,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<u64>, TelexError> {
        let group = self.groups.shard_of(owner);
        reads::archive_peer_positions(self.groups.store(), group, owner, peer, from, to, limit, newest_first)
    }

    fn peer_index_start(&self, owner: &UserJid) -> Result<u64, TelexError> {
        reads::archive_peer_start(self.groups.store(), self.groups.shard_of(owner), owner)
    }

    fn entries(&self, owner: &UserJid, positions: &[u64]) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        reads::archive_entries(self.groups.store(), self.groups.shard_of(owner), owner, positions)
    }

    fn roster_put(
        &self,
        owner: UserJid,
        contact: UserJid,
        item: Option<RosterItem>,
    ) -> BoxFuture<'_, Result<(), TelexError>> {
        Box::pin(async move {
            let group = self.groups.shard_of(&owner);
            let cmd = match item {
                Some(item) => Command::RosterPut { owner, contact, item },
                None => Command::RosterDelete { owner, contact },
            };
            self.groups.write(group, cmd).await?.into_result().map(|_| ())
        })
    }

    fn set_blocked(&self, owner: UserJid, jid: UserJid, blocked: bool) -> BoxFuture<'_, Result<(), TelexError>> {
        Box::pin(async move {
            let group = self.groups.shard_of(&owner);
            self.groups.write(group, Command::SetBlocked { owner, jid, blocked }).await?.into_result().map(|_| ())
        })
    }

    fn roster(&self, owner: &UserJid) -> Result<Vec<(UserJid, RosterItem)>, TelexError> {
        reads::roster(self.groups.store(), self.groups.shard_of(owner), owner)
    }

    fn blocked(&self, owner: &UserJid) -> Result<Vec<UserJid>, TelexError> {
        reads::blocked(self.groups.store(), self.groups.shard_of(owner), owner)
    }

    fn is_blocked(&self, owner: &UserJid, jid: &UserJid) -> Result<bool, TelexError> {
        reads::is_blocked(self.groups.store(), self.groups.shard_of(owner), owner, jid)
    }

    fn tenant_limits(&self, domain: &Domain) -> Result<TenantLimits, TelexError> {
        reads::tenant_limits(self.groups.store(), domain)
    }

    fn user_exists(&self, jid: &UserJid) -> Result<bool, TelexError> {
        let store = self.groups.store();
        Ok(reads::tenant(store, jid.domain())?.is_some()
            && reads::account(store, self.groups.shard_of(jid), jid)?.is_some())
    }
}
