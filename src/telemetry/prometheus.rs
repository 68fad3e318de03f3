//! `GET /metrics`: the figures of `/admin/metrics` and of every module's
//! results in the Prometheus text format, encoded by `prometheus-client`.
//! A registry is built from a snapshot at each scrape (nothing is reset).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::opmetrics::OpMetrics;
use super::results::Run;

type F64Gauge = Gauge<f64, AtomicU64>;
type Labeled = Family<Vec<(String, String)>, F64Gauge>;

/// Prometheus-style names of Orion's metrics.
const TRANSACTION_METRICS: [(&str, &str, &str); 9] = [
    (
        "incomingTransactions",
        "cubed_incoming_transactions",
        "Requests and WebSocket messages received, since the last reset of /admin/metrics",
    ),
    (
        "incomingTransactionRequestSize",
        "cubed_incoming_transaction_request_bytes",
        "Bytes received in incoming transactions",
    ),
    (
        "incomingTransactionResponseSize",
        "cubed_incoming_transaction_response_bytes",
        "Bytes answered to incoming transactions",
    ),
    (
        "incomingTransactionErrors",
        "cubed_incoming_transaction_errors",
        "Incoming transactions answered with an error",
    ),
    (
        "serviceTime",
        "cubed_service_time_seconds",
        "Mean time to serve an incoming transaction",
    ),
    (
        "outgoingTransactions",
        "cubed_outgoing_transactions",
        "Requests Cubed made",
    ),
    (
        "outgoingTransactionRequestSize",
        "cubed_outgoing_transaction_request_bytes",
        "Bytes sent in outgoing transactions",
    ),
    (
        "outgoingTransactionResponseSize",
        "cubed_outgoing_transaction_response_bytes",
        "Bytes received in answers to outgoing transactions",
    ),
    (
        "outgoingTransactionErrors",
        "cubed_outgoing_transaction_errors",
        "Outgoing transactions that failed",
    ),
];

/// The text exposition of this moment: every service's transactions, or
/// with `only` (a tree key) one service's; the server-wide module results
/// only with `modules`.
pub fn exposition(
    opmetrics: &OpMetrics,
    run: &Run,
    only: Option<&str>,
    with_modules: bool,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let table = match only {
        Some(service) => opmetrics.read_service(service, false),
        None => opmetrics.read(false),
    };
    for (i, (_, name, help)) in TRANSACTION_METRICS.iter().enumerate() {
        let family = Labeled::default();
        for ((tenant, subservice), counters) in &table {
            let labels = vec![
                ("service".to_owned(), tenant.clone()),
                ("subservice".to_owned(), subservice.clone()),
            ];
            family.get_or_create(&labels).set(counters.metrics()[i].1);
        }
        registry.register(*name, *help, family);
    }
    let modules = Labeled::default();
    let session_label = vec![("session_id".to_owned(), run.id.clone())];
    for (module, metrics) in run.results().into_iter().filter(|_| with_modules) {
        for (metric, value) in metrics {
            let labels = vec![
                ("module".to_owned(), module.to_owned()),
                ("metric".to_owned(), metric.to_owned()),
            ];
            modules.get_or_create(&labels).set(value);
        }
    }
    registry.register(
        "cubed_module_result",
        "Each module's current results, as in /1.0/status (module, metric)",
        modules,
    );
    let info = Labeled::default();
    info.get_or_create(&session_label).set(1.0);
    registry.register("cubed_session", "This run of the server", info);
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}
