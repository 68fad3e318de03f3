//! Retention: deleting events older than their type's horizon in the
//! background, with their cached bins; refusing puts of events that would
//! be deleted at once; the overrides set over the admin API; and the
//! per-type figures `cubed stats` shows.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use super::Invalidator;
use crate::model::retention::{Horizon, Policy, Source};
use crate::model::{BatchError, Clock, EventError, NewEvent, Tenant};
use crate::storage::{EventStore, StoreError, TypeStats};

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub types_expired: u64,
    pub events: u64,
    pub bytes: u64,
    pub bins: u64,
    pub types_removed: u64,
}

/// One type's retention as `/admin/retention` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRetention {
    pub event_type: String,
    pub horizon: Horizon,
    pub source: Source,
}

pub struct Retention {
    store: Arc<dyn EventStore>,
    invalidator: Arc<Invalidator>,
    clock: Arc<dyn Clock>,
    policy: RwLock<Policy>,
    /// `stats` calls, one at a time (each reads every block of a service).
    stats_turn: tokio::sync::Mutex<()>,
    /// Totals since start: events and bytes deleted, sweeps run.
    pub events_expired: AtomicU64,
    pub bytes_expired: AtomicU64,
    pub sweeps: AtomicU64,
    /// Serialises sweeps and override changes.
    sweeping: tokio::sync::Mutex<()>,
    /// The stored overrides have been read: until then nothing is swept
    /// (the defaults could delete what an override keeps).
    loaded: std::sync::atomic::AtomicBool,
}

impl Retention {
    /// With the stored overrides read (see [`load`](Self::load)).
    pub fn new(
        store: Arc<dyn EventStore>,
        invalidator: Arc<Invalidator>,
        clock: Arc<dyn Clock>,
        default: Horizon,
        self_default: Horizon,
    ) -> Self {
        let r = Retention {
            store,
            invalidator,
            clock,
            stats_turn: tokio::sync::Mutex::new(()),
            policy: RwLock::new(Policy {
                default,
                self_default,
                ..Policy::default()
            }),
            events_expired: AtomicU64::new(0),
            bytes_expired: AtomicU64::new(0),
            sweeps: AtomicU64::new(0),
            sweeping: tokio::sync::Mutex::new(()),
            loaded: std::sync::atomic::AtomicBool::new(false),
        };
        if let Err(e) = r.load() {
            tracing::error!(error = %e, "reading the retention overrides failed; nothing is deleted until they are read");
        }
        r
    }

    /// Reads the stored overrides (once they are read, sweeps may run). An
    /// override whose text no longer parses is skipped with an error in
    /// the log.
    pub fn load(&self) -> Result<(), StoreError> {
        let mut overrides = std::collections::BTreeMap::new();
        for o in self.store.retention_overrides()? {
            match Horizon::parse(&o.horizon) {
                Ok(h) => {
                    overrides.insert((o.tenant.key().to_owned(), o.event_type), h);
                }
                Err(e) => {
                    tracing::error!(error = %e, service = o.tenant.display_name(), "ignoring a stored retention override")
                }
            }
        }
        self.policy
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .overrides = overrides;
        self.loaded.store(true, Relaxed);
        Ok(())
    }

