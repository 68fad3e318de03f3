//! Walks the grammar corpus (grammar/corpus/*.txt) and compares each entry's
//! plan or error with the golden file beside it.
//!
//! To rewrite the golden files after an intended change:
//! `CUBED_UPDATE_GOLDEN=1 cargo test --test grammar`, then review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use cubed::expr::{self, MAX_DEPTH, MAX_EXPRESSION_BYTES};
use cubed::plan;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grammar/corpus")
}

fn entries(name: &str) -> Vec<String> {
    let text = fs::read_to_string(corpus_dir().join(format!("{name}.txt")))
        .unwrap_or_else(|e| panic!("reading corpus {name}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Renders every entry, checks accept/reject intent, compares with the golden file.
fn check(name: &str, event: bool, expect_ok: bool) {
    let mut rendered = String::new();
    let mut wrong = Vec::new();
    for input in entries(name) {
        let result = if event {
            plan::explain_event(&input)
        } else {
            plan::explain_metric(&input)
        };
        rendered.push_str(&format!(">>> {input}\n"));
        match result {
            Ok(json) => {
                if !expect_ok {
                    wrong.push(format!("accepted but should be rejected: {input}"));
                }
                let pretty = serde_json::to_string_pretty(&json).expect("json prints");
                rendered.push_str(&pretty);
                rendered.push('\n');
            }
            Err(e) => {
                if expect_ok {
                    wrong.push(format!("rejected but should be accepted: {input}: {e}"));
                }
                rendered.push_str(&format!("error: {e}\n"));
            }
        }
        rendered.push('\n');
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let golden = corpus_dir().join(format!("{name}.golden"));
    if std::env::var_os("CUBED_UPDATE_GOLDEN").is_some() {
        fs::write(&golden, &rendered).expect("write golden");
        return;
    }
    let expected = fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with CUBED_UPDATE_GOLDEN=1 to create it)",
            golden.display()
        )
    });
    if expected != rendered {
        let first_diff = expected
            .lines()
            .zip(rendered.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(n, (a, b))| format!("line {}: golden {a:?}, got {b:?}", n + 1))
            .unwrap_or_else(|| "lengths differ".to_owned());
        panic!(
            "{} differs from the parser's output: {first_diff}",
            golden.display()
        );
    }
}

#[test]
fn metric_accept_corpus() {
    check("metric_accept", false, true);
}

#[test]
fn metric_reject_corpus() {
    check("metric_reject", false, false);
}

#[test]
fn event_accept_corpus() {
    check("event_accept", true, true);
}

#[test]
fn event_reject_corpus() {
    check("event_reject", true, false);
}

#[test]
fn canonical_text_of_accepted_corpus_reparses_to_same_text() {
    for input in entries("metric_accept") {
        let ast = expr::parse_metric(&input).expect("accepted");
        let canonical = ast.to_string();
        let again = expr::parse_metric(&canonical).expect("canonical text parses");
        assert_eq!(again, ast, "{input}");
        assert_eq!(again.to_string(), canonical);
    }
    for input in entries("event_accept") {
        let ast = expr::parse_event(&input).expect("accepted");
        let again = expr::parse_event(&ast.to_string()).expect("canonical text parses");
        assert_eq!(again, ast, "{input}");
    }
}

#[test]
fn empty_and_blank_expressions_are_rejected() {
    assert_eq!(
        expr::parse_metric("").unwrap_err().to_string(),
        "expected \"(\", \"-\", number or reduce at 0"
    );
    assert_eq!(
        expr::parse_event("   ").unwrap_err().to_string(),
        "expected event type at 3"
    );
}

#[test]
fn overlong_expression_is_rejected_before_parsing() {
    let long = format!(
        "sum(test{})",
        ".eq(a, 1)".repeat(MAX_EXPRESSION_BYTES / 9 + 1)
    );
    let err = expr::parse_metric(&long).unwrap_err().to_string();
    assert!(err.starts_with("expression too long"), "{err}");
}

#[test]
fn deep_nesting_is_rejected_not_a_stack_overflow() {
    for depth in [MAX_DEPTH + 1, 3_000] {
        let parens = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
        let err = expr::parse_metric(&parens).unwrap_err().to_string();
        assert!(err.contains("nested too deeply"), "{err}");
        let minus = format!("{}1", "-".repeat(depth));
        let err = expr::parse_metric(&minus).unwrap_err().to_string();
        assert!(err.contains("nested too deeply"), "{err}");
        let arrays = format!("sum(t1.in(a, {}1{}))", "[".repeat(depth), "]".repeat(depth));
        let err = expr::parse_metric(&arrays).unwrap_err().to_string();
        assert!(err.contains("nested too deeply"), "{err}");
        let calls = format!("sum(t1({}x{}))", "abs(".repeat(depth), ")".repeat(depth));
        let err = expr::parse_metric(&calls).unwrap_err().to_string();
        assert!(err.contains("nested too deeply"), "{err}");
    }
    let ok = format!(
        "{}1{}",
        "(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    assert!(expr::parse_metric(&ok).is_ok());
}

#[test]
fn error_offsets_count_characters_not_bytes() {
    // "é" is two bytes; the error is at character 24.
    let err = expr::parse_metric("sum(test.eq(s, \"é\")) + é").unwrap_err();
    assert_eq!(err.offset(), 23);
}
