//! The evaluator over HTTP GET: Cube's own metric test (2500 events, every
//! tier, computed then cached), error answers and defaults, invalidation.

mod common;

use common::{TestServer, enc, error_of, get};
use serde_json::{Value, json};

/// Cube's test events: `Date.UTC(2011, 6, 18, 0, Math.sqrt(i) - 10)` with `data: {i}`
/// (JavaScript truncates the fractional minutes towards zero).
fn put_cube_test_events(s: &TestServer) {
    let base = 1_310_947_200_000i64; // 2011-07-18T00:00:00Z
    let events: Vec<Value> = (0..2500)
        .map(|i| {
            let minutes = ((i as f64).sqrt() - 10.0).trunc() as i64;
            json!({"type": "test", "time": base + minutes * 60_000, "data": {"i": i}})
        })
        .collect();
    s.put(&Value::from(events));
}

fn metric(s: &TestServer, expr: &str, step: i64) -> Vec<Value> {
    let url = s.evaluator_url(&format!(
        "/1.0/metric?expression={}&start=2011-07-17T23:47:00.000Z&stop=2011-07-18T00:50:00.000Z&step={step}",
        enc(expr)
    ));
    let (status, body) = get(&url, None);
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().expect("array")
}

/// Checks times (dense, floor(start) .. ceil(stop), ISO with ms) and values.
fn check(s: &TestServer, expr: &str, step: i64, expected: &[f64]) {
    let start = 1_310_946_420_000i64; // 2011-07-17T23:47:00Z
    let first = start - start.rem_euclid(step);
    for pass in ["computed", "cached"] {
        let got = metric(s, expr, step);
        assert_eq!(
            got.len(),
            expected.len(),
            "{expr} step {step} ({pass}): {got:?}"
        );
        for (i, (bin, want)) in got.iter().zip(expected).enumerate() {
            let t = cubed::model::time::format_iso(first + i as i64 * step);
            assert_eq!(bin["time"], json!(t), "{expr} step {step} ({pass})");
            let keys: Vec<&String> = bin.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["time", "value"], "{expr} at {t}");
            if want.is_nan() {
                assert_eq!(
                    bin["value"],
                    Value::Null,
                    "{expr} step {step} at {t} ({pass})"
                );
            } else {
                let v = bin["value"].as_f64().unwrap_or(f64::NAN);
                assert!(
                    (v - want).abs() < 1e-6,
                    "{expr} step {step} at {t} ({pass}): got {v}, want {want}"
                );
            }
        }
    }
}

#[test]
fn cube_metric_test_every_tier_computed_then_cached() {
    cube_metric_test(&TestServer::start());
}

/// The same on the MongoDB backend (computed with its per-bin `$group`,
/// cached in its capped collection).
#[test]
fn cube_metric_test_on_mongodb() {
    cube_metric_test(&TestServer::start_on_mongodb());
}

fn cube_metric_test(s: &TestServer) {
    put_cube_test_events(s);
    let nan = f64::NAN;
    check(
        s,
        "sum(test)",
        60_000,
        &[
            0., 0., 0., 1., 1., 3., 5., 7., 9., 11., 13., 15., 17., 39., 23., 25., 27., 29., 31.,
            33., 35., 37., 39., 41., 43., 45., 47., 49., 51., 53., 55., 57., 59., 61., 63., 65.,
            67., 69., 71., 73., 75., 77., 79., 81., 83., 85., 87., 89., 91., 93., 95., 97., 99.,
            0., 0., 0., 0., 0., 0., 0., 0., 0., 0.,
        ],
    );
    check(
        s,
        "sum(test)",
        300_000,
        &[
            0., 17., 65., 143., 175., 225., 275., 325., 375., 425., 475., 0., 0.,
        ],
    );
    check(s, "sum(test)", 3_600_000, &[82., 2418.]);
    check(s, "sum(test)", 86_400_000, &[82., 2418.]);
    check(
        s,
        "sum(test(i))",
        300_000,
        &[
            0., 136., 3185., 21879., 54600., 115200., 209550., 345150., 529500., 770100., 1074450.,
            0., 0.,
        ],
    );
    check(s, "sum(test(i))", 3_600_000, &[3321., 3120429.]);
    check(s, "sum(test(i))", 86_400_000, &[3321., 3120429.]);
    check(
        s,
        "sum(test(i / 100))",
        300_000,
        &[
            0., 1.36, 31.85, 218.79, 546., 1152., 2095.5, 3451.5, 5295., 7701., 10744.5, 0., 0.,
        ],
    );
    check(s, "sum(test(i / 100))", 3_600_000, &[33.21, 31204.29]);
    check(s, "sum(test(i / 100))", 86_400_000, &[33.21, 31204.29]);
    check(
        s,
        "max(test(i)) - min(test(i))",
        300_000,
        &[
            nan, 16., 64., 142., 174., 224., 274., 324., 374., 424., 474., nan, nan,
        ],
    );
    check(s, "max(test(i)) - min(test(i))", 3_600_000, &[81., 2417.]);
    check(s, "max(test(i)) - min(test(i))", 86_400_000, &[81., 2417.]);
    check(
        s,
        "distinct(test(i))",
        300_000,
        &[
            0., 17., 65., 143., 175., 225., 275., 325., 375., 425., 475., 0., 0.,
        ],
    );
    check(s, "distinct(test(i))", 3_600_000, &[82., 2418.]);
    check(s, "distinct(test(i))", 86_400_000, &[82., 2418.]);
    check(
        s,
        "sum(test(i)) - median(test(i))",
        300_000,
        &[
            nan, 128., 3136., 21726., 54288., 114688., 208788., 344088., 528088., 768288.,
            1072188., nan, nan,
        ],
    );
    check(
        s,
        "sum(test(i)) - median(test(i))",
        3_600_000,
        &[3280.5, 3119138.5],
    );
    check(
        s,
        "sum(test(i)) - median(test(i))",
        86_400_000,
        &[3280.5, 3119138.5],
    );
    check(
        s,
        "-1 + sum(test)",
        300_000,
        &[
            -1., 16., 64., 142., 174., 224., 274., 324., 374., 424., 474., -1., -1.,
        ],
    );
    check(s, "-1 + sum(test)", 3_600_000, &[81., 2417.]);
    check(s, "-1 + sum(test)", 86_400_000, &[81., 2417.]);
}

