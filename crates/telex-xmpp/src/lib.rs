//! The XMPP gateway (RFC 6120/6121): standard clients on c2s (STARTTLS or direct TLS) and
//! WebSocket (RFC 7395). An XMPP connection is one more device session on the same actors as
//! the native API: stanzas are translated to session frames (`stanza`), so delivery, carbons,
//! offline catch-up and cluster routing are the native ones.
//!
//! Pure parts: `xml` (restricted-XML stream parser and element building), `stanza` and `iq`
//! (translation to and from the session core's frames and requests), `errors` (the one mapping
//! of Telex errors to XMPP conditions), `sm` (stream-management counters). I/O: `wire`
//! (bytes), `auth` (SASL), `conn` (one connection: negotiation, the session loop, handlers),
//! `resume` (sessions waiting for a XEP-0198 resumption), `listener`.
//!
//! This crate reaches the rest of Telex only through `telex-session` (and the pure
//! `telex-sasl`): it must not depend on tonic, protobuf or `telex-api`.

// Network input reaches this crate: nothing here may panic on it.
#![deny(clippy::indexing_slicing, clippy::string_slice, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod conn;
pub mod errors;
pub mod iq;
mod listener;
pub mod muc;
pub mod ns;
mod resume;
pub mod room_admin;
pub mod sm;
pub mod stanza;
pub mod tls;
pub mod wire;
pub mod xml;

pub use conn::{Xmpp, XmppConfig};
pub use listener::serve_c2s;
pub use wire::Transport;
