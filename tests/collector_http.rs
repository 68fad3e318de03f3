//! The collector and the event/type endpoints over real sockets.

mod common;

use common::{TestServer, enc, error_of, get, post};
use serde_json::json;

#[test]
fn put_then_get_events_and_types() {
    let s = TestServer::start();
    let body = json!([
        {"type": "request", "time": "2012-04-16T16:00:00Z", "data": {"path": "/a", "ms": 5, "user": {"id": 1, "name": "x"}}},
        {"type": "request", "time": 1334592010000i64, "data": {"path": "/b", "ms": 50}, "id": "r2"},
        {"type": "other", "time": "2012-04-16T16:00:00Z"}
    ]);
    assert_eq!(
        post(&s.collector_url("/1.0/event/put"), &body.to_string(), None),
        (200, json!({}))
    );
    // the alias
    let (status, _) = post(
        &s.collector_url("/1.0/event"),
        r#"[{"type":"request","time":1334592020000,"data":{"path":"/a","ms":7}}]"#,
        None,
    );
    assert_eq!(status, 200);

    assert_eq!(
        get(&s.evaluator_url("/1.0/types"), None),
        (200, json!(["other", "request"]))
    );
    assert_eq!(
        get(&s.evaluator_url("/1.0/types/get"), None).1,
        json!(["other", "request"])
    );

    let (status, events) = get(
        &s.evaluator_url(&format!(
            "/1.0/event/get?expression={}",
            enc("request(path).gt(ms, 6)")
        )),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        events,
        json!([
            {"time": "2012-04-16T16:00:10.000Z", "data": {"path": "/b"}, "id": "r2"},
            {"time": "2012-04-16T16:00:20.000Z", "data": {"path": "/a"}}
        ])
    );
    // fields named must exist: only the first event has user.id
    let (_, events) = get(
        &s.evaluator_url(&format!(
            "/1.0/event?expression={}",
            enc("request(path, user.id).gt(ms, 0)")
        )),
        None,
    );
    assert_eq!(
        events,
        json!([{"time": "2012-04-16T16:00:00.000Z", "data": {"path": "/a", "user": {"id": 1}}}])
    );
    let (_, events) = get(
        &s.evaluator_url(&format!(
            "/1.0/event?expression={}",
            enc("request(user.id)")
        )),
        None,
    );
    assert_eq!(
        events,
        json!([{"time": "2012-04-16T16:00:00.000Z", "data": {"user": {"id": 1}}}])
    );
    // no fields named: only times; limit keeps the newest, in chronological order
    let (_, events) = get(
        &s.evaluator_url("/1.0/event?expression=request&limit=2"),
        None,
    );
    assert_eq!(
        events,
        json!([{"time": "2012-04-16T16:00:10.000Z", "id": "r2"}, {"time": "2012-04-16T16:00:20.000Z"}])
    );
    // [start, stop)
    let (_, events) = get(
        &s.evaluator_url(
            "/1.0/event?expression=request&start=2012-04-16T16:00:10Z&stop=1334592020000",
        ),
        None,
    );
    assert_eq!(
        events,
        json!([{"time": "2012-04-16T16:00:10.000Z", "id": "r2"}])
    );
}

#[test]
fn bad_batches_are_refused_whole_with_every_reason() {
    let s = TestServer::start();
    let body =
        r#"[{"type":"good","time":1},{"type":"x"},{"type":"good","time":"never"},{"time":5},[1]]"#;
    let (status, err) = post(&s.collector_url("/1.0/event/put"), body, None);
    assert_eq!(status, 400);
    assert_eq!(
        err["errors"],
        json!([
            {"index": 1, "error": "invalid type", "message": "a type must match ^[a-z][a-zA-Z0-9_]+$"},
            {"index": 2, "error": "invalid time", "message": "expected ISO 8601 or epoch milliseconds, within years 0 to 9999"},
            {"index": 3, "error": "invalid type", "message": "a type must match ^[a-z][a-zA-Z0-9_]+$"},
            {"index": 4, "error": "invalid event", "message": "not a JSON object"}
        ])
    );
    assert_eq!(err["error"], "invalid type");
    // nothing of the batch was stored, not even the good event
    assert_eq!(get(&s.evaluator_url("/1.0/types"), None).1, json!([]));
    assert_eq!(
        get(&s.evaluator_url("/1.0/event?expression=good"), None).1,
        json!([])
    );

    for bad in ["{}", "not json", "[{", "", "\"str\""] {
        let (status, err) = post(&s.collector_url("/1.0/event/put"), bad, None);
        assert_eq!(status, 400, "{bad}");
        assert_eq!(err["error"], "invalid body", "{bad}");
    }
}

