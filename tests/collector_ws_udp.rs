//! Event put over WebSocket and UDP, on real sockets.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, get};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Polls event/get until `n` events of `expr` are there (bounded: 10 s).
fn wait_for_events(s: &TestServer, expr: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, events) = get(
            &s.evaluator_url(&format!("/1.0/event?expression={}", common::enc(expr))),
            None,
        );
        let events = events.as_array().cloned().unwrap_or_default();
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn websocket_put_stores_events_and_reports_errors() {
    let s = TestServer::start();
    let url = format!("ws://{}/1.0/event/put", s.collector);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let replies = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        for i in 0..500 {
            let e = json!({"type": "wstest", "time": 1000 + i, "data": {"i": i}});
            ws.send(Message::text(e.to_string())).await.unwrap();
        }
        ws.send(Message::text(r#"{"type":"x"}"#)).await.unwrap();
        ws.send(Message::text(r#"{"type":"wstest","time":"later"}"#))
            .await
            .unwrap();
        ws.send(Message::text("not json")).await.unwrap();
        let mut replies = Vec::new();
        while replies.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    replies.push(serde_json::from_str::<Value>(&t).unwrap())
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        ws.close(None).await.unwrap();
        replies
    });
    // Cube's error texts, with the details alongside
    assert_eq!(replies[0]["error"], "invalid type");
    assert_eq!(replies[1]["error"], "invalid time");
    assert_eq!(
        replies[0]["message"],
        "a type must match ^[a-z][a-zA-Z0-9_]+$"
    );
    assert!(
        replies[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    let events = wait_for_events(&s, "wstest(i)", 500);
    assert_eq!(events.len(), 500);
    assert_eq!(events[499]["data"]["i"], 499);
}

/// A socket's messages are stored in the order sent, across batches (a
/// guard for any change that overlaps batches). Each of ten ids is written
/// 2,000 times with a rising value over one socket (sent without waiting,
/// so that they arrive as many batches); the value kept is the last sent.
#[test]
fn websocket_puts_are_stored_in_the_order_sent() {
    let s = TestServer::start();
    let url = format!("ws://{}/1.0/event/put", s.collector);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = 20_000;
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        for i in 0..n {
            let e = json!({"type": "wsorder", "id": format!("k{}", i % 10),
                "time": 1000 + i % 10, "data": {"v": i}});
            ws.feed(Message::text(e.to_string())).await.unwrap();
        }
        // A last event to wait for: stored after all the others.
        let last = json!({"type": "wsdone", "time": 1000, "data": {"v": n}});
        ws.send(Message::text(last.to_string())).await.unwrap();
        let done = wait_for_events(&s, "wsdone(v)", 1);
        assert_eq!(done.len(), 1, "the last message was not stored");
        ws.close(None).await.unwrap();
    });
    let events = wait_for_events(&s, "wsorder(v)", 10);
    let mut kept: Vec<(String, i64)> = events
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap_or("").to_owned(),
                e["data"]["v"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    kept.sort();
    let expected: Vec<(String, i64)> = (0..10).map(|k| (format!("k{k}"), n - 10 + k)).collect();
    assert_eq!(kept, expected);
}

/// A client that sends a bad message, many good ones and its close at once:
/// every good message is stored, the bad one answered, and the close
/// answered with a close. (Fails if the close is read, in a second batch,
/// before the first batch's answer is sent: tungstenite sends nothing but
/// the close reply after reading a close.)
#[test]
fn websocket_put_then_close_stores_everything_read_and_closes_cleanly() {
    let s = TestServer::start();
    let url = format!("ws://{}/1.0/event/put", s.collector);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A first batch (1,000 messages) with the bad one, and the rest with the
    // close in a second, read once the first is answered.
    let n = 1_500;
    let replies = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        ws.feed(Message::text(r#"{"type":"x"}"#)).await.unwrap();
        for i in 0..n {
            let e = json!({"type": "wsclose", "time": 1000 + i, "data": {"v": i}});
            ws.feed(Message::text(e.to_string())).await.unwrap();
        }
        ws.feed(Message::Close(None)).await.unwrap();
        ws.flush().await.unwrap();
        let mut replies = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(m))) => replies.push(m),
                Ok(None) => break,
                other => panic!("unexpected {other:?} after {replies:?}"),
            }
        }
        replies
    });
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        matches!(&replies[0], Message::Text(t) if t.contains("invalid type")),
        "{replies:?}"
    );
    assert!(matches!(replies[1], Message::Close(_)), "{replies:?}");
    assert_eq!(
        wait_for_events(&s, "wsclose(v)", n as usize).len(),
        n as usize
    );
}

