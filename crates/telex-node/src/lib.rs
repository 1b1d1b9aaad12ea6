//! A Telex node: wiring of storage, Raft groups, accounts and the listeners, as one library call.
//!
//! `run(config, shutdown)` serves until `shutdown` is cancelled, then drains and returns; the
//! `telexd` binary only parses flags, sets up logging and signals, and calls it (the tests run
//! that binary, on port 0 listeners).

pub mod config;
mod directory;
pub mod entry;
mod first_admin;
mod homes;
mod http;
mod ldap;
mod ledger;
mod node;
pub mod policy;
mod relay;
mod restore;
pub mod rooms;
pub mod telemetry;
mod xmpp;

pub use config::Config;
pub use node::{run, start, Addrs, RunningNode};
