//! The evaluator's WebSocket endpoints on real sockets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use cubed::model::ManualClock;
use cubed::server::Options;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(s: &TestServer, path: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{}{}", s.evaluator, path))
        .await
        .expect("connect")
        .0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next JSON message (bounded wait: 10 s).
async fn next(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).expect("json"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

#[test]
fn metric_requests_multiplex_on_one_socket() {
    let s = TestServer::start();
    s.put(&json!([
        {"type": "req", "time": "2012-04-16T16:00:10Z", "data": {"ms": 5}},
        {"type": "req", "time": "2012-04-16T16:01:10Z", "data": {"ms": 7}},
        {"type": "req", "time": "2012-04-16T16:01:20Z", "data": {"ms": 9}},
    ]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/metric/get").await;
        let range = json!({"start": "2012-04-16T16:00:00Z", "stop": "2012-04-16T16:03:00Z", "step": 6e4});
        let mut a = range.clone();
        a["expression"] = json!("sum(req)");
        a["id"] = json!("count");
        let mut b = range.clone();
        b["expression"] = json!("max(req(ms))");
        b["id"] = json!(7);
        send(&mut ws, a).await;
        send(&mut ws, b).await;
        send(&mut ws, json!({"expression": "sum(req", "start": 0, "stop": 60000, "step": 60000, "id": "bad"})).await;
        let mut by_id: std::collections::HashMap<String, Vec<Value>> = Default::default();
        let mut ends = 0;
        let mut error = None;
        while ends < 2 || error.is_none() {
            let m = next(&mut ws).await;
            if m.get("error").is_some() {
                error = Some(m);
                continue;
            }
            if m.get("value").is_none() && m["time"] == "2012-04-16T16:03:00.000Z" {
                ends += 1;
            }
            by_id.entry(m["id"].to_string()).or_default().push(m);
        }
        let error = error.unwrap();
        assert_eq!(error["error"], "invalid expression");
        assert_eq!(error["id"], "bad");
        let values = |id: &str| {
            let mut v: Vec<(String, Value)> = by_id[id]
                .iter()
                .filter(|m| m.get("value").is_some() || m["time"] != "2012-04-16T16:03:00.000Z")
                .map(|m| (m["time"].as_str().unwrap().to_owned(), m.get("value").cloned().unwrap_or(Value::Null)))
                .collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v.into_iter().map(|x| x.1).collect::<Vec<_>>()
        };
        assert_eq!(values("\"count\""), [json!(1), json!(2), json!(0)]);
        // an undefined max is left out of its message
        assert_eq!(values("7"), [json!(5), json!(9), Value::Null]);
        // each request's last message is its end marker
        for id in ["\"count\"", "7"] {
            let last = by_id[id].last().unwrap();
            assert_eq!(last, &json!({"time": "2012-04-16T16:03:00.000Z", "id": serde_json::from_str::<Value>(id).unwrap()}));
        }
    });
}

#[test]
fn event_get_with_stop_sends_newest_first_then_null() {
    let s = TestServer::start();
    s.put(&json!([
        {"type": "hit", "time": 1000, "data": {"p": "/a"}},
        {"type": "hit", "time": 2000, "data": {"p": "/b"}},
        {"type": "hit", "time": 3000, "data": {"p": "/c"}},
    ]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/event/get").await;
        send(
            &mut ws,
            json!({"expression": "hit(p).ne(p, '/b')", "start": 0, "stop": 10000}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await,
            json!({"time": "1970-01-01T00:00:03.000Z", "data": {"p": "/c"}})
        );
        assert_eq!(
            next(&mut ws).await,
            json!({"time": "1970-01-01T00:00:01.000Z", "data": {"p": "/a"}})
        );
        assert_eq!(next(&mut ws).await, Value::Null);
        send(&mut ws, json!({"expression": "hit(", "stop": 1})).await;
        assert_eq!(next(&mut ws).await["error"], "invalid expression");
    });
}

#[test]
fn live_event_stream_follows_the_clock() {
    let clock = ManualClock::new(1_000_000);
    let options = Options {
        live_poll_interval: Duration::from_millis(20),
        ..Options::default()
    };
    let s = TestServer::start_with_options(Arc::new(clock.clone()), options);
    s.put(&json!([{"type": "tick", "time": 990_000, "data": {"n": 0}}]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/event/get").await;
        // history: [start, now - delay) = [0, 995000)
        send(&mut ws, json!({"expression": "tick(n)", "start": 0})).await;
        assert_eq!(next(&mut ws).await["data"], json!({"n": 0}));
        // an event newer than now - delay shows up once the clock passes it
        s.put(&json!([{"type": "tick", "time": 996_000, "data": {"n": 1}}]));
        clock.advance(2_000);
        assert_eq!(next(&mut ws).await, json!({"time": "1970-01-01T00:16:36.000Z", "data": {"n": 1}}));
        s.put(&json!([{"type": "tick", "time": 998_000, "data": {"n": 2}}, {"type": "tick", "time": 999_000, "data": {"n": 3}}]));
        clock.advance(10_000);
        assert_eq!(next(&mut ws).await["data"], json!({"n": 2}));
        assert_eq!(next(&mut ws).await["data"], json!({"n": 3}));
        // a second subscriber to the same expression gets the new events too
        let mut ws2 = connect(&s, "/1.0/event/get").await;
        send(&mut ws2, json!({"expression": "tick(n)", "start": 999_500})).await;
        // (newer than now - delay = 1_007_000, so not a late event)
        s.put(&json!([{"type": "tick", "time": 1_010_000, "data": {"n": 4}}]));
        clock.advance(5_000);
        assert_eq!(next(&mut ws).await["data"], json!({"n": 4}));
        assert_eq!(next(&mut ws2).await["data"], json!({"n": 4}));
    });
}

#[test]
fn types_over_websocket() {
    let s = TestServer::start();
    s.put(&json!([{"type": "beta", "time": 1}, {"type": "alpha", "time": 1}]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/types/get").await;
        send(&mut ws, json!({})).await;
        assert_eq!(next(&mut ws).await, json!(["alpha", "beta"]));
    });
}

/// Asks for `requests` answers of 10,000 bins each (about 600 KB each).
async fn ask_for_a_lot(ws: &mut Ws, requests: usize) {
    for i in 0..requests {
        send(
            ws,
            json!({"expression": "sum(req)", "start": "2012-04-16T00:00:00Z",
            "step": 1e4, "limit": 10_000, "stop": "2012-04-17T04:00:00Z", "id": i}),
        )
        .await;
    }
}

/// Reads what reached the socket until it ends: (text messages, whether
/// it ended within 20 s of the last one).
async fn drain(ws: &mut Ws) -> (usize, bool) {
    let mut received = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => received += 1,
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                return (received, true);
            }
            Ok(Some(Ok(_))) => {}
            Err(_) => return (received, false),
        }
    }
}

