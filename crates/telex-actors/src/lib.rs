//! Per-user actors and the decision logic they run.
//!
//! The logic (`presence`, `subscription`, `cursor`, `rate`) is pure: plain structs and
//! functions that take events and return effects, unit-tested without a runtime; who may do
//! what is `telex_policy::decide`. The runtime part is small: [`Hub`] is the registry of user
//! actors (`actor`: one per online user, holding its device sessions), a [`DeviceLink`] is a
//! session's end of its attachment, and [`Messaging`] is the send path. Storage is reached only
//! through the [`Ledger`] trait, which `telex-node` implements over Raft.
//!
//! This crate must not depend on tonic, openraft or RocksDB.

mod actor;
pub mod cursor;
mod hub;
mod ledger;
mod link;
mod messaging;
pub mod muc;
pub mod policies;
pub mod presence;
pub mod rate;
mod room_actor;
mod room_store;
pub mod rooms;
mod social;
pub mod subscription;
pub mod trace;

pub use hub::{Drain, FrameRx, FrameTx, Homes, Hub, PresenceChange, PresenceRelay, SessionId, SessionInfo, Signal};
pub use ledger::Ledger;
pub use link::{DeviceLink, LinkEvent};
pub use messaging::{server_id, HistoryQuery, Limits, Messaging, MAX_SIGNAL_BYTES};
pub use room_actor::{RoomHub, WeakRoomHub, OCCUPANT_TTL, REFRESH_EVERY};
pub use room_store::RoomStore;
pub use rooms::{RoomLimits, Rooms, Said, Say};
pub use telex_types::roster::{RosterOp, RosterReply};
