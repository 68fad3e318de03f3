//! cube_request and cube_compute events; a cached query computes nothing;
//! concurrent identical queries compute once.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, enc, get};
use cubed::model::SystemClock;
use cubed::server::Options;
use serde_json::{Value, json};

fn server(self_events: bool) -> TestServer {
    let options = Options {
        invalidation_interval: Duration::from_millis(20),
        self_events,
        ..Options::default()
    };
    TestServer::start_with_options(Arc::new(SystemClock), options)
}

/// event/get of `expr` until `pred` holds (bounded: 10 s).
fn events_until(s: &TestServer, expr: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = get(
            &s.evaluator_url(&format!("/1.0/event?expression={}", enc(expr))),
            None,
        );
        let v = v.as_array().cloned().unwrap_or_default();
        if pred(&v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn computes_of(s: &TestServer, source: &str) -> usize {
    // cube_compute events for one source, once every pending one is stored
    std::thread::sleep(Duration::from_millis(100));
    let expr = format!(
        "cube_compute(expression, ms).eq(expression, {})",
        serde_json::to_string(source).unwrap()
    );
    events_until(s, &expr, |_| true).len()
}

#[test]
fn requests_and_computations_are_recorded() {
    let s = server(true);
    s.put(&json!([{"type": "work", "time": 1000, "data": {"x": 1}}]));
    let url = s.evaluator_url(&format!(
        "/1.0/metric?expression={}&start=0&stop=60000&step=10000",
        enc("sum(work(x))")
    ));
    assert_eq!(get(&url, None).0, 200);
    let reqs = events_until(&s, "cube_request(path, method, ip)", |v| v.len() >= 2);
    let paths: Vec<&str> = reqs
        .iter()
        .filter_map(|e| e["data"]["path"].as_str())
        .collect();
    assert!(paths.contains(&"/1.0/event/put"), "{paths:?}");
    assert!(paths.contains(&"/1.0/metric"), "{paths:?}");
    assert!(reqs.iter().all(|e| e["data"]["ip"] == "127.0.0.1"));
    let computes = events_until(&s, "cube_compute(expression, ms)", |v| !v.is_empty());
    assert_eq!(computes[0]["data"]["expression"], "sum(work(x))");
    assert!(computes[0]["data"]["ms"].is_number());
    // the same query again is answered from the cache: nothing more is computed
    assert_eq!(get(&url, None).0, 200);
    assert_eq!(computes_of(&s, "sum(work(x))"), 1);
    // self events can be charted like any other type
    let (_, v) = get(&s.evaluator_url("/1.0/types"), None);
    assert!(v.as_array().unwrap().contains(&json!("cube_request")));
}

#[test]
fn concurrent_identical_queries_compute_once() {
    let s = server(true);
    let events: Vec<Value> = (0..20_000)
        .map(|i| json!({"type": "busy", "time": i * 4, "data": {"v": i}}))
        .collect();
    s.put(&Value::from(events));
    let url = s.evaluator_url(&format!(
        "/1.0/metric?expression={}&start=0&stop=86400000&step=60000",
        enc("median(busy(v))")
    ));
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| get(&url, None).1)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(answers[0][0]["value"], json!(7499.5));
    assert_eq!(computes_of(&s, "median(busy(v))"), 1);
}

#[test]
fn self_events_can_be_turned_off() {
    let s = server(false);
    let url = s.evaluator_url(&format!(
        "/1.0/metric?expression={}&start=0&stop=60000&step=10000",
        enc("sum(work)")
    ));
    assert_eq!(get(&url, None).0, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&s.evaluator_url("/1.0/types"), None).1, json!([]));
}
