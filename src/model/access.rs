//! API keys and roles (pure): what a key looks like, how it is hashed for
//! storage, and which role may do what. Keys themselves are never stored or
//! logged, only their SHA-256.

use std::fmt;

use sha2::{Digest, Sha256};

use super::Tenant;

/// What a key may do within its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Metrics, events, types, status, `/admin/metrics` (its own service).
    Read,
    /// Puts on every ingest path (and nothing else: a collector's key
    /// cannot read).
    Write,
    /// Everything: reads, puts, cache clearing, `/admin/metrics` reset,
    /// module results, key management (of its own service).
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Whether a key with this role may do what `needed` is required for.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is stored of a key: its public id, service, role and hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    /// Public: shown by `cubed keys list`, used to revoke; also the key's
    /// prefix, which is how a presented key finds its record.
    pub id: String,
    /// The service's storage name (empty for the default service).
    pub service: String,
    pub role: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub sha256: String,
    /// When it was created, ms since the epoch.
    pub created_ms: i64,
    /// When it was revoked, if it was (revoked keys stay listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
}

impl KeyRecord {
    pub fn tenant(&self) -> Tenant {
        Tenant::from_key(&self.service)
    }

    pub fn role(&self) -> Option<Role> {
        Role::parse(&self.role)
    }

    /// Whether `presented` is this (unrevoked) record's key.
    pub fn matches(&self, presented: &str) -> bool {
        self.revoked_ms.is_none() && constant_time_eq(&hash_key(presented), &self.sha256)
    }
}

/// The prefix every key starts with.
pub const KEY_PREFIX: &str = "cubed_";
/// Hex digits of a key's id (8 random bytes).
const ID_HEX: usize = 16;
/// Hex digits of a key's secret (32 random bytes).
const SECRET_HEX: usize = 64;
/// The length of every key: `cubed_<id>_<secret>`.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_HEX + 1 + SECRET_HEX;

/// A new key from 40 random bytes: `(id, key)`. The key is visible ASCII
/// without separators, so that it fits an `Authorization` header, a Basic
/// password, a cookie and a WebSocket subprotocol alike.
pub fn new_key(random: &[u8; 40]) -> (String, String) {
    let id = hex(&random[..8]);
    let key = format!("{KEY_PREFIX}{id}_{}", hex(&random[8..]));
    (id, key)
}

/// The id part of a presented key, if it has a key's shape.
pub fn key_id(presented: &str) -> Option<&str> {
    if presented.len() != KEY_LEN || !presented.is_ascii() {
        return None;
    }
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_at(ID_HEX);
    let secret = secret.strip_prefix('_')?;
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (is_hex(id) && is_hex(secret)).then_some(id)
}

/// Lowercase hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The key in an `Authorization` header: `Bearer KEY`, or `Basic` with the
/// key as the password (collectd's `write_http` `User`/`Password`; the user
/// name is ignored). `None` when the header is not one of those.
pub fn key_from_authorization(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest)?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// The key offered as a WebSocket subprotocol `cubed-key.KEY` (browsers
/// cannot set headers on a WebSocket), from `Sec-WebSocket-Protocol`.
pub fn key_from_subprotocols(value: &str) -> Option<String> {
    value
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix(SUBPROTOCOL_KEY_PREFIX).map(str::to_owned))
}

/// The subprotocol prefix that carries a key.
pub const SUBPROTOCOL_KEY_PREFIX: &str = "cubed-key.";
/// The subprotocol the server selects when a client offers a key that way.
pub const SUBPROTOCOL: &str = "cubed";
/// The sign-in cookie's name.
pub const COOKIE: &str = "cubed_key";

/// The key in a `Cookie` header's `cubed_key`.
pub fn key_from_cookie(value: &str) -> Option<String> {
    value.split(';').map(str::trim).find_map(|c| {
        c.strip_prefix(COOKIE)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// Standard base64 (with or without padding), for Basic credentials;
/// `None` if it is not base64.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 || s.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_their_shape_and_hash() {
        let (id, key) = new_key(&[7u8; 40]);
        assert_eq!(key.len(), KEY_LEN);
        assert_eq!(key_id(&key), Some(id.as_str()));
        assert_eq!(key_id(&key[1..]), None);
        assert_eq!(key_id(&key.to_uppercase()), None);
        let record = KeyRecord {
            id,
            service: "acme".into(),
            role: "read".into(),
            sha256: hash_key(&key),
            created_ms: 0,
            revoked_ms: None,
        };
        assert!(record.matches(&key));
        assert!(!record.matches(&key.replace('7', "8")));
        let revoked = KeyRecord {
            revoked_ms: Some(1),
            ..record
        };
        assert!(!revoked.matches(&key));
    }

    #[test]
    fn roles() {
        assert!(Role::Admin.allows(Role::Write));
        assert!(Role::Admin.allows(Role::Read));
        assert!(!Role::Write.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Write));
        assert!(!Role::Read.allows(Role::Admin));
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn credentials_from_headers() {
        assert_eq!(key_from_authorization("Bearer abc").as_deref(), Some("abc"));
        // "collectd:abc" in base64
        assert_eq!(
            key_from_authorization("Basic Y29sbGVjdGQ6YWJj").as_deref(),
            Some("abc")
        );
        assert_eq!(key_from_authorization("Basic !!!"), None);
        assert_eq!(key_from_authorization("Digest x"), None);
        assert_eq!(
            key_from_subprotocols("cubed, cubed-key.abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            key_from_cookie("a=b; cubed_key=abc; c=d").as_deref(),
            Some("abc")
        );
        assert_eq!(key_from_cookie("cubed_keyx=abc"), None);
    }
}
