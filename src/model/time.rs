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
