//! The collector: stores validated events and reports what changed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::ingest::collectd::{self, CollectdError, DeriveState};
use crate::ingest::parse_event_batch;
use crate::model::{BatchError, Clock, NewEvent, Tenant, validate_all};
use crate::storage::{EventStore, PutOutcome, StoreError};
use crate::sync::lock;

use crate::telemetry::results::Run;

/// Called after every put that wrote (the evaluator's cache invalidation
/// hooks in here), on the thread that wrote, before the acknowledgement.
pub type PutListener = Arc<dyn Fn(&Tenant, &PutOutcome) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The body of a put is not a valid batch; nothing was stored.
    #[error("invalid batch")]
    Batch(BatchError),
    #[error("collectd: {}", .0.iter().map(|e| format!("value list {}: {}", e.index, e.reason)).collect::<Vec<_>>().join("; "))]
    Collectd(Vec<CollectdError>),
    #[error("internal error: {0}")]
    Internal(String),
}

pub struct Collector {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    /// collectd derive state per tenant.
    derive: Mutex<std::collections::HashMap<Tenant, DeriveState>>,
    listeners: Mutex<Vec<PutListener>>,
    run: Arc<Run>,
}

impl Collector {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>, run: Arc<Run>) -> Self {
        Collector {
            store,
            clock,
            derive: Mutex::default(),
            listeners: Mutex::default(),
            run,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Registers a hook run after each acknowledged put.
    pub fn on_put(&self, listener: PutListener) {
        lock(&self.listeners).push(listener);
    }

    /// Checks every event against the limits of events (nothing is stored
    /// unless all pass: [`CollectorError::Batch`] names each one that does
    /// not), stores them, and returns once they are durable.
    pub async fn put(
        &self,
        tenant: &Tenant,
        events: Vec<NewEvent<'static>>,
    ) -> Result<PutOutcome, CollectorError> {
        let events = validate_all(events, NewEvent::checked).map_err(CollectorError::Batch)?;
        if events.is_empty() {
            return Ok(PutOutcome::default());
        }
        let started = std::time::Instant::now();
        let n = events.len() as u64;
        let store = Arc::clone(&self.store);
        let svc = tenant.clone();
        let run = Arc::clone(&self.run);
        let listeners = lock(&self.listeners).clone();
        let outcome = tokio::task::spawn_blocking(move || {
            store_events(&*store, &run, &listeners, &svc, &events)
        })
        .await
        .map_err(|e| CollectorError::Internal(e.to_string()))??;
        self.acknowledged(n, started);
        Ok(outcome)
    }

    /// Parses a put's body (a JSON array of events), validates every event
    /// and stores them all, or nothing if one is invalid; returns once they
    /// are durable. Parsing happens on the blocking pool with the store's
    /// work, and the events borrow their text from `body` until stored.
    pub async fn put_json(
        &self,
        tenant: &Tenant,
        body: bytes::Bytes,
    ) -> Result<PutOutcome, CollectorError> {
        let started = std::time::Instant::now();
        let now = self.now_ms();
        let store = Arc::clone(&self.store);
        let svc = tenant.clone();
        let run = Arc::clone(&self.run);
        let listeners = lock(&self.listeners).clone();
        let (n, outcome) = tokio::task::spawn_blocking(move || {
            let events = parse_event_batch(&body, now).map_err(CollectorError::Batch)?;
            if events.is_empty() {
                return Ok((0, PutOutcome::default()));
            }
            let outcome = store_events(&*store, &run, &listeners, &svc, &events)?;
            Ok::<_, CollectorError>((events.len() as u64, outcome))
        })
        .await
        .map_err(|e| CollectorError::Internal(e.to_string()))??;
        if n > 0 {
            self.acknowledged(n, started);
        }
        Ok(outcome)
    }

    /// Stores events Cubed writes itself (results documents): checked and
    /// stored like a put, their cached bins invalidated, but not counted
    /// as a client's put.
    pub async fn put_own(
        &self,
        tenant: &Tenant,
        events: Vec<NewEvent<'static>>,
    ) -> Result<PutOutcome, CollectorError> {
        let events = validate_all(events, NewEvent::checked).map_err(CollectorError::Batch)?;
        let store = Arc::clone(&self.store);
        let svc = tenant.clone();
        let listeners = lock(&self.listeners).clone();
        tokio::task::spawn_blocking(move || put_and_notify(&*store, &listeners, &svc, &events))
            .await
            .map_err(|e| CollectorError::Internal(e.to_string()))?
            .map_err(CollectorError::Store)
    }

    /// Makes everything acknowledged durable against power loss (clean
    /// shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let store = Arc::clone(&self.store);
        super::on_store(move || store.flush()).await
    }

    /// Counts an acknowledged put of `n` events.
    fn acknowledged(&self, n: u64, started: std::time::Instant) {
        let c = &self.run.collector;
        c.events_accepted.fetch_add(n, Relaxed);
        c.batches_accepted.fetch_add(1, Relaxed);
        c.put_latency.record(started.elapsed());
    }

    /// Converts and stores a collectd `write_http` JSON body.
    pub async fn put_collectd(
        &self,
        tenant: &Tenant,
        body: &[u8],
    ) -> Result<usize, CollectorError> {
        let events = {
            let mut states = lock(&self.derive);
            let state = states.entry(tenant.clone()).or_default();
            collectd::convert(body, self.now_ms(), state).map_err(CollectorError::Collectd)?
        };
        let n = events.len();
        self.put(tenant, events).await?;
        Ok(n)
    }
}

/// Stores events and runs the put hooks for what was written (also when
/// the sync that `--durability sync` promises failed after the write).
fn put_and_notify(
    store: &dyn EventStore,
    listeners: &[PutListener],
    tenant: &Tenant,
    events: &[NewEvent<'_>],
) -> Result<PutOutcome, StoreError> {
    let r = store.put(tenant, events);
    let written = match &r {
        Ok(outcome) => Some(outcome),
        Err(StoreError::NotSynced { outcome, .. }) => Some(&**outcome),
        Err(_) => None,
    };
    if let Some(outcome) = written {
        for l in listeners {
            l(tenant, outcome);
        }
    }
    r
}

/// Stores events on the calling thread (the blocking pool), counting the
/// store's work in the run's `store` module, and runs the put hooks
/// (the cache invalidation) right there: whatever happens to the request
/// that asked (its client may be gone), events that were written are
/// recorded for invalidation.
fn store_events(
    store: &dyn EventStore,
    run: &Run,
    listeners: &[PutListener],
    tenant: &Tenant,
    events: &[NewEvent<'_>],
) -> Result<PutOutcome, StoreError> {
    let t = std::time::Instant::now();
    let r = put_and_notify(store, listeners, tenant, events);
    let s = &run.store;
    s.write_latency.record(t.elapsed());
    match &r {
        Ok(o) => {
            s.puts.fetch_add(1, Relaxed);
            let written: usize = o.written.values().map(Vec::len).sum();
            s.events_written.fetch_add(written as u64, Relaxed);
            s.events_replaced
                .fetch_add(o.replaced.len() as u64, Relaxed);
        }
        Err(_) => {
            s.put_errors.fetch_add(1, Relaxed);
        }
    }
    r
}
