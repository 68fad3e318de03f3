//! `cubed query` as a user runs it, against a running evaluator: a table
//! with sparklines, CSV, JSON, and the parser's caret for a bad expression.

mod common;

use std::process::Command;

use common::TestServer;
use serde_json::{Value, json};

fn query(s: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cubed"))
        .arg("query")
        .args(args)
        .args(["--url", &format!("http://{}", s.evaluator)])
        .env_remove("CUBED_URL")
        .env_remove("CUBED_KEY")
        .env_remove("CUBED_SERVICE")
        .output()
        .expect("run cubed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn query_prints_bins_as_a_table_csv_and_json() {
    let s = TestServer::start();
    s.put(&json!([
        {"type": "req", "time": "2012-04-16T16:00:10Z", "data": {"ms": 5, "path": "/a"}},
        {"type": "req", "time": "2012-04-16T16:01:10Z", "data": {"ms": 7, "path": "/b"}},
        {"type": "req", "time": "2012-04-16T16:02:10Z", "data": {"ms": 9, "path": "/a"}},
    ]));
    let range = [
        "--start",
        "2012-04-16T16:00:00Z",
        "--stop",
        "2012-04-16T16:03:00Z",
        "--step",
        "1m",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        range.iter().copied().chain(extra.iter().copied()).collect()
    };

    let (ok, out, err) = query(&s, &with(&["sum(req(ms))"]));
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["time", "value"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["2012-04-16T16:00:00.000Z", "5"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["2012-04-16T16:02:00.000Z", "9"]
    );
    assert_eq!(
        lines[5].split_whitespace().collect::<Vec<_>>(),
        ["value", "▁▅█"]
    );

    let (ok, out, err) = query(&s, &with(&["count(req).group(path)", "--format", "csv"]));
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "time,group,value\n\
         2012-04-16T16:00:00.000Z,/a,1\n2012-04-16T16:00:00.000Z,/b,0\n\
         2012-04-16T16:01:00.000Z,/a,0\n2012-04-16T16:01:00.000Z,/b,1\n\
         2012-04-16T16:02:00.000Z,/a,1\n2012-04-16T16:02:00.000Z,/b,0\n"
    );

    let (ok, out, err) = query(&s, &with(&["count(req).group(path)"]));
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .next()
            .is_some_and(|l| l.split_whitespace().eq(["time", "/a", "/b"])),
        "{out}"
    );
    assert!(out.contains("/a  █▁█") && out.contains("/b  ▁█▁"), "{out}");

    let (ok, out, err) = query(&s, &with(&["sum(req)", "--format", "json"]));
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(3));
    assert_eq!(
        v[1],
        json!({"time": "2012-04-16T16:01:00.000Z", "value": 1})
    );
}

#[test]
fn query_shows_where_an_expression_went_wrong() {
    let s = TestServer::start();
    let (ok, out, err) = query(&s, &["sum(req(ms)"]);
    assert!(!ok);
    assert!(out.is_empty());
    assert_eq!(
        err,
        "error: invalid expression: expected \")\" or \".\" at 11\n  sum(req(ms)\n             ^\n"
    );
    // The server's refusals are printed too, with a failing exit.
    let (ok, _, err) = query(&s, &["sum(req)", "--start", "nonsense"]);
    assert!(!ok);
    assert!(err.starts_with("error: 400 invalid start"), "{err}");
}

/// `cubed tail` follows a live event stream: events put while it runs are
/// printed as they arrive, and `--count` ends it.
#[test]
fn tail_prints_events_as_they_arrive() {
    let s = TestServer::start();
    let tail = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cubed"))
            .arg("tail")
            .args(args)
            .args(["--url", &format!("http://{}", s.evaluator)])
            .env_remove("CUBED_URL")
            .env_remove("CUBED_KEY")
            .env_remove("CUBED_SERVICE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run cubed tail")
    };
    // One second behind now: events put with the time they are put at are
    // not late, and show up within a second or two.
    let child = tail(&["beat(v).gt(v, 1)", "--delay", "1000", "--count", "2"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let put = |v: i64, other: Option<&str>| {
        let t = chrono::Utc::now().timestamp_millis();
        let mut data = json!({"v": v});
        if let Some(o) = other {
            data["other"] = json!(o);
        }
        s.put(&json!([{"type": "beat", "time": t, "data": data}]));
        t
    };
    put(1, Some("x"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t2 = put(2, Some("y"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t3 = put(3, None);
    // Ends by itself after two events (bounded wait).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("cubed tail ended after --count events")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let iso = cubed::model::time::format_iso;
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("{}  {{\"v\":2}}", iso(t2)),
            format!("{}  {{\"v\":3}}", iso(t3)),
        ]
    );
    // A bad expression: the caret, no connection.
    let out = tail(&["beat(v"]).wait_with_output().expect("output");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid expression") && stderr.contains("      ^"),
        "{stderr}"
    );
}
