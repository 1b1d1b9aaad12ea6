//! The session core: everything a protocol adapter asks of the server, in Telex types.
//!
//! Both adapters, gRPC (`telex-api`) and XMPP (`telex-xmpp`), translate their wire format into
//! calls on a [`Core`]: opening a device [`Session`] (routed to the node where the user's actor
//! lives, and re-attached when it moves), rosters and block lists, archive queries and vCards.
//! Every "may A see / message / read B" is decided by `telex_policy::decide`, called here or in
//! the actors, never by an adapter.
//!
//! What lies outside the process is reached through ports the node wires up: [`Directory`]
//! (tenants, credentials, vCards) and [`Remote`] (where a user's actor lives, and attaching to
//! it on another node). This crate must not depend on tonic, protobuf, openraft or RocksDB.

// Network input reaches this crate: nothing here may panic on it.
#![deny(clippy::indexing_slicing, clippy::string_slice, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod core;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
mod ports;
mod session;
#[cfg(test)]
mod tests;

pub use crate::core::{device_name, Core, Redirect, Redirects, MAX_DEVICE_BYTES, MAX_SEARCH};
pub use ports::{Directory, Home, Remote, RemoteEvent, RemoteLink};
pub use session::{Session, SENDS_IN_FLIGHT};
pub use telex_actors::muc;
pub use telex_actors::{
    HistoryQuery, Hub, Limits, Messaging, RoomHub, RosterOp, RosterReply, Said, Say, SessionInfo, OCCUPANT_TTL,
    REFRESH_EVERY,
};
pub use telex_sasl::scram::Hash;
pub use telex_types::session::{ClientFrame, CutOff, Refused, SendMessage, Sent, ServerFrame};
