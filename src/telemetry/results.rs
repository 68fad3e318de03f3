//! Module results: each run of the server (a [`Run`]) has a unique id (the
//! `session_id` of its documents, as the module results API calls a run); each module keeps the statistics that matter for
//! it; at an interval the current results are written to the store as results
//! documents `{id, session_id, module_name, createdAt, metrics: [{metric, value}]}`.
//!
//! The counters are atomics updated on the request paths; reading them is a
//! snapshot (each figure exact, the set not taken under one lock). Documents
//! are stored as events of type `results` in the `cubed-system` tenant, a
//! name no `Fiware-Service` header can give (a `-` is not allowed), so no
//! tenant sees them except through `/1.0/results`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{Value, json};

use crate::model::{NewEvent, Tenant, time};

pub use crate::model::retention::{RESULTS_TYPE, SYSTEM_SERVICE};

pub fn system_tenant() -> Tenant {
    Tenant::from_key(SYSTEM_SERVICE)
}

/// A running mean: total and count.
#[derive(Debug, Default)]
pub struct Mean {
    total_micros: AtomicU64,
    count: AtomicU64,
}

impl Mean {
    pub fn record(&self, elapsed: std::time::Duration) {
        self.total_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Mean milliseconds (0 with no samples).
    pub fn ms(&self) -> f64 {
        let n = self.count.load(Relaxed);
        if n == 0 {
            0.0
        } else {
            self.total_micros.load(Relaxed) as f64 / n as f64 / 1000.0
        }
    }
}

fn get(c: &AtomicU64) -> f64 {
    c.load(Relaxed) as f64
}

/// The collector: what clients sent.
#[derive(Debug, Default)]
pub struct CollectorStats {
    pub events_accepted: AtomicU64,
    pub events_rejected: AtomicU64,
    pub batches_accepted: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub bytes_received: AtomicU64,
    pub put_latency: Mean,
}

impl CollectorStats {
    /// Counts a refused batch and the invalid events it named.
    pub fn rejected(&self, events: usize) {
        self.batches_rejected.fetch_add(1, Relaxed);
        self.events_rejected.fetch_add(events as u64, Relaxed);
    }

    fn results(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("events_accepted", get(&self.events_accepted)),
            ("events_rejected", get(&self.events_rejected)),
            ("batches_accepted", get(&self.batches_accepted)),
            ("batches_rejected", get(&self.batches_rejected)),
            ("bytes_received", get(&self.bytes_received)),
            ("average_put_latency_ms", self.put_latency.ms()),
        ]
    }
}

/// The evaluator: queries and the metric cache.
#[derive(Debug, Default)]
pub struct EvaluatorStats {
    pub metric_requests: AtomicU64,
    pub metric_errors: AtomicU64,
    pub event_requests: AtomicU64,
    pub bins_returned: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub bins_computed: AtomicU64,
    /// Hour and day bins merged from cached finer bins (pyramids), not
    /// computed from events.
    pub bins_merged: AtomicU64,
    pub metric_latency: Mean,
    /// Scans waiting for a turn (`--max-computations`), now.
    pub computations_waiting: AtomicU64,
    /// Scans running, now (not reported; its peak is).
    pub computations_running: AtomicU64,
    /// The most scans that ran at once.
    pub computations_peak: AtomicU64,
    /// Bins of metric requests being evaluated now (`--max-bins-in-flight`).
    pub bins_in_flight: AtomicU64,
}

impl EvaluatorStats {
    fn results(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("metric_requests", get(&self.metric_requests)),
            ("metric_errors", get(&self.metric_errors)),
            ("event_requests", get(&self.event_requests)),
            ("bins_returned", get(&self.bins_returned)),
            ("cache_hits", get(&self.cache_hits)),
            ("cache_misses", get(&self.cache_misses)),
            ("bins_computed", get(&self.bins_computed)),
            ("bins_merged", get(&self.bins_merged)),
            ("computations_waiting", get(&self.computations_waiting)),
            ("computations_peak", get(&self.computations_peak)),
            ("bins_in_flight", get(&self.bins_in_flight)),
            ("average_metric_latency_ms", self.metric_latency.ms()),
        ]
    }
}

