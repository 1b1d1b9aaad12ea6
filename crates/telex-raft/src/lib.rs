//! Replication: openraft groups whose logs and state machines live in the node's one store.
//!
//! A node runs the meta group (group 0) and S shard groups (1..=S). Each group is a full
//! `openraft::Raft` with its own [`LogStore`] and [`StateMachine`], all over one
//! `telex_store::Store`, so every log append of every group shares the store's group commit.
//! Applying a batch of entries writes the state changes and the applied log id in one atomic
//! batch. The node-to-node transport (`network`, `service`) carries Raft RPCs for all groups.
//!
//! This crate knows nothing about clients, sessions or gRPC services other than `Node`.

// openraft's storage traits fix the (large) error type; boxing it here would only add copies.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod backup;
mod codec;
pub mod driver;
mod forwarder;
pub mod identity;
pub mod leaders;
pub mod leadership;
mod log_cache;
mod log_store;
pub mod network;
pub mod placement;
mod proposer;
pub mod reads;
mod registry;
mod remote_read;
pub mod schema;
pub mod service;
mod state_machine;
mod types;
pub mod verify;
mod watchdog;

pub use log_store::LogStore;
pub use registry::{Applied, GroupInfo, Groups, GroupsConfig, JoinError, ReplicaChange, WriteError};
pub use state_machine::{state_digest, StateDigest, StateMachine};
pub use types::{NodeId, Raft, TypeConfig};
