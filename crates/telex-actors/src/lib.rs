//! Per-user actors (issue 3, in progress) and the decision logic they run.
//!
//! The logic is pure: plain structs and functions that take events and return effects, unit
//! tested without a runtime. Actors will be thin loops around it. This crate must not depend on
//! tonic, openraft or RocksDB; it reaches them through traits that `telex-node` wires up.

pub mod cursor;
pub mod presence;
pub mod subscription;
