//! The collector: stores validated events and reports what changed.

use std::sync::{Arc, Mutex};

use crate::model::{Clock, NewEvent, Service};
use crate::storage::{EventStore, PutOutcome, StoreError};

use super::collectd::{self, CollectdError, DeriveState};

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
}

impl Collector {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Collector {
            store,
            clock,
            derive: Mutex::default(),
            listeners: Mutex::default(),
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
        let store = Arc::clone(&self.store);
        let svc = service.clone();
        let outcome = tokio::task::spawn_blocking(move || store.put(&svc, &events))
            .await
            .map_err(|e| CollectorError::Internal(e.to_string()))??;
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
