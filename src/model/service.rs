//! Services (tenants), named by the `Fiware-Service` header as in FIWARE Orion.

use std::fmt;

/// A validated service name: lowercase letters, digits and `_`, at most 50
/// characters. The default service (no header) is the empty name internally
/// and is shown as `default-service`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service(String);

/// The longest accepted service name.
pub const MAX_SERVICE_LEN: usize = crate::limits::MAX_SERVICE_BYTES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError(pub String);

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServiceError {}

impl Service {
    /// The service of requests that name none.
    pub fn default_service() -> Self {
        Service(String::new())
    }

    /// Validates a `Fiware-Service` header value (absent: the default service).
    pub fn from_header(value: Option<&str>) -> Result<Self, ServiceError> {
        let Some(name) = value else {
            return Ok(Service::default_service());
        };
        if name.is_empty() {
            return Err(ServiceError("invalid Fiware-Service: empty".into()));
        }
        if name.len() > MAX_SERVICE_LEN {
            return Err(ServiceError(format!(
                "invalid Fiware-Service: longer than {MAX_SERVICE_LEN} characters"
            )));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ServiceError(
                "invalid Fiware-Service: only lowercase letters, digits and _ are allowed".into(),
            ));
        }
        Ok(Service(name.to_owned()))
    }

    /// The name used in storage keys (empty for the default service).
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

    /// Rebuilds a service from its storage key.
    pub fn from_key(key: &str) -> Self {
        Service(key.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert_eq!(
            Service::from_header(None).unwrap().display_name(),
            "default-service"
        );
        assert_eq!(
            Service::from_header(Some("acme_1")).unwrap().key(),
            "acme_1"
        );
        assert!(Service::from_header(Some("Acme")).is_err());
        assert!(Service::from_header(Some("a-b")).is_err());
        assert!(Service::from_header(Some("")).is_err());
        assert!(Service::from_header(Some(&"a".repeat(51))).is_err());
        assert!(Service::from_header(Some(&"a".repeat(50))).is_ok());
    }
}
