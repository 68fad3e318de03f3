//! The Prometheus HTTP API subset (`/api/v1/…` on the evaluator listener):
//! its answers equal `/1.0/metric`'s bins at every tier, computed exactly
//! for steps that are whole numbers of a tier, in Prometheus's exact JSON
//! shapes; read by a real Prometheus client, `promtool` (Debian's
//! `prometheus` package, which `.ci/run` installs).

mod common;

use std::collections::BTreeMap;

use common::{TestServer, agent, enc, get};
use serde_json::{Value, json};

/// 2012-04-16T16:00:00Z.
const BASE: i64 = 1_334_592_000_000;
const PATHS: [&str; 3] = ["/a", "/b", "/login"];

/// 700 events every 11 s from BASE (2 h 8 min), three paths, durations
/// 0..16, and a `host` on every other one.
fn put_events(s: &TestServer) {
    let events: Vec<Value> = (0..700)
        .map(|i| {
            let mut data = json!({"path": PATHS[i % 3], "duration": (i * 7) % 17});
            if i % 2 == 0 {
                data["host"] = json!(format!("web{}", i % 4));
            }
            json!({"type": "request", "time": BASE + i as i64 * 11_000, "data": data})
        })
        .collect();
    s.put(&Value::from(events));
}

fn prom(s: &TestServer, path: &str) -> (u16, Value) {
    get(&s.evaluator_url(path), None)
}

/// `/1.0/metric`'s bins of [BASE, BASE + 2 h): time (ms) -> value
/// (`None`: no value; NaN: null).
fn cube(s: &TestServer, expr: &str, step: i64) -> BTreeMap<i64, Option<f64>> {
    let url = s.evaluator_url(&format!(
        "/1.0/metric?expression={}&start={BASE}&stop={}&step={step}",
        enc(expr),
        BASE + 7_200_000
    ));
    let (status, body) = get(&url, None);
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .expect("array")
        .iter()
        .map(|b| {
            let t = cubed::model::time::parse_iso(b["time"].as_str().expect("time")).expect("iso");
            let v = match b.get("value") {
                None => None,
                Some(Value::Null) => Some(f64::NAN),
                Some(v) => v.as_f64(),
            };
            (t, v)
        })
        .collect()
}

/// A matrix's series: labels -> (time ms -> value).
fn series(body: &Value) -> BTreeMap<String, BTreeMap<i64, f64>> {
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    body["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
                    let v: f64 = p[1]
                        .as_str()
                        .expect("a string value")
                        .parse()
                        .expect("number");
                    (t, v)
                })
                .collect();
            (s["metric"].to_string(), points)
        })
        .collect()
}

