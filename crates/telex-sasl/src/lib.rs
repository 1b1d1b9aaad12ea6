//! Passwords as SCRAM keys (RFC 5802, RFC 7677): `scram` derives and checks the salted keys
//! Telex stores instead of passwords, and `sasl` is the server side of a SCRAM exchange over
//! those keys (the XMPP gateway's authentication).
//!
//! Pure: no I/O, no runtime; this crate depends on `telex-types` only, so both the accounts
//! (which store the keys) and the XMPP adapter (which runs exchanges) can use it.

// Network input reaches this crate: nothing here may panic on it.
#![deny(clippy::indexing_slicing, clippy::string_slice, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod sasl;
pub mod scram;
