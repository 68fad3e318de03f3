//! Fuzzes the event expression parser and planner: no input may panic, and
//! an accepted expression's canonical text must parse back to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ast) = cubed::expr::parse_event(text) {
        let canonical = ast.to_string();
        if canonical.len() <= cubed::limits::MAX_EXPRESSION_BYTES {
            let again = cubed::expr::parse_event(&canonical);
            assert_eq!(again.as_ref().ok(), Some(&ast), "canonical {canonical:?}");
        }
        if let Ok(plan) = cubed::plan::EventPlan::new(&ast) {
            let data = serde_json::json!({"i": 42, "s": "x", "a": [1, {"b": "y"}], "o": {"p": null}});
            let _ = plan.filter.matches(&data);
            let _ = plan.project(&data);
        }
    }
});
