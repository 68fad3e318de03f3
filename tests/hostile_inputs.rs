//! Hostile and unlucky inputs against the real `cubed` binary (issue 12):
//! each of the eight cases the issue found, and the limits around them.
//! After each, the server must be alive, must acknowledge and show a normal
//! put on every ingest path, and must answer metrics that equal the events.

mod common;
use common::spawn;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{enc, get, post};
use futures_util::SinkExt;
use serde_json::{Value, json};

/// A running `cubed serve` on its own data directory.
struct Cubed {
    s: spawn::Spawned,
}

impl Cubed {
    fn start(dir: &std::path::Path, extra: &[&str]) -> Cubed {
        Cubed {
            s: spawn::spawn(&spawn::cubed_bin(), dir, extra),
        }
    }

    fn put(&self, body: &str) -> (u16, Value) {
        post(
            &format!("http://{}/1.0/event/put", self.s.collector),
            body,
            None,
        )
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        post(&format!("http://{}{path}", self.s.collector), body, None)
    }

    fn get(&self, path_and_query: &str) -> (u16, Value) {
        get(
            &format!("http://{}{path_and_query}", self.s.evaluator),
            None,
        )
    }

    fn events(&self, expr: &str, start: i64, stop: i64) -> Vec<Value> {
        let (status, v) = self.get(&format!(
            "/1.0/event?expression={}&start={start}&stop={stop}",
            enc(expr)
        ));
        assert_eq!(status, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    }

    /// The values of a metric, by bin.
    fn metric(&self, expr: &str, start: i64, stop: i64, step: i64) -> Vec<Value> {
        let (status, v) = self.get(&format!(
            "/1.0/metric?expression={}&start={start}&stop={stop}&step={step}",
            enc(expr)
        ));
        assert_eq!(status, 200, "{v}");
        v.as_array()
            .map(|bins| bins.iter().map(|b| b["value"].clone()).collect())
            .unwrap_or_default()
    }

    fn kill9(mut self) {
        self.s.child.kill().expect("kill -9");
        self.s.child.wait().expect("wait");
    }

    /// The server is alive: a normal put on HTTP is acknowledged and shows
    /// in event/get and in a metric.
    fn assert_healthy(&self, marker: i64) {
        let t = 1_600_000_000_000 + marker * 10_000;
        let (status, body) = self.put(&json!([{"type": "healthy", "time": t}]).to_string());
        assert_eq!(status, 200, "a normal put after the hostile one: {body}");
        assert_eq!(self.events("healthy", t, t + 1).len(), 1);
        assert_eq!(
            self.metric("sum(healthy)", t, t + 10_000, 10_000),
            [json!(1)]
        );
    }
}

impl Drop for Cubed {
    fn drop(&mut self) {
        let _ = self.s.child.kill();
        let _ = self.s.child.wait();
    }
}

/// Polls until `expr` has `n` events in `[start, stop)`.
fn wait_for(c: &Cubed, expr: &str, start: i64, stop: i64, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = c.events(expr, start, stop);
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const T: i64 = 1_334_592_000_000; // 2012-04-16T16:00:00Z

/// Case 1: a 70,000-byte type or id used to panic the storage engine under
/// the writer lock; every later put on every path then answered 503.
#[test]
fn a_70000_byte_type_or_id_is_refused_and_every_path_still_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &["--udp-addr", "127.0.0.1:0"]);
    let long = "a".repeat(70_000);
    let (status, body) = c.put(&json!([{"type": long, "time": T}]).to_string());
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid type");
    assert_eq!(body["errors"][0]["message"], "type longer than 128 bytes");
    let (status, body) = c.put(&json!([{"type": "longid", "time": T, "id": long}]).to_string());
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid id");
    assert_eq!(body["errors"][0]["message"], "id longer than 1024 bytes");
    let (status, body) = c.put(&json!([{"type": "longid", "time": T, "id": 1e300}]).to_string());
    assert_eq!(status, 200, "a number id far past 2^53 is fine: {body}");

