//! The gRPC services clients and administrators call. Each is a thin struct over
//! `telex_accounts::Accounts`; errors become `tonic::Status` in one place ([`status`]).

mod admin;
mod client;
mod gateway;
mod session;
mod sessions;
pub mod status;

pub use admin::AdminService;
pub use client::{open_session, ClientService};
pub use session::{device_presence, FrameResult, FrameStream};
pub use sessions::SessionsService;
