//! No acknowledged event is lost across a clean restart or a `kill -9`:
//! runs the real `cubed` binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

struct Server {
    child: Child,
    collector: String,
    evaluator: String,
}

fn start(dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cubed"))
        .args([
            "serve",
            "--collector-addr",
            "127.0.0.1:0",
            "--evaluator-addr",
            "127.0.0.1:0",
            "--udp-addr",
            "off",
            "--data-dir",
        ])
        .arg(dir)
        .env("CUBED_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn cubed");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("cubed serving") {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
                };
                let _ = tx.send((field("collector"), field("evaluator")));
            }
        }
    });
    let (collector, evaluator) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server started");
    Server {
        child,
        collector: format!("http://{}", collector.expect("collector addr")),
        evaluator: format!("http://{}", evaluator.expect("evaluator addr")),
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