/// A server whose evaluator sockets have the given queue cap and in-flight cap.
fn start_with_socket_limits(max_ws_queue_bytes: usize, max_ws_in_flight: usize) -> TestServer {
    let limits = cubed::server::Limits {
        max_ws_queue_bytes,
        max_ws_in_flight,
        ..Default::default()
    };
    TestServer::start_with(Arc::new(cubed::model::SystemClock), limits)
}

/// A client that asks for far more than the queue cap and never reads is
/// disconnected: the server drops its answers instead of buffering them,
/// and goes on answering others.
#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let s = start_with_socket_limits(256 * 1024, 1000);
    s.put(&json!([{"type": "req", "time": "2012-04-16T16:00:10Z"}]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/metric/get").await;
        // 100 requests of 10,000 bins each: about 60 MB of answers.
        let requests = 100;
        ask_for_a_lot(&mut ws, requests).await;
        // Not reading while the server works.
        tokio::time::sleep(Duration::from_secs(3)).await;
        // What reached the socket before it was closed, then its end.
        let (received, ended) = drain(&mut ws).await;
        assert!(
            ended,
            "the socket of a client that stopped reading stayed open"
        );
        let all = requests * 10_001;
        assert!(
            received < all / 2,
            "{received} of {all} answers were buffered for a client that did not read"
        );
        // Others are served as before.
        let mut other = connect(&s, "/1.0/metric/get").await;
        send(
            &mut other,
            json!({"expression": "sum(req)", "start": "2012-04-16T16:00:00Z",
            "stop": "2012-04-16T16:01:00Z", "step": 6e4, "id": "after"}),
        )
        .await;
        let bin = next(&mut other).await;
        assert_eq!(bin["value"], json!(1), "{bin}");
    });
}