/// What tells the bytes the process's allocator holds for it (set by a
/// binary built with the `heap-gauge` feature; see [`set_heap_probe`]).
static HEAP_PROBE: std::sync::OnceLock<fn() -> usize> = std::sync::OnceLock::new();

/// Makes the store module's results carry `heap_bytes`, read from `probe`.
pub fn set_heap_probe(probe: fn() -> usize) {
    let _ = HEAP_PROBE.set(probe);
}

/// The store: writes.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub puts: AtomicU64,
    pub events_written: AtomicU64,
    pub events_replaced: AtomicU64,
    pub put_errors: AtomicU64,
    pub write_latency: Mean,
    /// Bytes in the engine's in-memory tables, when last sampled.
    pub memtable_bytes: AtomicU64,
    /// Bytes in the engine's block cache, when last sampled.
    pub block_cache_bytes: AtomicU64,
}

impl StoreStats {
    fn results(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("puts", get(&self.puts)),
            ("events_written", get(&self.events_written)),
            ("events_replaced", get(&self.events_replaced)),
            ("put_errors", get(&self.put_errors)),
            ("average_write_latency_ms", self.write_latency.ms()),
            ("memtable_bytes", get(&self.memtable_bytes)),
            ("block_cache_bytes", get(&self.block_cache_bytes)),
        ];
        if let Some(probe) = HEAP_PROBE.get() {
            out.push(("heap_bytes", probe() as f64));
        }
        out
    }
}

/// WebSockets of both listeners.
#[derive(Debug, Default)]
pub struct WebsocketStats {
    pub sockets_opened: AtomicU64,
    pub sockets_closed: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_rejected: AtomicU64,
    /// Bytes of answers queued for evaluator WebSockets, when last sampled.
    pub queued_bytes: AtomicU64,
}

impl WebsocketStats {
    fn results(&self) -> Vec<(&'static str, f64)> {
        let opened = self.sockets_opened.load(Relaxed);
        let closed = self.sockets_closed.load(Relaxed);
        vec![
            ("open_sockets", opened.saturating_sub(closed) as f64),
            ("sockets_opened", opened as f64),
            ("messages_received", get(&self.messages_received)),
            ("messages_sent", get(&self.messages_sent)),
            ("messages_rejected", get(&self.messages_rejected)),
            ("queued_bytes", get(&self.queued_bytes)),
        ]
    }

    /// Counts a socket as open until the guard is dropped.
    pub fn open(&self) -> SocketGuard<'_> {
        self.sockets_opened.fetch_add(1, Relaxed);
        SocketGuard(self)
    }
}

pub struct SocketGuard<'a>(&'a WebsocketStats);

impl Drop for SocketGuard<'_> {
    fn drop(&mut self) {
        self.0.sockets_closed.fetch_add(1, Relaxed);
    }
}

/// One run of the server and its modules' statistics.
#[derive(Debug)]
pub struct Run {
    pub id: String,
    pub collector: CollectorStats,
    pub evaluator: EvaluatorStats,
    pub store: StoreStats,
    pub websocket: WebsocketStats,
}

/// The module names, in the order results are listed.
pub const MODULES: [&str; 4] = ["collector", "evaluator", "store", "websocket"];

impl Run {
    /// A run with a fresh random id (UUID v4).
    pub fn new() -> Self {
        Run::with_id(uuid::Uuid::new_v4().to_string())
    }

    pub fn with_id(id: String) -> Self {
        Run {
            id,
            collector: CollectorStats::default(),
            evaluator: EvaluatorStats::default(),
            store: StoreStats::default(),
            websocket: WebsocketStats::default(),
        }
    }

