//! Filter and projection documents, values and sources that Cube's own
//! expression tests expect (test/metric-expression-test.js and
//! test/event-expression-test.js of square/cube), written out by hand here.

use cubed::plan::{self, LeafPlan, MetricPlan, Scalar};
use serde_json::{Value, json};

fn leaf(expr: &str) -> LeafPlan {
    let (_, plan) = plan::compile_metric(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    match plan {
        MetricPlan::Leaf(l) => l,
        other => panic!("{expr}: not a single leaf: {other:?}"),
    }
}

fn metric_docs(expr: &str) -> (Value, Value) {
    let l = leaf(expr);
    (
        Value::Object(l.filter.query_document()),
        Value::Object(l.projection()),
    )
}

fn event_docs(expr: &str) -> (Value, Value) {
    let p = plan::compile_event(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    (
        Value::Object(p.filter.query_document()),
        Value::Object(p.projection()),
    )
}

fn value(expr: &str, data: Value) -> f64 {
    match leaf(expr).value_of(&data) {
        Some(Scalar::Number(x)) => x,
        other => panic!("{expr}: {other:?}"),
    }
}

#[test]
fn metric_filters_and_fields_match_cube() {
    let cases: &[(&str, Value, Value)] = &[
        ("sum(test)", json!({}), json!({})),
        (
            "sum(test(i))",
            json!({"d.i": {"$exists": true}}),
            json!({"d.i": 1}),
        ),
        (
            "sum(test(i + i * i - 2))",
            json!({"d.i": {"$exists": true}}),
            json!({"d.i": 1}),
        ),
        (
            "sum(test(i).gt(i, 42))",
            json!({"d.i": {"$gt": 42}}),
            json!({"d.i": 1}),
        ),
        (
            "sum(test.gt(i, 42).eq(j, \"foo\"))",
            json!({"d.i": {"$gt": 42}, "d.j": "foo"}),
            json!({}),
        ),
        (
            "sum(test(i.j))",
            json!({"d.i.j": {"$exists": true}}),
            json!({"d.i.j": 1}),
        ),
        (
            "sum(test(i[0]))",
            json!({"d.i": {"$exists": true}}),
            json!({"d.i": 1}),
        ),
        (
            "sum(test(i.j[0].k))",
            json!({"d.i.j.k": {"$exists": true}}),
            json!({"d.i.j.k": 1}),
        ),
        (
            "sum(test.gt(i, 42).le(i, 52))",
            json!({"d.i": {"$gt": 42, "$lte": 52}}),
            json!({}),
        ),
        (
            "sum(test.gt(i, 42).eq(i, 52))",
            json!({"d.i": 52}),
            json!({}),
        ),
        (
            "sum(test.eq(i, 52).gt(i, 42))",
            json!({"d.i": 52}),
            json!({}),
        ),
        ("sum(test.eq(i, 42))", json!({"d.i": 42}), json!({})),
        (
            "sum(test.gt(i, 42))",
            json!({"d.i": {"$gt": 42}}),
            json!({}),
        ),
        (
            "sum(test.ge(i, 42))",
            json!({"d.i": {"$gte": 42}}),
            json!({}),
        ),
        (
            "sum(test.lt(i, 42))",
            json!({"d.i": {"$lt": 42}}),
            json!({}),
        ),
        (
            "sum(test.le(i, 42))",
            json!({"d.i": {"$lte": 42}}),
            json!({}),
        ),
        (
            "sum(test.ne(i, 42))",
            json!({"d.i": {"$ne": 42}}),
            json!({}),
        ),
        (
            "sum(test.re(i, \"foo\"))",
            json!({"d.i": {"$regex": "foo"}}),
            json!({}),
        ),
        (
            "sum(test.in(i, [\"foo\", 42]))",
            json!({"d.i": {"$in": ["foo", 42]}}),
            json!({}),
        ),
        // our extensions, in the same style
        (
            "sum(test.nin(i, [1, 2]))",
            json!({"d.i": {"$nin": [1, 2]}}),
            json!({}),
        ),
        (
            "sum(test(i).exists(i, false))",
            json!({"d.i": {"$exists": false}}),
            json!({"d.i": 1}),
        ),
        ("sum(test.eq(i, null))", json!({"d.i": null}), json!({})),
    ];
    for (expr, filter, fields) in cases {
        assert_eq!(
            metric_docs(expr),
            (filter.clone(), fields.clone()),
            "{expr}"
        );
    }
}

#[test]
fn event_filters_and_fields_match_cube() {
    let cases: &[(&str, Value, Value)] = &[
        ("test", json!({}), json!({})),
        (
            "test(i)",
            json!({"d.i": {"$exists": true}}),
            json!({"d.i": 1}),
        ),
        (
            "test(i, j)",
            json!({"d.i": {"$exists": true}, "d.j": {"$exists": true}}),
            json!({"d.i": 1, "d.j": 1}),
        ),
        (
            "test(i).gt(i, 42)",
            json!({"d.i": {"$gt": 42}}),
            json!({"d.i": 1}),
        ),
        (
            "test.gt(i, 42).eq(j, \"foo\")",
            json!({"d.i": {"$gt": 42}, "d.j": "foo"}),
            json!({}),
        ),
        (
            "test.gt(i, 42).le(i, 52)",
            json!({"d.i": {"$gt": 42, "$lte": 52}}),
            json!({}),
        ),
        ("test.gt(i, 42).eq(i, 52)", json!({"d.i": 52}), json!({})),
        ("test.eq(i, 52).gt(i, 42)", json!({"d.i": 52}), json!({})),
        (
            "test(i.j)",
            json!({"d.i.j": {"$exists": true}}),
            json!({"d.i.j": 1}),
        ),
        (
            "test(i[0])",
            json!({"d.i": {"$exists": true}}),
            json!({"d.i": 1}),
        ),
        (
            "test(i.j[0].k)",
            json!({"d.i.j.k": {"$exists": true}}),
            json!({"d.i.j.k": 1}),
        ),
        (
            "test.gt(i.j[0].k, 42)",
            json!({"d.i.j.0.k": {"$gt": 42}}),
            json!({}),
        ),
        ("test.eq(i, 42)", json!({"d.i": 42}), json!({})),
        ("test.ge(i, 42)", json!({"d.i": {"$gte": 42}}), json!({})),
        ("test.lt(i, 42)", json!({"d.i": {"$lt": 42}}), json!({})),
        ("test.le(i, 42)", json!({"d.i": {"$lte": 42}}), json!({})),
        ("test.ne(i, 42)", json!({"d.i": {"$ne": 42}}), json!({})),
        (
            "test.re(i, \"foo\")",
            json!({"d.i": {"$regex": "foo"}}),
            json!({}),
        ),
        (
            "test.in(i, [\"foo\", 42])",
            json!({"d.i": {"$in": ["foo", 42]}}),
            json!({}),
        ),
    ];
    for (expr, filter, fields) in cases {
        assert_eq!(event_docs(expr), (filter.clone(), fields.clone()), "{expr}");
    }
}

#[test]
fn values_match_cube() {
    assert_eq!(value("sum(test)", json!({})), 1.0);
    assert_eq!(value("sum(test(i))", json!({"i": 42})), 42.0);
    assert_eq!(value("sum(test(i))", json!({"i": -1})), -1.0);
    assert_eq!(value("sum(test(i + i * i - 2))", json!({"i": 42})), 1804.0);
    assert_eq!(value("sum(test(i + i * i - 2))", json!({"i": -1})), -2.0);
    assert_eq!(value("sum(test(i.j))", json!({"i": {"j": 42}})), 42.0);
    assert_eq!(value("sum(test(i[0]))", json!({"i": [42]})), 42.0);
    assert_eq!(
        value("sum(test(i.j[0].k))", json!({"i": {"j": [{"k": -1}]}})),
        -1.0
    );
    assert_eq!(value("sum(foo(2))", json!({})), 2.0);
    // left-associative, unlike Cube: 10 - 4 - 3 = 3 (Cube said 9)
    assert_eq!(
        value("sum(t1(a - b - c))", json!({"a": 10, "b": 4, "c": 3})),
        3.0
    );
    assert_eq!(
        value("sum(t1(a / b / c))", json!({"a": 12, "b": 3, "c": 2})),
        2.0
    );
    assert_eq!(
        value("sum(t1(a - b * c))", json!({"a": 10, "b": 4, "c": 2})),
        2.0
    );
    assert_eq!(
        value("sum(t1(abs(a) + round(b)))", json!({"a": -3, "b": 2.5})),
        6.0
    );
    assert_eq!(value("sum(t1(round(b)))", json!({"b": -2.5})), -2.0);
    // arithmetic on a non-number gives NaN
    assert!(value("sum(t1(s * 2))", json!({"s": "x"})).is_nan());
    // a missing field means the event gives no value
    assert_eq!(leaf("sum(t1(a))").value_of(&json!({"b": 1})), None);
}

#[test]
fn sources_and_structure_match_cube() {
    assert_eq!(leaf("sum(test)").source, "sum(test)");
    assert_eq!(
        leaf("sum(test(i + i * i - 2))").source,
        "sum(test(i + i * i - 2))"
    );
    assert_eq!(
        leaf("sum(test.gt(i, 42).eq(j, \"foo\"))").source,
        "sum(test.gt(i, 42).eq(j, \"foo\"))"
    );
    // equal up to whitespace: one cache key
    assert_eq!(
        leaf(" sum( test . gt( i,42 ) ) ").source,
        leaf("sum(test.gt(i, 42))").source
    );
    let (_, plan) = plan::compile_metric("sum(foo(2)) + median(bar(3)) + max(baz(qux))").unwrap();
    let sources: Vec<_> = plan.leaves().iter().map(|l| l.source.clone()).collect();
    assert_eq!(sources, ["sum(foo(2))", "median(bar(3))", "max(baz(qux))"]);
    // ((a + b) + c): left-associative
    let explained = plan.explain();
    assert_eq!(explained["op"], "+");
    assert_eq!(explained["right"]["source"], "max(baz(qux))");
    assert_eq!(explained["left"]["left"]["source"], "sum(foo(2))");
    assert_eq!(plan.combine(&[Some(2.0), Some(3.0), Some(4.0)]), 9.0);
    assert!(plan.combine(&[Some(2.0), None, Some(4.0)]).is_nan());
    let (_, neg) = plan::compile_metric("-4").unwrap();
    assert_eq!(neg.explain(), json!({"constant": -4}));
    let (_, prec) = plan::compile_metric("1 + 2 * 3 - 8 / 4 / 2").unwrap();
    assert_eq!(prec.combine(&[]), 6.0);
}

#[test]
fn issue_examples() {
    let v = plan::explain_metric("sum(test(i).gt(i, 42))").unwrap();
    assert_eq!(v["plan"]["filter"], json!({"d.i": {"$gt": 42}}));
    assert_eq!(v["plan"]["fields"], json!({"d.i": 1}));
    assert_eq!(v["kind"], "metric");
    let v = plan::explain_event("test.gt(i, 42).eq(j, \"foo\")").unwrap();
    assert_eq!(
        v["plan"],
        json!({"type": "test", "filter": {"d.i": {"$gt": 42}, "d.j": "foo"}, "fields": {}})
    );
    assert_eq!(
        plan::explain_metric("-4").unwrap()["plan"],
        json!({"constant": -4})
    );
}
