//! Self-reporting and the neighbouring systems, over real sockets:
//! Orion-style `/admin/metrics` (tree, reset, get-and-reset under concurrent
//! load, WebSocket messages, `--disable-metrics`), per-session module results
//! (`/1.0/status` over HTTP and WebSocket, results documents at the
//! interval, `/1.0/results`), a Prometheus scrape read by a real parser.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, agent, get};
use cubed::model::SystemClock;
use cubed::server::Options;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn server(options: Options) -> TestServer {
    TestServer::start_with_options(
        Arc::new(SystemClock),
        Options {
            self_events: false,
            ..options
        },
    )
}

/// (status, request body bytes, response body bytes) of a request with
/// Orion's headers.
fn call(
    method: &str,
    url: &str,
    body: Option<&str>,
    tenant: Option<&str>,
    path: Option<&str>,
) -> (u16, u64, u64) {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(s) = tenant {
        req = req.header("fiware-service", s);
    }
    if let Some(p) = path {
        req = req.header("fiware-servicepath", p);
    }
    let a = agent();
    let mut resp = match body {
        Some(b) => a
            .run(
                req.header("content-type", "application/json")
                    .body(b.to_owned())
                    .expect("request"),
            )
            .expect("send"),
        None => a.run(req.body(()).expect("request")).expect("send"),
    };
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_vec().expect("body");
    (
        status,
        body.map_or(0, |b| b.len() as u64),
        text.len() as u64,
    )
}

fn metrics(s: &TestServer, reset: bool) -> Value {
    let q = if reset { "?reset=true" } else { "" };
    let (status, tree) = get(&s.evaluator_url(&format!("/admin/metrics{q}")), None);
    assert_eq!(status, 200, "{tree}");
    tree
}

#[test]
fn admin_metrics_tree_follows_orion() {
    let s = server(Options::default());
    let put = s.collector_url("/1.0/event/put");
    let events = r#"[{"type": "visit", "time": 1000, "data": {"n": 1}}]"#;
    // (tenant, path) -> what the tree must show
    let mut sent = Vec::new();
    sent.push(call(
        "POST",
        &put,
        Some(events),
        Some("city"),
        Some("/gardens"),
    ));
    sent.push(call(
        "POST",
        &put,
        Some(events),
        Some("city"),
        Some("/gardens"),
    ));
    let bad = call(
        "POST",
        &put,
        Some("[{\"type\": 5}]"),
        Some("city"),
        Some("/gardens"),
    );
    assert_eq!(bad.0, 400);
    sent.push(bad);
    let types = |tenant, path| call("GET", &s.evaluator_url("/1.0/types"), None, tenant, path);
    let list = types(Some("city"), Some("/parks, /gardens"));
    let recursive = types(Some("city"), Some("/parks/#"));
    let nested = types(Some("city"), Some("/parks/north"));
    let root = types(None, Some("/"));
    let none = types(None, None);
    // Left out: an invalid tenant, an invalid path.
    assert_eq!(types(Some("Bad-Service"), None).0, 400);
    types(Some("city"), Some("no-slash"));

    let tree = metrics(&s, false);
    let gardens = &tree["services"]["city"]["subservs"]["gardens"];
    assert_eq!(gardens["incomingTransactions"], json!(3));
    assert_eq!(gardens["incomingTransactionErrors"], json!(1));
    assert_eq!(
        gardens["incomingTransactionRequestSize"],
        json!(sent.iter().map(|c| c.1).sum::<u64>())
    );
    assert_eq!(
        gardens["incomingTransactionResponseSize"],
        json!(sent.iter().map(|c| c.2).sum::<u64>())
    );
    assert!(
        gardens["serviceTime"]
            .as_f64()
            .is_some_and(|t| t > 0.0 && t < 5.0)
    );
    for k in [
        "outgoingTransactions",
        "outgoingTransactionRequestSize",
        "outgoingTransactionResponseSize",
        "outgoingTransactionErrors",
    ] {
        assert_eq!(gardens[k], json!(0), "{k}");
    }
    let parks = &tree["services"]["city"]["subservs"]["parks"];
    assert_eq!(
        parks["incomingTransactions"],
        json!(2),
        "a list counts for its first path, /A/# for A"
    );
    assert_eq!(
        parks["incomingTransactionResponseSize"],
        json!(list.2 + recursive.2)
    );
    assert_eq!(
        tree["services"]["city"]["subservs"]["parks/north"]["incomingTransactions"],
        json!(1)
    );
    assert_eq!(nested.0, 200);
    let city_sum = &tree["services"]["city"]["sum"];
    assert_eq!(city_sum["incomingTransactions"], json!(6));
    assert_eq!(city_sum["incomingTransactionErrors"], json!(1));
    let default = &tree["services"]["default-service"]["subservs"]["root-subserv"];
    assert_eq!(default["incomingTransactions"], json!(2));
    assert_eq!(
        default["incomingTransactionResponseSize"],
        json!(root.2 + none.2)
    );
    assert_eq!(
        tree["services"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["city".to_owned(), "default-service".to_owned()]),
        "invalid services and paths are left out"
    );
    assert_eq!(tree["sum"]["incomingTransactions"], json!(8));

    // The read above is itself a transaction of the default tenant.
    let again = metrics(&s, false);
    assert_eq!(
        again["services"]["default-service"]["subservs"]["root-subserv"]["incomingTransactions"],
        json!(3)
    );

    // DELETE resets.
    let (status, _, _) = call(
        "DELETE",
        &s.collector_url("/admin/metrics"),
        None,
        None,
        None,
    );
    assert_eq!(status, 204);
    let after = metrics(&s, false);
    assert_eq!(
        after["services"].as_object().map(|m| m.len()),
        Some(1),
        "only the DELETE itself: {after}"
    );
    assert_eq!(after["sum"]["incomingTransactions"], json!(1));
}