    // Every ingest path still writes.
    c.assert_healthy(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/1.0/event/put", c.s.collector))
                .await
                .expect("websocket");
        let msg = json!({"type": "viaws", "time": T}).to_string();
        ws.send(tokio_tungstenite::tungstenite::Message::text(msg))
            .await
            .unwrap();
        ws.close(None).await.unwrap();
    });
    assert_eq!(wait_for(&c, "viaws", T, T + 1, 1).len(), 1);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        json!({"type": "viaudp", "time": T}).to_string().as_bytes(),
        &c.s.udp,
    )
    .unwrap();
    assert_eq!(wait_for(&c, "viaudp", T, T + 1, 1).len(), 1);
    let collectd = json!([{"values": [1], "dstypes": ["gauge"], "dsnames": ["value"],
        "time": T / 1000, "host": "h", "plugin": "load", "type": "load"}]);
    assert_eq!(c.post("/collectd", &collectd.to_string()).0, 200);
    assert_eq!(c.events("collectd", T, T + 1).len(), 1);
    let (status, body) = c.post(
        "/api/sessions/s1/metrics",
        &json!({"name": "viasession", "value": 1, "time": T}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let unit = json!({"category": "c", "tag": "t", "type": "counter", "content": {"count": 1},
        "send_timestamp": T});
    assert_eq!(c.post("/1.0/emetrics", &unit.to_string()).0, 200);
    assert_eq!(c.events("counter", T, T + 1).len(), 1);
    // ...and the hostile paths are refused the same way on each.
    let (status, body) = c.post(
        "/api/sessions/s1/metrics",
        &json!({"name": "a".repeat(200), "value": 1}).to_string(),
    );
    assert_eq!((status, body["success"].clone()), (400, json!(false)));
    let long_plugin = json!([{"values": [1], "time": T / 1000, "plugin": "p".repeat(2000)}]);
    let (status, body) = c.post("/collectd", &long_plugin.to_string());
    assert_eq!(status, 400, "{body}");
    c.assert_healthy(2);
}

/// Case 2: a 65,536-byte field name was acknowledged, then every read of
/// its type and hour failed (a `u16` length in the block codec wrapped).
#[test]
fn a_65536_byte_field_name_is_refused_and_its_hour_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &[]);
    assert_eq!(
        c.put(&json!([{"type": "wide", "time": T, "data": {"a": 1}}]).to_string())
            .0,
        200
    );
    let name = "f".repeat(65_536);
    for data in [
        json!({ name.clone(): 1 }),
        json!({"nested": { name.clone(): 1 }}),
        json!({"list": [{ name.clone(): 1 }]}),
    ] {
        let (status, body) =
            c.put(&json!([{"type": "wide", "time": T + 1, "data": data}]).to_string());
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid data");
        assert_eq!(
            body["errors"][0]["message"],
            "field name longer than 1024 bytes"
        );
    }
    assert_eq!(c.events("wide(a)", T, T + 3_600_000).len(), 1);
    assert_eq!(c.metric("sum(wide(a))", T, T + 60_000, 60_000), [json!(1)]);
    c.assert_healthy(1);
}

