//! The collector: stores validated events and reports what changed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::ingest::collectd::{self, CollectdError, DeriveState};
use crate::ingest::cube_json::{MessageError, parse_message};
use crate::ingest::emetrics::{self, EmetricsError};
use crate::ingest::{parse_event_batch, session_api};
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
    /// The body of an e-metrics put is not a valid dump; nothing was stored.
    #[error("e-metrics: {0}")]
    Emetrics(EmetricsError),
    /// The body of a session API call is not what it expects; nothing was stored.
    #[error("{0}")]
    Session(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a session API call logs: `POST /api/sessions/{id}/metrics` or `…/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLog {
    Metric,
    Event,
}

/// One message of a WebSocket put, as transport received it.
#[derive(Debug)]
pub enum Incoming {
    /// A text message's bytes (one event's JSON object).
    Text(bytes::Bytes),
    /// A message transport could not take (its length in bytes, and why).
    Refused(u64, Refusal),
}

/// Why a WebSocket put message was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A binary message.
    NotText,
    /// A text message that is not UTF-8.
    NotUtf8,
    /// The socket failed while receiving it.
    Receive(String),
    /// Not a valid event.
    Invalid(MessageError),
}

/// Every put counts its body in the collector's `bytes_received` and a
/// refused body in `batches_rejected`/`events_rejected` (with the events
/// named as invalid), so that transport counts nothing by hand.
pub struct Collector {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    /// collectd derive state per tenant.
    derive: Mutex<std::collections::HashMap<Tenant, DeriveState>>,
    listeners: Mutex<Vec<PutListener>>,
    run: Arc<Run>,
    /// Refuses events older than their type's retention.
    retention: Arc<super::Retention>,
}

impl Collector {
    pub fn new(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        run: Arc<Run>,
        retention: Arc<super::Retention>,
    ) -> Self {
        Collector {
            store,
            clock,
            derive: Mutex::default(),
            listeners: Mutex::default(),
            run,
            retention,
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
        self.retention
            .check(tenant, &events)
            .map_err(CollectorError::Batch)?;
        let started = std::time::Instant::now();
        let n = events.len() as u64;
        let store = Arc::clone(&self.store);
        let tenant = tenant.clone();
        let run = Arc::clone(&self.run);
        let listeners = lock(&self.listeners).clone();
        let outcome = tokio::task::spawn_blocking(move || {
            store_events(&*store, &run, &listeners, &tenant, &events)
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
        self.received(body.len());
        let started = std::time::Instant::now();
        let now = self.now_ms();
        let store = Arc::clone(&self.store);
        let tenant = tenant.clone();
        let run = Arc::clone(&self.run);
        let listeners = lock(&self.listeners).clone();
        let retention = Arc::clone(&self.retention);
        let (n, outcome) = tokio::task::spawn_blocking(move || {
            let events = parse_event_batch(&body, now).map_err(CollectorError::Batch)?;
            if events.is_empty() {
                return Ok((0, PutOutcome::default()));
            }
            retention
                .check(&tenant, &events)
                .map_err(CollectorError::Batch)?;
            let outcome = store_events(&*store, &run, &listeners, &tenant, &events)?;
            Ok::<_, CollectorError>((events.len() as u64, outcome))
        })
        .await
        .map_err(|e| CollectorError::Internal(e.to_string()))?
        .inspect_err(|e| {
            if let CollectorError::Batch(e) = e {
                self.run.collector.rejected(match e {
                    BatchError::Invalid(bad) => bad.len(),
                    _ => 0,
                })
            }
        })?;
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
        let tenant = tenant.clone();
        let listeners = lock(&self.listeners).clone();
        tokio::task::spawn_blocking(move || put_and_notify(&*store, &listeners, &tenant, &events))
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

    /// Counts a put's body.
    fn received(&self, bytes: usize) {
        let c = &self.run.collector;
        c.bytes_received.fetch_add(bytes as u64, Relaxed);
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
        self.received(body.len());
        let events = {
            let mut states = lock(&self.derive);
            let state = states.entry(tenant.clone()).or_default();
            collectd::convert(body, self.now_ms(), state).map_err(CollectorError::Collectd)?
        };
        let n = events.len();
        self.put(tenant, events).await?;
        Ok(n)
    }

    /// A WebSocket put: messages that arrived together, each one event.
    /// Those that are not are refused one by one; the others are stored in
    /// one put. Gives each message's length and refusal, in order, and the
    /// put's outcome. As for a batch body, the messages are parsed (in one
    /// pass each) on the blocking pool with the store's work, and the events
    /// borrow their text from the messages until stored.
    pub async fn put_messages(
        &self,
        tenant: &Tenant,
        messages: Vec<Incoming>,
    ) -> (
        Vec<(u64, Option<Refusal>)>,
        Result<PutOutcome, CollectorError>,
    ) {
        let started = std::time::Instant::now();
        let now = self.now_ms();
        let store = Arc::clone(&self.store);
        let owned = tenant.clone();
        let run = Arc::clone(&self.run);
        let listeners = lock(&self.listeners).clone();
        let retention = Arc::clone(&self.retention);
        // Each message's length, for the answer if the blocking task fails.
        let lengths: Vec<u64> = messages
            .iter()
            .map(|m| match m {
                Incoming::Text(bytes) => bytes.len() as u64,
                Incoming::Refused(len, _) => *len,
            })
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            // Each message's length and refusal, in order; the texts apart,
            // with the place of their answer, so that events can borrow them.
            let mut received = Vec::with_capacity(messages.len());
            let mut texts = Vec::with_capacity(messages.len());
            for m in messages {
                match m {
                    Incoming::Text(bytes) => {
                        received.push((bytes.len() as u64, None));
                        texts.push((received.len() - 1, bytes));
                    }
                    Incoming::Refused(len, why) => received.push((len, Some(why))),
                }
            }
            let mut events = Vec::with_capacity(texts.len());
            for (slot, bytes) in &texts {
                let parsed = match std::str::from_utf8(bytes) {
                    Ok(text) => parse_message(text, now).map_err(Refusal::Invalid),
                    Err(_) => Err(Refusal::NotUtf8),
                };
                match parsed {
                    Ok(e) => events.push(e),
                    Err(r) => received[*slot].1 = Some(r),
                }
            }
            let n = events.len() as u64;
            let stored = if events.is_empty() {
                Ok(PutOutcome::default())
            } else {
                retention
                    .check(&owned, &events)
                    .map_err(CollectorError::Batch)
                    .and_then(|()| {
                        store_events(&*store, &run, &listeners, &owned, &events)
                            .map_err(CollectorError::from)
                    })
            };
            (received, n, stored)
        })
        .await;
        let (received, n, stored) = match joined {
            Ok(r) => r,
            Err(e) => {
                let received = lengths.into_iter().map(|len| (len, None)).collect();
                return (received, Err(CollectorError::Internal(e.to_string())));
            }
        };
        let c = &self.run.collector;
        let refused = received.iter().filter(|r| r.1.is_some()).count();
        c.events_rejected.fetch_add(refused as u64, Relaxed);
        c.bytes_received
            .fetch_add(received.iter().map(|r| r.0).sum(), Relaxed);
        if n > 0 && stored.is_ok() {
            self.acknowledged(n, started);
        }
        (received, stored)
    }

    /// Converts and stores an e-metrics dump; the number of events stored.
    pub async fn put_emetrics(
        &self,
        tenant: &Tenant,
        body: &[u8],
    ) -> Result<usize, CollectorError> {
        self.received(body.len());
        let events = emetrics::convert(body, self.now_ms()).map_err(|e| {
            self.run.collector.rejected(match &e {
                EmetricsError::Invalid(bad) => bad.len(),
                _ => 0,
            });
            CollectorError::Emetrics(e)
        })?;
        let n = events.len();
        self.put(tenant, events).await?;
        Ok(n)
    }

    /// Converts and stores one session API call of session `session`.
    pub async fn put_session(
        &self,
        tenant: &Tenant,
        session: &str,
        log: SessionLog,
        body: &[u8],
    ) -> Result<(), CollectorError> {
        self.received(body.len());
        let convert = match log {
            SessionLog::Metric => session_api::metric,
            SessionLog::Event => session_api::event,
        };
        let event = convert(session, body, self.now_ms()).map_err(|e| {
            self.run.collector.rejected(1);
            CollectorError::Session(e)
        })?;
        self.put(tenant, vec![event]).await?;
        Ok(())
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
