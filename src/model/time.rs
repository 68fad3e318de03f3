//! Parsing and formatting of event times (milliseconds since the Unix epoch).

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;

/// Earliest and latest accepted times: years 0 to 9999, as ISO 8601 can spell them.
pub use crate::limits::{MAX_TIME_MS, MIN_TIME_MS};

/// Parses an ISO 8601 / RFC 3339 time: `2012-04-16T16:00:00Z`,
/// `2012-04-16T16:00:00.123+02:00`, `2012-04-16T16:00:00` (UTC) or `2012-04-16`.
pub fn parse_iso(s: &str) -> Option<i64> {
    let s = s.trim();
    let ms = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        Utc.from_utc_datetime(&t).timestamp_millis()
    } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
        Utc.from_utc_datetime(&t).timestamp_millis()
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)
            .timestamp_millis()
    } else {
        return None;
    };
    in_range(ms)
}

/// A time given as epoch milliseconds (fractions are dropped, as JavaScript's Date does).
pub fn from_number(x: f64) -> Option<i64> {
    if !x.is_finite() {
        return None;
    }
    let ms = x.trunc();
    if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
        return None;
    }
    Some(ms as i64)
}

fn in_range(ms: i64) -> Option<i64> {
    (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms).then_some(ms)
}

/// A time parameter or field: an ISO 8601 string or epoch milliseconds.
pub fn from_json(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_param(s),
        Value::Number(n) => from_number(n.as_f64()?),
        _ => None,
    }
}

/// A time in a query string: epoch milliseconds or ISO 8601.
pub fn parse_param(s: &str) -> Option<i64> {
    let t = s.trim();
    // Rust also reads "inf" and "NaN" as numbers; from_number rejects them.
    if let Ok(x) = t.parse::<f64>() {
        return from_number(x);
    }
    parse_iso(t)
}

/// A query's exclusive `stop`: as [`parse_param`], and also one
/// millisecond past [`MAX_TIME_MS`] (epoch milliseconds), so that an event
/// at the latest accepted time can be asked for.
pub fn parse_stop(s: &str) -> Option<i64> {
    let end = MAX_TIME_MS + 1;
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x.trunc() == end as f64 => Some(end),
        _ => parse_param(s),
    }
}

/// A time as Prometheus's HTTP API takes it: Unix seconds (fractions to
/// the millisecond) or RFC 3339.
pub fn parse_unix_seconds(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(x) = t.parse::<f64>() {
        return from_number((x * 1000.0).round());
    }
    DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|d| in_range(d.timestamp_millis()))
}

/// A duration as Prometheus's HTTP API takes it, in milliseconds: seconds
/// as a number (`15`, `0.5`), or units largest first (`1h30m`, `500ms`,
/// `2d`, `1w`, `1y` of 365 days). `None` for anything else, zero, or more
/// than the range of times.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let t = s.trim();
    let limit = (MAX_TIME_MS - MIN_TIME_MS) as f64;
    if let Ok(x) = t.parse::<f64>() {
        let ms = (x * 1000.0).round();
        return (ms.is_finite() && ms >= 1.0 && ms <= limit).then_some(ms as i64);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = t;
    let mut total: i64 = 0;
    let mut last_unit = usize::MAX;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = UNITS.iter().position(|(u, _)| *u == &rest[..unit_len])?;
        // Each unit once, largest first, as Prometheus requires.
        if last_unit != usize::MAX && unit <= last_unit {
            return None;
        }
        last_unit = unit;
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(UNITS[unit].1)?)?;
    }
    (total >= 1 && (total as f64) <= limit).then_some(total)
}

/// What a client is told when a time parameter is refused.
pub const PARAM_HELP: &str = "epoch milliseconds or ISO 8601 (2012-04-16T16:00:00Z, \
     2012-04-16T16:00:00.123+02:00, 2012-04-16), between the years 0 and 9999 \
     (as epoch milliseconds -62167219200000 to 253402300799999; stop may be \
     one more, as it is exclusive)";

/// What a client is told when the time parameter `name` is refused.
pub fn refused_time(name: &str) -> String {
    format!("{name} must be {PARAM_HELP}")
}

/// What a client is told when a `limit` (of `what`, at most `max`) is refused.
pub fn refused_limit(what: &str, max: impl std::fmt::Display) -> String {
    format!("limit must be a number of {what} from 0 (larger ones count as {max})")
}

/// `2012-04-16T16:00:00.000Z`: ISO 8601, UTC, milliseconds.
pub fn format_iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_times_and_durations() {
        assert_eq!(parse_unix_seconds("1334592000"), Some(1_334_592_000_000));
        assert_eq!(parse_unix_seconds("1334592000.5"), Some(1_334_592_000_500));
        assert_eq!(
            parse_unix_seconds("2012-04-16T16:00:00Z"),
            Some(1_334_592_000_000)
        );
        assert_eq!(parse_unix_seconds("NaN"), None);
        assert_eq!(parse_unix_seconds("1e300"), None);
        assert_eq!(parse_unix_seconds("yesterday"), None);
        assert_eq!(parse_duration_ms("15"), Some(15_000));
        assert_eq!(parse_duration_ms("0.5"), Some(500));
        assert_eq!(parse_duration_ms("1m"), Some(60_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1w"), Some(604_800_000));
        assert_eq!(parse_duration_ms("0"), None);
        assert_eq!(parse_duration_ms("-1"), None);
        assert_eq!(parse_duration_ms("30m1h"), None);
        assert_eq!(parse_duration_ms("1x"), None);
        assert_eq!(parse_duration_ms("m"), None);
        assert_eq!(parse_duration_ms(""), None);
        assert_eq!(parse_duration_ms("99999999999999999999y"), None);
    }

    #[test]
    fn parses_the_spellings_clients_send() {
        assert_eq!(parse_iso("2012-04-16T16:00:00Z"), Some(1_334_592_000_000));
        assert_eq!(
            parse_iso("2012-04-16T16:00:00.000Z"),
            Some(1_334_592_000_000)
        );
        assert_eq!(
            parse_iso("2012-04-16T18:00:00+02:00"),
            Some(1_334_592_000_000)
        );
        assert_eq!(parse_iso("2012-04-16T16:00:00"), Some(1_334_592_000_000));
        assert_eq!(parse_iso("2012-04-16"), Some(1_334_534_400_000));
        assert_eq!(parse_param("1334592000000"), Some(1_334_592_000_000));
        assert_eq!(parse_param("1.334592e12"), Some(1_334_592_000_000));
        assert_eq!(parse_param("2012-04-16"), Some(1_334_534_400_000));
        assert_eq!(parse_param("yesterday"), None);
        assert_eq!(parse_param(""), None);
        assert_eq!(from_number(f64::NAN), None);
        assert_eq!(from_number(1e300), None);
        assert_eq!(format_iso(1_334_592_000_000), "2012-04-16T16:00:00.000Z");
        assert_eq!(format_iso(-1), "1969-12-31T23:59:59.999Z");
    }
}
