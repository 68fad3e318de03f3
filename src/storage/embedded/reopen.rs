//! The embedded store, reopened in place after its engine fails.
//!
//! After a failed journal write (the disk filled up past the reserve, an IO
//! error), fjall refuses every later write ("poisoned") so as not to lose
//! what it acknowledged; its advice is to restart and let recovery replay
//! the journal. [`Reopening`] does that restart for the store alone: the
//! write that failed answers [`StoreError::Failed`], the failed instance is
//! closed once the calls using it are done, and the store is opened again
//! from disk — the journal replayed, dirty marks recovered, exactly as at
//! start-up — so writes resume as soon as the cause is gone, without
//! restarting Cubed. Reads keep working on the failed instance meanwhile.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::EmbeddedStore;
use crate::model::{NewEvent, StoredEvent, Tenant};
use crate::storage::{
    CachedBin, DirtyMark, EventStore, MetricCache, PutOutcome, Selected, Selection, StoreError,
};
use crate::sync::lock;

/// Opens the store (again).
pub type Opener = Box<dyn Fn() -> Result<EmbeddedStore, StoreError> + Send + Sync>;

/// How long a reopen waits for calls still using the failed instance.
const DRAIN: Duration = Duration::from_secs(10);
/// Fewest time between two reopen attempts.
const RETRY: Duration = Duration::from_secs(1);

pub struct Reopening {
    /// The open instance; `None` while none could be opened.
    current: RwLock<Option<Arc<EmbeddedStore>>>,
    open: Opener,
    last_attempt: Mutex<Option<Instant>>,
}

impl Reopening {
    /// Opens the store with `open`, which is called again for each reopen.
    pub fn new(open: Opener) -> Result<Self, StoreError> {
        let store = open()?;
        Ok(Reopening {
            current: RwLock::new(Some(Arc::new(store))),
            open,
            last_attempt: Mutex::new(None),
        })
    }

    /// The instance to use, reopening first if there is none.
    fn store(&self) -> Result<Arc<EmbeddedStore>, StoreError> {
        if let Some(s) = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Ok(Arc::clone(s));
        }
        self.reopen(None);
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Arc::clone)
            .ok_or_else(|| StoreError::Failed("the store could not be reopened yet".into()))
    }

    fn read<T>(
        &self,
        call: impl FnOnce(&EmbeddedStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        call(&*self.store()?)
    }

    /// A write: when the engine has failed, the instance is reopened for
    /// the next call (this one's error stands: nothing was acknowledged).
    fn write<T>(
        &self,
        call: impl FnOnce(&EmbeddedStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let store = self.store()?;
        let r = call(&store);
        if let Err(StoreError::Failed(reason)) = &r {
            tracing::error!(%reason, "storage engine failed; reopening the store");
            self.reopen(Some(store));
        }
        r
    }

    /// Closes `failed` (if it is still the current instance) once no call
    /// uses it, and opens the store again. At most one attempt per second.
    fn reopen(&self, failed: Option<Arc<EmbeddedStore>>) {
        {
            let mut last = lock(&self.last_attempt);
            if last.is_some_and(|t| t.elapsed() < RETRY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        match (&*current, &failed) {
            (Some(c), Some(f)) if !Arc::ptr_eq(c, f) => return, // reopened already
            (Some(_), None) => return,
            _ => {}
        }
        drop(failed);
        if let Some(old) = current.take() {
            // New calls wait on the lock; calls in flight finish first (the
            // engine's files stay locked while an instance is alive).
            let deadline = Instant::now() + DRAIN;
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if Arc::strong_count(&old) > 1 {
                tracing::warn!("store still in use; reopening later");
                *current = Some(old);
                return;
            }
            drop(old);
        }
        match (self.open)() {
            Ok(store) => {
                tracing::info!("store reopened");
                *current = Some(Arc::new(store));
            }
            Err(e) => {
                tracing::error!(error = %e, "reopening the store failed; retrying on the next call")
            }
        }
    }
}

impl EventStore for Reopening {
    fn put(&self, tenant: &Tenant, events: &[NewEvent<'_>]) -> Result<PutOutcome, StoreError> {
        self.write(|s| EventStore::put(s, tenant, events))
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
        self.read(|s| s.scan(tenant, event_type, start, stop, order, visit))
    }

    fn scan_data(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        visit: &mut dyn FnMut(i64, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.read(|s| s.scan_data(tenant, event_type, start, stop, visit))
    }

    fn select(
        &self,
        tenant: &Tenant,
        selection: &Selection<'_>,
        visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.read(|s| s.select(tenant, selection, visit))
    }

    fn types(&self, tenant: &Tenant) -> Result<Vec<String>, StoreError> {
        self.read(|s| s.types(tenant))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.write(|s| s.flush())
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
        self.read(|s| MetricCache::get(s, tenant, event_type, source, tier, start, stop))
    }

    fn put(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
    ) -> Result<(), StoreError> {
        self.write(|s| MetricCache::put(s, tenant, event_type, source, tier, bins))
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.write(MetricCache::clear)
    }

    fn clear_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.write(|s| s.clear_tenant(tenant))
    }

    fn invalidate(
        &self,
        tenant: &Tenant,
        event_type: &str,
        tiers: &[i64],
        times: &[i64],
        marks: &[DirtyMark],
    ) -> Result<(), StoreError> {
        self.write(|s| s.invalidate(tenant, event_type, tiers, times, marks))
    }
}
