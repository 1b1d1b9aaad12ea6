//! The session core's `Directory` over the accounts (tenants, credentials and vCards in Raft).

use std::sync::Arc;

use futures::future::BoxFuture;
use telex_accounts::Accounts;
use telex_raft::reads;
use telex_session::{Directory, Hash};
use telex_types::records::{AccountRecord, ScramKeys};
use telex_types::{Domain, TelexError, UserJid};

pub struct AccountsDirectory(pub Arc<Accounts>);

impl Directory for AccountsDirectory {
    fn tenant_exists(&self, domain: &Domain) -> Result<bool, TelexError> {
        Ok(reads::tenant(self.0.groups().store(), domain)?.is_some())
    }

    fn passwords_elsewhere(&self, domain: &Domain) -> bool {
        self.0.passwords_in_ldap(domain)
    }

    fn scram_keys(
        &self,
        jid: &UserJid,
        hash: Hash,
    ) -> BoxFuture<'_, Result<(Option<AccountRecord>, ScramKeys), TelexError>> {
        let jid = jid.clone();
        Box::pin(async move { self.0.scram_keys(&jid, hash).await })
    }

    fn check_password<'a>(
        &'a self,
        jid: &'a UserJid,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AccountRecord, TelexError>> {
        Box::pin(self.0.check_password(jid, password))
    }

    fn vcard<'a>(&'a self, owner: &'a UserJid) -> BoxFuture<'a, Result<Option<String>, TelexError>> {
        Box::pin(self.0.vcard(owner))
    }

    fn set_vcard<'a>(&'a self, owner: &'a UserJid, vcard: String) -> BoxFuture<'a, Result<(), TelexError>> {
        Box::pin(self.0.set_vcard(owner, vcard))
    }
}
