//! Every recursion over an expression is bounded (issue 12): the largest
//! expressions the limits allow are parsed, planned, printed, explained,
//! combined, cloned, compared and dropped on a thread with a 2 MiB stack
//! (what a tokio worker has), and one step past each limit is refused there
//! with an error, never a stack overflow.

#[path = "common/expressions.rs"]
mod expressions;

use cubed::expr;
use cubed::plan::{compile_event, compile_metric, explain_metric};
use serde_json::json;

/// Runs `f` on a thread with a 2 MiB stack; a stack overflow would abort
/// the whole test process, which fails the test.
fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("no panic");
}

#[test]
fn the_largest_expressions_are_walked_on_a_2_mib_stack() {
    on_small_stack(|| {
        for (what, source) in expressions::maximal() {
            assert!(
                source.len() <= cubed::limits::MAX_EXPRESSION_BYTES,
                "{what}: {} bytes",
                source.len()
            );
            let ast = expr::parse_metric(&source).unwrap_or_else(|e| panic!("{what}: {e}"));
            let canonical = ast.to_string();
            let again = expr::parse_metric(&canonical).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(again, ast, "{what}: canonical text round-trips");
            let (_, plan) = compile_metric(&source).unwrap_or_else(|e| panic!("{what}: {e}"));
            let copy = plan.clone();
            let leaves = plan.leaves();
            assert!(!leaves.is_empty(), "{what}");
            let value = plan.combine(&vec![Some(1.0); leaves.len()]);
            assert!(!value.is_nan(), "{what}: {value}");
            let data = json!({"x": 1, "y": 1, "f": {"f": 2}});
            for leaf in &leaves {
                let _ = leaf.filter.matches(&data);
                let _ = leaf.value_of(&data);
            }
            let text = explain_metric(&source)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .to_string();
            assert!(text.contains("\"kind\":\"metric\""), "{what}");
            drop(copy);
            drop(again);
        }
    });
}

#[test]
fn one_step_past_each_limit_is_an_error_not_an_overflow() {
    on_small_stack(|| {
        for (what, source) in expressions::one_past() {
            let err = expr::parse_metric(&source).expect_err(what).to_string();
            assert!(
                err.contains("too deep")
                    || err.contains("nested too deeply")
                    || err.contains("field path longer"),
                "{what}: {err}"
            );
        }
        // Nesting far past the limit in every way the grammar nests.
        for depth in [1_000, 8_000] {
            for source in [
                format!("{}1{}", "(".repeat(depth), ")".repeat(depth)),
                format!("{}1", "-".repeat(depth)),
                format!("sum(aa({}x{}))", "ln(".repeat(depth), ")".repeat(depth)),
                format!("sum(aa.in(x, {}1{}))", "[".repeat(depth), "]".repeat(depth)),
            ] {
                let source = &source[..source.len().min(cubed::limits::MAX_EXPRESSION_BYTES)];
                assert!(expr::parse_metric(source).is_err());
            }
        }
        // Event expressions: the longest path, and one past it.
        let p = vec!["f"; cubed::limits::MAX_FIELD_SEGMENTS].join(".");
        assert!(compile_event(&format!("aa({p}).eq({p}, 1)")).is_ok());
        assert!(compile_event(&format!("aa({p}.f)")).is_err());
    });
}