/// Beyond the eight: data that parses as JSON text but that no reader
/// could load back (a number past the largest double, lone surrogates)
/// used to be acknowledged and then make its hour unreadable.
#[test]
fn data_no_reader_could_load_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &[]);
    for (data, message) in [
        (r#"{"x": 1e400}"#, "number out of range"),
        (r#"{"x": [1, -1e999]}"#, "number out of range"),
        (r#"{"x": "\ud800"}"#, "lone surrogate in a \\u escape"),
        (r#"{"x": "\udc00\ud800"}"#, "lone surrogate in a \\u escape"),
        (r#"{"\ud800": 1}"#, "lone surrogate in a \\u escape"),
        (r#"[{"x": "\ud83d"}]"#, "lone surrogate in a \\u escape"),
    ] {
        let body = format!(r#"[{{"type": "odd", "time": {T}, "data": {data}}}]"#);
        let (status, answer) = c.put(&body);
        assert_eq!(status, 400, "{data}: {answer}");
        assert_eq!(answer["errors"][0]["message"], message, "{data}");
    }
    // Valid pairs, escapes and extreme but finite numbers are kept exactly.
    let fine =
        r#"{"smile": "\ud83d\ude00", "big": 1e308, "tiny": 1e-320, "neg": -0, "k": "\u006b"}"#;
    let (status, answer) = c.put(&format!(
        r#"[{{"type": "odd", "time": {T}, "data": {fine}}}]"#
    ));
    assert_eq!(status, 200, "{answer}");
    let events = c.events("odd(smile, big, tiny, k)", T, T + 1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["smile"], "😀");
    assert_eq!(events[0]["data"]["big"], json!(1e308));
    assert_eq!(events[0]["data"]["k"], "k");
    assert_eq!(
        c.metric("max(odd(big))", T, T + 10_000, 10_000),
        [json!(1e308)]
    );
    c.assert_healthy(1);
}

/// Case 3: collectd times outside what event put accepts were stored at a
/// time no query could reach.
#[test]
fn collectd_times_outside_the_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &[]);
    // (collectd 5.0's 2^-30 s times: anything later than now + 1e9 s)
    let hr = 1_073_741_824.0;
    for time in [-1e300, 1e300, -62_167_219_201.0, 253_402_300_800.0 * hr] {
        let body = json!([{"values": [1], "dstypes": ["gauge"], "dsnames": ["value"],
            "time": time, "host": "h", "plugin": "load", "type": "load"}]);
        let (status, answer) = c.post("/collectd", &body.to_string());
        assert_eq!(status, 400, "{time}: {answer}");
        assert_eq!(answer["errors"][0]["index"], 0);
        assert_eq!(
            answer["errors"][0]["error"],
            "invalid time: expected ISO 8601 or epoch milliseconds, within years 0 to 9999"
        );
    }
    // The same bounds as event put: years 0 and 9999 are fine.
    for (time, ms) in [
        (-62_167_219_200.0, -62_167_219_200_000_i64),
        (253_402_300_799.0 * hr, 253_402_300_799_000),
    ] {
        let body = json!([{"values": [1], "time": time, "host": "h", "plugin": "edge"}]);
        assert_eq!(c.post("/collectd", &body.to_string()).0, 200, "{time}");
        assert_eq!(c.events("collectd", ms, ms + 1).len(), 1, "{time}");
    }
    assert_eq!(
        c.put(&json!([{"type": "t1", "time": -62_167_219_200_001_i64}]).to_string())
            .0,
        400
    );
    c.assert_healthy(1);
}

/// Case 4: ids are MongoDB `_id`s and compare by value, as Cube's did.
#[test]
fn ids_are_compared_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &[]);
    let cases = [
        (r#"1"#, r#"1.0"#, json!(1)),
        (r#"100"#, r#"1e2"#, json!(100)),
        (r#"0"#, r#"-0"#, json!(0)),
        (r#"0.5"#, r#"5e-1"#, json!(0.5)),
        (r#""k""#, r#""\u006b""#, json!("k")),
        (r#""a\/b""#, r#""a/b""#, json!("a/b")),
    ];
    for (n, (first, second, id)) in cases.iter().enumerate() {
        let ty = format!("ids{n}");
        for (i, spelling) in [first, second].iter().enumerate() {
            let body = format!(
                r#"[{{"type": "{ty}", "time": {}, "id": {spelling}, "data": {{"v": {i}}}}}]"#,
                T + i as i64
            );
            let (status, answer) = c.put(&body);
            assert_eq!(status, 200, "{body}: {answer}");
        }
        let events = c.events(&format!("{ty}(v)"), T, T + 10);
        assert_eq!(
            events,
            [json!({"time": "2012-04-16T16:00:00.001Z", "data": {"v": 1}, "id": id})],
            "{first} and {second} are one id"
        );
        assert_eq!(
            c.metric(&format!("sum({ty})"), T, T + 10_000, 10_000),
            [json!(1)]
        );
    }
    // A string and a number are different ids, as in MongoDB.
    for (i, id) in ["1", r#""1""#].iter().enumerate() {
        let body =
            format!(r#"[{{"type": "idkinds", "time": {T}, "id": {id}, "data": {{"v": {i}}}}}]"#);
        assert_eq!(c.put(&body).0, 200);
    }
    assert_eq!(c.events("idkinds", T, T + 1).len(), 2);
    // Ids that are no value: refused.
    for bad in [r#"1e400"#, r#""\udc00""#, r#"true"#, r#"{"a": 1}"#] {
        let body = format!(r#"[{{"type": "idbad", "time": {T}, "id": {bad}}}]"#);
        let (status, answer) = c.put(&body);
        assert_eq!(
            (status, answer["error"].clone()),
            (400, json!("invalid id")),
            "{bad}"
        );
    }
    c.assert_healthy(1);
}

/// Case 5: after `kill -9` right after an acknowledged late event, the
/// cached bin it touched stayed wrong forever (pending invalidations lived
/// only in memory). The invalidation interval here is long, so nothing is
/// flushed before the kill unless the put itself made it durable.
#[test]
fn a_crash_before_the_flush_leaves_no_stale_bin() {
    let dir = tempfile::tempdir().unwrap();
    let slow = ["--invalidation-interval-ms", "3600000"];
    let c = Cubed::start(dir.path(), &slow);
    let put = |c: &Cubed, events: Value| {
        let (status, body) = c.put(&events.to_string());
        assert_eq!(status, 200, "{body}");
    };
    put(&c, json!([{"type": "late", "time": T}]));
    put(&c, json!([{"type": "moved", "time": T, "id": "m"}]));
    let hour = T + 3_600_000;
    assert_eq!(c.metric("sum(late)", T, T + 10_000, 10_000), [json!(1)]);
    assert_eq!(c.metric("sum(late)", T, hour, 3_600_000), [json!(1)]);
    assert_eq!(
        c.metric("sum(moved)", T, T + 20_000, 10_000),
        [json!(1), json!(0)]
    );
    // Acknowledged, then killed before anything flushes their invalidations.
    put(&c, json!([{"type": "late", "time": T + 1}]));
    put(
        &c,
        json!([{"type": "moved", "time": T + 10_000, "id": "m"}]),
    );
    c.kill9();

    let c = Cubed::start(dir.path(), &slow);
    assert_eq!(c.events("late", T, hour).len(), 2);
    assert_eq!(c.metric("sum(late)", T, T + 10_000, 10_000), [json!(2)]);
    assert_eq!(c.metric("sum(late)", T, hour, 3_600_000), [json!(2)]);
    assert_eq!(
        c.metric("sum(moved)", T, T + 20_000, 10_000),
        [json!(0), json!(1)]
    );
    c.assert_healthy(1);
}

/// Case 6: the default range at a one-day step (10,000 bins) computed about
/// three million finer bins for pyramids, for 18 s and 1.3 GB.
#[test]
fn a_day_step_over_the_default_range_computes_only_its_bins() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &["--self-events", "false"]);
    let (status, bins) = c.get(&format!(
        "/1.0/metric?expression={}&step=86400000",
        enc("sum(nothing_here)")
    ));
    assert_eq!(status, 200);
    let bins = bins.as_array().cloned().unwrap_or_default();
    assert_eq!(bins.len(), 10_000);
    assert!(bins.iter().all(|b| b["value"] == json!(0)));
    let (status, modules) = c.get("/1.0/status");
    assert_eq!(status, 200);
    let computed = spawn::status_figure_in(&modules, "evaluator", "bins_computed");
    assert_eq!(
        computed,
        Some(10_000.0),
        "no finer bins computed for pyramids"
    );
    c.assert_healthy(1);
}

/// Case 8: `sum(aa)+1+1+…` (8,000 terms, inside the expression length
/// limit) overflowed a worker's stack and aborted the process.
#[test]
fn a_long_flat_chain_is_refused_and_the_server_lives() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &[]);
    let chain = format!("sum(aa){}", "+1".repeat(7_999));
    let (status, body) = c.get(&format!(
        "/1.0/metric?expression={}&start={T}&stop={}&step=10000",
        enc(&chain),
        T + 10_000
    ));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid expression");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("more than 256 levels")),
        "{body}"
    );
    // The same chain as a value, and as an event expression's field path.
    let value_chain = format!("sum(aa(x{}))", "+x".repeat(5_000));
    let (status, _) = c.get(&format!(
        "/1.0/metric?expression={}&step=10000",
        enc(&value_chain)
    ));
    assert_eq!(status, 400);
    let path = format!("aa({})", vec!["x"; 5_000].join("."));
    let (status, _) = c.get(&format!("/1.0/event?expression={}", enc(&path)));
    assert_eq!(status, 400);
    // The longest chain the limits allow is answered.
    let allowed = format!("sum(aa){}", "+1".repeat(255));
    assert_eq!(c.metric(&allowed, T, T + 10_000, 10_000), [json!(255)]);
    c.assert_healthy(1);
}

/// Every event limit: at its maximum the event is stored, one past it is
/// refused with a 400 naming the limit, on the same batch path.
#[test]
fn limits_at_and_one_past_their_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &[]);
    let ty = |n: usize| format!("t{}", "x".repeat(n - 1));
    // a string id's canonical text has its quotes
    let id = |n: usize| json!("i".repeat(n - 2));
    let field = |n: usize| json!({ "f".repeat(n): 1 });
    let string = |n: usize| json!({ "s": "v".repeat(n) });
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "type",
            json!({"type": ty(128), "time": T}),
            json!({"type": ty(129), "time": T}),
            "type longer than 128 bytes",
        ),
        (
            "id",
            json!({"type": "lim", "time": T, "id": id(1024)}),
            json!({"type": "lim", "time": T, "id": id(1025)}),
            "id longer than 1024 bytes",
        ),
        (
            "field name",
            json!({"type": "lim", "time": T, "data": field(1024)}),
            json!({"type": "lim", "time": T, "data": field(1025)}),
            "field name longer than 1024 bytes",
        ),
        (
            "string",
            json!({"type": "lim", "time": T, "data": string(65_536)}),
            json!({"type": "lim", "time": T, "data": string(65_537)}),
            "string longer than 65536 bytes",
        ),
        (
            "event",
            json!({"type": "lim", "time": T, "data": {"a": "v".repeat(60_000), "b": vec!["w".repeat(60_000); 16]}}),
            json!({"type": "lim", "time": T, "data": {"a": "v".repeat(60_000), "b": vec!["w".repeat(65_000); 16]}}),
            "event larger than 1048576 bytes (type, id and data JSON together)",
        ),
    ];
    for (what, at, past) in cases.iter().map(|(w, a, p, _)| (w, a, p)) {
        let (status, body) = c.put(&json!([at]).to_string());
        assert_eq!(status, 200, "{what} at its maximum: {body}");
        let (status, body) = c.put(&json!([past]).to_string());
        assert_eq!(status, 400, "{what} one past: {body}");
    }
    for (what, _, past, message) in &cases {
        let (_, body) = c.put(&json!([past]).to_string());
        assert_eq!(body["errors"][0]["message"], *message, "{what}");
    }
    // The type of 128 bytes and the longest id are readable.
    assert_eq!(c.events(&ty(128), T, T + 1).len(), 1);
    let stored = c.events("lim", T, T + 1);
    assert!(stored.iter().any(|e| e["id"] == id(1024)));
    c.assert_healthy(1);
}

/// Bounded query cost: too many reduces times bins is refused up front;
/// values held for `median` beyond the memory budget give a 422.
#[test]
fn requests_over_their_budget_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &["--max-query-memory", "4KiB"]);
    let events: Vec<Value> = (0..2_000)
        .map(|i| json!({"type": "big", "time": T + i, "data": {"x": i}}))
        .collect();
    assert_eq!(c.put(&Value::from(events).to_string()).0, 200);
    // 21 distinct reduces x 10,000 bins > 200,000 bins
    let many: Vec<String> = (0..21).map(|i| format!("sum(big.eq(x, {i}))")).collect();
    let (status, body) = c.get(&format!(
        "/1.0/metric?expression={}&step=10000",
        enc(&many.join(" + "))
    ));
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("query too large")),
        "{body}"
    );
    let (status, body) = c.get(&format!(
        "/1.0/metric?expression={}&start={T}&stop={}&step=10000",
        enc("median(big(x))"),
        T + 10_000
    ));
    assert_eq!(
        (status, body["error"].clone()),
        (422, json!("query too large")),
        "{body}"
    );
    // What fits the budget is answered.
    assert_eq!(
        c.metric("median(big(x).lt(x, 100))", T, T + 10_000, 10_000),
        [json!(49.5)]
    );
    assert_eq!(
        c.metric("sum(big(x))", T, T + 10_000, 10_000),
        [json!(1_999_000)]
    );
    c.assert_healthy(1);
}