/// All sockets' queues together are capped too: a client that stops
/// reading is disconnected once the server-wide queue is past its cap,
/// even when its own queue is far under the per-socket cap (here 256 MiB,
/// which the 60 MB asked for would never reach).
#[test]
fn the_server_wide_queue_cap_disconnects_a_client_that_stops_reading() {
    let limits = cubed::server::Limits {
        max_ws_queue_bytes: 256 << 20,
        max_ws_queue_total_bytes: 1 << 20,
        max_ws_in_flight: 1000,
        ..Default::default()
    };
    let s = TestServer::start_with(Arc::new(cubed::model::SystemClock), limits);
    s.put(&json!([{"type": "req", "time": "2012-04-16T16:00:10Z"}]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut reader = connect(&s, "/1.0/metric/get").await;
        let mut ws = connect(&s, "/1.0/metric/get").await;
        ask_for_a_lot(&mut ws, 100).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (received, ended) = drain(&mut ws).await;
        assert!(
            ended,
            "a client that stopped reading stayed open under the server-wide cap"
        );
        assert!(
            received < 100 * 10_001 / 2,
            "{received} answers were buffered"
        );
        // A socket that reads is served, before and after.
        send(
            &mut reader,
            json!({"expression": "sum(req)", "start": "2012-04-16T16:00:00Z",
            "stop": "2012-04-16T16:01:00Z", "step": 6e4, "id": "after"}),
        )
        .await;
        let bin = next(&mut reader).await;
        assert_eq!(bin["value"], json!(1), "{bin}");
    });
}

/// Requests beyond the in-flight cap of a socket are refused one by one,
/// each answered with its id; those in flight go on.
#[test]
fn requests_beyond_the_in_flight_cap_are_refused() {
    let s = start_with_socket_limits(16 << 20, 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/event/get").await;
        // Live streams (no stop) stay in flight.
        for i in 0..5 {
            send(&mut ws, json!({"expression": "req(x)", "id": i})).await;
        }
        let mut refused = Vec::new();
        for _ in 0..3 {
            let a = next(&mut ws).await;
            assert_eq!(a["error"], json!("too many requests"), "{a}");
            assert!(
                a["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("--max-ws-in-flight")),
                "{a}"
            );
            refused.push(a["id"].clone());
        }
        assert_eq!(refused, vec![json!(2), json!(3), json!(4)]);
    });
}

/// Live event streams are capped server-wide: a stream of a new
/// expression beyond the cap is refused, one that shares a running poll
/// is not, and the cap frees up when streams end.
#[test]
fn live_streams_beyond_the_cap_are_refused() {
    let s = TestServer::start_with_options(
        Arc::new(cubed::model::SystemClock),
        Options {
            max_live_streams: 2,
            self_events: false,
            ..Options::default()
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/event/get").await;
        // One at a time (each request is answered by its own task).
        for (expression, id) in [("aa(x)", 1), ("bb(x)", 2), ("aa(x)", 3), ("cc(x)", 4)] {
            send(&mut ws, json!({"expression": expression, "id": id})).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let refused = next(&mut ws).await;
        assert_eq!(
            refused["error"],
            json!("too many live streams"),
            "{refused}"
        );
        assert_eq!(
            refused["id"],
            json!(4),
            "only the third distinct stream: {refused}"
        );
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains("--max-live-streams")),
            "{refused}"
        );
        // Nothing else was refused.
        let quiet = tokio::time::timeout(Duration::from_millis(1500), ws.next()).await;
        assert!(quiet.is_err(), "another answer: {quiet:?}");
        drop(ws);
        // Once those streams are gone, a new one is taken.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut ws = connect(&s, "/1.0/event/get").await;
        send(&mut ws, json!({"expression": "dd(x)", "id": 5})).await;
        let quiet = tokio::time::timeout(Duration::from_millis(1500), ws.next()).await;
        assert!(quiet.is_err(), "the stream was refused: {quiet:?}");
    });
}

/// WebSockets are bounded server-wide (`--max-websockets`), on both
/// listeners together: an upgrade beyond the cap gets `503 too many
/// websockets`; a closed socket frees its place.
#[test]
fn websockets_are_capped_server_wide() {
    let limits = cubed::server::Limits {
        max_websockets: 2,
        ..Default::default()
    };
    let s = TestServer::start_with(Arc::new(cubed::model::SystemClock), limits);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut first = connect(&s, "/1.0/types/get").await;
        let (second, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/1.0/event/put", s.collector))
                .await
                .expect("a put socket is the second");
        match tokio_tungstenite::connect_async(format!("ws://{}/1.0/metric/get", s.evaluator)).await
        {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 503);
                assert_eq!(
                    resp.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("1")
                );
                let body =
                    String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
                assert!(body.contains("too many websockets"), "{body}");
            }
            other => panic!("a third socket must be refused: {other:?}"),
        }
        // The sockets open still work.
        send(&mut first, json!({})).await;
        assert_eq!(next(&mut first).await, json!([]));
        drop(second);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio_tungstenite::connect_async(format!("ws://{}/1.0/metric/get", s.evaluator))
                .await
            {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("a closed socket frees its place: {e}"),
            }
        }
    });
}