#[test]
fn limits_and_errors_are_clear() {
    let limits = cubed::server::Limits {
        max_body_bytes: 1000,
        max_ws_message_bytes: 1000,
        ..Default::default()
    };
    let s = TestServer::start_with(std::sync::Arc::new(cubed::model::SystemClock), limits);
    let big = format!(
        r#"[{{"type":"test","data":{{"s":"{}"}}}}]"#,
        "x".repeat(2000)
    );
    let (status, err) = post(&s.collector_url("/1.0/event/put"), &big, None);
    assert_eq!(status, 413);
    assert_eq!(err["error"], "request body too large");
    let deep = format!(
        r#"[{{"type":"test","data":{}1{}}}]"#,
        "[".repeat(70),
        "]".repeat(70)
    );
    let (status, err) = post(&s.collector_url("/1.0/event/put"), &deep, None);
    assert_eq!(
        (status, err["errors"][0].clone()),
        (
            400,
            json!({"index": 0, "error": "invalid data", "message": "nested more than 64 levels deep"})
        )
    );

    let (status, err) = get(
        &s.evaluator_url(&format!("/1.0/event?expression={}", enc("request("))),
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(
        err,
        json!({"error": "invalid expression", "message": "expected field name at 8"})
    );
    assert_eq!(
        error_of(get(
            &s.evaluator_url("/1.0/event?expression=test&start=x"),
            None
        )),
        (400, "invalid start".into())
    );
    assert_eq!(
        error_of(get(
            &s.evaluator_url("/1.0/event?expression=test&stop=x"),
            None
        )),
        (400, "invalid stop".into())
    );
    assert_eq!(
        error_of(get(
            &s.evaluator_url("/1.0/event?expression=test&limit=x"),
            None
        )),
        (400, "invalid limit".into())
    );
    assert_eq!(get(&s.evaluator_url("/nothing/here"), None).0, 404);
    assert_eq!(get(&s.collector_url("/nothing/here"), None).0, 404);
    assert_eq!(get(&s.collector_url("/collectd"), None).0, 405);
    assert_eq!(post(&s.evaluator_url("/1.0/types"), "", None).0, 405);
}

#[test]
fn services_are_isolated_and_validated() {
    let s = TestServer::start();
    let (status, _) = post(
        &s.collector_url("/1.0/event/put"),
        r#"[{"type":"secret","time":1}]"#,
        Some("acme"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        get(&s.evaluator_url("/1.0/types"), Some("acme")).1,
        json!(["secret"])
    );
    assert_eq!(get(&s.evaluator_url("/1.0/types"), None).1, json!([]));
    assert_eq!(
        get(&s.evaluator_url("/1.0/types"), Some("globex")).1,
        json!([])
    );
    assert_eq!(
        get(
            &s.evaluator_url("/1.0/event?expression=secret"),
            Some("globex")
        )
        .1,
        json!([])
    );
    assert_eq!(
        get(
            &s.evaluator_url("/1.0/event?expression=secret"),
            Some("acme")
        )
        .1
        .as_array()
        .map(Vec::len),
        Some(1)
    );
    for bad in ["Acme", "a-b", &"x".repeat(51)] {
        let (status, err) = post(&s.collector_url("/1.0/event/put"), "[]", Some(bad));
        assert_eq!(
            (status, err["error"].clone()),
            (400, json!("invalid service")),
            "{bad}"
        );
        assert_eq!(get(&s.evaluator_url("/1.0/types"), Some(bad)).0, 400);
    }
}

#[test]
fn ids_upsert() {
    let s = TestServer::start();
    post(
        &s.collector_url("/1.0/event/put"),
        r#"[{"type":"test","time":1000,"id":"a","data":{"v":1}}]"#,
        None,
    );
    post(
        &s.collector_url("/1.0/event/put"),
        r#"[{"type":"test","time":2000,"id":"a","data":{"v":2}}]"#,
        None,
    );
    let (_, events) = get(&s.evaluator_url("/1.0/event?expression=test(v)"), None);
    assert_eq!(
        events,
        json!([{"time": "1970-01-01T00:00:02.000Z", "data": {"v": 2}, "id": "a"}])
    );
}

#[test]
fn cors_headers_and_preflight() {
    let s = TestServer::start();
    let resp = common::agent()
        .get(&s.evaluator_url("/1.0/types"))
        .call()
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    // A browser's preflight, answered by warp's CORS filter.
    let resp = common::agent()
        .options(&s.collector_url("/1.0/event/put"))
        .header("origin", "http://localhost:8000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert!(header("access-control-allow-methods").contains("post"));
    assert!(header("access-control-allow-headers").contains("authorization"));
    assert_eq!(
        header("access-control-allow-origin"),
        "http://localhost:8000"
    );
    assert!(header("access-control-allow-credentials").is_empty());
    // A header nobody allowed: refused as JSON.
    let resp = common::agent()
        .options(&s.collector_url("/1.0/event/put"))
        .header("origin", "http://localhost:8000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-secret")
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

/// A page elsewhere cannot write to (or open a WebSocket on) a Cubed on
/// this machine, even with a simple `text/plain` POST that needs no
/// preflight; its own pages and clients without `Origin` can; anyone may GET.
#[test]
fn foreign_origins_cannot_write_or_open_websockets() {
    let s = TestServer::start();
    let body = json!([{"type": "req", "time": 1000}]).to_string();
    let post = |origin: Option<&str>, content_type: &str| {
        let mut req = common::agent()
            .post(&s.collector_url("/1.0/event/put"))
            .header("content-type", content_type);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let mut resp = req.send(&body).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (status, text)
    };
    for origin in ["http://evil.example", "null", "http://localhost:8000"] {
        let (status, text) = post(Some(origin), "text/plain");
        assert_eq!(status, 403, "{origin}: {text}");
        assert!(text.contains("forbidden origin"), "{text}");
    }
    let (_, types) = common::get(&s.evaluator_url("/1.0/types"), None);
    assert_eq!(types, json!([]), "nothing was stored");
    // A page served by the collector's own (loopback) origin, and a client
    // that sends no Origin, may put.
    let own = format!("http://{}", s.collector);
    assert_eq!(post(Some(&own), "application/json").0, 200);
    assert_eq!(post(None, "application/x-www-form-urlencoded").0, 200);
    // A DNS-rebinding page: its Origin names the Host it sent to, but that
    // is not loopback while the server listens on loopback only.
    let resp = common::agent()
        .post(&s.collector_url("/1.0/event/put"))
        .header("host", "rebound.example:1080")
        .header("origin", "http://rebound.example:1080")
        .send(&body)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // GETs from any origin are answered, the origin echoed.
    let resp = common::agent()
        .get(&s.evaluator_url("/1.0/types"))
        .header("origin", "http://evil.example")
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // WebSocket handshakes from a foreign origin are refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        for (url, origin, ok) in [
            (
                format!("ws://{}/1.0/event/get", s.evaluator),
                "http://evil.example".to_owned(),
                false,
            ),
            (
                format!("ws://{}/1.0/event/put", s.collector),
                "http://evil.example".to_owned(),
                false,
            ),
            (
                format!("ws://{}/1.0/event/get", s.evaluator),
                format!("http://{}", s.evaluator),
                true,
            ),
        ] {
            let mut req = url.as_str().into_client_request().unwrap();
            req.headers_mut().insert("origin", origin.parse().unwrap());
            match tokio_tungstenite::connect_async(req).await {
                Ok(_) => assert!(ok, "{url} from {origin} must be refused"),
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    assert!(!ok, "{url} from {origin}: {resp:?}");
                    assert_eq!(resp.status().as_u16(), 403);
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
}

#[test]
fn collectd_write_http_json() {
    let s = TestServer::start();
    let body = json!([
        {"values": [0.5, 0.4, 0.3], "dstypes": ["gauge", "gauge", "gauge"], "dsnames": ["shortterm", "midterm", "longterm"],
         "time": 1334592000.2, "interval": 10, "host": "web1", "plugin": "load", "plugin_instance": "", "type": "load", "type_instance": ""},
        {"values": [1000], "dstypes": ["derive"], "dsnames": ["value"], "time": 1334592000, "interval": 10,
         "host": "web1", "plugin": "cpu", "plugin_instance": "0", "type": "cpu", "type_instance": "idle"}
    ]);
    assert_eq!(
        post(&s.collector_url("/collectd"), &body.to_string(), None),
        (200, json!({}))
    );
    let body2 = json!([{"values": [1600], "dstypes": ["derive"], "dsnames": ["value"], "time": 1334592010, "interval": 10,
         "host": "web1", "plugin": "cpu", "plugin_instance": "0", "type": "cpu", "type_instance": "idle"}]);
    assert_eq!(
        post(&s.collector_url("/collectd"), &body2.to_string(), None).0,
        200
    );
    let (_, events) = get(
        &s.evaluator_url(&format!(
            "/1.0/event?expression={}",
            enc("collectd(load.shortterm).eq(host, 'web1')")
        )),
        None,
    );
    assert_eq!(
        events,
        json!([{"time": "2012-04-16T16:00:00.000Z", "data": {"load": {"shortterm": 0.5}}}])
    );
    let (_, events) = get(
        &s.evaluator_url(&format!(
            "/1.0/event?expression={}",
            enc("collectd(cpu).eq(type, 'idle')")
        )),
        None,
    );
    assert_eq!(
        events,
        json!([
            {"time": "2012-04-16T16:00:00.000Z", "data": {"cpu": 0}},
            {"time": "2012-04-16T16:00:10.000Z", "data": {"cpu": 600}}
        ])
    );
    let (status, err) = post(&s.collector_url("/collectd"), r#"[{"values":"x"}]"#, None);
    assert_eq!(
        (status, err["error"].clone()),
        (400, json!("invalid collectd body"))
    );
}

/// A body that does not arrive in time is answered `408` (and the
/// connection is not held): a client that starts a put and stalls.
#[test]
fn a_stalled_body_gets_408() {
    use std::io::{Read, Write};
    let limits = cubed::server::Limits {
        body_timeout: std::time::Duration::from_millis(500),
        ..Default::default()
    };
    let s = TestServer::start_with(std::sync::Arc::new(cubed::model::SystemClock), limits);
    let mut sock = std::net::TcpStream::connect(&s.collector).expect("connect");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    sock.write_all(
        b"POST /1.0/event/put HTTP/1.1\r\nHost: cubed\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"type\":",
    )
    .expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("--body-timeout") {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to a stalled body: {e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"request timeout\""), "{answer}");
}
