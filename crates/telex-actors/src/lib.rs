//! Per-user actors and the decision logic they run.
//!
//! The logic (`presence`, `subscription`, `cursor`) is pure: plain structs and functions that
//! take events and return effects, unit-tested without a runtime. The runtime part is small:
//! [`Hub`] is the registry of user actors (one per online user, holding its device sessions),
//! and [`Messaging`] is the send path. Storage is reached only through the [`Ledger`] trait,
//! which `telex-node` implements over Raft.
//!
//! This crate must not depend on tonic, openraft or RocksDB.

pub mod cursor;
mod hub;
mod ledger;
mod messaging;
pub mod presence;
pub mod rate;
mod social;
pub mod subscription;

pub use hub::{Homes, Hub, Outbound, OutboundRx, OutboundTx, PresenceRelay, SessionId, SessionInfo, MOVED};
pub use ledger::Ledger;
pub use messaging::{HistoryQuery, Limits, Messaging, Refused, Sent};
pub use social::{RosterOp, RosterReply};
