//! `cubed explain` as a user runs it: JSON on stdout and exit 0, or the error on stderr and exit 1.

use std::process::Command;

use serde_json::{Value, json};

fn explain(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cubed"))
        .arg("explain")
        .args(args)
        .env_remove("CUBED_EXPLAIN_EVENT")
        .output()
        .expect("run cubed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explains_a_metric_expression() {
    let (ok, stdout, _) = explain(&["sum(test(i).gt(i, 42))"]);
    assert!(ok);
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(
        v,
        json!({
            "kind": "metric",
            "expression": "sum(test(i).gt(i, 42))",
            "canonical": "sum(test(i).gt(i, 42))",
            "plan": {"type": "test", "reduce": "sum", "source": "sum(test(i).gt(i, 42))",
                     "filter": {"d.i": {"$gt": 42}}, "fields": {"d.i": 1}}
        })
    );
}

#[test]
fn explains_an_event_expression_and_a_negative_constant() {
    let (ok, stdout, _) = explain(&["--event", "test.gt(i, 42).eq(j, \"foo\")"]);
    assert!(ok);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["kind"], "event");
    assert_eq!(
        v["plan"]["filter"],
        json!({"d.i": {"$gt": 42}, "d.j": "foo"})
    );
    assert_eq!(v["plan"]["fields"], json!({}));

    let (ok, stdout, _) = explain(&["-4"]);
    assert!(ok);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["plan"], json!({"constant": -4}));
}

#[test]
fn rejects_a_bad_expression_on_stderr() {
    let (ok, stdout, stderr) = explain(&["sum(request(duration)"]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("expected \")\" or \".\" at 21"), "{stderr}");
}