    /// Every module's current figures.
    pub fn results(&self) -> Vec<(&'static str, Vec<(&'static str, f64)>)> {
        vec![
            (MODULES[0], self.collector.results()),
            (MODULES[1], self.evaluator.results()),
            (MODULES[2], self.store.results()),
            (MODULES[3], self.websocket.results()),
        ]
    }

    /// The current results of every module as documents without an `id`
    /// (they are not saved): the status answer.
    pub fn status(&self, now: i64) -> Value {
        Value::Array(
            self.results()
                .into_iter()
                .map(|(module, metrics)| document(None, &self.id, module, now, &metrics))
                .collect(),
        )
    }

    /// The results documents of this moment, as events ready to store;
    /// `seq` makes their ids unique within the run.
    pub fn documents(&self, now: i64, seq: u64) -> Vec<NewEvent<'static>> {
        self.results()
            .into_iter()
            .map(|(module, metrics)| {
                let id = format!("{}-{seq}-{module}", self.id);
                let doc = document(Some(&id), &self.id, module, now, &metrics);
                NewEvent::owned(
                    RESULTS_TYPE.to_owned(),
                    now,
                    doc.to_string(),
                    Some(Value::String(id).to_string()),
                )
            })
            .collect()
    }
}

impl Default for Run {
    fn default() -> Self {
        Run::new()
    }
}

/// A results document: `{id, session_id, module_name, createdAt, metrics: [{metric, value}]}`
/// (`id` left out when `None`).
pub fn document(
    id: Option<&str>,
    session_id: &str,
    module: &str,
    created_at: i64,
    metrics: &[(&'static str, f64)],
) -> Value {
    let metrics: Vec<Value> = metrics
        .iter()
        .map(|(m, v)| json!({ "metric": m, "value": crate::model::js::number_json(*v) }))
        .collect();
    let mut doc = serde_json::Map::new();
    if let Some(id) = id {
        doc.insert("id".into(), json!(id));
    }
    doc.insert("session_id".into(), json!(session_id));
    doc.insert("module_name".into(), json!(module));
    doc.insert("createdAt".into(), json!(time::format_iso(created_at)));
    doc.insert("metrics".into(), Value::Array(metrics));
    Value::Object(doc)
}

/// A session id or module name as a results query may name them: 1–64
/// characters of letters, digits, `-` and `_`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_have_the_seed_shape() {
        let s = Run::with_id("0xdeadbeefff".into());
        s.collector.events_accepted.fetch_add(50, Relaxed);
        s.collector
            .put_latency
            .record(std::time::Duration::from_millis(300));
        let docs = s.documents(1_392_176_091_000, 7);
        assert_eq!(docs.len(), 4);
        let doc: Value = serde_json::from_str(&docs[0].data.json()).expect("json");
        let keys: Vec<&String> = doc.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            ["id", "session_id", "module_name", "createdAt", "metrics"]
        );
        assert_eq!(doc["id"], json!("0xdeadbeefff-7-collector"));
        assert_eq!(doc["session_id"], json!("0xdeadbeefff"));
        assert_eq!(doc["module_name"], json!("collector"));
        assert_eq!(doc["createdAt"], json!("2014-02-12T03:34:51.000Z"));
        assert_eq!(
            doc["metrics"][0],
            json!({"metric": "events_accepted", "value": 50})
        );
        let latency = doc["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|x| x["metric"] == "average_put_latency_ms"))
            .expect("latency");
        assert_eq!(latency["value"], json!(300));
        let status = s.status(0);
        assert_eq!(status.as_array().map(Vec::len), Some(4));
        assert!(status[0].get("id").is_none());
    }

    #[test]
    fn open_sockets_counts_live_guards() {
        let w = WebsocketStats::default();
        let a = w.open();
        let b = w.open();
        drop(a);
        assert_eq!(w.results()[0], ("open_sockets", 1.0));
        drop(b);
        assert_eq!(w.results()[0], ("open_sockets", 0.0));
        assert_eq!(w.results()[1], ("sockets_opened", 2.0));
    }

    #[test]
    fn names() {
        assert!(valid_name("550e8400-e29b-41d4-a716-446655440000"));
        assert!(!valid_name(""));
        assert!(!valid_name("a\"b"));
    }
}
