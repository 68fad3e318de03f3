//! Operational metrics in the style of FIWARE Orion's `/admin/metrics`:
//! transactions counted per tenant and subservice (`Fiware-Service`,
//! `Fiware-ServicePath`), readable as Orion's tree, resettable atomically.
//!
//! A transaction is one HTTP request answered by either listener, or one
//! message received on a WebSocket. "Outgoing" transactions are requests
//! Cubed itself makes; it makes none yet, so those stay zero.
//!
//! Pure bookkeeping: no IO, no async. One mutex guards the whole table so
//! that "read and reset" is atomic: a transaction recorded concurrently is
//! counted either in the answer or after the reset, never twice or not at all.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use crate::model::Tenant;
use crate::sync::lock;

/// The tenant key of requests without `Fiware-Service`.
pub const DEFAULT_SERVICE: &str = "default-service";
/// The subservice key of `/` (and of requests without `Fiware-ServicePath`).
pub const ROOT_SUBSERV: &str = "root-subserv";

// Longest level of a service path (`Fiware-ServicePath`), most levels, most paths in a list (Orion's limits).
use crate::limits::{
    MAX_SUBSERVICE_LEVEL_BYTES as MAX_LEVEL_LEN, MAX_SUBSERVICE_LEVELS as MAX_LEVELS,
    MAX_SUBSERVICE_PATHS as MAX_PATHS,
};

/// The tree key of a `Fiware-Service` header: `None` if the name is invalid
/// (such requests are left out, as Orion does).
pub fn service_key(header: Option<&str>) -> Option<String> {
    match Tenant::from_header(header) {
        Ok(s) if s.key().is_empty() => Some(DEFAULT_SERVICE.to_owned()),
        Ok(s) => Some(s.key().to_owned()),
        Err(_) => None,
    }
}

/// The tree key of a `Fiware-ServicePath` header, Orion's way: without the
/// leading slash; `/` (or no header) is `root-subserv`; a list `/A, /B`
/// counts for `A`; a recursive `/A/#` for `A`. `None` if the path is invalid.
pub fn subservice_key(header: Option<&str>) -> Option<String> {
    let Some(header) = header else {
        return Some(ROOT_SUBSERV.to_owned());
    };
    let paths: Vec<&str> = header.split(',').map(str::trim).collect();
    if paths.len() > MAX_PATHS {
        return None;
    }
    let mut first = None;
    for p in &paths {
        let key = one_path(p)?;
        first.get_or_insert(key);
    }
    first
}

fn one_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let rest = rest
        .strip_suffix("/#")
        .or_else(|| rest.strip_suffix('#'))
        .unwrap_or(rest);
    if rest.is_empty() {
        return Some(ROOT_SUBSERV.to_owned());
    }
    let levels: Vec<&str> = rest.split('/').collect();
    if levels.len() > MAX_LEVELS {
        return None;
    }
    let ok = levels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= MAX_LEVEL_LEN
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    ok.then(|| rest.to_owned())
}

/// The figures of one subservice (or a sum of them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub incoming_transactions: u64,
    pub incoming_request_bytes: u64,
    pub incoming_response_bytes: u64,
    pub incoming_errors: u64,
    /// Total seconds spent serving incoming transactions.
    pub incoming_seconds: f64,
    pub outgoing_transactions: u64,
    pub outgoing_request_bytes: u64,
    pub outgoing_response_bytes: u64,
    pub outgoing_errors: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.incoming_transactions += o.incoming_transactions;
        self.incoming_request_bytes += o.incoming_request_bytes;
        self.incoming_response_bytes += o.incoming_response_bytes;
        self.incoming_errors += o.incoming_errors;
        self.incoming_seconds += o.incoming_seconds;
        self.outgoing_transactions += o.outgoing_transactions;
        self.outgoing_request_bytes += o.outgoing_request_bytes;
        self.outgoing_response_bytes += o.outgoing_response_bytes;
        self.outgoing_errors += o.outgoing_errors;
    }

    /// Mean seconds per incoming transaction (0 when there were none).
    pub fn service_time(&self) -> f64 {
        if self.incoming_transactions == 0 {
            0.0
        } else {
            self.incoming_seconds / self.incoming_transactions as f64
        }
    }

    /// `(Orion's metric name, value)` in Orion's order.
    pub fn metrics(&self) -> [(&'static str, f64); 9] {
        [
            ("incomingTransactions", self.incoming_transactions as f64),
            (
                "incomingTransactionRequestSize",
                self.incoming_request_bytes as f64,
            ),
            (
                "incomingTransactionResponseSize",
                self.incoming_response_bytes as f64,
            ),
            ("incomingTransactionErrors", self.incoming_errors as f64),
            ("serviceTime", self.service_time()),
            ("outgoingTransactions", self.outgoing_transactions as f64),
            (
                "outgoingTransactionRequestSize",
                self.outgoing_request_bytes as f64,
            ),
            (
                "outgoingTransactionResponseSize",
                self.outgoing_response_bytes as f64,
            ),
            ("outgoingTransactionErrors", self.outgoing_errors as f64),
        ]
    }

    fn json(&self) -> Value {
        let mut m = Map::new();
        for (name, v) in self.metrics() {
            let v = if name == "serviceTime" {
                json!(v)
            } else {
                json!(v as u64)
            };
            m.insert(name.to_owned(), v);
        }
        Value::Object(m)
    }
}