fn range(s: &TestServer, expr: &str, step: &str) -> Value {
    let (status, body) = prom(
        s,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={step}",
            enc(expr),
            BASE / 1000,
            (BASE + 7_200_000) / 1000 - 1
        ),
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

#[test]
fn query_range_equals_cube_metric_at_every_tier() {
    let s = TestServer::start();
    put_events(&s);
    for expr in [
        "sum(request)",
        "sum(request(duration).eq(path, '/login'))",
        "max(request(duration))",
        "median(request(duration))",
        "distinct(request(host))",
        "sum(request(duration)) / count(request)",
        "min(request(duration).eq(path, '/nowhere'))",
    ] {
        for (step, secs) in [
            (10_000, "10"),
            (60_000, "1m"),
            (300_000, "5m"),
            (3_600_000, "1h"),
        ] {
            let want = cube(&s, expr, step);
            // Computed, then cached: the same figures.
            for pass in ["computed", "cached"] {
                let got = series(&range(&s, expr, secs));
                let label = json!({"expression": expr}).to_string();
                let defined = want.values().filter(|v| v.is_some()).count();
                if defined == 0 {
                    assert!(got.is_empty(), "{expr} at {step}: {got:?}");
                    continue;
                }
                assert_eq!(got.len(), 1, "{expr} at {step} ({pass}): {got:?}");
                let points = &got[&label];
                assert_eq!(points.len(), defined, "{expr} at {step} ({pass})");
                for (t, v) in &want {
                    match v {
                        None => assert!(!points.contains_key(t), "{expr} at {t}: no value in Cube"),
                        Some(v) => assert!(
                            points.get(t).is_some_and(|p| same(*p, *v)),
                            "{expr} step {step} at {t} ({pass}): {:?} against Cube's {v}",
                            points.get(t)
                        ),
                    }
                }
            }
        }
    }
}

#[test]
fn steps_that_are_not_tiers() {
    let s = TestServer::start();
    put_events(&s);
    // 2 minutes of a pyramidal expression: exactly two 1-minute bins each.
    let expr = "sum(request(duration)) - max(request(duration).eq(path, '/a'))";
    let (sum, max) = (
        cube(&s, "sum(request(duration))", 60_000),
        cube(&s, "max(request(duration).eq(path, '/a'))", 60_000),
    );
    let got = series(&range(&s, expr, "2m"));
    let points = got.values().next().expect("a series");
    assert_eq!(points.len(), 60, "{points:?}");
    for (&t, &v) in points {
        assert_eq!((t - BASE) % 120_000, 0, "points every 2 minutes");
        let s2 = sum[&t].unwrap_or(0.0) + sum[&(t + 60_000)].unwrap_or(0.0);
        let m2 = [max[&t], max[&(t + 60_000)]]
            .into_iter()
            .flatten()
            .fold(f64::NAN, f64::max);
        assert!(same(v, s2 - m2), "at {t}: {v} against {s2} - {m2}");
    }
    // 90 s of a sum: nine 10-second bins.
    let tens = cube(&s, "sum(request)", 10_000);
    let got = series(&range(&s, "sum(request)", "90s"));
    for (&t, &v) in got.values().next().expect("a series") {
        let want: f64 = (0..9).map(|i| tens[&(t + i * 10_000)].unwrap_or(0.0)).sum();
        assert!(same(v, want), "at {t}: {v} against {want}");
    }
    // A median at 2 minutes cannot be merged: answered at 1 minute.
    let want = cube(&s, "median(request(duration))", 60_000);
    let got = series(&range(&s, "median(request(duration))", "120"));
    let points = got.values().next().expect("a series");
    assert_eq!(points.len(), want.values().filter(|v| v.is_some()).count());
    for (t, v) in points {
        assert!(same(*v, want[t].expect("a value")), "at {t}");
    }
    // 15 s is no multiple of a tier: answered at 10 s.
    let got = series(&range(&s, "sum(request)", "15s"));
    let points = got.values().next().expect("a series");
    assert_eq!(points.len(), 720);
    assert!(
        points
            .iter()
            .all(|(t, v)| same(*v, tens[t].unwrap_or(f64::NAN)))
    );
}

#[test]
fn grouped_expressions_give_one_series_per_group() {
    let s = TestServer::start();
    put_events(&s);
    let expr = "sum(request(duration)).group(path)";
    let url = s.evaluator_url(&format!(
        "/1.0/metric?expression={}&start={BASE}&stop={}&step=300000",
        enc(expr),
        BASE + 7_200_000
    ));
    let (status, rows) = get(&url, None);
    assert_eq!(status, 200, "{rows}");
    let got = series(&range(&s, expr, "5m"));
    assert_eq!(got.len(), 3, "{got:?}");
    let mut compared = 0;
    for row in rows.as_array().expect("rows") {
        let t = cubed::model::time::parse_iso(row["time"].as_str().unwrap()).unwrap();
        let labels = json!({"expression": expr, "path": row["group"]}).to_string();
        let v = row["value"].as_f64().expect("a value");
        assert!(same(got[&labels][&t], v), "{labels} at {t}");
        compared += 1;
    }
    assert_eq!(compared, 3 * 24);
    // The top 1 and the rest as `other`.
    let got = series(&range(&s, "sum(request(duration)).group(path, 1)", "1h"));
    let keys: Vec<&String> = got.keys().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().any(|k| k.contains("\"other\":\"true\"")),
        "{keys:?}"
    );
}

