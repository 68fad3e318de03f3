//! Ingest benchmark (issue 3): events/s over HTTP batches of 1000 and over one
//! WebSocket, durable default mode, server and load generator on this machine.
//!
//!     cargo bench --bench ingest                      # 2,000,000 events over HTTP, 500,000 over WS
//!     cargo bench --bench ingest -- --events 5000000 --clients 4 --ws-events 1000000
//!
//! Starts the release `cubed` binary on a fresh data directory, reports
//! events/s and the server's peak RSS (VmHWM), and writes the same as JSON to
//! target/bench-ingest.json. A benchmark, not a test: it asserts nothing.

use std::time::{Duration, Instant};

use common::{peak_rss_mib, post_all};
use futures_util::SinkExt;
use serde_json::json;

struct Args {
    events: usize,
    clients: usize,
    ws_events: usize,
    durability: String,
}

fn args() -> Args {
    let mut a = Args {
        events: 2_000_000,
        clients: 4,
        ws_events: 500_000,
        durability: "process".into(),
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--events" => a.events = val.parse().expect("--events N"),
            "--clients" => a.clients = val.parse().expect("--clients N"),
            "--ws-events" => a.ws_events = val.parse().expect("--ws-events N"),
            "--durability" => a.durability = val,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

#[path = "common.rs"]
mod common;
#[path = "../tests/common/spawn.rs"]
mod spawn;

use spawn::Spawned as Server;

fn start(dir: &std::path::Path, durability: &str) -> Server {
    spawn::spawn(&spawn::cubed_bin(), dir, &["--durability", durability])
}

/// A deterministic request-like event (no RNG crate needed: an LCG).
fn event(i: usize, type_: &str) -> serde_json::Value {
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    x ^= x >> 33;
    let paths = ["/", "/login", "/api/users", "/api/orders", "/static/app.js"];
    json!({
        "type": type_,
        "time": 1_700_000_000_000u64 + (i as u64) * 86_400_000 / 2_000_000,
        "data": {
            "duration_ms": (x % 10_000) as f64 / 10.0,
            "path": paths[(x % 5) as usize],
            "status": if x.is_multiple_of(50) { 500 } else { 200 },
            "user": format!("u{}", x % 100_000),
        }
    })
}

fn http_ingest(s: &Server, events: usize, clients: usize) -> f64 {
    let batches: Vec<String> = (0..events.div_ceil(1000))
        .map(|b| {
            let batch: Vec<_> = (b * 1000..((b + 1) * 1000).min(events))
                .map(|i| event(i, "request"))
                .collect();
            serde_json::Value::from(batch).to_string()
        })
        .collect();
    let bytes: usize = batches.iter().map(String::len).sum();
    println!(
        "http: {} batches of 1000, {:.1} MiB, {clients} client connections",
        batches.len(),
        bytes as f64 / 1048576.0
    );
    let url = format!("http://{}/1.0/event/put", s.collector);
    let secs = post_all(&url, &batches, clients, "application/json");
    events as f64 / secs
}

/// The collector's `events_accepted` from the server's `/1.0/status`.
fn events_accepted(evaluator: &str) -> u64 {
    let mut r = ureq::get(&format!("http://{evaluator}/1.0/status"))
        .call()
        .expect("status");
    let status: serde_json::Value = r.body_mut().read_json().expect("status JSON");
    spawn::status_figure_in(&status, "collector", "events_accepted")
        .map(|x| x as u64)
        .expect("collector events_accepted")
}

fn ws_ingest(s: &Server, events: usize) -> f64 {
    let messages: Vec<String> = (0..events)
        .map(|i| {
            let mut e = event(i, "wsrequest");
            e["data"]["seq"] = json!(i);
            e.to_string()
        })
        .collect();
    let url = format!("ws://{}/1.0/event/put", s.collector);
    let before = events_accepted(&s.evaluator);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t0 = Instant::now();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("ws connect");
        for m in messages {
            ws.feed(tokio_tungstenite::tungstenite::Message::text(m))
                .await
                .expect("send");
        }
        ws.flush().await.expect("flush");
        // WebSocket put has no acknowledgement: the socket's events are
        // stored once the collector has acknowledged all of them to the
        // store (`/1.0/status`; the HTTP phase's events came before). Asking
        // the events themselves (an event query for the last one) scans the
        // type, which took longer than the puts.
        let target = before + events as u64;
        while events_accepted(&s.evaluator) < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = ws.close(None).await;
    });
    events as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start(dir.path(), &a.durability);
    println!(
        "cubed pid {} collector {} durability {}",
        s.child.id(),
        s.collector,
        a.durability
    );
    let http = http_ingest(&s, a.events, a.clients);
    println!("http batches: {:>12.0} events/s", http);
    let ws = if a.ws_events > 0 {
        ws_ingest(&s, a.ws_events)
    } else {
        0.0
    };
    println!("websocket:    {:>12.0} events/s", ws);
    let rss = peak_rss_mib(s.child.id()) * 1024.0;
    println!("server peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    let report = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "durability": a.durability,
        "http": {"events": a.events, "batch": 1000, "clients": a.clients, "events_per_s": http.round()},
        "websocket": {"events": a.ws_events, "events_per_s": ws.round()},
        "server_peak_rss_mib": (rss as f64 / 1024.0 * 10.0).round() / 10.0,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-ingest.json");
    let _ = std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    println!("{}", report);
    let _ = s.child.kill();
    let _ = s.child.wait();
}