/// A grouped expression over WebSocket: one message per bin and group,
/// each with the request's id, then the end marker.
#[test]
fn grouped_metrics_over_websocket() {
    let s = TestServer::start();
    s.put(&json!([
        {"type": "req", "time": "2012-04-16T16:00:10Z", "data": {"ms": 5, "path": "/a"}},
        {"type": "req", "time": "2012-04-16T16:01:10Z", "data": {"ms": 7, "path": "/b"}},
    ]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/metric/get").await;
        send(
            &mut ws,
            json!({"expression": "sum(req(ms)).group(path)", "start": "2012-04-16T16:00:00Z",
                   "stop": "2012-04-16T16:02:00Z", "step": 6e4, "id": "g"}),
        )
        .await;
        let mut got = Vec::new();
        loop {
            let m = next(&mut ws).await;
            assert_eq!(m["id"], "g", "{m}");
            if m.get("group").is_none() {
                assert_eq!(m, json!({"time": "2012-04-16T16:02:00.000Z", "id": "g"}));
                break;
            }
            got.push((m["time"].clone(), m["group"].clone(), m["value"].clone()));
        }
        got.sort_by_key(|g| format!("{g:?}"));
        assert_eq!(
            got,
            vec![
                (json!("2012-04-16T16:00:00.000Z"), json!("/a"), json!(5)),
                (json!("2012-04-16T16:00:00.000Z"), json!("/b"), json!(0)),
                (json!("2012-04-16T16:01:00.000Z"), json!("/a"), json!(0)),
                (json!("2012-04-16T16:01:00.000Z"), json!("/b"), json!(7)),
            ]
        );
    });
}

/// Collects `n` messages as time -> message.
async fn bins(ws: &mut Ws, n: usize) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for _ in 0..n {
        let m = next(ws).await;
        let key = format!(
            "{}{}",
            m["time"].as_str().expect("time"),
            m.get("group").map(|g| g.to_string()).unwrap_or_default()
        );
        out.insert(key, m);
    }
    out
}

