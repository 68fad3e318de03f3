//! Property tests: canonical text round-trips, and no input makes the parsers panic.

use cubed::expr::*;
use proptest::prelude::*;

fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_$]{0,6}"
}

fn type_name() -> impl Strategy<Value = String> {
    "[a-z][a-zA-Z0-9_]{1,6}"
}

fn field() -> impl Strategy<Value = FieldPath> {
    (
        ident(),
        prop::collection::vec(
            prop_oneof![
                ident().prop_map(Segment::Name),
                (0u32..1000).prop_map(Segment::Index)
            ],
            0..3,
        ),
    )
        .prop_map(|(head, tail)| FieldPath { head, tail })
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..1_000_000).prop_map(f64::from),
        (0.0f64..1e6),
        prop::num::f64::POSITIVE | prop::num::f64::ZERO,
    ]
}

fn literal() -> impl Strategy<Value = Literal> {
    let leaf = prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        prop::num::f64::NORMAL.prop_map(Literal::Number),
        number().prop_map(Literal::Number),
        any::<String>().prop_map(Literal::String),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Literal::Array)
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    (field(), literal(), 0usize..10, any::<bool>()).prop_map(|(field, literal, op, b)| {
        let op = FilterOp::ALL[op];
        let literal = match op {
            FilterOp::In | FilterOp::Nin => match literal {
                Literal::Array(items) => Literal::Array(items),
                other => Literal::Array(vec![other]),
            },
            FilterOp::Exists => Literal::Bool(b),
            // a pattern that always compiles
            FilterOp::Re => Literal::String(regex::escape(&literal.to_string())),
            _ => literal,
        };
        Filter { op, field, literal }
    })
}

fn binop() -> impl Strategy<Value = BinOp> {
    prop_oneof![
        Just(BinOp::Add),
        Just(BinOp::Sub),
        Just(BinOp::Mul),
        Just(BinOp::Div)
    ]
}

fn value_expr() -> impl Strategy<Value = ValueExpr> {
    let leaf = prop_oneof![
        field().prop_map(ValueExpr::Field),
        number().prop_map(ValueExpr::Number)
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|v| ValueExpr::Neg(Box::new(v))),
            (binop(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| ValueExpr::Binary(
                op,
                Box::new(l),
                Box::new(r)
            )),
            (0usize..8, inner).prop_map(|(f, v)| ValueExpr::Call(Func::ALL[f], Box::new(v))),
        ]
    })
}

fn reduce_expr() -> impl Strategy<Value = ReduceExpr> {
    (
        0usize..14,
        type_name(),
        prop::option::of(value_expr()),
        prop::collection::vec(filter(), 0..3),
        prop::option::of((field(), prop::option::of(1u32..=1000))),
    )
        .prop_map(|(r, event_type, value, filters, group)| ReduceExpr {
            reduce: Reduce::ALL[r],
            event_type,
            value,
            filters,
            group: group.map(|(field, top)| GroupBy { field, top }),
        })
}

fn metric_expr() -> impl Strategy<Value = MetricExpr> {
    let leaf = prop_oneof![
        number().prop_map(MetricExpr::Constant),
        reduce_expr().prop_map(MetricExpr::Reduce),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|m| MetricExpr::Neg(Box::new(m))),
            (binop(), inner.clone(), inner).prop_map(|(op, l, r)| MetricExpr::Binary(
                op,
                Box::new(l),
                Box::new(r)
            )),
        ]
    })
}

fn event_expr() -> impl Strategy<Value = EventExpr> {
    (
        type_name(),
        prop::collection::vec(field(), 0..3),
        prop::collection::vec(filter(), 0..3),
    )
        .prop_map(|(event_type, fields, filters)| EventExpr {
            event_type,
            fields,
            filters,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn metric_canonical_text_round_trips(ast in metric_expr()) {
        let text = ast.to_string();
        let parsed = parse_metric(&text);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&ast), "text {:?} gave {:?}", text, parsed);
    }

    #[test]
    fn event_canonical_text_round_trips(ast in event_expr()) {
        let text = ast.to_string();
        let parsed = parse_event(&text);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&ast), "text {:?} gave {:?}", text, parsed);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_text(s in any::<String>()) {
        let _ = parse_metric(&s);
        let _ = parse_event(&s);
    }

    #[test]
    fn parsers_never_panic_on_mangled_expressions(ast in metric_expr(), cut in any::<prop::sample::Index>(), junk in "[()\\[\\]., \"'\\\\a-z0-9+*/-]{0,4}") {
        let text = ast.to_string();
        let at = cut.index(text.len() + 1);
        if text.is_char_boundary(at) {
            let mangled = format!("{}{}{}", &text[..at], junk, &text[at..]);
            if let Err(e) = parse_metric(&mangled) {
                prop_assert!(e.offset() <= mangled.chars().count());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
