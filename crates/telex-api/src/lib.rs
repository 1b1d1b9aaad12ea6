//! The gRPC services clients and administrators call. Each is a thin struct over
//! `telex_accounts::Accounts`; errors become `tonic::Status` in one place ([`status`]).

mod admin;
mod client;
pub mod status;

pub use admin::AdminService;
pub use client::ClientService;