/// Sends one raw HTTP/1.1 request (header bytes as given, so that values no
/// client library would send can be tried); the status and the JSON body.
fn raw_request(addr: &str, head: &[u8], body: &[u8]) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = head.to_vec();
    req.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    req.extend_from_slice(body);
    s.write_all(&req).expect("write");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Edges found by probing the release binary: the last millisecond of year
/// 9999 is stored and can be read back (an exclusive `stop` one past it is
/// accepted); refused query parameters say what is expected; a tenant
/// header that is not ASCII is an invalid tenant on every listener; a
/// WebSocket request that is JSON but not an object is named as such; a
/// WebSocket message over the limit is answered, then closed with 1009.
#[test]
fn edges_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cubed::start(dir.path(), &["--max-ws-message", "4096"]);
    const LAST: i64 = 253_402_300_799_999;
    let (status, body) =
        c.put(&json!([{"type": "edge", "time": "9999-12-31T23:59:59.999Z"}]).to_string());
    assert_eq!(status, 200, "{body}");
    let events = c.events("edge", LAST, LAST + 1);
    assert_eq!(events.len(), 1, "the last millisecond is readable");
    assert_eq!(events[0]["time"], "9999-12-31T23:59:59.999Z");
    let day = 86_400_000;
    assert_eq!(
        c.metric("sum(edge)", LAST + 1 - day, LAST + 1, day),
        vec![json!(1)]
    );
    let (status, body) = c.get(&format!("/1.0/event?expression=edge&stop={}", LAST + 2));
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid stop"))
    );

    for (query, error, says) in [
        (
            "/1.0/metric?expression=sum(edge)&step=7",
            "invalid step",
            "86400000",
        ),
        (
            "/1.0/metric?expression=sum(edge)&start=yesterday",
            "invalid start",
            "ISO 8601",
        ),
        (
            "/1.0/metric?expression=sum(edge)&stop=1e400",
            "invalid stop",
            "ISO 8601",
        ),
        (
            "/1.0/metric?expression=sum(edge)&limit=-1",
            "invalid limit",
            "10000",
        ),
        (
            "/1.0/event?expression=edge&limit=x",
            "invalid limit",
            "10000",
        ),
        (
            "/1.0/event?expression=edge&start=NaN",
            "invalid start",
            "ISO 8601",
        ),
    ] {
        let (status, body) = c.get(query);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{query}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{query}: {body}");
    }

    let head = b"POST /1.0/event/put HTTP/1.1\r\nHost: x\r\nFiware-Service: \xc3\xa9\r\n";
    let (status, body) = raw_request(&c.s.collector, head, b"[]");
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid service")),
        "{body}"
    );
    let head = b"GET /1.0/types HTTP/1.1\r\nHost: x\r\nFiware-Service: \xff\r\n";
    let (status, body) = raw_request(&c.s.evaluator, head, b"");
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid service")),
        "{body}"
    );

    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/1.0/metric/get", c.s.evaluator))
                .await
                .expect("websocket");
        ws.send(Message::text("[1,2]")).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .expect("a message")
            .expect("a message");
        let answer: Value = serde_json::from_str(&answer.to_string()).unwrap();
        assert_eq!(answer["error"], "invalid request", "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains("object")
        );
        ws.send(Message::text("x".repeat(5000))).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) => return None,
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .expect("closed in time");
        assert_eq!(end, Some(1009));
    });
    c.assert_healthy(1);
}