#[test]
fn websocket_messages_over_the_limit_close_the_socket() {
    let limits = cubed::server::Limits {
        max_body_bytes: 1 << 20,
        max_ws_message_bytes: 1000,
        ..Default::default()
    };
    let s = TestServer::start_with(std::sync::Arc::new(cubed::model::SystemClock), limits);
    let url = format!("ws://{}/1.0/event/put", s.collector);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        let big = json!({"type": "big", "data": {"s": "x".repeat(5000)}});
        ws.send(Message::text(big.to_string())).await.unwrap();
        // the server says why, then closes the connection with 1009
        // (message too big) rather than storing or hanging
        let (said, end) = tokio::time::timeout(Duration::from_secs(10), async {
            let mut said = Vec::new();
            loop {
                match ws.next().await {
                    None | Some(Err(_)) => return (said, None),
                    Some(Ok(Message::Close(frame))) => {
                        return (said, frame.map(|f| u16::from(f.code)));
                    }
                    Some(Ok(m)) => said.push(m.to_string()),
                }
            }
        })
        .await
        .expect("socket closed in time");
        assert_eq!(end, Some(1009), "{said:?}");
        assert!(said.iter().any(|m| m.contains("too long")), "{said:?}");
    });
    assert_eq!(get(&s.evaluator_url("/1.0/types"), None).1, json!([]));
}

/// Each socket's read buffer starts at 4 KiB (`server/ws.rs`): messages
/// many times that, up to the limit, still arrive whole, over both
/// listeners.
#[test]
fn websocket_messages_longer_than_the_read_buffer_arrive_whole() {
    let s = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let long = "y".repeat(60_000);
    rt.block_on(async {
        let url = format!("ws://{}/1.0/event/put", s.collector);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        let event = json!({"type": "long", "data": {"s": long}});
        ws.send(Message::text(event.to_string())).await.unwrap();
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    });
    let got = wait_for_events(&s, "long(s)", 1);
    assert_eq!(
        got[0]["data"]["s"].as_str().map(str::len),
        Some(60_000),
        "stored whole"
    );
    // And a request of 60,000 bytes on the evaluator's socket is read
    // whole too (refused as an expression, not as a broken frame).
    rt.block_on(async {
        let url = format!("ws://{}/1.0/metric/get", s.evaluator);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
        let request = json!({"expression": long, "start": "2026-01-01", "stop": "2026-01-02", "step": 3_600_000});
        ws.send(Message::text(request.to_string())).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("answered in time")
            .expect("an answer")
            .expect("a message");
        let answer: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
        assert!(answer["error"].is_string(), "{answer}");
        assert_ne!(answer["error"], json!("invalid request"), "{answer}");
    });
}

/// A plain GET to a WebSocket endpoint is a clear 400, not a hang or 404.
#[test]
fn a_plain_get_to_a_websocket_endpoint_is_refused() {
    let s = TestServer::start();
    // (The evaluator's `/1.0/metric/get` and `/1.0/event/get` answer plain
    // GETs as Cube's do; the collector's put socket has no plain GET.)
    let url = format!("http://{}/1.0/event/put", s.collector);
    let (status, body) = get(&url, None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], json!("not a websocket handshake"), "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("upgrade")),
        "{body}"
    );
}

#[test]
fn invalid_service_on_websocket_upgrade_is_refused() {
    let s = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/1.0/event/put", s.collector)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("fiware-service", "Bad-Name".parse().unwrap());
        let err = tokio_tungstenite::connect_async(req)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("400"), "{err}");
    });
}

#[test]
fn udp_datagrams_are_stored() {
    let s = TestServer::start();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..50 {
        let e = json!({"type": "udptest", "time": 5000 + i, "data": {"i": i}});
        sock.send_to(e.to_string().as_bytes(), s.udp).unwrap();
    }
    sock.send_to(b"garbage", s.udp).unwrap();
    sock.send_to(br#"{"type":"X"}"#, s.udp).unwrap();
    let events = wait_for_events(&s, "udptest(i)", 50);
    assert_eq!(events.len(), 50);
    assert_eq!(
        get(&s.evaluator_url("/1.0/types"), None).1,
        json!(["udptest"])
    );
}