#[test]
fn instant_queries_scalars_and_post_forms() {
    let s = TestServer::start();
    put_events(&s);
    let want = cube(&s, "sum(request)", 60_000);
    let at = BASE + 600_000 + 30_000; // inside the bin of minute 10
    let (status, body) = prom(
        &s,
        &format!(
            "/api/v1/query?query={}&time={}",
            enc("sum(request)"),
            at as f64 / 1000.0
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "vector");
    let sample = &body["data"]["result"][0];
    assert_eq!(sample["metric"], json!({"expression": "sum(request)"}));
    assert_eq!(sample["value"][0].as_f64(), Some(at as f64 / 1000.0));
    let v: f64 = sample["value"][1].as_str().unwrap().parse().unwrap();
    assert!(same(v, want[&(BASE + 600_000)].unwrap()));
    // Grafana's "1+1" health check: a scalar.
    let (status, body) = prom(&s, &format!("/api/v1/query?query={}&time=100", enc("1+1")));
    assert_eq!(
        (status, &body["data"]),
        (200, &json!({"resultType": "scalar", "result": [100, "2"]}))
    );
    // POST with a form body answers as GET does.
    let form = format!(
        "query={}&start={}&end={}&step=60",
        enc("sum(request)"),
        BASE / 1000,
        BASE / 1000 + 3600
    );
    let mut resp = agent()
        .post(&s.evaluator_url("/api/v1/query_range"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(form.as_str())
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let posted: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let got = prom(&s, &format!("/api/v1/query_range?{form}")).1;
    assert_eq!(posted, got);
    assert_eq!(series(&got).values().next().unwrap().len(), 61);
    // A form body over the limit is refused before it is read.
    let mut resp = agent()
        .post(&s.evaluator_url("/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(
            format!(
                "query={}",
                "a".repeat(cubed::limits::MAX_PROMETHEUS_FORM_BYTES)
            )
            .as_str(),
        )
        .expect("post");
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["status"], "error");
}

#[test]
fn errors_have_prometheus_shape() {
    let s = TestServer::start();
    let bad = |path: &str, status: u16, kind: &str, says: &str| {
        let (got, body) = prom(&s, path);
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["status"], "error", "{path}");
        assert_eq!(body["errorType"], kind, "{path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{path}: {error}");
        assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    };
    bad(
        "/api/v1/query_range?query=sum(request&start=0&end=60&step=10",
        400,
        "bad_data",
        "invalid expression",
    );
    bad(
        "/api/v1/query_range?query=sum(request)&start=0&end=60",
        400,
        "bad_data",
        "step",
    );
    bad(
        "/api/v1/query_range?query=sum(request)&start=x&end=60&step=10",
        400,
        "bad_data",
        "start",
    );
    bad(
        "/api/v1/query_range?query=sum(request)&start=0&end=60&step=0",
        400,
        "bad_data",
        "step",
    );
    bad(
        "/api/v1/query_range?query=sum(request)&start=100&end=60&step=10",
        400,
        "bad_data",
        "end",
    );
    bad(
        "/api/v1/query_range?query=sum(request)&start=0&end=31536000&step=10",
        400,
        "bad_data",
        "maximum resolution",
    );
    bad("/api/v1/query?time=0", 400, "bad_data", "query");
    bad("/api/v1/series", 400, "bad_data", "match[]");
    bad("/api/v1/series?match[]=%7B%7D", 400, "bad_data", "match[]");
    bad("/api/v1/label/1x/values", 400, "bad_data", "label name");
}

#[test]
fn labels_series_metadata_and_buildinfo() {
    let s = TestServer::start_with_options(
        std::sync::Arc::new(cubed::model::SystemClock),
        cubed::server::Options {
            self_events: false,
            ..Default::default()
        },
    );
    s.put(&json!([
        {"type": "request", "time": BASE, "data": {}},
        {"type": "response", "time": BASE, "data": {}},
        {"type": "cart", "time": BASE, "data": {}}
    ]));
    let data = |path: &str| {
        let (status, body) = prom(&s, path);
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("success")),
            "{path}: {body}"
        );
        body["data"].clone()
    };
    assert_eq!(data("/api/v1/labels"), json!(["__name__", "expression"]));
    assert_eq!(
        data("/api/v1/label/__name__/values"),
        json!(["cart", "request", "response"])
    );
    assert_eq!(data("/api/v1/label/path/values"), json!([]));
    assert_eq!(
        data("/api/v1/series?match[]=request"),
        json!([{"__name__": "request"}])
    );
    assert_eq!(
        data(&format!(
            "/api/v1/series?match[]={}",
            enc("{__name__=~\"re.*\"}")
        )),
        json!([{"__name__": "request"}, {"__name__": "response"}])
    );
    assert_eq!(
        data(&format!(
            "/api/v1/series?match[]=cart&match[]={}",
            enc("{__name__=\"response\"}")
        )),
        json!([{"__name__": "cart"}, {"__name__": "response"}])
    );
    let meta = data("/api/v1/metadata");
    assert_eq!(meta["cart"][0]["type"], "unknown");
    assert_eq!(meta.as_object().unwrap().len(), 3);
    assert_eq!(
        data("/api/v1/metadata?metric=cart")
            .as_object()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(data("/api/v1/status/buildinfo")["application"], "cubed");
}

/// promtool, Prometheus's own client, reads an expression over the API
/// with `/1.0/metric`'s values.
#[test]
fn promtool_reads_cube_expressions() {
    let s = TestServer::start();
    put_events(&s);
    let expr = "sum(request(duration).eq(path, '/login'))";
    let want = cube(&s, expr, 300_000);
    let out = std::process::Command::new("promtool")
        .args([
            "query",
            "range",
            "-o",
            "json",
            &format!("--start={}", BASE / 1000),
            &format!("--end={}", (BASE + 7_200_000) / 1000 - 1),
            "--step=5m",
            &format!("http://{}", s.evaluator),
            expr,
        ])
        .output()
        .expect("promtool (Debian's prometheus package) must be installed");
    assert!(
        out.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool prints the matrix it decoded: [{metric, values}].
    let printed: Value = serde_json::from_slice(&out.stdout).expect("promtool's JSON");
    let matrix = printed.as_array().expect("a matrix");
    assert_eq!(matrix.len(), 1, "{printed}");
    assert_eq!(matrix[0]["metric"], json!({"expression": expr}));
    let values = matrix[0]["values"].as_array().expect("values");
    assert_eq!(values.len(), 24);
    for p in values {
        let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
        let v: f64 = p[1].as_str().unwrap().parse().unwrap();
        assert!(same(v, want[&t].unwrap()), "at {t}: {v}");
    }
    // Its plain text form, as a user sees it.
    let out = std::process::Command::new("promtool")
        .args([
            "query",
            "range",
            &format!("--start={}", BASE / 1000),
            &format!("--end={}", BASE / 1000 + 600),
            "--step=5m",
            &format!("http://{}", s.evaluator),
            "sum(request)",
        ])
        .output()
        .expect("promtool");
    let text = String::from_utf8_lossy(&out.stdout);
    let counts = cube(&s, "sum(request)", 300_000);
    for i in 0..3 {
        let t = BASE + i * 300_000;
        let line = format!("{} @[{}]", counts[&t].unwrap(), t / 1000);
        assert!(text.contains(&line), "{line:?} not in {text}");
    }
    assert!(text.contains("{expression=\"sum(request)\"} =>"), "{text}");
}
