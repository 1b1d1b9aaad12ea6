//! A tenant's company directory: users' attributes (name, title, department, manager, email)
//! and groups (departments, teams, roles; nested), kept in the meta group so every node holds
//! the whole directory and decides policy without asking another node. Also the tenant's policy
//! versions and the admin audit trail, which live beside it.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Domain, TelexError, UnixMillis, UserJid};

const MAX_GROUP: usize = 64;
const MAX_ATTRIBUTE: usize = 256;
/// Longest policy file, in bytes.
pub const MAX_POLICY: usize = 256 * 1024;

/// A group's name within its tenant: lowercase letters, digits, `-`, `_` and `.`, at most 64.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(raw: &str) -> Result<GroupName, TelexError> {
        let name = raw.trim().to_ascii_lowercase();
        if name.is_empty() || name.len() > MAX_GROUP {
            return Err(TelexError::invalid(format!("group name {raw:?} must be 1 to {MAX_GROUP} characters")));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(TelexError::invalid(format!(
                "group name {raw:?} may hold only letters, digits, '-', '_' and '.'"
            )));
        }
        Ok(GroupName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a directory value came from: set by an admin, or synced from LDAP (and then changed
/// by the next sync, not by hand).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    #[default]
    Local,
    /// The entry's distinguished name in the directory server.
    Ldap(String),
}

/// What the directory says of a user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAttributes {
    pub display_name: String,
    pub title: String,
    pub department: String,
    pub manager: Option<UserJid>,
    pub email: String,
    pub source: Source,
}

impl UserAttributes {
    pub fn validate(&self) -> Result<(), TelexError> {
        for (field, v) in [
            ("display name", &self.display_name),
            ("title", &self.title),
            ("department", &self.department),
            ("email", &self.email),
        ] {
            if v.len() > MAX_ATTRIBUTE {
                return Err(TelexError::invalid(format!("{field} longer than {MAX_ATTRIBUTE} bytes")));
            }
            if v.chars().any(char::is_control) {
                return Err(TelexError::invalid(format!("{field} contains a control character")));
            }
        }
        Ok(())
    }

    /// The attribute a policy selector names (`attr:title=...`).
    pub fn get(&self, attribute: &str) -> Option<&str> {
        Some(match attribute {
            "display_name" => &self.display_name,
            "title" => &self.title,
            "department" => &self.department,
            "email" => &self.email,
            _ => return None,
        })
    }
}

/// Attribute names a policy may select on.
pub const ATTRIBUTES: &[&str] = &["display_name", "title", "department", "email", "manager"];

/// A directory group. Its members are kept apart (one key each), so adding one never rewrites
/// the group; `subgroups`' members are members too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub tenant: Domain,
    pub name: GroupName,
    pub display_name: String,
    pub description: String,
    pub subgroups: BTreeSet<GroupName>,
    /// Groups whose members get this group's members in their rosters, with mutual presence
    /// and no subscription requests (a shared roster group); the group itself, to show a
    /// department to itself.
    pub shown_to: BTreeSet<GroupName>,
    pub source: Source,
}

impl GroupRecord {
    pub fn validate(&self) -> Result<(), TelexError> {
        for (field, v) in [("display name", &self.display_name), ("description", &self.description)] {
            if v.len() > MAX_ATTRIBUTE {
                return Err(TelexError::invalid(format!("group {field} longer than {MAX_ATTRIBUTE} bytes")));
            }
        }
        if self.subgroups.contains(&self.name) {
            return Err(TelexError::invalid(format!("group {} cannot contain itself", self.name)));
        }
        Ok(())
    }
}

/// One version of a tenant's policy file, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// 1, 2, ... (assigned when applied).
    pub version: u64,
    pub text: String,
    /// The admin identity that set it.
    pub by: String,
    pub at: UnixMillis,
    /// Why (`--comment`), or which version it rolled back to.
    pub comment: String,
}

/// One admin action, as the audit trail keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, ... per tenant (assigned when applied).
    pub seq: u64,
    pub at: UnixMillis,
    /// The admin identity that acted.
    pub actor: String,
    /// What was done: `user.add`, `group.member.add`, `policy.set`, ...
    pub action: String,
    /// To what: a JID, a group, a policy version.
    pub target: String,
    /// The state before and after, as text (JSON or the policy's text); empty when none.
    pub before: String,
    pub after: String,
}

/// Everything the directory holds for one tenant, as read from the meta group: what a node
/// builds its cached view from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryData {
    pub users: Vec<(UserJid, UserAttributes)>,
    pub groups: Vec<GroupRecord>,
    /// (group, member) pairs.
    pub members: Vec<(GroupName, UserJid)>,
}

/// One change a directory sync makes to a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryChange {
    /// An account for a user the directory server has and Telex has not (its password set by
    /// an admin, or checked by the directory server).
    CreateUser(UserJid),
    SetDisabled {
        user: UserJid,
        disabled: bool,
    },
    SetAttributes {
        user: UserJid,
        attributes: UserAttributes,
    },
    PutGroup(GroupRecord),
    RemoveGroup(GroupName),
    Member {
        group: GroupName,
        user: UserJid,
        member: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_slugs() {
        assert_eq!(GroupName::parse(" Sales ").unwrap().as_str(), "sales");
        assert_eq!(GroupName::parse("eng.backend-2").unwrap().as_str(), "eng.backend-2");
        for bad in ["", "a b", "ops/1", &"g".repeat(65), "é"] {
            assert!(GroupName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attributes_are_bounded_and_named() {
        let a = UserAttributes { title: "CEO".into(), ..UserAttributes::default() };
        assert!(a.validate().is_ok());
        assert_eq!(a.get("title"), Some("CEO"));
        assert_eq!(a.get("shoe_size"), None);
        let long = UserAttributes { email: "e".repeat(300), ..UserAttributes::default() };
        assert!(long.validate().unwrap_err().message.contains("email"));
    }
}
