//! The largest expressions the limits allow, each pushing one dimension
//! to its maximum (tree depth through chains, nesting through parentheses,
//! unary minus, calls and arrays, field paths, length), and the same one
//! step past it. Shared by tests/expression_stack.rs (a 2 MiB thread) and
//! tests/hostile_inputs.rs (the real server's worker threads).
#![allow(dead_code)]

use cubed::limits::{MAX_DEPTH, MAX_EXPRESSION_BYTES, MAX_FIELD_SEGMENTS, MAX_TREE_DEPTH};

/// `sum(aa)` followed by `+ 1` until the tree is `depth` deep.
fn chain(depth: usize) -> String {
    format!("sum(aa){}", " + 1".repeat(depth - 1))
}

/// Parentheses nested `MAX_DEPTH` deep, each level continuing a chain, so
/// that both the nesting and the tree are at their limits.
fn nested_chains(extra: usize) -> String {
    let levels = MAX_DEPTH - 1;
    let per_level = (MAX_TREE_DEPTH - 1) / levels;
    let mut e = "sum(aa)".to_owned();
    let mut tree = 1;
    for _ in 0..levels {
        e = format!("({e}){}", " * 1".repeat(per_level));
        tree += per_level;
    }
    format!("{e}{}", " - 1".repeat(MAX_TREE_DEPTH - tree + extra))
}

/// A value chain inside a reduce: the leaf is one level, the value the rest.
fn value_chain(extra: usize) -> String {
    format!("sum(aa(x{}))", " + x".repeat(MAX_TREE_DEPTH - 2 + extra))
}

/// Unary minus at the nesting limit, outside and inside the value (the
/// outer minus, its parentheses and the reduce's value open three levels).
fn minus(extra: usize) -> String {
    let n = MAX_DEPTH - 3 + extra;
    format!("-(sum(aa({}x)))", "-".repeat(n))
}

/// Value functions nested to the limit.
fn calls(extra: usize) -> String {
    let n = MAX_DEPTH - 1 + extra;
    format!("max(aa({}x{}))", "abs(".repeat(n), ")".repeat(n))
}

/// An array literal nested to the limit in an `in` filter.
fn arrays(extra: usize) -> String {
    let n = MAX_DEPTH - 1 + extra;
    format!("sum(aa.in(x, {}1{}))", "[".repeat(n), "]".repeat(n))
}

/// The longest field path, as a value and in a filter.
fn path(extra: usize) -> String {
    let p = vec!["f"; MAX_FIELD_SEGMENTS + extra].join(".");
    format!("sum(aa({p}).eq({p}, 1))")
}

/// Distinct reduces in a balanced tree, filling the length limit.
fn wide() -> String {
    let mut leaves: Vec<String> = (0..)
        .map(|i| format!("sum(aa.eq(x, {i}))"))
        .take(600)
        .collect();
    while leaves.len() > 1 {
        leaves = leaves
            .chunks(2)
            .map(|c| match c {
                [a, b] => format!("({a} + {b})"),
                [a] => a.clone(),
                _ => unreachable!(),
            })
            .collect();
    }
    let mut e = leaves.pop().unwrap_or_default();
    // The balanced part is 11 levels deep; each appended term adds one.
    for _ in 0..MAX_TREE_DEPTH - 12 {
        if e.len() + 20 > MAX_EXPRESSION_BYTES {
            break;
        }
        e.push_str(" + sum(aa.eq(y, 1))");
    }
    e
}

/// Filters up to the length limit.
fn many_filters() -> String {
    let mut e = "sum(aa".to_owned();
    while e.len() + 20 < MAX_EXPRESSION_BYTES {
        e.push_str(".ne(x, \"abcdef\")");
    }
    e.push(')');
    e
}

/// Every maximal metric expression (all accepted).
pub fn maximal() -> Vec<(&'static str, String)> {
    vec![
        ("chain", chain(MAX_TREE_DEPTH)),
        ("nested chains", nested_chains(0)),
        ("value chain", value_chain(0)),
        ("unary minus", minus(0)),
        ("calls", calls(0)),
        ("arrays", arrays(0)),
        ("field path", path(0)),
        ("wide", wide()),
        ("filters", many_filters()),
    ]
}

/// The same, one step past each limit (all refused), and the chain the
/// issue found (8,000 terms).
pub fn one_past() -> Vec<(&'static str, String)> {
    vec![
        ("chain", chain(MAX_TREE_DEPTH + 1)),
        ("8000 terms", format!("sum(aa){}", "+1".repeat(7_999))),
        ("nested chains", nested_chains(1)),
        ("value chain", value_chain(1)),
        ("unary minus", minus(1)),
        ("calls", calls(1)),
        ("arrays", arrays(1)),
        ("field path", path(1)),
    ]
}