/// One incoming transaction.
#[derive(Debug, Clone, Copy)]
pub struct Transaction {
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub error: bool,
    pub seconds: f64,
}

/// `(tenant key, subservice key) -> figures`, as of the last reset.
pub type Table = BTreeMap<(String, String), Counters>;

/// The gathered transactions of both listeners.
pub struct OpMetrics {
    enabled: bool,
    table: Mutex<Table>,
}

impl OpMetrics {
    pub fn new(enabled: bool) -> Self {
        OpMetrics {
            enabled,
            table: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts one incoming transaction for the request's headers (left out if
    /// either names an invalid tenant or path, or gathering is off).
    pub fn incoming(&self, tenant: Option<&str>, path: Option<&str>, t: Transaction) {
        self.incoming_all(tenant, path, &[t]);
    }

    /// Counts several transactions of one request's headers (a batch of
    /// WebSocket messages) under one lock.
    pub fn incoming_all(&self, tenant: Option<&str>, path: Option<&str>, all: &[Transaction]) {
        if !self.enabled || all.is_empty() {
            return;
        }
        let (Some(s), Some(p)) = (service_key(tenant), subservice_key(path)) else {
            return;
        };
        let mut table = lock(&self.table);
        let key = (s, p);
        // Made-up services and subservice paths cannot grow the table
        // without end: past the cap, new rows are not made (the rows
        // there go on counting) until a reset empties it.
        if !table.contains_key(&key) && table.len() >= crate::limits::MAX_OPMETRICS_ROWS {
            return;
        }
        let c = table.entry(key).or_default();
        for t in all {
            c.incoming_transactions += 1;
            c.incoming_request_bytes += t.request_bytes;
            c.incoming_response_bytes += t.response_bytes;
            c.incoming_errors += u64::from(t.error);
            c.incoming_seconds += t.seconds;
        }
    }

    /// A copy of the table; with `reset`, the table is emptied in the same
    /// critical section.
    pub fn read(&self, reset: bool) -> Table {
        let mut table = lock(&self.table);
        if reset {
            std::mem::take(&mut *table)
        } else {
            table.clone()
        }
    }

    pub fn reset(&self) {
        self.read(true);
    }

    /// A copy of one service's rows (`service` a tree key, as
    /// [`service_key`] gives); with `reset`, only those rows are emptied.
    pub fn read_service(&self, service: &str, reset: bool) -> Table {
        let mut table = lock(&self.table);
        let ours: Table = table
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(k, c)| (k.clone(), *c))
            .collect();
        if reset {
            table.retain(|(s, _), _| s != service);
        }
        ours
    }
}

/// Orion's tree: `{"services": {S: {"subservs": {P: {...}}, "sum": {...}}}, "sum": {...}}`.
/// With nothing gathered yet, `{"services": {}, "sum": {}}`.
pub fn tree(table: &Table) -> Value {
    let mut services: BTreeMap<&str, (Map<String, Value>, Counters)> = BTreeMap::new();
    let mut total = Counters::default();
    for ((s, p), c) in table {
        let entry = services.entry(s.as_str()).or_default();
        entry.0.insert(p.clone(), c.json());
        entry.1.add(c);
        total.add(c);
    }
    let mut out = Map::new();
    for (s, (subservs, sum)) in services {
        out.insert(
            s.to_owned(),
            json!({ "subservs": Value::Object(subservs), "sum": sum.json() }),
        );
    }
    let sum = if table.is_empty() {
        json!({})
    } else {
        total.json()
    };
    json!({ "services": Value::Object(out), "sum": sum })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A successful transaction of one byte each way, served at once.
    fn small() -> Transaction {
        Transaction {
            request_bytes: 1,
            response_bytes: 1,
            error: false,
            seconds: 0.0,
        }
    }

    #[test]
    fn made_up_services_cannot_grow_the_table_past_its_cap() {
        let m = OpMetrics::new(true);
        let t = small();
        let cap = crate::limits::MAX_OPMETRICS_ROWS;
        for i in 0..cap + 50 {
            m.incoming(Some(&format!("flood_{i}")), None, t);
        }
        let table = m.read(false);
        assert_eq!(table.len(), cap);
        // A row already there goes on counting; a new one is not made.
        m.incoming(Some("flood_0"), None, t);
        m.incoming(Some("flood_new"), None, t);
        let table = m.read(true);
        let first = ("flood_0".to_owned(), "root-subserv".to_owned());
        assert_eq!(table[&first].incoming_transactions, 2);
        assert!(!table.keys().any(|(s, _)| s == "flood_new"));
        // After a reset, rows are made again.
        m.incoming(Some("flood_new"), None, t);
        assert_eq!(m.read(false).len(), 1);
    }

    #[test]
    fn service_keys() {
        assert_eq!(service_key(None).as_deref(), Some("default-service"));
        assert_eq!(
            service_key(Some("smart_city")).as_deref(),
            Some("smart_city")
        );
        assert_eq!(service_key(Some("Bad-Name")), None);
        assert_eq!(service_key(Some("")), None);
    }

    #[test]
    fn subservice_keys_follow_orion() {
        let k = |h: Option<&str>| subservice_key(h);
        assert_eq!(k(None).as_deref(), Some("root-subserv"));
        assert_eq!(k(Some("/")).as_deref(), Some("root-subserv"));
        assert_eq!(k(Some("/gardens")).as_deref(), Some("gardens"));
        assert_eq!(k(Some("/gardens/north")).as_deref(), Some("gardens/north"));
        assert_eq!(k(Some("/A, /B")).as_deref(), Some("A"));
        assert_eq!(k(Some("/A/#")).as_deref(), Some("A"));
        assert_eq!(k(Some("/#")).as_deref(), Some("root-subserv"));
        assert_eq!(k(Some("gardens")), None, "must start with /");
        assert_eq!(k(Some("/a-b")), None, "only alphanumerics and _");
        assert_eq!(k(Some("/a//b")), None);
        assert_eq!(k(Some("/A, B")), None, "every path of a list is checked");
        assert_eq!(k(Some(&format!("/{}", "x".repeat(51)))), None);
        assert_eq!(k(Some(&"/x".repeat(11))), None);
    }

    #[test]
    fn tree_sums_and_mean_service_time() {
        let m = OpMetrics::new(true);
        let t = |req, resp, error, seconds| Transaction {
            request_bytes: req,
            response_bytes: resp,
            error,
            seconds,
        };
        m.incoming(Some("s1"), Some("/a"), t(10, 100, false, 0.5));
        m.incoming(Some("s1"), Some("/a"), t(20, 200, true, 1.5));
        m.incoming(Some("s1"), Some("/b, /c"), t(1, 2, false, 1.0));
        m.incoming(None, None, t(5, 5, false, 2.0));
        m.incoming(Some("BAD"), None, t(5, 5, false, 2.0));
        m.incoming(Some("s1"), Some("bad"), t(5, 5, false, 2.0));
        let tree = tree(&m.read(false));
        let a = &tree["services"]["s1"]["subservs"]["a"];
        assert_eq!(a["incomingTransactions"], json!(2));
        assert_eq!(a["incomingTransactionRequestSize"], json!(30));
        assert_eq!(a["incomingTransactionResponseSize"], json!(300));
        assert_eq!(a["incomingTransactionErrors"], json!(1));
        assert_eq!(a["serviceTime"], json!(1.0));
        assert_eq!(a["outgoingTransactions"], json!(0));
        assert_eq!(
            tree["services"]["s1"]["subservs"]["b"]["incomingTransactions"],
            json!(1)
        );
        let s1 = &tree["services"]["s1"]["sum"];
        assert_eq!(s1["incomingTransactions"], json!(3));
        assert_eq!(s1["serviceTime"], json!(1.0));
        assert_eq!(
            tree["services"]["default-service"]["subservs"]["root-subserv"]["incomingTransactions"],
            json!(1)
        );
        assert_eq!(tree["sum"]["incomingTransactions"], json!(4));
        assert_eq!(tree["sum"]["serviceTime"], json!(1.25));
        assert_eq!(tree["services"].as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn read_and_reset_is_atomic_and_disabled_gathers_nothing() {
        let m = OpMetrics::new(true);
        let t = small();
        m.incoming(None, None, t);
        assert_eq!(m.read(true).len(), 1);
        assert!(m.read(false).is_empty());
        assert_eq!(tree(&m.read(false)), json!({"services": {}, "sum": {}}));
        let off = OpMetrics::new(false);
        off.incoming(None, None, t);
        assert!(off.read(false).is_empty());
    }
}
