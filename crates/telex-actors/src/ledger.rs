use futures::future::BoxFuture;
use telex_types::records::{ArchivedMessage, TenantLimits};
use telex_types::roster::RosterItem;
use telex_types::{Domain, TelexError, UserJid};

/// What the actors need from durable storage. Writes are durable (committed) when they return;
/// reads see every write this node acknowledged.
pub trait Ledger: Send + Sync + 'static {
    /// Appends to `owner`'s archive (or finds the copy a retry already stored): the position.
    fn append(&self, owner: UserJid, message: ArchivedMessage) -> BoxFuture<'_, Result<u64, TelexError>>;
    /// Moves a device's durable delivery cursor forward.
    fn set_cursor(&self, owner: UserJid, device: String, position: u64) -> BoxFuture<'_, Result<(), TelexError>>;
    /// The last position of `owner`'s archive.
    fn head(&self, owner: &UserJid) -> Result<u64, TelexError>;
    /// The position of the message with `server_id` in `owner`'s archive.
    fn position_of(&self, owner: &UserJid, server_id: &str) -> Result<Option<u64>, TelexError>;
    /// A device's durable cursor.
    fn cursor(&self, owner: &UserJid, device: &str) -> Result<u64, TelexError>;
    /// The furthest any of `owner`'s devices has durably acknowledged.
    fn latest_cursor(&self, owner: &UserJid) -> Result<u64, TelexError>;
    /// Archive entries with positions in `from..=to`, at most `limit`, in order.
    fn range(
        &self,
        owner: &UserJid,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ArchivedMessage)>, TelexError>;
    /// Positions of `owner`'s entries exchanged with `peer` in `from..=to`, at most `limit`,
    /// ascending (descending with `newest_first`), from the peer index. Entries appended
    /// before the index existed are below [`Ledger::peer_index_start`] and not listed.
    fn peer_positions(
        &self,
        owner: &UserJid,
        peer: &UserJid,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<u64>, TelexError>;
    /// The first position of `owner`'s archive the peer index covers (1 for archives begun
    /// since it exists).
    fn peer_index_start(&self, owner: &UserJid) -> Result<u64, TelexError>;
    /// The entries at `positions` (those that exist), in the order given.
    fn entries(&self, owner: &UserJid, positions: &[u64]) -> Result<Vec<(u64, ArchivedMessage)>, TelexError>;
    /// Stores (or with `None` deletes) `owner`'s roster item for `contact`.
    fn roster_put(
        &self,
        owner: UserJid,
        contact: UserJid,
        item: Option<RosterItem>,
    ) -> BoxFuture<'_, Result<(), TelexError>>;
    fn set_blocked(&self, owner: UserJid, jid: UserJid, blocked: bool) -> BoxFuture<'_, Result<(), TelexError>>;
    fn roster(&self, owner: &UserJid) -> Result<Vec<(UserJid, RosterItem)>, TelexError>;
    fn blocked(&self, owner: &UserJid) -> Result<Vec<UserJid>, TelexError>;
    fn is_blocked(&self, owner: &UserJid, jid: &UserJid) -> Result<bool, TelexError>;
    /// The overrides of `domain`'s limits.
    fn tenant_limits(&self, domain: &Domain) -> Result<TenantLimits, TelexError>;
    /// Whether the account exists (and its tenant).
    fn user_exists(&self, jid: &UserJid) -> Result<bool, TelexError>;
    /// Whether `object` exists and whether it blocks `subject`: the send path's facts about a
    /// recipient, whose shard may be held on other nodes (one round trip there, not two).
    fn object_facts<'a>(
        &'a self,
        object: &'a UserJid,
        subject: &'a UserJid,
    ) -> BoxFuture<'a, Result<(bool, bool), TelexError>> {
        Box::pin(async move { Ok((self.user_exists(object)?, self.is_blocked(object, subject)?)) })
    }
}
