//! The neighbouring systems' formats, with the seeds' own examples: the
//! session metric logging API and e-metrics dumps,
//! over HTTP and through `cubed import`, checked by the metrics they give.

mod common;

use std::process::Command;

use common::{TestServer, enc, get, post};
use serde_json::{Value, json};

/// The value of the one bin of `expression` over the day of 2024-01-01.
fn day_value(s: &TestServer, expression: &str) -> Value {
    let (status, bins) = get(
        &s.evaluator_url(&format!(
            "/1.0/metric?step=86400000&start=2024-01-01&stop=2024-01-02&expression={}",
            enc(expression)
        )),
        None,
    );
    assert_eq!(status, 200, "{expression}: {bins}");
    bins[0].get("value").cloned().unwrap_or(Value::Null)
}

#[test]
fn session_metrics_and_events_become_chartable_events() {
    let s = TestServer::start();
    let t = "2024-01-01T12:00:00Z";
    let url = |id: &str, kind: &str| s.collector_url(&format!("/api/sessions/{id}/{kind}"));
    for (session, body) in [
        (
            "550e8400",
            json!({"name": "response_time_ms", "value": 123.45, "tags": ["api", "v2", "user"], "time": t}),
        ),
        (
            "550e8400",
            json!({"name": "response_time_ms", "value": 45.2, "tags": ["api", "endpoint:users"], "time": t}),
        ),
        (
            "6ba7b810",
            json!({"name": "response_time_ms", "value": 999, "time": t}),
        ),
        (
            "550e8400",
            json!({"name": "memory_mb", "value": 512.5, "tags": ["backend"], "time": t}),
        ),
        (
            "550e8400",
            json!({"name": "http_requests", "value": 100, "tags": ["endpoint:users", "method:GET"], "time": t}),
        ),
        (
            "550e8400",
            json!({"name": "http_requests", "value": 50, "tags": ["endpoint:posts", "method:POST"], "time": t}),
        ),
    ] {
        let (status, answer) = post(&url(session, "metrics"), &body.to_string(), None);
        assert_eq!((status, answer), (200, json!({"success": true})));
    }
    assert_eq!(
        day_value(&s, "max(response_time_ms(value).eq(session, '550e8400'))"),
        json!(123.45)
    );
    assert_eq!(day_value(&s, "max(response_time_ms(value))"), json!(999));
    assert_eq!(
        day_value(&s, "sum(http_requests(value).eq(tags, 'method:GET'))"),
        json!(100)
    );
    assert_eq!(day_value(&s, "sum(http_requests(value))"), json!(150));
    assert_eq!(
        day_value(&s, "sum(memory_mb(value).eq(tags, 'backend'))"),
        json!(512.5)
    );

    let (status, answer) = post(
        &url("550e8400", "events"),
        &json!({"name": "api_call_completed", "data": {"endpoint": "/users", "status": 200}, "time": t}).to_string(),
        None,
    );
    assert_eq!((status, answer), (200, json!({"success": true})));
    let (_, events) = get(
        &s.evaluator_url(&format!(
            "/1.0/event?expression={}&start=2024-01-01&stop=2024-01-02",
            enc("api_call_completed(endpoint, status, session)")
        )),
        None,
    );
    assert_eq!(
        events[0]["data"],
        json!({"endpoint": "/users", "status": 200, "session": "550e8400"})
    );

    // Bad input: 400 {"success": false, "error": …}, nothing stored.
    for (session, body, why) in [
        (
            "550e8400",
            r#"{"name": "Bad Name", "value": 1}"#,
            "invalid name",
        ),
        (
            "550e8400",
            r#"{"name": "memory_mb", "value": "512"}"#,
            "invalid value",
        ),
        ("550e8400", r#"{"name": "memory_mb"}"#, "missing value"),
        ("550e8400", r#"not json"#, "invalid JSON"),
    ] {
        let (status, answer) = post(&url(session, "metrics"), body, None);
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["success"], json!(false));
        assert!(
            answer["error"].as_str().is_some_and(|e| e.starts_with(why)),
            "{answer}"
        );
    }
    let (status, answer) = post(
        &url("550e8400", "events"),
        r#"{"name": "x1", "data": [1]}"#,
        None,
    );
    assert_eq!((status, answer["success"].clone()), (400, json!(false)));
    let (status, answer) = post(
        &url("550e8400", "metrics"),
        r#"{"name": "ok_name", "value": 1}"#,
        Some("Bad"),
    );
    assert_eq!((status, answer["success"].clone()), (400, json!(false)));
    assert_eq!(
        day_value(&s, "sum(memory_mb)"),
        json!(1),
        "the bad ones stored nothing"
    );
}

/// The seed's three units, two timers more, and a wrapped bundle, as NDJSON.
fn dump() -> String {
    [
        json!({"category":"xvm","tag":"call_contract_succ","type":"counter","content":{"count":10,"value":9},"send_timestamp":"2024-01-01T10:00:00Z"}),
        json!({"category":"xvm","tag":"execute_time","type":"timer","content":{"count":3060,"max_time":93926,"min_time":18,"avg_time":153},"send_timestamp":"2024-01-01T10:00:00Z"}),
        json!({"category":"vhost","tag":"handle_data_ready_called","type":"flow","content":{"count":92,"max_flow":10,"min_flow":1,"sum_flow":131,"avg_flow":1,"tps_flow":131,"tps":"1.39"},"send_timestamp":"2024-01-01T10:00:00Z"}),
        json!({"category":"xvm","tag":"execute_time","type":"timer","content":{"count":940,"max_time":500,"min_time":20,"avg_time":100},"send_timestamp":1_704_106_800_000i64}),
        json!({"alarm_type":"metrics","env":"prod","public_ip":"10.1.2.3","send_timestamp":1_704_110_400,
               "content":[
                   {"category":"xvm","tag":"call_contract_succ","type":"counter","content":{"count":5,"value":4}},
                   {"category":"vhost","tag":"handle_data_ready_called","type":"flow","content":{"count":8,"max_flow":3,"min_flow":1,"sum_flow":12,"avg_flow":1,"tps_flow":12,"tps":"0.61"}}
               ]}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n")
}

/// Checks the metrics that rebuild the dump's units.
fn check_units(s: &TestServer) {
    // A timer's mean over any step: total time / total count.
    let mean = day_value(
        s,
        "sum(timer(avg_time * count).eq(tag, 'execute_time')) / sum(timer(count).eq(tag, 'execute_time'))",
    );
    let expected = (153.0 * 3060.0 + 100.0 * 940.0) / 4000.0;
    assert!(
        (mean.as_f64().unwrap_or(f64::NAN) - expected).abs() < 1e-9,
        "{mean}"
    );
    assert_eq!(
        day_value(s, "max(timer(max_time).eq(tag, 'execute_time'))"),
        json!(93926)
    );
    assert_eq!(
        day_value(s, "min(timer(min_time).eq(tag, 'execute_time'))"),
        json!(18)
    );
    assert_eq!(
        day_value(s, "sum(counter(count).eq(tag, 'call_contract_succ'))"),
        json!(15)
    );
    assert_eq!(
        day_value(s, "sum(counter(value).eq(category, 'xvm'))"),
        json!(13)
    );
    assert_eq!(day_value(s, "sum(flow(sum_flow))"), json!(143));
    assert_eq!(day_value(s, "max(flow(tps))"), json!(1.39));
    assert_eq!(
        day_value(
            s,
            "sum(flow(count).eq(env, 'prod').eq(alarm_type, 'metrics'))"
        ),
        json!(8)
    );
    // Times: each unit at its send_timestamp (ISO, ms, or seconds).
    let (_, hours) = get(
        &s.evaluator_url(&format!(
            "/1.0/metric?step=3600000&start=2024-01-01T10:00:00Z&stop=2024-01-01T13:00:00Z&expression={}",
            enc("sum(counter(count))")
        )),
        None,
    );
    let values: Vec<Value> = hours
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| b["value"].clone())
        .collect();
    assert_eq!(values, [json!(10), json!(0), json!(5)]);
    let (_, events) = get(
        &s.evaluator_url(&format!(
            "/1.0/event?expression={}&start=2024-01-01&stop=2024-01-02",
            enc("counter(category, tag, env, alarm_type, public_ip, count, value).eq(env, 'prod')")
        )),
        None,
    );
    assert_eq!(
        events[0]["data"],
        json!({"category": "xvm", "tag": "call_contract_succ", "env": "prod", "alarm_type": "metrics",
               "public_ip": "10.1.2.3", "count": 5, "value": 4})
    );
}

#[test]
fn emetrics_dumps_over_http() {
    let s = TestServer::start();
    let (status, answer) = post(&s.collector_url("/1.0/emetrics"), &dump(), None);
    assert_eq!((status, answer), (200, json!({"events": 6})));
    check_units(&s);

    // The same dump as a JSON array, into another tenant.
    let array = format!("[{}]", dump().lines().collect::<Vec<_>>().join(","));
    let (status, answer) = post(&s.collector_url("/1.0/emetrics"), &array, Some("other"));
    assert_eq!((status, answer), (200, json!({"events": 6})));

    // A bad unit refuses the whole dump and names each bad item.
    let bad = format!(
        "{}\n{}\n{}",
        json!({"category":"xvm","tag":"late","type":"counter","content":{"count":1},"send_timestamp":"2024-01-01T10:00:00Z"}),
        json!({"category":"xvm","tag":"t","type":"gauge","content":{}}),
        json!({"category":"xvm","type":"timer","content":{}})
    );
    let (status, answer) = post(&s.collector_url("/1.0/emetrics"), &bad, None);
    assert_eq!(status, 400);
    assert_eq!(answer["error"], json!("invalid units"));
    let indexes: Vec<u64> = answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["index"].as_u64())
        .collect();
    assert_eq!(indexes, [1, 2]);
    assert_eq!(day_value(&s, "sum(counter.eq(tag, 'late'))"), json!(0));
    let (status, answer) = post(&s.collector_url("/1.0/emetrics"), "{\"category\":", None);
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid body"))
    );
}

