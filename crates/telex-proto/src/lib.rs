//! Generated code for the `telex.v1` gRPC API: client, admin and node-to-node services.
//!
//! Only generated types live here; conversions to domain types live with the services.

#![allow(clippy::all, clippy::pedantic, rust_2018_idioms)]

pub mod v1 {
    tonic::include_proto!("telex.v1");
}
