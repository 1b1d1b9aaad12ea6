//! Domain values shared by every Telex crate: JIDs and tenants, shard placement, the records and
//! commands replicated through Raft, and error codes.
//!
//! This crate does no I/O and depends on no runtime, storage or RPC crate.

pub mod admin;
pub mod command;
pub mod directory;
pub mod error;
pub mod jid;
pub mod occupancy;
pub mod presence;
pub mod records;
pub mod room;
pub mod roster;
pub mod session;
pub mod shard;
pub mod wire;

pub use command::{Command, Response};
pub use error::{ErrorCode, TelexError};
pub use jid::{Domain, UserJid};
pub use shard::{GroupId, META_GROUP};

/// Milliseconds since the Unix epoch; assigned by the proposer so that applying is deterministic.
pub type UnixMillis = u64;
