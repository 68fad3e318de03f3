//! Who may do what: API keys bound to one service (tenant) with a role.
//!
//! The keys' records come from the backend's [`KeyStore`] and are held in
//! memory; [`Auth::reload`] re-reads them (the server does every second, so
//! a key created or revoked with `cubed keys` while it runs takes effect
//! within a second). Checking a key is a map lookup by its id and one
//! SHA-256; keys are never logged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::model::Tenant;
use crate::model::TenantError;
use crate::model::access::{self, KeyRecord, Role};
use crate::storage::{KeyStore, StoreError};

/// When keys are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Never: anyone who can reach the ports may do anything (`--auth off`).
    Off,
    /// Always, even before any key exists (`--auth on`).
    On,
    /// Once any key has been created (revoked ones count: revoking every
    /// key does not open the server again).
    Auto,
}

/// Why a request may not go on.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No key was presented. 401.
    #[error("a key is required: send Authorization: Bearer KEY")]
    Missing,
    /// The key is not one of ours, or was revoked. 401.
    #[error("unknown or revoked key")]
    Unknown,
    /// The key is for another service than the one `Fiware-Service` names. 403.
    #[error("this key is for service {key}, not {asked}")]
    OtherService { key: String, asked: String },
    /// The key's role does not allow this. 403.
    #[error("this key's role is {role}; this needs {needed}")]
    Role { role: Role, needed: Role },
    /// The `Fiware-Service` header is not a valid name. 400.
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

/// What a request may act on: its tenant, and whether keys are in force
/// (when they are, what is server-wide is narrowed to the tenant).
#[derive(Debug, Clone)]
pub struct Access {
    pub tenant: Tenant,
    /// The key's role, or `None` when keys are not in force.
    pub role: Option<Role>,
    /// The key's id (`None` when keys are not in force).
    pub key_id: Option<String>,
    /// The key came from the sign-in cookie (set by transport).
    pub from_cookie: bool,
}

impl Access {
    pub fn restricted(&self) -> bool {
        self.role.is_some()
    }

    /// May see what is server-wide (every module's figures): anyone when
    /// keys are not in force; with keys, an `admin` key of the default
    /// service (the operator's).
    pub fn operator(&self) -> bool {
        match self.role {
            None => true,
            Some(role) => role == Role::Admin && self.tenant.key().is_empty(),
        }
    }
}

pub struct Auth {
    store: Option<Arc<dyn KeyStore>>,
    mode: AuthMode,
    /// Unrevoked records by id, and whether any record (even revoked) exists.
    keys: RwLock<Arc<(HashMap<String, KeyRecord>, bool)>>,
    /// One reload at a time, so that an older read never replaces a newer one.
    reloading: tokio::sync::Mutex<()>,
}

