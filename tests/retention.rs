//! Retention, figures and the caps on services and types, end to end
//! against the real binary: old events are deleted in the background with
//! their cached bins and the data directory shrinks; a put of an event
//! older than its type's retention is refused; `cubed stats` and `cubed
//! retention` report and change what is kept; a service or type beyond
//! its cap is refused with 429.

mod common;
use common::spawn;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{agent, enc, error_of, get, post};
use serde_json::{Value, json};
use spawn::{cubed_bin, spawn};

const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// A pseudo-random printable string (so that compression cannot make the
/// data vanish).
fn noise(seed: &mut u64, len: usize) -> String {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (b'a' + (*seed % 26) as u8) as char
        })
        .collect()
}

/// One type's row of `/admin/stats`.
fn type_stats(stats: &Value, event_type: &str) -> Option<Value> {
    stats["types"]
        .as_array()?
        .iter()
        .find(|t| t["type"] == event_type)
        .cloned()
}

fn put_json(url: &str, method: &str, body: &Value) -> (u16, Value) {
    let req = match method {
        "PUT" => agent().put(url),
        _ => agent().post(url),
    };
    let mut resp = req
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(cubed_bin())
        .args(args)
        .output()
        .expect("run cubed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn old_events_are_deleted_with_their_bins_and_the_directory_shrinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let now = now_ms();
    // 60 days of events, 500 a day, with 400 bytes of noise each (12 MB).
    let server = spawn(&cubed_bin(), &data, &[]);
    let put_url = format!("http://{}/1.0/event/put", server.collector);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for day in 0..60 {
        let events: Vec<Value> = (0..500)
            .map(|i| {
                json!({
                    "type": "request",
                    "time": now - day * DAY - 2 * 3_600_000 - i * 1000,
                    "id": format!("d{day}e{i}"),
                    "data": {"pad": noise(&mut seed, 400)},
                })
            })
            .collect();
        let (status, body) = post(&put_url, &Value::Array(events).to_string(), None);
        assert_eq!(status, 200, "{body}");
    }
    // A cached daily series across the whole range, before retention.
    let eval = |path: &str| format!("http://{}{path}", server.evaluator);
    let series = |eval: &dyn Fn(&str) -> String| -> Vec<f64> {
        let start = (now - 70 * DAY) / DAY * DAY;
        let stop = (now / DAY + 1) * DAY;
        let (status, body) = get(
            &eval(&format!(
                "/1.0/metric/get?expression={}&step=864e5&start={start}&stop={stop}",
                enc("sum(request)")
            )),
            None,
        );
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .expect("bins")
            .iter()
            .map(|b| b["value"].as_f64().unwrap_or(0.0))
            .collect()
    };
    let before = series(&eval);
    assert_eq!(before.iter().sum::<f64>(), 30_000.0);
    let (status, stats) = get(&eval("/admin/stats"), None);
    assert_eq!(status, 200, "{stats}");
    let request = type_stats(&stats, "request").expect("request type");
    assert_eq!(request["events"], 30_000);
    assert!(
        request["bytes"].as_u64().expect("bytes") > 12_000_000,
        "{request}"
    );
    assert_eq!(request["retention"], "forever");
    assert!(server.terminate().success());
    let full = dir_bytes(&data);

    // Restart with a 30-day retention, swept every 200 ms.
    let server = spawn(
        &cubed_bin(),
        &data,
        &["--retention", "30d", "--retention-interval-ms", "200"],
    );
    let eval = |path: &str| format!("http://{}{path}", server.evaluator);
    let deadline = Instant::now() + Duration::from_secs(120);
    let kept = loop {
        let (status, stats) = get(&eval("/admin/stats"), None);
        assert_eq!(status, 200, "{stats}");
        let request = type_stats(&stats, "request").expect("request type");
        let events = request["events"].as_u64().expect("events");
        if events < 30_000 {
            assert_eq!(request["retention"], "30d");
            break events;
        }
        assert!(Instant::now() < deadline, "nothing expired: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Days 0..=29 are younger than 30 days; day 30's events are 30 days and
    // 2 hours old, so they are gone as well (whole hours go).
    assert_eq!(kept, 15_000);
    let after = series(&eval);
    assert_eq!(after.len(), before.len());
    let horizon_bin = after.len() - 1 - 30;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if i < horizon_bin {
            assert_eq!(*a, 0.0, "bin {i}: expired events still counted");
        } else if i > horizon_bin {
            assert_eq!(a, b, "bin {i}: kept events must count as before");
        }
    }
    assert_eq!(after.iter().sum::<f64>(), 15_000.0);
    // An event older than the retention is refused, naming it; a newer one
    // is stored.
    let put_url = format!("http://{}/1.0/event/put", server.collector);
    let old =
        json!([{"type": "request", "time": now - 40 * DAY}, {"type": "request", "time": now}]);
    let (status, error) = error_of(post(&put_url, &old.to_string(), None));
    assert_eq!((status, error.as_str()), (400, "invalid time"));
    let (status, body) = post(&put_url, &json!([{"type": "request"}]).to_string(), None);
    assert_eq!(status, 200, "{body}");
    // A re-sent id of an expired event is a new event.
    let (status, body) = post(
        &put_url,
        &json!([{"type": "request", "id": "d45e1", "time": now - 3 * 3_600_000}]).to_string(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (_, stats) = get(&eval("/admin/stats"), None);
    assert!(
        stats["events"].as_u64().expect("events") >= 15_002,
        "{stats}"
    );
    assert!(server.terminate().success());
    let shrunk = dir_bytes(&data);
    assert!(
        shrunk * 10 < full * 8,
        "the data directory did not shrink: {full} bytes before, {shrunk} after"
    );
}

#[test]
fn overrides_per_type_and_service_through_the_cli_and_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(
        &cubed_bin(),
        dir.path(),
        &["--retention-interval-ms", "200"],
    );
    let url = format!("http://{}", server.evaluator);
    let put_url = format!("http://{}/1.0/event/put", server.collector);
    let now = now_ms();
    let events = json!([
        {"type": "page", "time": now - 10 * DAY},
        {"type": "page", "time": now},
        {"type": "click", "time": now - 10 * DAY},
    ]);
    let (status, body) = post(&put_url, &events.to_string(), Some("shop"));
    assert_eq!(status, 200, "{body}");

    // The CLI sets a type's override; the API shows where each comes from.
    let (ok, out, err) = cli(&[
        "retention",
        "--url",
        &url,
        "--service",
        "shop",
        "set",
        "--type",
        "page",
        "2d",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("page") && out.contains("2d") && out.contains("type"),
        "{out}"
    );
    let (ok, out, err) = cli(&["stats", "--url", &url, "--service", "shop"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("service shop") && out.contains("click"),
        "{out}"
    );

    // The swept type loses its old event; the other keeps it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, err) = cli(&["stats", "--url", &url, "--service", "shop", "--json"]);
        assert!(ok, "{err}");
        let stats: Value = serde_json::from_str(&out).expect("json");
        let events = |t: &str| type_stats(&stats, t).map(|x| x["events"].as_u64().expect("events"));
        if events("page") == Some(1) {
            assert_eq!(events("click"), Some(1));
            break;
        }
        assert!(Instant::now() < deadline, "page not expired: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A whole-service override; a type left without events is forgotten.
    let (status, body) = put_json(
        &format!("{url}/admin/retention"),
        "PUT",
        &json!({"retention": "1d"}),
    );
    assert_eq!(status, 200, "{body}"); // the default service
    let shop = |body: Value| {
        let mut req = agent()
            .put(&format!("{url}/admin/retention"))
            .header("content-type", "application/json")
            .header("fiware-service", "shop");
        req = req.header("x-test", "1");
        let mut resp = req.send(body.to_string()).expect("request");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("body");
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    let (status, body) = shop(json!({"retention": "1d"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["overrides"]["*"], "1d");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, types) = get(&format!("{url}/1.0/types"), Some("shop"));
        let names: Vec<&str> = types
            .as_array()
            .expect("types")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if !names.contains(&"click") {
            assert!(names.contains(&"page"), "{types}");
            break;
        }
        assert!(Instant::now() < deadline, "click not forgotten: {types}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bad values are refused with what was expected.
    for bad in [
        json!({"retention": "5s"}),
        json!({"retention": 30}),
        json!({"type": "Bad Type", "retention": "1d"}),
        json!({"retention": "1d", "extra": 1}),
        json!([]),
    ] {
        let (status, error) = error_of(shop(bad.clone()));
        assert_eq!(status, 400, "{bad}: {error}");
    }
    // Removing the override: the type's own (2d) and the default apply again.
    let (status, body) = shop(json!({"retention": null}));
    assert_eq!(status, 200, "{body}");
    assert!(body["overrides"].get("*").is_none(), "{body}");
    let page = body["types"]
        .as_array()
        .expect("types")
        .iter()
        .find(|t| t["type"] == "page")
        .cloned()
        .expect("page");
    assert_eq!(
        (page["retention"].as_str(), page["from"].as_str()),
        (Some("2d"), Some("type"))
    );
    assert!(server.terminate().success());
}

#[test]
fn services_and_types_beyond_their_caps_get_429() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(
        &cubed_bin(),
        dir.path(),
        &[
            "--max-types",
            "2",
            "--max-services",
            "2",
            "--self-events",
            "false",
        ],
    );
    let put_url = format!("http://{}/1.0/event/put", server.collector);
    let put = |types: &[&str], service: Option<&str>| {
        let events: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        post(&put_url, &Value::Array(events).to_string(), service)
    };
    let first = put(&["one", "two"], None);
    assert_eq!(first.0, 200, "{}", first.1);
    let answer = put(&["one", "three"], None);
    assert_eq!(
        error_of(answer.clone()),
        (429, "too many types".to_owned()),
        "{:?}",
        answer
    );
    assert!(
        answer.1["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--max-types")
    );
    assert_eq!(
        put(&["one", "two"], None).0,
        200,
        "known types still take events"
    );
    assert_eq!(put(&["xx"], Some("second")).0, 200);
    let answer = put(&["xx"], Some("third"));
    assert_eq!(error_of(answer), (429, "too many services".to_owned()));
    // Nothing of a refused put was stored.
    let (_, types) = get(&format!("http://{}/1.0/types", server.evaluator), None);
    assert_eq!(types, json!(["one", "two"]));
    assert!(server.terminate().success());
}

/// Cubed's own events do not make services without end: requests naming
/// ever new services leave a `cube_request` in the first ones only, up to
/// the cap on services; a real put to a new service is still taken.
#[test]
fn self_events_do_not_create_services_beyond_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(&cubed_bin(), dir.path(), &["--max-services", "3"]);
    let types_url = format!("http://{}/1.0/types", server.evaluator);
    for i in 0..8 {
        let (status, body) = get(&types_url, Some(&format!("reader{i}")));
        assert_eq!(status, 200, "{body}");
    }
    // Self events are stored every second: wait for the first, then for
    // the rest to have had time.
    let count = || {
        (0..8)
            .filter(|i| {
                let (_, types) = get(&types_url, Some(&format!("reader{i}")));
                types.as_array().is_some_and(|t| !t.is_empty())
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let with_events = count();
    // The default service and the first readers fill the cap; the others
    // (and the requests just made) have none.
    assert!(with_events <= 3, "{with_events} services got self events");
    assert!(with_events >= 1, "no self events were stored at all");
    let put_url = format!("http://{}/1.0/event/put", server.collector);
    let (status, body) = post(
        &put_url,
        &json!([{"type": "page"}]).to_string(),
        Some("shop"),
    );
    assert_eq!(
        status, 200,
        "services holding only Cubed's own events do not count: {body}"
    );
    assert!(server.terminate().success());
}
