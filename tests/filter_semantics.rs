//! The filter evaluator follows MongoDB's query semantics over event data.

use cubed::plan;
use serde_json::{Value, json};

fn matches(expr: &str, data: Value) -> bool {
    plan::compile_event(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .filter
        .matches(&data)
}

#[test]
fn scalar_comparisons_never_cross_types() {
    assert!(matches("t1.gt(i, 42)", json!({"i": 43})));
    assert!(!matches("t1.gt(i, 42)", json!({"i": 42})));
    assert!(!matches("t1.gt(i, 42)", json!({"i": "43"})));
    assert!(!matches("t1.gt(i, 42)", json!({"i": true})));
    assert!(matches("t1.ge(i, 42)", json!({"i": 42.0})));
    assert!(matches("t1.lt(s, \"b\")", json!({"s": "a"})));
    assert!(!matches("t1.lt(s, \"b\")", json!({"s": 1})));
    assert!(matches("t1.gt(i, 42).le(i, 52)", json!({"i": 52})));
    assert!(!matches("t1.gt(i, 42).le(i, 52)", json!({"i": 53})));
    assert!(!matches("t1.gt(i, 42)", json!({})));
}

#[test]
fn eq_and_ne() {
    assert!(matches("t1.eq(i, 1)", json!({"i": 1.0})));
    assert!(!matches("t1.eq(i, 1)", json!({"i": "1"})));
    assert!(matches("t1.ne(i, 1)", json!({"i": "1"})));
    assert!(matches("t1.ne(i, 1)", json!({})));
    assert!(matches("t1.eq(i, null)", json!({})));
    assert!(matches("t1.eq(i, null)", json!({"i": null})));
    assert!(!matches("t1.eq(i, null)", json!({"i": 0})));
    // eq overrides a range filter on the same field, in either order
    assert!(matches("t1.gt(i, 100).eq(i, 5)", json!({"i": 5})));
    assert!(matches("t1.eq(i, 5).gt(i, 100)", json!({"i": 5})));
}

#[test]
fn arrays_match_if_any_element_matches() {
    assert!(matches("t1.eq(tags, \"a\")", json!({"tags": ["b", "a"]})));
    assert!(matches(
        "t1.eq(tags, [\"b\", \"a\"])",
        json!({"tags": ["b", "a"]})
    ));
    assert!(!matches(
        "t1.eq(tags, [\"a\", \"b\"])",
        json!({"tags": ["b", "a"]})
    ));
    assert!(matches("t1.gt(xs, 10)", json!({"xs": [1, 20]})));
    assert!(!matches("t1.gt(xs, 10)", json!({"xs": [1, 2]})));
    // ne and nin: only if no element matches
    assert!(!matches("t1.ne(tags, \"a\")", json!({"tags": ["b", "a"]})));
    assert!(matches("t1.ne(tags, \"c\")", json!({"tags": ["b", "a"]})));
    assert!(!matches(
        "t1.nin(tags, [\"a\", \"z\"])",
        json!({"tags": ["b", "a"]})
    ));
    assert!(matches(
        "t1.nin(tags, [\"y\", \"z\"])",
        json!({"tags": ["b", "a"]})
    ));
    // paths through arrays of objects
    assert!(matches(
        "t1.eq(items.sku, \"x\")",
        json!({"items": [{"sku": "y"}, {"sku": "x"}]})
    ));
    assert!(matches(
        "t1.eq(items[1].sku, \"x\")",
        json!({"items": [{"sku": "y"}, {"sku": "x"}]})
    ));
    assert!(!matches(
        "t1.eq(items[0].sku, \"x\")",
        json!({"items": [{"sku": "y"}, {"sku": "x"}]})
    ));
    assert!(matches("t1.eq(a[0], 7)", json!({"a": [7, 8]})));
}

#[test]
fn in_regex_and_exists() {
    assert!(matches("t1.in(i, [1, \"a\"])", json!({"i": "a"})));
    assert!(!matches("t1.in(i, [1, \"a\"])", json!({"i": "1"})));
    assert!(!matches("t1.in(i, [])", json!({"i": 1})));
    assert!(matches("t1.in(i, [null])", json!({})));
    assert!(matches("t1.re(path, \"^/api\")", json!({"path": "/api/x"})));
    assert!(!matches(
        "t1.re(path, \"^/api\")",
        json!({"path": "/x/api"})
    ));
    assert!(!matches("t1.re(n, \"1\")", json!({"n": 1})));
    assert!(matches(
        "t1.re(paths, \"^/b\")",
        json!({"paths": ["/a", "/b"]})
    ));
    assert!(matches("t1.exists(i, true)", json!({"i": null})));
    assert!(!matches("t1.exists(i, true)", json!({"j": 1})));
    assert!(matches("t1.exists(i, false)", json!({"j": 1})));
    // value fields must exist unless a filter names them
    assert!(!matches("t1(a.b)", json!({"a": {}})));
    assert!(matches("t1(a.b)", json!({"a": {"b": 0}})));
}

#[test]
fn projection_returns_only_named_fields() {
    let p = plan::compile_event("request(path, user.id)").unwrap();
    let data = json!({"path": "/", "status": 200, "user": {"id": 7, "name": "x"}});
    assert_eq!(
        p.project(&data),
        Some(json!({"path": "/", "user": {"id": 7}}))
    );
    let p = plan::compile_event("request").unwrap();
    assert_eq!(p.project(&data), None);
}