#[test]
fn get_and_reset_loses_and_doubles_nothing_under_concurrent_load() {
    let s = server(Options::default());
    let (threads, each) = (4, 150);
    let url = s.evaluator_url("/1.0/types");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut seen = 0u64;
    let mut reads = 0;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    for _ in 0..each {
                        assert_eq!(call("GET", &url, None, Some("load"), Some("/w")).0, 200);
                    }
                })
            })
            .collect();
        let done2 = Arc::clone(&done);
        scope.spawn(move || {
            for w in workers {
                w.join().expect("worker");
            }
            done2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let tree = metrics(&s, true);
            seen += tree["services"]["load"]["subservs"]["w"]["incomingTransactions"]
                .as_u64()
                .unwrap_or(0);
            reads += 1;
        }
    });
    let last = metrics(&s, true);
    seen += last["services"]["load"]["subservs"]["w"]["incomingTransactions"]
        .as_u64()
        .unwrap_or(0);
    assert!(reads > 1, "the resets ran during the load");
    assert_eq!(
        seen,
        threads * each,
        "every transaction counted exactly once over {reads} resets"
    );
}

#[test]
fn websocket_messages_are_transactions_and_disable_metrics_gathers_nothing() {
    let s = server(Options::default());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut req = format!("ws://{}/1.0/metric/get", s.evaluator)
            .into_client_request()
            .expect("request");
        req.headers_mut().insert("fiware-service", "city".parse().expect("header"));
        req.headers_mut()
            .insert("fiware-servicepath", "/dash".parse().expect("header"));
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("connect");
        let mut request_bytes = 0;
        for i in 0..3 {
            let m = json!({"expression": "sum(visit)", "start": 0, "stop": 30000, "step": 10000, "id": i}).to_string();
            request_bytes += m.len();
            ws.send(Message::text(m)).await.expect("send");
        }
        let bad = "not json";
        request_bytes += bad.len();
        ws.send(Message::text(bad)).await.expect("send");
        // 3 bins + end marker per request, and the error.
        let mut got = 0;
        let mut response_bytes = 0;
        while got < 13 {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    got += 1;
                    response_bytes += t.len();
                }
                other => panic!("no answer: {other:?}"),
            }
        }
        // Transactions are recorded once answered; give the tasks a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let tree = metrics(&s, false);
            let dash = &tree["services"]["city"]["subservs"]["dash"];
            if dash["incomingTransactions"] == json!(4) {
                assert_eq!(dash["incomingTransactionErrors"], json!(1));
                assert_eq!(dash["incomingTransactionRequestSize"], json!(request_bytes));
                assert_eq!(dash["incomingTransactionResponseSize"], json!(response_bytes));
                break;
            }
            assert!(Instant::now() < deadline, "{tree}");
            std::thread::sleep(Duration::from_millis(50));
        }

        // WebSocket put: each message is a transaction, a refused one an error.
        let mut req = format!("ws://{}/1.0/event/put", s.collector)
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("fiware-servicepath", "/sensors".parse().expect("header"));
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("connect");
        let messages = [
            json!({"type": "reading", "data": {"v": 1}}).to_string(),
            json!({"type": "reading", "data": {"v": 2}}).to_string(),
            json!({"type": "X", "data": {}}).to_string(),
        ];
        for m in &messages {
            ws.send(Message::text(m.clone())).await.expect("send");
        }
        let error = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
            other => panic!("no error answer: {other:?}"),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let tree = metrics(&s, false);
            let sensors = &tree["services"]["default-service"]["subservs"]["sensors"];
            if sensors["incomingTransactions"] == json!(3) {
                assert_eq!(sensors["incomingTransactionErrors"], json!(1));
                assert_eq!(
                    sensors["incomingTransactionRequestSize"],
                    json!(messages.iter().map(String::len).sum::<usize>())
                );
                assert_eq!(sensors["incomingTransactionResponseSize"], json!(error.len()));
                break;
            }
            assert!(Instant::now() < deadline, "{tree}");
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    let off = server(Options {
        metrics: false,
        ..Options::default()
    });
    off.put(&json!([{"type": "visit", "data": {}}]));
    metrics(&off, false);
    assert_eq!(metrics(&off, false), json!({"services": {}, "sum": {}}));
}