#[test]
fn undefined_values_are_left_out() {
    let s = TestServer::start();
    put_cube_test_events(&s);
    let got = metric(&s, "median(test(i))", 300_000);
    assert_eq!(got[0], json!({"time": "2011-07-17T23:45:00.000Z"}));
    assert_eq!(got[1]["value"], json!(8));
}

#[test]
fn error_answers_in_cubes_order() {
    let s = TestServer::start();
    let e = |q: &str| get(&s.evaluator_url(&format!("/1.0/metric?{q}")), None);
    assert_eq!(
        error_of(e("expression=sum(test)&start=bad&stop=bad&step=1")),
        (400, "invalid start".into())
    );
    assert_eq!(
        error_of(e("expression=sum(test)&start=0&stop=bad&step=1")),
        (400, "invalid stop".into())
    );
    let (status, body) = e("expression=sum(test&start=0&stop=0&step=1");
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid expression"))
    );
    assert_eq!(body["message"], "expected \"(\", \")\" or \".\" at 8");
    assert_eq!(
        error_of(e("expression=sum(test)&start=0&stop=0&step=1000")),
        (400, "invalid step".into())
    );
    assert_eq!(
        e("start=0&stop=0&step=1000").1["error"],
        "invalid expression"
    );
}

#[test]
fn defaults_and_limit() {
    let s = TestServer::start();
    // stop defaults to now floored to the step; start to 0; the limit keeps the latest bins
    let (status, body) = get(
        &s.evaluator_url("/1.0/metric?expression=sum(test)&step=60000&limit=5"),
        None,
    );
    assert_eq!(status, 200);
    let bins = body.as_array().unwrap();
    assert_eq!(bins.len(), 5);
    let now = chrono::Utc::now().timestamp_millis();
    let last = chrono::DateTime::parse_from_rfc3339(bins[4]["time"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        last <= now && now - last < 3 * 60_000,
        "last bin {last}, now {now}"
    );
    let (_, body) = get(&s.evaluator_url("/1.0/metric?expression=sum(test)"), None);
    assert_eq!(body.as_array().unwrap().len(), 10_000);
    let (_, body) = get(
        &s.evaluator_url("/1.0/metric?expression=sum(test)&limit=99999"),
        None,
    );
    assert_eq!(body.as_array().unwrap().len(), 10_000);
    // a constant expression
    let (_, body) = get(
        &s.evaluator_url("/1.0/metric?expression=42&start=0&stop=20000&step=10000"),
        None,
    );
    assert_eq!(
        body,
        json!([{"time": "1970-01-01T00:00:00.000Z", "value": 42}, {"time": "1970-01-01T00:00:10.000Z", "value": 42}])
    );
}

#[test]
fn late_events_and_upserts_invalidate_cached_bins() {
    late_events_and_upserts(&TestServer::start());
}

#[test]
fn late_events_and_upserts_invalidate_cached_bins_on_mongodb() {
    late_events_and_upserts(&TestServer::start_on_mongodb());
}

fn late_events_and_upserts(s: &TestServer) {
    let put = |body: Value| s.put(&body);
    let q = |step: i64| {
        let (_, v) = get(
            &s.evaluator_url(&format!(
                "/1.0/metric?expression={}&start=0&stop=86400000&step={step}",
                enc("sum(late(x))")
            )),
            None,
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b["value"].as_f64().unwrap_or(f64::NAN))
            .collect::<Vec<f64>>()
    };
    put(
        json!([{"type": "late", "time": 0, "data": {"x": 1}}, {"type": "late", "time": 3_600_000, "data": {"x": 10}, "id": "u"}]),
    );
    let day = q(86_400_000);
    assert_eq!(day, [11.0]);
    let hours = q(3_600_000);
    assert_eq!(&hours[..2], &[1.0, 10.0]);
    // a late event in the first hour: every tier that holds it is recomputed
    put(json!([{"type": "late", "time": 30_000, "data": {"x": 100}}]));
    assert_eq!(q(86_400_000), [111.0]);
    assert_eq!(&q(3_600_000)[..2], &[101.0, 10.0]);
    assert_eq!(q(300_000)[0], 101.0);
    // an upsert moves the event: both its old and its new bins change
    put(json!([{"type": "late", "time": 7_200_000, "data": {"x": 1000}, "id": "u"}]));
    assert_eq!(&q(3_600_000)[..3], &[101.0, 0.0, 1000.0]);
    assert_eq!(q(86_400_000), [1101.0]);
}

#[test]
fn deleting_the_cache_recomputes_from_events() {
    let s = TestServer::start();
    put_cube_test_events(&s);
    let before = metric(&s, "sum(test)", 300_000);
    let resp = common::agent()
        .delete(&s.evaluator_url("/1.0/metric/cache"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(metric(&s, "sum(test)", 300_000), before);
}

/// A metric request that does not finish within `--query-timeout-ms` is
/// answered `503 query timeout`, over HTTP and over WebSocket (with its id).
#[test]
fn a_query_past_its_timeout_is_refused() {
    let s = TestServer::start_with_options(
        std::sync::Arc::new(cubed::model::SystemClock),
        cubed::server::Options {
            query_timeout: std::time::Duration::from_millis(1),
            self_events: false,
            ..Default::default()
        },
    );
    let events: Vec<Value> = (0..20_000)
        .map(|i| json!({"type": "req", "time": 1_334_592_000_000_i64 + i * 5_000, "data": {"ms": i % 97}}))
        .collect();
    s.put(&Value::from(events));
    let url = s.evaluator_url(&format!(
        "/1.0/metric?expression={}&start=2012-04-16T16:00:00Z&step=1e4&limit=10000",
        enc("median(req(ms))")
    ));
    let resp = common::agent().get(&url).call().expect("request");
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1"),
        "a 503 says when to retry"
    );
    let (status, body) = get(&url, None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], json!("query timeout"), "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("--query-timeout-ms")),
        "{body}"
    );
}

/// A grouped expression over HTTP: one object per bin and group, in time
/// order then group order, `top` folding the rest into `other`, events
/// without the field left out, and errors for what cannot be grouped.
#[test]
fn grouped_metrics_over_http() {
    let s = TestServer::start();
    s.put(&json!([
        {"type": "req", "time": "2012-04-16T16:00:10Z", "data": {"ms": 5, "path": "/a"}},
        {"type": "req", "time": "2012-04-16T16:00:20Z", "data": {"ms": 7, "path": "/b"}},
        {"type": "req", "time": "2012-04-16T16:01:10Z", "data": {"ms": 9, "path": "/a"}},
        {"type": "req", "time": "2012-04-16T16:01:20Z", "data": {"ms": 1, "path": "/c"}},
        {"type": "req", "time": "2012-04-16T16:01:30Z", "data": {"ms": 100}},
    ]));
    let url = |expr: &str| {
        s.evaluator_url(&format!(
            "/1.0/metric?expression={}&start=2012-04-16T16:00:00Z&stop=2012-04-16T16:02:00Z&step=60000",
            enc(expr)
        ))
    };
    let (status, body) = get(&url("sum(req(ms)).group(path)"), None);
    assert_eq!(status, 200, "{body}");
    let t0 = "2012-04-16T16:00:00.000Z";
    let t1 = "2012-04-16T16:01:00.000Z";
    assert_eq!(
        body,
        json!([
            {"time": t0, "value": 5, "group": "/a"},
            {"time": t0, "value": 7, "group": "/b"},
            {"time": t0, "value": 0, "group": "/c"},
            {"time": t1, "value": 9, "group": "/a"},
            {"time": t1, "value": 0, "group": "/b"},
            {"time": t1, "value": 1, "group": "/c"},
        ])
    );
    // The busiest path by total, the rest as `other`; `max` of no events is
    // undefined (left out).
    let (status, body) = get(&url("max(req(ms)).group(path, 1)"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([
            {"time": t0, "value": 5, "group": "/a"},
            {"time": t0, "value": 7, "group": null, "other": true},
            {"time": t1, "value": 9, "group": "/a"},
            {"time": t1, "value": 1, "group": null, "other": true},
        ])
    );
    // Each path's share of all requests (the ungrouped side counts the
    // event without a path too).
    let (status, body) = get(&url("count(req).group(path) / count(req)"), None);
    assert_eq!(status, 200, "{body}");
    let shares: Vec<f64> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|b| b["value"].as_f64().expect("number"))
        .collect();
    let third = 1.0 / 3.0;
    assert_eq!(shares, vec![0.5, 0.5, 0.0, third, 0.0, third]);
    // An ungrouped expression answers as before.
    let (_, body) = get(&url("sum(req(ms))"), None);
    assert_eq!(
        body,
        json!([{"time": t0, "value": 12}, {"time": t1, "value": 110}])
    );
    // Two fields, a bad top: invalid expressions.
    for bad in [
        "sum(req).group(path) + sum(req).group(ms)",
        "sum(req).group(path, 0)",
    ] {
        let (status, body) = get(&url(bad), None);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid expression", "{bad}");
    }
}

/// More groups than one request may hold is a clear `422`.
#[test]
fn too_many_groups_is_refused() {
    let s = TestServer::start();
    let events: Vec<Value> = (0..1001)
        .map(|i| json!({"type": "req", "time": 1_000 + i, "data": {"user": i}}))
        .collect();
    s.put(&Value::from(events));
    let url = s.evaluator_url(&format!(
        "/1.0/metric?expression={}&start=0&stop=60000&step=60000",
        enc("count(req).group(user)")
    ));
    let (status, body) = get(&url, None);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "query too large");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("more than 1000 groups"),
        "{body}"
    );
}

