//! Who may use the admin API, and for what: identities with a role (super-admin over the whole
//! cluster, tenant admin over one tenant, auditor reading one tenant or all), each holding a
//! bearer token of which only a digest is stored. `may` is the one decision every admin call
//! goes through.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Domain, ErrorCode, TelexError, UnixMillis};

const MAX_NAME: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRole {
    /// Everything: every tenant, the cluster's nodes, backups, admin identities.
    SuperAdmin,
    /// Reads and changes one tenant (its users, directory, policy, rooms, sessions).
    TenantAdmin,
    /// Reads one tenant (or, with no tenant, every tenant and the cluster's status); changes
    /// nothing.
    Auditor,
}

impl AdminRole {
    pub fn parse(s: &str) -> Option<AdminRole> {
        match s {
            "super-admin" => Some(AdminRole::SuperAdmin),
            "tenant-admin" => Some(AdminRole::TenantAdmin),
            "auditor" => Some(AdminRole::Auditor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::SuperAdmin => "super-admin",
            AdminRole::TenantAdmin => "tenant-admin",
            AdminRole::Auditor => "auditor",
        }
    }
}

/// An admin identity as stored in the meta group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRecord {
    pub name: String,
    pub role: AdminRole,
    /// The tenant a tenant admin or auditor is limited to; `None` for a super-admin and for an
    /// auditor of every tenant.
    pub tenant: Option<Domain>,
    /// SHA-256 of the token's secret.
    pub token_hash: Vec<u8>,
    pub created_at: UnixMillis,
    pub by: String,
}

impl AdminRecord {
    pub fn validate(&self) -> Result<(), TelexError> {
        admin_name(&self.name)?;
        match (self.role, &self.tenant) {
            (AdminRole::TenantAdmin, None) => Err(TelexError::invalid("a tenant admin needs its tenant")),
            (AdminRole::SuperAdmin, Some(_)) => Err(TelexError::invalid("a super-admin is not limited to a tenant")),
            _ => Ok(()),
        }
    }

    pub fn identity(&self) -> AdminIdentity {
        AdminIdentity { name: self.name.clone(), role: self.role, tenant: self.tenant.clone() }
    }
}

/// An admin's name: lowercase letters, digits, `-` and `_`, at most 64 (it is part of the
/// token, `NAME.SECRET`).
pub fn admin_name(raw: &str) -> Result<String, TelexError> {
    let name = raw.trim().to_ascii_lowercase();
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(TelexError::invalid(format!(
            "admin name {raw:?} must be 1 to {MAX_NAME} letters, digits, '-' or '_'"
        )));
    }
    Ok(name)
}

/// Who is calling, once their token checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminIdentity {
    pub name: String,
    pub role: AdminRole,
    pub tenant: Option<Domain>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// What a call is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One tenant's data.
    Tenant(&'a Domain),
    /// The cluster itself (nodes, placement, backups, every tenant at once, admin identities).
    Cluster,
}

impl AdminIdentity {
    /// Whether this admin may do `access` on `scope`; refused with a reason otherwise.
    pub fn may(&self, access: Access, scope: Scope<'_>) -> Result<(), TelexError> {
        let allowed = match (self.role, &self.tenant, scope) {
            (AdminRole::SuperAdmin, _, _) => true,
            (AdminRole::TenantAdmin, Some(mine), Scope::Tenant(t)) => mine == t,
            (AdminRole::TenantAdmin, _, _) => false,
            (AdminRole::Auditor, _, _) if access == Access::Write => false,
            (AdminRole::Auditor, None, _) => true,
            (AdminRole::Auditor, Some(mine), Scope::Tenant(t)) => mine == t,
            (AdminRole::Auditor, Some(_), Scope::Cluster) => false,
        };
        if allowed {
            return Ok(());
        }
        let what = match (access, scope) {
            (Access::Read, Scope::Tenant(t)) => format!("read tenant {t}"),
            (Access::Write, Scope::Tenant(t)) => format!("change tenant {t}"),
            (Access::Read, Scope::Cluster) => "read the cluster's state".to_string(),
            (Access::Write, Scope::Cluster) => "change the cluster".to_string(),
        };
        Err(TelexError::new(ErrorCode::PermissionDenied, format!("admin {self} may not {what}")))
    }

    /// Whether this admin sees `tenant` in listings.
    pub fn sees(&self, tenant: &Domain) -> bool {
        self.may(Access::Read, Scope::Tenant(tenant)).is_ok()
    }
}

impl fmt::Display for AdminIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            Some(t) => write!(f, "{} ({} of {t})", self.name, self.role.as_str()),
            None => write!(f, "{} ({})", self.name, self.role.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: AdminRole, tenant: Option<&str>) -> AdminIdentity {
        AdminIdentity { name: "x".into(), role, tenant: tenant.map(|t| Domain::parse(t).unwrap()) }
    }

    #[test]
    fn each_role_reaches_only_its_scope() {
        let (a, b) = (Domain::parse("a.example").unwrap(), Domain::parse("b.example").unwrap());
        let cases = [
            (who(AdminRole::SuperAdmin, None), [true, true, true, true, true, true]),
            (who(AdminRole::TenantAdmin, Some("a.example")), [true, true, false, false, false, false]),
            (who(AdminRole::Auditor, Some("a.example")), [true, false, false, false, false, false]),
            (who(AdminRole::Auditor, None), [true, false, true, false, true, false]),
        ];
        for (w, expected) in cases {
            let got = [
                w.may(Access::Read, Scope::Tenant(&a)).is_ok(),
                w.may(Access::Write, Scope::Tenant(&a)).is_ok(),
                w.may(Access::Read, Scope::Tenant(&b)).is_ok(),
                w.may(Access::Write, Scope::Tenant(&b)).is_ok(),
                w.may(Access::Read, Scope::Cluster).is_ok(),
                w.may(Access::Write, Scope::Cluster).is_ok(),
            ];
            assert_eq!(got, expected, "{w}");
        }
        let e = who(AdminRole::TenantAdmin, Some("a.example")).may(Access::Write, Scope::Tenant(&b)).unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert_eq!(e.message, "admin x (tenant-admin of a.example) may not change tenant b.example");
    }

    #[test]
    fn records_name_their_tenant_when_the_role_needs_one() {
        let mut r = AdminRecord {
            name: "Ops-1".into(),
            role: AdminRole::TenantAdmin,
            tenant: None,
            token_hash: Vec::new(),
            created_at: 0,
            by: String::new(),
        };
        assert!(r.validate().is_err());
        r.tenant = Some(Domain::parse("a.example").unwrap());
        assert!(r.validate().is_ok());
        assert!(admin_name("has.dot").is_err() && admin_name("").is_err());
        assert_eq!(admin_name("Ops-1").unwrap(), "ops-1");
    }
}
