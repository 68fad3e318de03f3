//! The collector: stores validated events and reports what changed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::model::{Clock, NewEvent, Service};
use crate::storage::{EventStore, PutOutcome, StoreError};

use super::collectd::{self, CollectdError, DeriveState};
use super::results::Session;

/// Called after every acknowledged put (the evaluator's cache invalidation hooks in here).
pub type PutListener = Arc<dyn Fn(&Service, &PutOutcome) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("collectd: {}", .0.iter().map(|e| format!("value list {}: {}", e.index, e.reason)).collect::<Vec<_>>().join("; "))]
    Collectd(Vec<CollectdError>),
    #[error("internal error: {0}")]
    Internal(String),
}

pub struct Collector {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    /// collectd derive state per service.
    derive: Mutex<std::collections::HashMap<Service, DeriveState>>,
    listeners: Mutex<Vec<PutListener>>,
    session: Arc<Session>,
}

impl Collector {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>, session: Arc<Session>) -> Self {
        Collector {
            store,
            clock,
            derive: Mutex::default(),
            listeners: Mutex::default(),
            session,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Registers a hook run after each acknowledged put.
    pub fn on_put(&self, listener: PutListener) {
        if let Ok(mut l) = self.listeners.lock() {
            l.push(listener);
        }
    }

    /// Stores a validated batch; returns once it is durable.
    pub async fn put(
        &self,
        service: &Service,
        events: Vec<NewEvent>,
    ) -> Result<PutOutcome, CollectorError> {
        if events.is_empty() {
            return Ok(PutOutcome::default());
        }
        let started = std::time::Instant::now();
        let n = events.len() as u64;
        let store = Arc::clone(&self.store);
        let svc = service.clone();
        let session = Arc::clone(&self.session);
        let outcome = tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            let r = store.put(&svc, &events);
            let s = &session.store;
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
        })
        .await
        .map_err(|e| CollectorError::Internal(e.to_string()))??;
        let c = &self.session.collector;
        c.events_accepted.fetch_add(n, Relaxed);
        c.batches_accepted.fetch_add(1, Relaxed);
        c.put_latency.record(started.elapsed());
        let listeners = self.listeners.lock().map(|l| l.clone()).unwrap_or_default();
        for l in listeners {
            l(service, &outcome);
        }
        Ok(outcome)
    }

    /// Converts and stores a collectd `write_http` JSON body.
    pub async fn put_collectd(
        &self,
        service: &Service,
        body: &[u8],
    ) -> Result<usize, CollectorError> {
        let events = {
            let mut states = self
                .derive
                .lock()
                .map_err(|e| CollectorError::Internal(e.to_string()))?;
            let state = states.entry(service.clone()).or_default();
            collectd::convert(body, self.now_ms(), state).map_err(CollectorError::Collectd)?
        };
        let n = events.len();
        self.put(service, events).await?;
        Ok(n)
    }
}
