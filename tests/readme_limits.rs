//! The README's Limits table states every limit of `src/limits.rs` with the
//! value the code has: a changed limit fails here until the docs say so.

use cubed::limits::*;

/// `1234567` as `1,234,567` (and negative numbers alike).
fn with_commas(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[test]
fn the_readme_states_every_limit() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table = readme
        .split("\n## Limits\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Limits section");
    let limits: [(&str, i128); 56] = [
        ("CACHE_READ_MEMO_BYTES", CACHE_READ_MEMO_BYTES as i128),
        ("MAX_OPMETRICS_ROWS", MAX_OPMETRICS_ROWS as i128),
        (
            "MAX_PROMETHEUS_FORM_BYTES",
            MAX_PROMETHEUS_FORM_BYTES as i128,
        ),
        ("MAX_SELECTOR_BYTES", MAX_SELECTOR_BYTES as i128),
        ("MAX_SELECTORS", MAX_SELECTORS as i128),
        (
            "DEFAULT_MAX_BINS_IN_FLIGHT",
            DEFAULT_MAX_BINS_IN_FLIGHT as i128,
        ),
        (
            "DEFAULT_MAX_WS_QUEUE_TOTAL_BYTES",
            DEFAULT_MAX_WS_QUEUE_TOTAL_BYTES as i128,
        ),
        (
            "DEFAULT_SELF_RETENTION_MS",
            DEFAULT_SELF_RETENTION_MS as i128,
        ),
        (
            "DEFAULT_RETENTION_INTERVAL_MS",
            DEFAULT_RETENTION_INTERVAL_MS as i128,
        ),
        ("DEFAULT_MAX_SERVICES", DEFAULT_MAX_SERVICES as i128),
        ("DEFAULT_MAX_TYPES", DEFAULT_MAX_TYPES as i128),
        ("MAX_RETENTION_OVERRIDES", MAX_RETENTION_OVERRIDES as i128),
        (
            "DEFAULT_MAX_CACHED_EXPRESSIONS",
            DEFAULT_MAX_CACHED_EXPRESSIONS as i128,
        ),
        ("DEFAULT_MAX_WEBSOCKETS", DEFAULT_MAX_WEBSOCKETS as i128),
        ("DEFAULT_MAX_COMPUTATIONS", DEFAULT_MAX_COMPUTATIONS as i128),
        ("DEFAULT_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS as i128),
        (
            "DEFAULT_HEADER_TIMEOUT_MS",
            DEFAULT_HEADER_TIMEOUT_MS as i128,
        ),
        ("KEY_RELOAD_INTERVAL_MS", KEY_RELOAD_INTERVAL_MS as i128),
        ("MAX_KEY_FILE_BYTES", MAX_KEY_FILE_BYTES as i128),
        ("MAX_KEY_REQUEST_BYTES", MAX_KEY_REQUEST_BYTES as i128),
        ("MAX_TYPE_BYTES", MAX_TYPE_BYTES as i128),
        ("MAX_ID_BYTES", MAX_ID_BYTES as i128),
        ("MAX_FIELD_NAME_BYTES", MAX_FIELD_NAME_BYTES as i128),
        ("MAX_STRING_BYTES", MAX_STRING_BYTES as i128),
        ("MAX_DATA_DEPTH", MAX_DATA_DEPTH as i128),
        ("MAX_EVENT_BYTES", MAX_EVENT_BYTES as i128),
        ("MIN_TIME_MS", MIN_TIME_MS as i128),
        ("MAX_TIME_MS", MAX_TIME_MS as i128),
        ("DEFAULT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES as i128),
        (
            "DEFAULT_MAX_WS_MESSAGE_BYTES",
            DEFAULT_MAX_WS_MESSAGE_BYTES as i128,
        ),
        (
            "DEFAULT_MAX_WS_QUEUE_BYTES",
            DEFAULT_MAX_WS_QUEUE_BYTES as i128,
        ),
        ("DEFAULT_MAX_WS_IN_FLIGHT", DEFAULT_MAX_WS_IN_FLIGHT as i128),
        ("DEFAULT_BODY_TIMEOUT_MS", DEFAULT_BODY_TIMEOUT_MS as i128),
        ("DEFAULT_QUERY_TIMEOUT_MS", DEFAULT_QUERY_TIMEOUT_MS as i128),
        ("DEFAULT_MAX_LIVE_STREAMS", DEFAULT_MAX_LIVE_STREAMS as i128),
        (
            "DEFAULT_MIN_FREE_DISK_BYTES",
            DEFAULT_MIN_FREE_DISK_BYTES as i128,
        ),
        ("MAX_TENANT_BYTES", MAX_TENANT_BYTES as i128),
        (
            "MAX_SUBSERVICE_LEVEL_BYTES",
            MAX_SUBSERVICE_LEVEL_BYTES as i128,
        ),
        ("MAX_SUBSERVICE_LEVELS", MAX_SUBSERVICE_LEVELS as i128),
        ("MAX_SUBSERVICE_PATHS", MAX_SUBSERVICE_PATHS as i128),
        ("MAX_SESSION_ID_BYTES", MAX_SESSION_ID_BYTES as i128),
        ("MAX_LIVE_DELAY_MS", MAX_LIVE_DELAY_MS as i128),
        ("MAX_REQUEST_PATH_CHARS", MAX_REQUEST_PATH_CHARS as i128),
        ("MAX_EXPRESSION_BYTES", MAX_EXPRESSION_BYTES as i128),
        ("MAX_DEPTH", MAX_DEPTH as i128),
        ("MAX_TREE_DEPTH", MAX_TREE_DEPTH as i128),
        ("MAX_FIELD_SEGMENTS", MAX_FIELD_SEGMENTS as i128),
        ("MAX_REGEX_BYTES", MAX_REGEX_BYTES as i128),
        ("MAX_SOURCE_BYTES", MAX_SOURCE_BYTES as i128),
        ("MAX_METRIC_LIMIT", MAX_METRIC_LIMIT as i128),
        ("MAX_EVENT_LIMIT", MAX_EVENT_LIMIT as i128),
        ("MAX_REQUEST_ID_BYTES", MAX_REQUEST_ID_BYTES as i128),
        ("MAX_BINS_PER_REQUEST", MAX_BINS_PER_REQUEST as i128),
        ("MAX_QUERY_MEMORY_BYTES", MAX_QUERY_MEMORY_BYTES as i128),
        ("MAX_KEY_BYTES", MAX_KEY_BYTES as i128),
        ("MAX_BLOCK_BYTES", MAX_BLOCK_BYTES as i128),
    ];
    for (name, value) in limits {
        let row = table
            .lines()
            .find(|l| l.contains(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("no row names {name}"));
        let spellings = [
            value.to_string(),
            with_commas(value),
            format!("{} MiB", value / (1024 * 1024)),
        ];
        let exact_mib = value > 0 && value % (1024 * 1024) == 0;
        assert!(
            spellings[..2]
                .iter()
                .any(|s| row.contains(&format!(" {s}")))
                || (exact_mib && row.contains(&spellings[2])),
            "the row of {name} does not state {value}: {row}"
        );
    }
}
