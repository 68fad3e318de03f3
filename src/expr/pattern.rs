//! `re` patterns: compiled once with a bound on their size, shared by the
//! parser (which refuses a bad pattern) and the planner (which keeps it).

use regex::Regex;

/// Compiles an `re` pattern with a bound on its compiled size (the `regex`
/// crate matches in linear time, so no pattern can make a match slow).
///
/// Compiling costs far more than parsing an expression, and every pattern
/// is compiled twice (the parser checks it, the planner keeps it) and again
/// for each request (dashboards repeat theirs every few seconds), so recent
/// patterns are memoized: at most [`MEMO_ENTRIES`] patterns of at most
/// [`MEMO_PATTERN_BYTES`] each (a compiled pattern holds at most
/// `MAX_REGEX_BYTES`), the table emptied when full. A clone shares the
/// compiled program.
pub fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static MEMO: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Mutex::default);
    if let Some(r) = crate::sync::lock(&MEMO).get(pattern) {
        return Ok(r.clone());
    }
    let r = regex::RegexBuilder::new(pattern)
        .size_limit(crate::limits::MAX_REGEX_BYTES)
        .build()?;
    if pattern.len() <= MEMO_PATTERN_BYTES {
        let mut memo = crate::sync::lock(&MEMO);
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.insert(pattern.to_owned(), r.clone());
    }
    Ok(r)
}

/// Most patterns [`compile_regex`] remembers.
const MEMO_ENTRIES: usize = 64;
/// Longest pattern [`compile_regex`] remembers.
const MEMO_PATTERN_BYTES: usize = 4096;