impl Auth {
    /// No keys, no checks: the server is open.
    pub fn off() -> Self {
        Auth {
            store: None,
            mode: AuthMode::Off,
            keys: RwLock::default(),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Keys from `store`, required as `mode` says. Fails if the store
    /// cannot be read (a server must not start open by mistake).
    pub fn new(store: Arc<dyn KeyStore>, mode: AuthMode) -> Result<Self, StoreError> {
        let auth = Auth {
            store: Some(store),
            mode,
            keys: RwLock::default(),
            reloading: tokio::sync::Mutex::new(()),
        };
        auth.reload()?;
        Ok(auth)
    }

    /// Re-reads the records. On failure the ones held stay in force.
    pub fn reload(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        self.hold(store.keys()?);
        Ok(())
    }

    /// Holds `records`. Once any record was seen, keys stay in force (in
    /// `auto` mode) for the life of the process, even if the records vanish
    /// (a deleted key file must not open the server).
    fn hold(&self, records: Vec<KeyRecord>) {
        let any = !records.is_empty() || self.held().1;
        let live = records
            .into_iter()
            .filter(|r| r.revoked_ms.is_none())
            .map(|r| (r.id.clone(), r))
            .collect();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new((live, any));
    }

    fn held(&self) -> Arc<(HashMap<String, KeyRecord>, bool)> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether requests need a key now.
    pub fn enabled(&self) -> bool {
        match self.mode {
            AuthMode::Off => false,
            AuthMode::On => true,
            AuthMode::Auto => self.held().1,
        }
    }

    /// The record of a presented key, if it is a valid, unrevoked key.
    pub fn record(&self, key: &str) -> Option<KeyRecord> {
        let id = access::key_id(key)?;
        let held = self.held();
        held.0.get(id).filter(|r| r.matches(key)).cloned()
    }

    /// Whether a request presenting `key` and naming `header` as its
    /// service may do what needs `needed`, and on which tenant.
    pub fn check(
        &self,
        key: Option<&str>,
        header: Option<&str>,
        needed: Role,
    ) -> Result<Access, AuthError> {
        if !self.enabled() {
            return Ok(Access {
                tenant: Tenant::from_header(header)?,
                role: None,
                key_id: None,
                from_cookie: false,
            });
        }
        let key = key.ok_or(AuthError::Missing)?;
        let record = self.record(key).ok_or(AuthError::Unknown)?;
        let tenant = record.tenant();
        if let Some(h) = header {
            let asked = Tenant::from_header(Some(h))?;
            if asked != tenant {
                return Err(AuthError::OtherService {
                    key: tenant.display_name().to_owned(),
                    asked: asked.display_name().to_owned(),
                });
            }
        }
        let role = record.role().ok_or(AuthError::Unknown)?;
        if !role.allows(needed) {
            return Err(AuthError::Role { role, needed });
        }
        Ok(Access {
            tenant,
            role: Some(role),
            key_id: Some(record.id),
            from_cookie: false,
        })
    }

    /// Whether some unrevoked key is for `tenant` (failed attempts are
    /// counted under a tenant only then, so that they cannot make up names).
    pub fn knows_tenant(&self, tenant: &Tenant) -> bool {
        self.held().0.values().any(|r| r.service == tenant.key())
    }

    /// Resolves once what a socket opened with `key_id` (`None`: opened
    /// while keys were not in force) no longer authorizes: the key was
    /// revoked, or keys came into force. Checked every reload interval.
    pub async fn revoked(&self, key_id: Option<String>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(
            crate::limits::KEY_RELOAD_INTERVAL_MS,
        ));
        loop {
            tick.tick().await;
            if !self.enabled() {
                continue;
            }
            match &key_id {
                Some(id) if self.held().0.contains_key(id) => {}
                _ => return,
            }
        }
    }

    fn store(&self) -> Result<&Arc<dyn KeyStore>, StoreError> {
        self.store
            .as_ref()
            .ok_or_else(|| StoreError::Engine("keys are off (--auth off)".into()))
    }

    /// Creates a key for `tenant` (see [`create_key`]) and holds it at once.
    pub async fn create(
        &self,
        tenant: Tenant,
        role: Role,
        now_ms: i64,
    ) -> Result<(KeyRecord, String), StoreError> {
        let store = Arc::clone(self.store()?);
        let made = super::on_store(move || create_key(&*store, &tenant, role, now_ms)).await?;
        self.reload_async().await?;
        Ok(made)
    }

    /// The records of `tenant`'s keys (revoked ones included).
    pub async fn list(&self, tenant: Tenant) -> Result<Vec<KeyRecord>, StoreError> {
        let store = Arc::clone(self.store()?);
        let all = super::on_store(move || store.keys()).await?;
        Ok(all
            .into_iter()
            .filter(|r| r.service == tenant.key())
            .collect())
    }

    /// Revokes `tenant`'s key `id`; `false` if it has no such unrevoked key.
    pub async fn revoke(
        &self,
        tenant: Tenant,
        id: String,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let store = Arc::clone(self.store()?);
        let done = super::on_store(move || {
            let ours = store
                .keys()?
                .iter()
                .any(|r| r.id == id && r.service == tenant.key());
            if ours {
                store.revoke_key(&id, now_ms)
            } else {
                Ok(false)
            }
        })
        .await?;
        self.reload_async().await?;
        Ok(done)
    }

    /// [`Auth::reload`] on the blocking pool.
    pub async fn reload_async(&self) -> Result<(), StoreError> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let _one = self.reloading.lock().await;
        self.hold(super::on_store(move || store.keys()).await?);
        Ok(())
    }
}

/// Makes a new key for `tenant` with `role` and stores its record: the
/// record and the key (shown once; only its hash is kept).
pub fn create_key(
    store: &dyn KeyStore,
    tenant: &Tenant,
    role: Role,
    now_ms: i64,
) -> Result<(KeyRecord, String), StoreError> {
    let mut random = [0u8; 40];
    getrandom::fill(&mut random)
        .map_err(|e| StoreError::Engine(format!("no randomness for a key: {e}")))?;
    let (id, key) = access::new_key(&random);
    let record = KeyRecord {
        id,
        service: tenant.key().to_owned(),
        role: role.name().to_owned(),
        sha256: access::hash_key(&key),
        created_ms: now_ms,
        revoked_ms: None,
    };
    store.add_key(record.clone())?;
    Ok((record, key))
}
