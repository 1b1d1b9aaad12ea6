//! What the core needs from outside the process, as traits the node implements.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use telex_sasl::scram::Hash;
use telex_types::records::{AccountRecord, ScramKeys};
use telex_types::session::{ClientFrame, CutOff, ServerFrame};
use telex_types::{Domain, TelexError, UserJid};
use tokio::sync::mpsc;

/// Tenants, credentials and vCards (the accounts over Raft, in a node).
pub trait Directory: Send + Sync + 'static {
    /// Whether `domain` is a tenant of this cluster (a point lookup, cheap enough before
    /// authentication).
    fn tenant_exists(&self, domain: &Domain) -> Result<bool, TelexError>;
    /// Whether `domain`'s passwords are checked elsewhere (an LDAP bind): only mechanisms that
    /// carry the password itself (SASL PLAIN) can serve its users.
    fn passwords_elsewhere(&self, _domain: &Domain) -> bool {
        false
    }
    /// The stored SCRAM keys for a SASL exchange: the account's, or (for an unknown user) keys
    /// that match no password, so the exchange fails only at the proof.
    fn scram_keys(
        &self,
        jid: &UserJid,
        hash: Hash,
    ) -> BoxFuture<'_, Result<(Option<AccountRecord>, ScramKeys), TelexError>>;
    /// Checks a password (SASL PLAIN); the same error for a wrong password and an unknown user.
    fn check_password<'a>(
        &'a self,
        jid: &'a UserJid,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AccountRecord, TelexError>>;
    /// A user's stored vCard (XEP-0054), if any.
    fn vcard<'a>(&'a self, owner: &'a UserJid) -> BoxFuture<'a, Result<Option<String>, TelexError>>;
    /// Stores a user's vCard (serialized XML; empty deletes it).
    fn set_vcard<'a>(&'a self, owner: &'a UserJid, vcard: String) -> BoxFuture<'a, Result<(), TelexError>>;
}

/// Where a user's actor is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    /// On this node (always, on a single node).
    Here,
    /// On that node, which leads the user's shard.
    Node(u64),
    /// Nowhere right now: the user's shard has no reachable leader.
    Unknown,
}

/// Routing in a cluster (node-to-node transport, in a node).
pub trait Remote: Send + Sync + 'static {
    /// Where `user`'s actor is served now, in this node's view.
    fn home(&self, user: &UserJid) -> Home;
    /// Attaches a device session to `user`'s actor on `node` (see `Core::open_here` there).
    fn attach(
        &self,
        node: u64,
        user: &UserJid,
        device: &str,
        hold: bool,
    ) -> BoxFuture<'static, Result<RemoteLink, TelexError>>;
}

/// A session attached to the user's actor on another node: frames go up, events come down.
pub struct RemoteLink {
    pub up: mpsc::Sender<ClientFrame>,
    pub down: BoxStream<'static, RemoteEvent>,
}

/// What comes down a remote attachment.
#[derive(Debug)]
pub enum RemoteEvent {
    Frame(Box<ServerFrame>),
    /// The node serving it ended the session, for this reason.
    End(CutOff),
    /// The attachment broke (the node went away, the stream failed).
    Lost(String),
}