/// Grouped bins are cached (a second request computes nothing), merged
/// into hour bins from cached 5-minute bins, and invalidated by a late
/// event like any bin.
#[test]
fn grouped_bins_are_cached_merged_and_invalidated() {
    let s = TestServer::start_with_options(
        std::sync::Arc::new(cubed::model::SystemClock),
        cubed::server::Options {
            self_events: false,
            ..Default::default()
        },
    );
    let day = 1_334_534_400_000i64; // 2012-04-16T00:00:00Z
    let events: Vec<Value> = (0..2_000)
        .map(|i| {
            let path = ["/a", "/b", "/c"][i as usize % 3];
            json!({"type": "req", "time": day + i * 43_000, "data": {"path": path, "ms": i % 13}})
        })
        .collect();
    s.put(&Value::from(events));
    let ask = |expr: &str, step: i64| -> Vec<Value> {
        let url = s.evaluator_url(&format!(
            "/1.0/metric?expression={}&start={day}&stop={}&step={step}",
            enc(expr),
            day + 86_400_000
        ));
        let (status, body) = get(&url, None);
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().expect("rows")
    };
    let expr = "sum(req(ms)).group(path)";
    let fine = ask(expr, 300_000);
    assert_eq!(fine.len(), 288 * 3);
    let computed = common::status_figure(&s, "evaluator", "bins_computed");
    assert_eq!(ask(expr, 300_000), fine, "the same answer from the cache");
    assert_eq!(
        common::status_figure(&s, "evaluator", "bins_computed"),
        computed,
        "nothing computed again"
    );
    // Hour bins: merged from the cached 5-minute bins, group by group.
    let merged = common::status_figure(&s, "evaluator", "bins_merged");
    let hours = ask(expr, 3_600_000);
    assert_eq!(
        common::status_figure(&s, "evaluator", "bins_merged"),
        merged + 24.0
    );
    for h in &hours {
        let t = cubed::model::time::parse_iso(h["time"].as_str().unwrap()).unwrap();
        let want: f64 = fine
            .iter()
            .filter(|f| f["group"] == h["group"])
            .filter(|f| {
                let ft = cubed::model::time::parse_iso(f["time"].as_str().unwrap()).unwrap();
                ft >= t && ft < t + 3_600_000
            })
            .map(|f| f["value"].as_f64().unwrap())
            .sum();
        assert_eq!(h["value"].as_f64(), Some(want), "{h}");
    }
    // A late event invalidates its 5-minute bin: that bin alone is
    // computed again, and shows the event.
    s.put(&json!([{"type": "req", "time": day + 1_000, "data": {"path": "/a", "ms": 1000}}]));
    let computed = common::status_figure(&s, "evaluator", "bins_computed");
    let again = ask(expr, 300_000);
    assert_eq!(
        common::status_figure(&s, "evaluator", "bins_computed"),
        computed + 1.0
    );
    let first_a = |rows: &[Value]| {
        rows.iter()
            .find(|r| r["group"] == "/a")
            .and_then(|r| r["value"].as_f64())
            .unwrap()
    };
    assert_eq!(first_a(&again), first_a(&fine) + 1000.0);
}
