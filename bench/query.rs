//! Query latency benchmark (issue 4): the seven standard queries over HTTP
//! GET, cold (nothing cached: `DELETE /1.0/metric/cache` before each; with
//! `--restart-each` the server also restarts with --reset-cache, so the
//! storage engine's block cache is cold too) and cached (median of 5 after one
//! warm-up: at the client, at the server from its `Server-Timing`, and over
//! one WebSocket from the request to its end marker), on 1,000,000 events
//! (`-- --events 10000000` for ten million).
//!
//!     cargo bench --bench query [-- --events N] [--restart-each] [--data-dir DIR] [--only Q3]
//!
//! Writes target/bench-query.json. A benchmark: it asserts nothing.

#[path = "workload.rs"]
mod workload;

use std::time::Instant;

use common::enc;
use serde_json::json;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

#[path = "common.rs"]
mod common;
#[path = "../tests/common/spawn.rs"]
mod spawn;

use spawn::Spawned as Server;

fn start(dir: &std::path::Path, reset_cache: bool) -> Server {
    let flags: &[&str] = if reset_cache {
        &["--self-events", "false", "--reset-cache"]
    } else {
        &["--self-events", "false"]
    };
    spawn::spawn(&spawn::cubed_bin(), dir, flags)
}

fn stop(s: Server) {
    let _ = s.terminate();
}

/// One query: (milliseconds at the client, number of bins, milliseconds
/// at the server from its `Server-Timing`).
fn query(agent: &ureq::Agent, s: &Server, expr: &str, step: i64) -> (f64, usize, f64) {
    let url = format!(
        "http://{}/1.0/metric?expression={}&start={}&stop={}&step={step}",
        s.evaluator,
        enc(expr),
        workload::DAY_START,
        workload::DAY_START + workload::DAY_MS
    );
    let t0 = Instant::now();
    let mut r = agent.get(&url).call().expect("query");
    let body = r.body_mut().read_to_string().expect("body");
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(r.status().as_u16(), 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let server_ms = r
        .headers()
        .get("server-timing")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once("dur="))
        .and_then(|(_, d)| d.parse().ok())
        .unwrap_or(f64::NAN);
    (ms, v.as_array().map_or(0, Vec::len), server_ms)
}

/// One query over a WebSocket `/1.0/metric/get` (already open): the
/// milliseconds from sending the request to its end marker, and the bins
/// that came before it.
async fn ws_query<S>(ws: &mut S, expr: &str, step: i64) -> (f64, usize)
where
    S: futures_util::Sink<Message> + futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
    <S as futures_util::Sink<Message>>::Error: std::fmt::Debug,
{
    use futures_util::{SinkExt, StreamExt};
    let req = json!({
        "expression": expr,
        "start": workload::DAY_START,
        "stop": workload::DAY_START + workload::DAY_MS,
        "step": step,
        "id": 1,
    });
    let end = chrono::DateTime::from_timestamp_millis(workload::DAY_START + workload::DAY_MS)
        .expect("end")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let t0 = Instant::now();
    ws.send(Message::text(req.to_string())).await.expect("send");
    let mut bins = 0;
    while let Some(m) = ws.next().await {
        let m = m.expect("message");
        let Ok(text) = m.to_text() else { continue };
        let v: serde_json::Value = serde_json::from_str(text).expect("json");
        assert!(v.get("error").is_none(), "{text}");
        if v.get("value").is_none() && v["time"] == end.as_str() {
            break;
        }
        bins += 1;
    }
    (t0.elapsed().as_secs_f64() * 1000.0, bins)
}

/// Median of 5 cached answers of `expr` over one WebSocket (after a warm-up).
fn ws_cached(s: &Server, expr: &str, step: i64, bins: usize) -> f64 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = format!("ws://{}/1.0/metric/get", s.evaluator);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("ws connect");
        let (_, n) = ws_query(&mut ws, expr, step).await;
        assert_eq!(n, bins, "every bin over the socket");
        let mut ms = Vec::new();
        for _ in 0..5 {
            ms.push(ws_query(&mut ws, expr, step).await.0);
        }
        ms.sort_by(f64::total_cmp);
        ms[2]
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let n: usize = argv
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // `--data-dir DIR` keeps the store between runs (ingested only if DIR is new).
    let keep = argv
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| argv.get(i + 1))
        .map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir_path = keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    let reuse = keep.as_ref().is_some_and(|d| d.exists());
    let s = start(&dir_path, false);
    let events = if reuse {
        Vec::new()
    } else {
        workload::generate(n, 42)
    };
    let t0 = Instant::now();
    let url = format!("http://{}/1.0/event/put", s.collector);
    let agent = ureq::Agent::new_with_defaults();
    for chunk in events.chunks(1000) {
        let body = format!(
            "[{}]",
            chunk
                .iter()
                .map(workload::Event::to_json)
                .collect::<Vec<_>>()
                .join(",")
        );
        let r = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .expect("put");
        assert_eq!(r.status().as_u16(), 200);
    }
    let ingest = if reuse {
        0.0
    } else {
        n as f64 / t0.elapsed().as_secs_f64()
    };
    println!("{n} events ingested at {ingest:.0} events/s (one client)");
    let restart_each = argv.iter().any(|a| a == "--restart-each");
    let mut server = if restart_each {
        stop(s);
        None
    } else {
        Some(s)
    };

    let mut rows = Vec::new();
    println!(
        "{:<4} {:<58} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "", "query", "bins", "cold ms", "cached ms", "at server", "websocket"
    );
    let only = argv
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| argv.get(i + 1))
        .cloned();
    for (name, expr, step) in workload::queries() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let s = match server.take() {
            Some(s) => s,
            None => start(&dir_path, true),
        };
        let agent = ureq::Agent::new_with_defaults();
        let r = agent
            .delete(&format!("http://{}/1.0/metric/cache", s.evaluator))
            .call()
            .expect("clear cache");
        assert_eq!(r.status().as_u16(), 200);
        let (cold, bins, _) = query(&agent, &s, &expr, step);
        let _ = query(&agent, &s, &expr, step);
        let (mut warm, mut at_server): (Vec<f64>, Vec<f64>) = (0..5)
            .map(|_| {
                let (ms, _, server_ms) = query(&agent, &s, &expr, step);
                (ms, server_ms)
            })
            .unzip();
        warm.sort_by(f64::total_cmp);
        at_server.sort_by(f64::total_cmp);
        let (cached, cached_server) = (warm[2], at_server[2]);
        let cached_ws = ws_cached(&s, &expr, step, bins);
        println!(
            "{name:<4} {:<58} {bins:>6} {cold:>10.1} {cached:>10.2} {cached_server:>10.2} {cached_ws:>10.2}",
            format!("{expr} @{}s", step / 1000)
        );
        rows.push(json!({"query": name, "expression": expr, "step": step, "bins": bins, "cold_ms": cold, "cached_ms": cached, "cached_server_ms": cached_server, "cached_websocket_ms": cached_ws}));
        if restart_each {
            stop(s);
        } else {
            server = Some(s);
        }
    }
    let report = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "events": n,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "ingest_events_per_s": ingest.round(),
        "restart_each": restart_each,
        "queries": rows,
    });
    if let Some(s) = server {
        stop(s);
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-query.json");
    let _ = std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
}