/// Runs `cubed import --format emetrics --batch 2` of `file` into `s`.
fn import(s: &TestServer, file: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cubed"))
        .args([
            "import",
            "--format",
            "emetrics",
            "--batch",
            "2",
            "--collector",
        ])
        .arg(format!("http://{}", s.collector))
        .arg(file)
        .output()
        .expect("run cubed import")
}

#[test]
fn cubed_import_sends_a_dump_file() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("emetrics.log");
    std::fs::write(&file, format!("{}\n\n", dump())).expect("write");
    let out = import(&s, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported 5 items as 6 events"), "{stdout}");
    check_units(&s);

    // A bad line stops the import and is named by its line number.
    let bad_file = dir.path().join("bad.log");
    let good = json!({"category":"x","tag":"fine","type":"counter","content":{"count":1},"send_timestamp":"2024-01-01T10:00:00Z"});
    std::fs::write(
        &bad_file,
        format!(
            "{good}\n{good}\n\n{good}\n{}\n",
            json!({"category":"x","tag":"t","type":"meter","content":{}})
        ),
    )
    .expect("write");
    let out = import(&s, &bad_file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 5: invalid type"), "{stderr}");
    assert!(
        stderr.contains("2 items before this batch were imported"),
        "{stderr}"
    );
    assert_eq!(day_value(&s, "sum(counter.eq(tag, 'fine'))"), json!(2));
}