/// Connections that send nothing (or headers one byte at a time, slowly)
/// cannot hold a listener: each listener holds at most `--max-connections`
/// (the next gets `503 too many connections` and is closed), and a client
/// that has not sent its headers within `--header-timeout-ms` is
/// disconnected, after which normal requests are answered again.
#[test]
fn idle_and_slow_connections_are_capped_and_cut() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let limits = cubed::server::Limits {
        max_connections: 8,
        header_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let s = common::TestServer::start_with(std::sync::Arc::new(cubed::model::SystemClock), limits);
    let mut idle: Vec<TcpStream> = (0..7)
        .map(|_| TcpStream::connect(&s.collector).expect("connect"))
        .collect();
    // A slowloris: part of the headers, then nothing.
    let mut slow = TcpStream::connect(&s.collector).expect("connect");
    slow.write_all(b"POST /1.0/event/put HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    idle.push(slow);
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = TcpStream::connect(&s.collector).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // The other listener has its own connections.
    assert_eq!(get(&s.evaluator_url("/1.0/types"), None).0, 200);
    // Past the header deadline every one of them is closed by the server.
    let started = Instant::now();
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "closed by the server, not by the read timeout"
    );
    // And the listener answers again.
    let (status, body) = post(
        &s.collector_url("/1.0/event/put"),
        &json!([{"type": "req", "time": 1000}]).to_string(),
        None,
    );
    assert_eq!(status, 200, "{body}");
}