    pub fn policy(&self) -> Policy {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Refuses (naming each) the events older than their type's horizon:
    /// they would be deleted by the next sweep, so storing them would
    /// acknowledge what cannot be read back.
    pub fn check(&self, tenant: &Tenant, events: &[NewEvent<'_>]) -> Result<(), BatchError> {
        let policy = self.policy.read().unwrap_or_else(|p| p.into_inner());
        if !policy.expires_anything() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let mut seen: Vec<(&str, Horizon)> = Vec::new();
        let mut bad = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let t: &str = &e.event_type;
            let h = match seen.iter().find(|(s, _)| *s == t) {
                Some((_, h)) => *h,
                None => {
                    let h = policy.horizon(tenant, t).0;
                    seen.push((t, h));
                    h
                }
            };
            if h.before(now).is_some_and(|before| e.time < before) {
                bad.push((i, EventError::Expired(h)));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(BatchError::Invalid(bad))
        }
    }

    /// Each type of `tenant` with its horizon and where it comes from.
    pub async fn list(&self, tenant: &Tenant) -> Result<Vec<TypeRetention>, StoreError> {
        let store = Arc::clone(&self.store);
        let t = tenant.clone();
        let types = super::on_store(move || store.types(&t)).await?;
        let policy = self.policy();
        Ok(types
            .into_iter()
            .map(|event_type| {
                let (horizon, source) = policy.horizon(tenant, &event_type);
                TypeRetention {
                    event_type,
                    horizon,
                    source,
                }
            })
            .collect())
    }

    /// Sets (or with `None` removes) the override of one type of a
    /// service, or of the whole service; durable before it takes effect.
    pub async fn set(
        &self,
        tenant: &Tenant,
        event_type: Option<String>,
        horizon: Option<Horizon>,
    ) -> Result<(), StoreError> {
        let _turn = self.sweeping.lock().await;
        if horizon.is_some() {
            let policy = self.policy();
            let key = (tenant.key().to_owned(), event_type.clone());
            let of_service = policy
                .overrides
                .keys()
                .filter(|(s, _)| s == tenant.key())
                .count();
            if !policy.overrides.contains_key(&key)
                && of_service >= crate::limits::MAX_RETENTION_OVERRIDES
            {
                return Err(StoreError::TooMany {
                    what: "retention overrides in this service",
                    limit: crate::limits::MAX_RETENTION_OVERRIDES,
                    flag: "a fixed limit",
                });
            }
        }
        let store = Arc::clone(&self.store);
        let (t, ty) = (tenant.clone(), event_type.clone());
        let text = horizon.map(|h| h.to_string());
        super::on_store(move || store.set_retention_override(&t, ty.as_deref(), text.as_deref()))
            .await?;
        let mut policy = self.policy.write().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.key().to_owned(), event_type);
        match horizon {
            Some(h) => {
                policy.overrides.insert(key, h);
            }
            None => {
                policy.overrides.remove(&key);
            }
        }
        Ok(())
    }

    /// Per type of `tenant`: events, bytes and oldest time.
    pub async fn stats(&self, tenant: &Tenant) -> Result<Vec<TypeStats>, StoreError> {
        let _turn = self.stats_turn.lock().await;
        let store = Arc::clone(&self.store);
        let t = tenant.clone();
        super::on_store(move || store.stats(&t)).await
    }

    /// Deletes, in every service, the events older than their type's
    /// horizon and the cached bins that summarise them, then lets the store
    /// give the space back.
    pub async fn sweep(&self) -> Result<Sweep, StoreError> {
        let turn = self.sweeping.lock().await;
        if !self.loaded.load(Relaxed) {
            self.load()?;
        }
        let policy = self.policy();
        if !policy.expires_anything() {
            return Ok(Sweep::default());
        }
        let now = self.clock.now_ms();
        let store = Arc::clone(&self.store);
        let inv = Arc::clone(&self.invalidator);
        let (sweep, error) =
            super::on_store(move || Ok(sweep(&*store, &inv, &policy, now))).await?;
        drop(turn);
        // The space comes back outside the turn (a compaction may take a
        // while; override changes need not wait for it).
        let store = Arc::clone(&self.store);
        super::on_store(move || store.reclaim()).await?;
        self.sweeps.fetch_add(1, Relaxed);
        self.events_expired.fetch_add(sweep.events, Relaxed);
        self.bytes_expired.fetch_add(sweep.bytes, Relaxed);
        if sweep.events > 0 || sweep.bins > 0 {
            tracing::info!(
                events = sweep.events,
                bytes = sweep.bytes,
                bins = sweep.bins,
                types_removed = sweep.types_removed,
                "retention: expired old events"
            );
        }
        error.map_or(Ok(sweep), Err)
    }
}

/// One sweep over every type of every service. A type that fails is
/// logged and skipped (the others are still swept); the first error is
/// returned beside what was done.
fn sweep(
    store: &dyn EventStore,
    invalidator: &Invalidator,
    policy: &Policy,
    now: i64,
) -> (Sweep, Option<StoreError>) {
    let mut out = Sweep::default();
    let mut first_error = None;
    let tenants = match store.tenants() {
        Ok(t) => t,
        Err(e) => return (out, Some(e)),
    };
    for tenant in tenants {
        let types = match store.types(&tenant) {
            Ok(t) => t,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        for event_type in types {
            let Some(before) = policy.horizon(&tenant, &event_type).0.before(now) else {
                continue;
            };
            let r = store
                .expire(&tenant, &event_type, before)
                .and_then(|expired| {
                    // Every bin that starts before the cutoff summarised expired events.
                    let bins_before = if expired.type_removed {
                        i64::MAX
                    } else {
                        expired.cutoff
                    };
                    let bins = invalidator.expire_bins(&tenant, &event_type, bins_before)?;
                    Ok((expired, bins))
                });
            match r {
                Ok((expired, bins)) => {
                    out.bins += bins;
                    if expired.events > 0 || expired.bytes > 0 {
                        out.types_expired += 1;
                    }
                    out.events += expired.events;
                    out.bytes += expired.bytes;
                    out.types_removed += u64::from(expired.type_removed);
                }
                Err(e) => {
                    tracing::error!(error = %e, service = tenant.display_name(), event_type, "expiring old events failed; the other types are still swept");
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    (out, first_error)
}
