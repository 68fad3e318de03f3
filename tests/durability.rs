//! No acknowledged event is lost across a clean restart or a `kill -9`:
//! runs the real `cubed` binary.

#[path = "common/spawn.rs"]
mod spawn;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

struct Server {
    child: std::process::Child,
    collector: String,
    evaluator: String,
}

fn start(dir: &std::path::Path) -> Server {
    let s = spawn::spawn(env!("CARGO_BIN_EXE_cubed"), dir, &[]);
    Server {
        child: s.child,
        collector: format!("http://{}", s.collector),
        evaluator: format!("http://{}", s.evaluator),
    }
}

fn count(s: &Server, expr: &str) -> usize {
    let mut r = ureq::get(&format!(
        "{}/1.0/event?expression={expr}&limit=10000",
        s.evaluator
    ))
    .call()
    .expect("get");
    let v: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    v.as_array().map_or(0, Vec::len)
}

fn put_batches(s: &Server, batches: usize) -> usize {
    let mut acknowledged = 0;
    for b in 0..batches {
        let events: Vec<_> = (0..100)
            .map(|i| json!({"type": "durable", "time": 1_000_000 + b * 100 + i, "data": {"b": b, "i": i}}))
            .collect();
        let r = ureq::post(&format!("{}/1.0/event/put", s.collector))
            .header("content-type", "application/json")
            .send(serde_json::Value::from(events).to_string())
            .expect("put");
        assert_eq!(r.status().as_u16(), 200);
        acknowledged += 100;
    }
    acknowledged
}

#[test]
fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path());
    let acknowledged = put_batches(&s, 30);
    // SIGKILL right after the last acknowledgement: no chance to flush.
    s.child.kill().expect("kill -9");
    s.child.wait().unwrap();
    let mut s = start(dir.path());
    assert_eq!(count(&s, "durable"), acknowledged);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

#[test]
fn clean_shutdown_on_sigterm_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path());
    let acknowledged = put_batches(&s, 10);
    let status = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let mut s = start(dir.path());
    assert_eq!(count(&s, "durable"), acknowledged);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}
