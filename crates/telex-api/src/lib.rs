//! The gRPC adapter over the session core (`telex-session`): `telex.v1.Client` (login, the
//! device `Session` stream, history, rosters, blocking), `telex.v1.Admin` (tenants, users,
//! sessions, the cluster), and the node-to-node side of sessions (`Sessions.Attach` here, and
//! [`GrpcRemote`], through which this node's sessions reach actors on other nodes).
//!
//! Services are thin: frames and requests are converted (`telex_proto::convert`), handed to
//! the core, and its answers converted back; errors become `tonic::Status` in one place
//! ([`status`]).

// Network input reaches this crate: nothing here may panic on it.
#![deny(clippy::indexing_slicing, clippy::string_slice, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod admin_auth;
mod backup;
mod client;
mod directory;
mod remote;
mod room_admin;
mod rooms;
mod sessions;
pub mod status;
mod stream;

pub use admin::AdminService;
pub use admin_auth::AdminAuth;
pub use client::ClientService;
pub use directory::DirectoryService;
pub use remote::GrpcRemote;
pub use room_admin::RoomAdminService;
pub use rooms::RoomsService;
pub use sessions::SessionsService;
pub use stream::RECONNECT_TO;
