//! Tenants (domains) and bare user JIDs (`local@domain`), validated and normalised.
//!
//! Normalisation: domains are ASCII-lowercased, local parts Unicode-lowercased, with RFC 7622's
//! forbidden characters refused; there is no PRECIS or IDNA handling yet. Anything outside the
//! accepted repertoire is rejected rather than guessed at.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TelexError;

const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;
const MAX_LOCAL: usize = 1023;

/// A tenant: a DNS domain such as `acme.example`, lowercased.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Domain(String);

impl Domain {
    pub fn parse(raw: &str) -> Result<Domain, TelexError> {
        let d = raw.trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() {
            return Err(TelexError::invalid("invalid domain: empty"));
        }
        if d.len() > MAX_DOMAIN {
            return Err(TelexError::invalid(format!("invalid domain {raw:?}: longer than {MAX_DOMAIN} bytes")));
        }
        for label in d.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL {
                return Err(TelexError::invalid(format!(
                    "invalid domain {raw:?}: each label must be 1 to {MAX_LABEL} characters"
                )));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(TelexError::invalid(format!(
                    "invalid domain {raw:?}: only letters, digits, '-' and '.' are allowed"
                )));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(TelexError::invalid(format!(
                    "invalid domain {raw:?}: a label may not start or end with '-'"
                )));
            }
        }
        Ok(Domain(d))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JID's local part (`what`: "user name", "room name"), lowercased: non-empty, at most
/// `max` bytes, without spaces, control characters or RFC 7622's forbidden ones.
pub(crate) fn local_part(raw: &str, what: &str, max: usize) -> Result<String, TelexError> {
    let local = raw.to_lowercase();
    if local.is_empty() {
        return Err(TelexError::invalid(format!("empty {what}")));
    }
    if local.len() > max {
        return Err(TelexError::invalid(format!("{what} longer than {max} bytes")));
    }
    if let Some(c) = local.chars().find(|c| c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(*c)) {
        return Err(TelexError::invalid(format!("{what} contains {c:?}, which is not allowed")));
    }
    Ok(local)
}

/// A user: `local@domain` with both parts validated and lowercased.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserJid {
    local: String,
    domain: Domain,
}

impl UserJid {
    /// Parses a bare JID. A resource (`/device`) is refused here: accounts are per user.
    pub fn parse(raw: &str) -> Result<UserJid, TelexError> {
        let Some((local, domain)) = raw.split_once('@') else {
            return Err(TelexError::invalid(format!("invalid JID {raw:?}: expected user@domain")));
        };
        if domain.contains('/') {
            return Err(TelexError::invalid(format!("invalid JID {raw:?}: a user JID has no resource")));
        }
        let domain =
            Domain::parse(domain).map_err(|e| TelexError::invalid(format!("invalid JID {raw:?}: {}", e.message)))?;
        Self::new(local, domain).map_err(|e| TelexError::invalid(format!("invalid JID {raw:?}: {}", e.message)))
    }

    pub fn new(local: &str, domain: Domain) -> Result<UserJid, TelexError> {
        Ok(UserJid { local: local_part(local, "user name", MAX_LOCAL)?, domain })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl fmt::Display for UserJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_and_checked() {
        assert_eq!(Domain::parse("Acme.Example.").unwrap().as_str(), "acme.example");
        assert_eq!(Domain::parse("localhost").unwrap().as_str(), "localhost");
        for bad in ["", "a..b", "-a.com", "a-.com", "a_b.com", "a b", &"x".repeat(64)] {
            let err = Domain::parse(bad).unwrap_err();
            assert!(err.message.contains("invalid domain"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn jids_are_parsed_and_bad_ones_named() {
        let j = UserJid::parse("Alice@Acme.Example").unwrap();
        assert_eq!(j.to_string(), "alice@acme.example");
        assert_eq!(j.local(), "alice");
        for bad in ["alice", "@acme.example", "a b@x", "alice@", "alice@x/phone", "a<b@x", "a@b@c"] {
            let err = UserJid::parse(bad).unwrap_err();
            assert!(err.message.contains(bad), "{bad:?}: {err}");
        }
    }
}
