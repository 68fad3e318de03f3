//! Tenants, named by the `Fiware-Service` header as in FIWARE Orion (where a
//! tenant is called a *service*; the header, the CLI's `--service` and the
//! `/admin/metrics` JSON keep that word).

use std::fmt;

/// A validated tenant name: lowercase letters, digits and `_`, at most 50
/// characters. The default tenant (no header) is the empty name internally
/// and is shown as `default-service`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

/// The longest accepted tenant name.
pub const MAX_TENANT_LEN: usize = crate::limits::MAX_TENANT_BYTES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantError(pub String);

impl fmt::Display for TenantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TenantError {}

impl Tenant {
    /// The tenant of requests that name none.
    pub fn default_tenant() -> Self {
        Tenant(String::new())
    }

    /// Validates a `Fiware-Service` header value (absent: the default tenant).
    pub fn from_header(value: Option<&str>) -> Result<Self, TenantError> {
        let Some(name) = value else {
            return Ok(Tenant::default_tenant());
        };
        if name.is_empty() {
            return Err(TenantError("invalid Fiware-Service: empty".into()));
        }
        if name.len() > MAX_TENANT_LEN {
            return Err(TenantError(format!(
                "invalid Fiware-Service: longer than {MAX_TENANT_LEN} characters"
            )));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(TenantError(
                "invalid Fiware-Service: only lowercase letters, digits and _ are allowed".into(),
            ));
        }
        Ok(Tenant(name.to_owned()))
    }

    /// The name used in storage keys (empty for the default tenant).
    pub fn key(&self) -> &str {
        &self.0
    }

    /// The name shown to people and in metrics.
    pub fn display_name(&self) -> &str {
        if self.0.is_empty() {
            "default-service"
        } else {
            &self.0
        }
    }

    /// Rebuilds a tenant from its storage key.
    pub fn from_key(key: &str) -> Self {
        Tenant(key.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert_eq!(
            Tenant::from_header(None).unwrap().display_name(),
            "default-service"
        );
        assert_eq!(Tenant::from_header(Some("acme_1")).unwrap().key(), "acme_1");
        assert!(Tenant::from_header(Some("Acme")).is_err());
        assert!(Tenant::from_header(Some("a-b")).is_err());
        assert!(Tenant::from_header(Some("")).is_err());
        assert!(Tenant::from_header(Some(&"a".repeat(51))).is_err());
        assert!(Tenant::from_header(Some(&"a".repeat(50))).is_ok());
    }
}
