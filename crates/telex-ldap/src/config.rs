//! How to reach a tenant's directory server and read it: one `[[ldap]]` table of the node's
//! configuration per tenant, the same on every node.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// The tenant (domain) the directory belongs to.
    pub tenant: String,
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// The account the sync reads with; empty: an anonymous bind.
    pub bind_dn: String,
    pub bind_password: String,
    /// Read the password from this file instead (a mounted secret); trailing newlines dropped.
    pub bind_password_file: PathBuf,
    /// Where users are, and which entries are users.
    pub base_dn: String,
    pub user_filter: String,
    /// The attribute whose value becomes the user's name (`uid` -> `uid@tenant`).
    pub uid_attribute: String,
    pub display_name_attribute: String,
    pub title_attribute: String,
    pub department_attribute: String,
    pub email_attribute: String,
    /// Holds the manager's DN.
    pub manager_attribute: String,
    /// A user whose `disabled_attribute` has `disabled_value` (case ignored) is disabled here;
    /// empty: only users gone from the server are.
    pub disabled_attribute: String,
    pub disabled_value: String,
    /// Where groups are (empty: `base_dn`), and which entries are groups.
    pub group_base_dn: String,
    pub group_filter: String,
    pub group_name_attribute: String,
    pub group_description_attribute: String,
    /// Holds the DNs of a group's members: users, or groups (which become subgroups).
    pub member_attribute: String,
    /// How often every node's leader of the meta group syncs; 0: only on demand
    /// (`telex directory sync`).
    pub sync_interval_secs: u64,
    /// Check passwords by binding to the server as the user; the password is never stored
    /// here. XMPP clients then get only SASL PLAIN (over TLS), since SCRAM needs a stored key.
    pub password_bind: bool,
    pub timeout_secs: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            tenant: String::new(),
            url: String::new(),
            bind_dn: String::new(),
            bind_password: String::new(),
            bind_password_file: PathBuf::new(),
            base_dn: String::new(),
            user_filter: "(objectClass=inetOrgPerson)".into(),
            uid_attribute: "uid".into(),
            display_name_attribute: "cn".into(),
            title_attribute: "title".into(),
            department_attribute: "departmentNumber".into(),
            email_attribute: "mail".into(),
            manager_attribute: "manager".into(),
            disabled_attribute: String::new(),
            disabled_value: "disabled".into(),
            group_base_dn: String::new(),
            group_filter: "(objectClass=groupOfNames)".into(),
            group_name_attribute: "cn".into(),
            group_description_attribute: "description".into(),
            member_attribute: "member".into(),
            sync_interval_secs: 3600,
            password_bind: false,
            timeout_secs: 10,
        }
    }
}

impl LdapConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// The bind password, from the file when one is named.
    pub fn password(&self) -> Result<String, String> {
        if self.bind_password_file.as_os_str().is_empty() {
            return Ok(self.bind_password.clone());
        }
        std::fs::read_to_string(&self.bind_password_file)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("reading {}: {e}", self.bind_password_file.display()))
    }

    /// What is wrong with it, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.tenant.is_empty() {
            return Err("ldap: `tenant` is required".into());
        }
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            return Err(format!("ldap for {}: url {:?} must start with ldap:// or ldaps://", self.tenant, self.url));
        }
        if self.base_dn.is_empty() {
            return Err(format!("ldap for {}: `base_dn` is required", self.tenant));
        }
        if self.uid_attribute.is_empty() || self.member_attribute.is_empty() {
            return Err(format!("ldap for {}: uid_attribute and member_attribute cannot be empty", self.tenant));
        }
        Ok(())
    }

    pub fn group_base(&self) -> &str {
        if self.group_base_dn.is_empty() {
            &self.base_dn
        } else {
            &self.group_base_dn
        }
    }
}
