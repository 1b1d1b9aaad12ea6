//! A tenant's company directory kept in step with an LDAP server: `fetch` reads the users and
//! groups (the only I/O, over `ldap3`), `plan` compares them with what Telex holds and lists
//! the changes (pure, so a dry run and the real run agree), and `bind` checks a user's password
//! against the server for tenants that keep passwords there.

pub mod config;
pub mod fetch;
pub mod plan;

pub use config::LdapConfig;
pub use fetch::{bind, fetch, LdapGroup, LdapSnapshot, LdapUser};
pub use plan::{plan, SyncPlan};