#[test]
fn live_metrics_send_closing_bins_and_corrections() {
    let clock = ManualClock::new(1_000_000);
    let options = Options {
        live_poll_interval: Duration::from_millis(20),
        self_events: false,
        ..Options::default()
    };
    let s = TestServer::start_with_options(Arc::new(clock.clone()), options);
    s.put(&json!([{"type": "tick", "time": 900_000, "data": {"k": "a"}}]));
    let iso = cubed::model::time::format_iso;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(&s, "/1.0/metric/get").await;
        // No stop: the bins from start to the last closed one (now - delay
        // = 995,000 floored: [880,000, 990,000)), then the stream.
        send(&mut ws, json!({"expression": "sum(tick)", "start": 880_000, "step": 10_000, "id": "L"})).await;
        let history = bins(&mut ws, 11).await;
        assert_eq!(history[&iso(900_000)], json!({"time": iso(900_000), "value": 1, "id": "L"}));
        // Then a marker: the history is complete, the stream starts here.
        assert_eq!(next(&mut ws).await, json!({"time": iso(990_000), "live": true, "id": "L"}));
        assert_eq!(history[&iso(980_000)]["value"], 0);
        assert!(!history.contains_key(&iso(990_000)));
        // An event in the open bin: sent once the bin closes (now - delay
        // passes its end), and not before.
        s.put(&json!([{"type": "tick", "time": 991_000, "data": {"k": "b"}}]));
        clock.advance(4_000);
        tokio::time::sleep(Duration::from_millis(200)).await;
        clock.advance(1_000);
        assert_eq!(next(&mut ws).await, json!({"time": iso(990_000), "value": 1, "id": "L"}));
        // A late event corrects a bin already sent.
        s.put(&json!([{"type": "tick", "time": 905_000, "data": {"k": "a"}}]));
        assert_eq!(next(&mut ws).await, json!({"time": iso(900_000), "value": 2, "id": "L"}));
        // An upsert moving an event corrects both of its bins.
        s.put(&json!([{"type": "tick", "time": 960_000, "id": "u", "data": {"k": "a"}}]));
        assert_eq!(next(&mut ws).await, json!({"time": iso(960_000), "value": 1, "id": "L"}));
        s.put(&json!([{"type": "tick", "time": 970_000, "id": "u", "data": {"k": "a"}}]));
        let moved = bins(&mut ws, 2).await;
        assert_eq!(moved[&iso(960_000)]["value"], 0);
        assert_eq!(moved[&iso(970_000)]["value"], 1);
        // A second request for the same expression joins the poll; both
        // get the next closing bin.
        let mut ws2 = connect(&s, "/1.0/metric/get").await;
        send(&mut ws2, json!({"expression": "sum(tick)", "start": 990_000, "step": 10_000})).await;
        assert_eq!(next(&mut ws2).await, json!({"time": iso(990_000), "value": 1}));
        assert_eq!(next(&mut ws2).await, json!({"time": iso(1_000_000), "live": true}));
        s.put(&json!([{"type": "tick", "time": 1_001_000, "data": {"k": "b"}}, {"type": "tick", "time": 1_002_000, "data": {"k": "b"}}]));
        clock.advance(10_000);
        assert_eq!(next(&mut ws).await, json!({"time": iso(1_000_000), "value": 2, "id": "L"}));
        assert_eq!(next(&mut ws2).await, json!({"time": iso(1_000_000), "value": 2}));
        // Grouped: a row per group and bin; a late event corrects its group.
        let mut ws3 = connect(&s, "/1.0/metric/get").await;
        send(&mut ws3, json!({"expression": "sum(tick).group(k)", "start": 990_000, "step": 10_000})).await;
        // (groups are those with events in the history's range: only b)
        let rows = bins(&mut ws3, 2).await;
        assert_eq!(rows[&format!("{}\"b\"", iso(990_000))]["value"], 1);
        assert_eq!(rows[&format!("{}\"b\"", iso(1_000_000))]["value"], 2);
        assert_eq!(next(&mut ws3).await["live"], true);
        s.put(&json!([{"type": "tick", "time": 1_003_000, "data": {"k": "a"}}]));
        assert_eq!(next(&mut ws3).await, json!({"time": iso(1_000_000), "group": "a", "value": 1}));
        // A top N needs a whole range: refused without stop.
        send(&mut ws3, json!({"expression": "sum(tick).group(k, 1)", "start": 0, "step": 10_000, "id": 7})).await;
        let refused = next(&mut ws3).await;
        assert_eq!((refused["error"].as_str(), &refused["id"]), (Some("invalid request"), &json!(7)), "{refused}");
        // The late event at 1,003,000 corrected sum(tick) too, for both.
        assert_eq!(next(&mut ws).await, json!({"time": iso(1_000_000), "value": 3, "id": "L"}));
        assert_eq!(next(&mut ws2).await, json!({"time": iso(1_000_000), "value": 3}));
        // `{"cancel": id}` stops a live request: the next bin that closes
        // is not sent for it, while other requests on the socket go on.
        send(&mut ws, json!({"cancel": "L"})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.put(&json!([{"type": "tick", "time": 1_011_000, "data": {"k": "b"}}]));
        clock.advance(10_000);
        assert_eq!(next(&mut ws2).await, json!({"time": iso(1_010_000), "value": 1}));
        send(&mut ws, json!({"expression": "sum(tick)", "start": 0, "stop": 10_000, "step": 10_000, "id": "M"})).await;
        assert_eq!(next(&mut ws).await, json!({"time": iso(0), "value": 0, "id": "M"}));
        // Grouped: the bin that closed meanwhile; then a group whose only
        // event an upsert moves out of a bin gets its value over nothing there.
        assert_eq!(next(&mut ws3).await, json!({"time": iso(1_010_000), "group": "b", "value": 1}));
        s.put(&json!([{"type": "tick", "time": 1_004_000, "id": "g", "data": {"k": "c"}}]));
        assert_eq!(next(&mut ws3).await, json!({"time": iso(1_000_000), "group": "c", "value": 1}));
        s.put(&json!([{"type": "tick", "time": 995_000, "id": "g", "data": {"k": "c"}}]));
        // (and `a`, which the range now has, gets its 0 at 990,000: what a
        // request of the range would answer)
        let moved = bins(&mut ws3, 3).await;
        assert_eq!(moved[&format!("{}\"c\"", iso(990_000))]["value"], 1, "{moved:?}");
        assert_eq!(moved[&format!("{}\"c\"", iso(1_000_000))]["value"], 0, "{moved:?}");
        assert_eq!(moved[&format!("{}\"a\"", iso(990_000))]["value"], 0, "{moved:?}");
    });
}
