//! The actors' `Ledger` over this node's Raft groups: archive appends and cursors are Raft
//! writes to the owner's shard; reads come from the local store, or from a replica on another
//! node for shards this node holds no replica of.

use std::sync::Arc;

use futures::future::BoxFuture;
use telex_actors::Ledger;
use telex_raft::reads::{self, Query};
use telex_raft::Groups;
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
        let g = self.groups.shard_of(owner);
        self.groups.read_now(g, |s| reads::archive_head(s, g, owner), || Query::ArchiveHead(owner.clone()))
    }

    fn position_of(&self, owner: &UserJid, server_id: &str) -> Result<Option<u64>, TelexError> {
        let g = self.groups.shard_of(owner);
        let query = || Query::ArchivePosition { owner: owner.clone(), server_id: server_id.to_string() };
        self.groups.read_now(g, |s| reads::archive_position(s, g, owner, server_id), query)
    }

    fn cursor(&self, owner: &UserJid, device: &str) -> Result<u64, TelexError> {
        let g = self.groups.shard_of(owner);
        let query = || Query::Cursor { owner: owner.clone(), device: device.to_string() };
        self.groups.read_now(g, |s| reads::cursor(s, g, owner, device), query)
    }

    fn latest_cursor(&self, owner: &UserJid) -> Result<u64, TelexError> {
        let g = self.groups.shard_of(owner);
        self.groups.read_now(g, |s| reads::latest_cursor(s, g, owner), || Query::LatestCursor(owner.clone()))
    }

    fn range(
        &self,
        owner: &UserJid,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        let g = self.groups.shard_of(owner);
        if self.groups.serves_reads(g) {
            return reads::archive_range(self.groups.store(), g, owner, from, to, limit);
        }
        // A replica elsewhere answers at most MAX_REMOTE_ROWS entries a time: page through.
        let mut out: Vec<(u64, ArchivedMessage)> = Vec::new();
        let mut start = from;
        while start <= to && out.len() < limit {
            let ask = (limit - out.len()).min(reads::MAX_REMOTE_ROWS);
            let query = || Query::ArchiveRange { owner: owner.clone(), from: start, to, limit: ask as u32 };
            let page = self.groups.read_now(g, |s| reads::archive_range(s, g, owner, start, to, ask), query)?;
            let (full, last) = (page.len() == ask, page.last().map(|(p, _)| *p));
            out.extend(page);
            match last.and_then(|p| p.checked_add(1)) {
                Some(next) if full => start = next,
                _ => break,
            }
        }
        Ok(out)
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
        let g = self.groups.shard_of(owner);
        let query = || Query::PeerPositions {
            owner: owner.clone(),
            peer: peer.clone(),
            from,
            to,
            limit: limit.min(u32::MAX as usize) as u32,
            newest_first,
        };
        self.groups.read_now(
            g,
            |s| reads::archive_peer_positions(s, g, owner, peer, from, to, limit, newest_first),
            query,
        )
    }

    fn peer_index_start(&self, owner: &UserJid) -> Result<u64, TelexError> {
        let g = self.groups.shard_of(owner);
        self.groups.read_now(g, |s| reads::archive_peer_start(s, g, owner), || Query::PeerStart(owner.clone()))
    }

    fn entries(&self, owner: &UserJid, positions: &[u64]) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        let g = self.groups.shard_of(owner);
        let mut out = Vec::with_capacity(positions.len());
        for part in positions.chunks(reads::MAX_REMOTE_ROWS) {
            let query = || Query::Entries { owner: owner.clone(), positions: part.to_vec() };
            out.extend(self.groups.read_now(g, |s| reads::archive_entries(s, g, owner, part), query)?);
        }
        Ok(out)
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
        let g = self.groups.shard_of(owner);
        self.groups.read_now(g, |s| reads::roster(s, g, owner), || Query::Roster(owner.clone()))
    }

    fn blocked(&self, owner: &UserJid) -> Result<Vec<UserJid>, TelexError> {
        let g = self.groups.shard_of(owner);
        self.groups.read_now(g, |s| reads::blocked(s, g, owner), || Query::Blocked(owner.clone()))
    }

    fn is_blocked(&self, owner: &UserJid, jid: &UserJid) -> Result<bool, TelexError> {
        let g = self.groups.shard_of(owner);
        let query = || Query::IsBlocked { owner: owner.clone(), jid: jid.clone() };
        self.groups.read_now(g, |s| reads::is_blocked(s, g, owner, jid), query)
    }

    fn tenant_limits(&self, domain: &Domain) -> Result<TenantLimits, TelexError> {
        reads::tenant_limits(self.groups.store(), domain)
    }

    fn object_facts<'a>(
        &'a self,
        object: &'a UserJid,
        subject: &'a UserJid,
    ) -> BoxFuture<'a, Result<(bool, bool), TelexError>> {
        Box::pin(async move {
            if reads::tenant(self.groups.store(), object.domain())?.is_none() {
                return Ok((false, false));
            }
            let g = self.groups.shard_of(object);
            if self.groups.serves_reads(g) {
                let store = self.groups.store();
                return Ok((
                    reads::account(store, g, object)?.is_some(),
                    reads::is_blocked(store, g, object, subject)?,
                ));
            }
            let query = Query::ObjectFacts { object: object.clone(), subject: subject.clone() };
            self.groups.read_remote(g, &query).await
        })
    }

    fn user_exists(&self, jid: &UserJid) -> Result<bool, TelexError> {
        if reads::tenant(self.groups.store(), jid.domain())?.is_none() {
            return Ok(false);
        }
        let g = self.groups.shard_of(jid);
        let account = self.groups.read_now(g, |s| reads::account(s, g, jid), || Query::Account(jid.clone()))?;
        Ok(account.is_some())
    }
}