#[test]
fn module_results_status_documents_and_prometheus() {
    let s = server(Options {
        results_interval: Duration::from_millis(200),
        ..Options::default()
    });
    s.put(&json!([
        {"type": "visit", "time": 1000, "data": {"n": 1}},
        {"type": "visit", "time": 2000, "data": {"n": 2}},
        {"type": "visit", "time": 3000, "data": {"n": 3}},
    ]));
    let (status, _) = common::post(&s.collector_url("/1.0/event/put"), r#"[{"type": 1}]"#, None);
    assert_eq!(status, 400);
    let (status, bins) = get(
        &s.evaluator_url("/1.0/metric?expression=sum(visit)&start=0&stop=10000&step=10000"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(bins[0]["value"], json!(3));

    // Status: every module's current figures.
    let (status, current) = get(&s.evaluator_url("/1.0/status"), None);
    assert_eq!(status, 200);
    let modules: Vec<&str> = current
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["module_name"].as_str())
        .collect();
    assert_eq!(modules, ["collector", "evaluator", "store", "websocket"]);
    let session = current[0]["session_id"]
        .as_str()
        .expect("session")
        .to_owned();
    let figure = |doc: &Value, metric: &str| -> f64 {
        doc["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|x| x["metric"] == metric))
            .and_then(|x| x["value"].as_f64())
            .unwrap_or(f64::NAN)
    };
    assert_eq!(figure(&current[0], "events_accepted"), 3.0);
    assert_eq!(figure(&current[0], "events_rejected"), 1.0);
    assert_eq!(figure(&current[0], "batches_rejected"), 1.0);
    assert_eq!(figure(&current[1], "metric_requests"), 1.0);
    assert_eq!(figure(&current[1], "bins_returned"), 1.0);
    assert_eq!(figure(&current[1], "cache_misses"), 1.0);
    assert_eq!(figure(&current[2], "events_written"), 3.0);
    // The gauges of what is held now: the events just put sit in the
    // engine's memtables; no bins are being evaluated, nothing is queued.
    assert!(figure(&current[2], "memtable_bytes") > 0.0, "{current}");
    assert!(figure(&current[2], "block_cache_bytes") >= 0.0, "{current}");
    assert_eq!(figure(&current[1], "bins_in_flight"), 0.0);
    assert_eq!(figure(&current[3], "queued_bytes"), 0.0);

    // The same bins again come from the cache.
    get(
        &s.evaluator_url("/1.0/metric?expression=sum(visit)&start=0&stop=10000&step=10000"),
        None,
    );

    // Results documents appear at the interval, in the seed's shape.
    let url = s.evaluator_url(&format!(
        "/1.0/results?session_id={session}&module_name=evaluator"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let docs = loop {
        let (status, docs) = get(&url, None);
        assert_eq!(status, 200, "{docs}");
        if docs
            .as_array()
            .is_some_and(|d| d.len() >= 2 && figure(&d[d.len() - 1], "cache_hits") >= 1.0)
        {
            break docs;
        }
        assert!(Instant::now() < deadline, "no results documents: {docs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let docs = docs.as_array().expect("array");
    for d in docs {
        let keys: Vec<&String> = d.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            ["id", "session_id", "module_name", "createdAt", "metrics"]
        );
        assert_eq!(d["session_id"], json!(session));
        assert_eq!(d["module_name"], json!("evaluator"));
        assert!(d["metrics"].as_array().is_some_and(|m| m.iter().all(|x| {
            x.as_object().is_some_and(|o| o.len() == 2)
                && x["metric"].is_string()
                && x["value"].is_number()
        })));
    }
    let created: Vec<&str> = docs
        .iter()
        .filter_map(|d| d["createdAt"].as_str())
        .collect();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(created, sorted, "oldest first");
    let ids: std::collections::HashSet<&str> =
        docs.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids.len(), docs.len(), "ids are unique");
    let (_, all) = get(
        &s.collector_url(&format!("/1.0/results?session_id={session}")),
        None,
    );
    let all_modules: std::collections::BTreeSet<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["module_name"].as_str())
        .collect();
    assert_eq!(all_modules.len(), 4);
    let (_, other) = get(
        &s.evaluator_url("/1.0/results?session_id=someone-else"),
        None,
    );
    assert_eq!(other, json!([]));
    let (status, err) = get(&s.evaluator_url("/1.0/results"), None);
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid session_id"))
    );

    // Status over WebSocket: one answer per request message.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/1.0/status", s.collector))
                .await
                .expect("connect");
        for _ in 0..2 {
            ws.send(Message::text("{}")).await.expect("send");
        }
        for _ in 0..2 {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("answer in time");
            let Some(Ok(Message::Text(t))) = msg else {
                panic!("no answer: {msg:?}")
            };
            let v: Value = serde_json::from_str(&t).expect("json");
            assert_eq!(v.as_array().map(Vec::len), Some(4));
            assert_eq!(v[3]["module_name"], json!("websocket"));
            assert!(figure(&v[3], "open_sockets") >= 1.0);
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
        assert!(extra.is_err(), "exactly one answer per message: {extra:?}");
    });

    // Prometheus: the same figures, read by a real exposition parser.
    let mut resp = agent()
        .get(&s.evaluator_url("/metrics"))
        .call()
        .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.body_mut().read_to_string().expect("body");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("a valid exposition");
    let sample = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        sample(
            "cubed_module_result",
            &[("module", "collector"), ("metric", "events_accepted")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample("cubed_session", &[("session_id", session.as_str())]),
        Some(1.0)
    );
    let tree = metrics(&s, false);
    let put_count = tree["services"]["default-service"]["subservs"]["root-subserv"]["incomingTransactionErrors"]
        .as_f64()
        .expect("errors");
    assert_eq!(
        sample(
            "cubed_incoming_transaction_errors",
            &[
                ("service", "default-service"),
                ("subservice", "root-subserv")
            ]
        ),
        Some(put_count)
    );
    assert!(scrape.docs.contains_key("cubed_incoming_transactions"));
}
