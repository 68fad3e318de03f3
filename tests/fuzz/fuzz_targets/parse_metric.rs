//! Fuzzes the metric expression parser and planner: no input may panic or
//! exhaust the stack, and an accepted expression's canonical text (within
//! the length limit: numbers are spelled out in full there) must parse back
//! to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ast) = cubed::expr::parse_metric(text) {
        let canonical = ast.to_string();
        if canonical.len() <= cubed::limits::MAX_EXPRESSION_BYTES {
            let again = cubed::expr::parse_metric(&canonical);
            assert_eq!(again.as_ref().ok(), Some(&ast), "canonical {canonical:?}");
        }
        if let Ok(plan) = cubed::plan::MetricPlan::new(&ast) {
            let leaves = plan.leaves();
            let _ = plan.combine(&vec![Some(1.0); leaves.len()]);
            let data = serde_json::json!({"i": 42, "s": "x", "a": [1, {"b": "y"}], "o": {"p": null}});
            for leaf in &leaves {
                let _ = leaf.filter.matches(&data);
                let _ = leaf.value_of(&data);
            }
            let _ = plan.explain().to_string();
        }
    }
});