/// Scans of events are bounded server-wide (`--max-computations`): many
/// cold queries at once all get their right answers, taking turns, and no
/// more scans than the cap ever run together.
#[test]
fn concurrent_computations_take_turns_under_the_cap() {
    let options = cubed::server::Options {
        max_computations: 1,
        ..Default::default()
    };
    let s = common::TestServer::start_with_options(
        std::sync::Arc::new(cubed::model::SystemClock),
        options,
    );
    let types = ["aa", "bb", "cc", "dd", "ee", "ff"];
    let mut events = Vec::new();
    for (k, t) in types.iter().enumerate() {
        for i in 0..=k {
            events.push(json!({"type": t, "time": 60_000 * i as i64 + 1}));
        }
    }
    s.put(&json!(events));
    let answers: Vec<(usize, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = types
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let url = s.evaluator_url(&format!(
                    "/1.0/metric?expression=sum({t})&start=0&stop=600000&step=6e4"
                ));
                scope.spawn(move || {
                    let (status, body) = get(&url, None);
                    (k, status, body)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    for (k, status, body) in answers {
        assert_eq!(status, 200, "{body}");
        let total: f64 = body
            .as_array()
            .expect("bins")
            .iter()
            .filter_map(|b| b["value"].as_f64())
            .sum();
        assert_eq!(total, (k + 1) as f64, "sum({})", types[k]);
    }
    let (_, modules) = get(&s.evaluator_url("/1.0/status"), None);
    let figure = |name: &str| spawn::status_figure_in(&modules, "evaluator", name);
    assert_eq!(figure("computations_peak"), Some(1.0), "{modules}");
    assert_eq!(figure("computations_waiting"), Some(0.0), "{modules}");
}
