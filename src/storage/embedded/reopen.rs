//! The embedded store, reopened in place after its engine fails.
//!
//! After a failed journal write (the disk filled up past the reserve, an IO
//! error), fjall refuses every later write ("poisoned") so as not to lose
//! what it acknowledged; its advice is to restart and let recovery replay
//! the journal. [`Reopening`] does that restart for the store alone: the
//! write that failed answers [`StoreError::Failed`]; once the disk has room
//! again and no call is using the failed instance, it is closed and the
//! store opened again from disk (the journal replayed, dirty marks
//! recovered, exactly as at start-up), so writes resume without restarting
//! Cubed. Until then the failed instance serves reads and refuses writes.
//!
//! A write that failed may still be in the journal (its tail can reach the
//! disk when the failed instance is closed): like a put in flight at a
//! crash, it was not acknowledged, and it may or may not be there after the
//! reopen. Clients that retry with ids store it once.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::EmbeddedStore;
use crate::model::{NewEvent, StoredEvent, Tenant};
use crate::storage::{
    CachedBin, CachedGroups, DirtyMark, EventStore, Expired, MetricCache, PutOutcome,
    RetentionOverride, Selected, Selection, StoreError, TypeStats,
};
use crate::sync::lock;

/// Opens the store (again).
pub type Opener = Box<dyn Fn() -> Result<EmbeddedStore, StoreError> + Send + Sync>;

/// Fewest time between the end of one reopen attempt and the next.
const RETRY: Duration = Duration::from_secs(1);

pub struct Reopening {
    /// The open instance; `None` only after a reopen attempt could not open one.
    current: RwLock<Option<Arc<EmbeddedStore>>>,
    open: Opener,
    /// The current instance failed a write: it serves reads (its writes fail
    /// at once) until it is replaced.
    failed: AtomicBool,
    /// When the last reopen attempt ended.
    last_attempt: Mutex<Option<Instant>>,
}

impl Reopening {
    /// Opens the store with `open`, which is called again for each reopen.
    pub fn new(open: Opener) -> Result<Self, StoreError> {
        let store = open()?;
        Ok(Reopening {
            current: RwLock::new(Some(Arc::new(store))),
            open,
            failed: AtomicBool::new(false),
            last_attempt: Mutex::new(None),
        })
    }

    fn current(&self) -> Option<Arc<EmbeddedStore>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Arc::clone)
    }

    /// The instance to use (trying to open one if there is none).
    fn store(&self) -> Result<Arc<EmbeddedStore>, StoreError> {
        if let Some(s) = self.current() {
            return Ok(s);
        }
        self.try_reopen();
        self.current()
            .ok_or_else(|| StoreError::Failed("the store could not be reopened yet".into()))
    }

    /// One call on the current instance; a failed write marks it failed.
    /// After the call (its instance released), a failed instance is
    /// replaced if it can be.
    fn call<T>(
        &self,
        call: impl FnOnce(&EmbeddedStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let r = {
            let store = self.store()?;
            call(&store)
        };
        if let Err(StoreError::Failed(reason)) = &r
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            tracing::error!(%reason, "storage engine failed a write; the store will be reopened");
        }
        if self.failed.load(Ordering::Relaxed) {
            self.try_reopen();
        }
        r
    }

    /// Replaces a failed instance: only when no call is using it (the
    /// engine's files stay locked while it is alive; nobody waits for
    /// that) and only when the disk has room again (until then the failed
    /// instance keeps serving reads). At most one attempt a second.
    fn try_reopen(&self) {
        {
            let last = lock(&self.last_attempt);
            if last.is_some_and(|t| t.elapsed() < RETRY) {
                return;
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let ready = match current.as_ref() {
            Some(s) => {
                self.failed.load(Ordering::Relaxed)
                    && Arc::strong_count(s) == 1
                    && s.has_room_to_reopen()
            }
            None => true,
        };
        if ready {
            drop(current.take());
            match (self.open)() {
                Ok(store) => {
                    tracing::info!("store reopened");
                    *current = Some(Arc::new(store));
                    self.failed.store(false, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "reopening the store failed; retrying"),
            }
        }
        drop(current);
        *lock(&self.last_attempt) = Some(Instant::now());
    }
}

impl EventStore for Reopening {
    fn put(&self, tenant: &Tenant, events: &[NewEvent<'_>]) -> Result<PutOutcome, StoreError> {
        self.call(|s| EventStore::put(s, tenant, events))
    }

    fn scan(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        order: crate::storage::Order,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.call(|s| s.scan(tenant, event_type, start, stop, order, visit))
    }

    fn scan_data(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        visit: &mut dyn FnMut(i64, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.call(|s| s.scan_data(tenant, event_type, start, stop, visit))
    }

    fn select(
        &self,
        tenant: &Tenant,
        selection: &Selection<'_>,
        visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.call(|s| s.select(tenant, selection, visit))
    }

    fn types(&self, tenant: &Tenant) -> Result<Vec<String>, StoreError> {
        self.call(|s| s.types(tenant))
    }

    fn has_type(&self, tenant: &Tenant, event_type: &str) -> Result<bool, StoreError> {
        self.call(|s| s.has_type(tenant, event_type))
    }

    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.call(|s| s.tenants())
    }

    fn expire(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<Expired, StoreError> {
        self.call(|s| s.expire(tenant, event_type, before))
    }

    fn reclaim(&self) -> Result<(), StoreError> {
        self.call(|s| s.reclaim())
    }

    fn stats(&self, tenant: &Tenant) -> Result<Vec<TypeStats>, StoreError> {
        self.call(|s| s.stats(tenant))
    }

    fn retention_overrides(&self) -> Result<Vec<RetentionOverride>, StoreError> {
        self.call(|s| s.retention_overrides())
    }

    fn set_retention_override(
        &self,
        tenant: &Tenant,
        event_type: Option<&str>,
        horizon: Option<&str>,
    ) -> Result<(), StoreError> {
        self.call(|s| s.set_retention_override(tenant, event_type, horizon))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.call(|s| s.flush())
    }

    fn memory(&self) -> crate::storage::StoreMemory {
        self.call(|s| Ok(EventStore::memory(s))).unwrap_or_default()
    }
}

impl MetricCache for Reopening {
    fn get(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
    ) -> Result<Vec<CachedBin>, StoreError> {
        self.call(|s| MetricCache::get(s, tenant, event_type, source, tier, start, stop))
    }

    fn put(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
    ) -> Result<(), StoreError> {
        self.call(|s| MetricCache::put(s, tenant, event_type, source, tier, bins))
    }

    fn get_grouped(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
    ) -> Result<Vec<CachedGroups>, StoreError> {
        self.call(|s| MetricCache::get_grouped(s, tenant, event_type, source, tier, start, stop))
    }

    fn put_grouped(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedGroups],
    ) -> Result<(), StoreError> {
        self.call(|s| MetricCache::put_grouped(s, tenant, event_type, source, tier, bins))
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.call(MetricCache::clear)
    }

    fn clear_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.call(|s| s.clear_tenant(tenant))
    }

    fn expire_bins(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<u64, StoreError> {
        self.call(|s| s.expire_bins(tenant, event_type, before))
    }

    fn invalidate(
        &self,
        tenant: &Tenant,
        event_type: &str,
        tiers: &[i64],
        times: &[i64],
        marks: &[DirtyMark],
    ) -> Result<(), StoreError> {
        self.call(|s| s.invalidate(tenant, event_type, tiers, times, marks))
    }
}
