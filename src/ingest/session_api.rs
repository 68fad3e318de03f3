//! The session metric logging API (a client's sessions, not a run of the server) as events — pure.
//!
//! `POST /api/sessions/{id}/metrics` with `{"name", "value", "tags"?}` stores
//! an event of type `name` with data `{value, tags, session}` (`tags` is `[]`
//! when absent), so `max(response_time_ms(value).eq(session, '550e8400'))`
//! and `sum(http_requests(value).eq(tags, 'method:GET'))` chart them.
//! `POST /api/sessions/{id}/events` with `{"name", "data"?}` stores an event of
//! type `name` whose data is the given object plus `session` (the path's id
//! wins over a `session` key in the data).
//! Both take an optional `time` (ISO 8601 or epoch ms; default now).

use serde_json::{Map, Value};

use crate::model::event::{NewEvent, is_valid_type};
use crate::model::time;

/// A session id as a path may give it: 1–128 of letters, digits, `-`, `_`, `.`.
pub fn valid_session(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= crate::limits::MAX_SESSION_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn name(body: &Map<String, Value>) -> Result<String, String> {
    match body.get("name") {
        Some(Value::String(n)) if is_valid_type(n) => Ok(n.clone()),
        Some(Value::String(n)) => Err(format!(
            "invalid name {n:?}: names are types, ^[a-z][a-zA-Z0-9_]+$"
        )),
        Some(_) => Err("invalid name: expected a string".into()),
        None => Err("missing name".into()),
    }
}

fn when(body: &Map<String, Value>, now: i64) -> Result<i64, String> {
    match body.get("time") {
        None | Some(Value::Null) => Ok(now),
        Some(v) => time::from_json(v).ok_or_else(|| "invalid time".into()),
    }
}

fn session_check(session: &str) -> Result<(), String> {
    if valid_session(session) {
        Ok(())
    } else {
        Err("invalid session id: 1-128 letters, digits, -, _ and .".into())
    }
}

/// `{"name", "value", "tags"?}` → event `name` `{value, tags, session}`.
pub fn metric(session: &str, body: &[u8], now: i64) -> Result<NewEvent<'static>, String> {
    session_check(session)?;
    let body = object(body)?;
    let name = name(&body)?;
    let value = match body.get("value") {
        Some(v @ Value::Number(_)) => v.clone(),
        Some(_) => return Err("invalid value: expected a number".into()),
        None => return Err("missing value".into()),
    };
    let tags = match body.get("tags") {
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(Value::Array(tags)) if tags.iter().all(Value::is_string) => Value::Array(tags.clone()),
        Some(_) => return Err("invalid tags: expected an array of strings".into()),
    };
    let mut data = Map::new();
    data.insert("value".into(), value);
    data.insert("tags".into(), tags);
    data.insert("session".into(), Value::String(session.to_owned()));
    NewEvent::owned(
        name,
        when(&body, now)?,
        Value::Object(data).to_string(),
        None,
    )
    .checked()
    .map_err(|e| e.to_string())
}

/// `{"name", "data"?}` → event `name` with the data plus `session`.
pub fn event(session: &str, body: &[u8], now: i64) -> Result<NewEvent<'static>, String> {
    session_check(session)?;
    let body = object(body)?;
    let name = name(&body)?;
    let mut data = match body.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(d)) => d.clone(),
        Some(_) => return Err("invalid data: expected an object".into()),
    };
    data.insert("session".into(), Value::String(session.to_owned()));
    NewEvent::owned(
        name,
        when(&body, now)?,
        Value::Object(data).to_string(),
        None,
    )
    .checked()
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_become_events_with_value_tags_and_session() {
        let e = metric(
            "550e8400",
            br#"{"name": "memory_mb", "value": 512.5, "tags": ["backend"]}"#,
            9,
        )
        .expect("valid");
        assert_eq!((e.event_type.as_ref(), e.time), ("memory_mb", 9));
        let d: Value = serde_json::from_str(&e.data.json()).expect("json");
        assert_eq!(
            d,
            json!({"value": 512.5, "tags": ["backend"], "session": "550e8400"})
        );
        let e = metric("s", br#"{"name": "error_count", "value": 3}"#, 0).expect("valid");
        assert_eq!(e.data.json(), r#"{"value":3,"tags":[],"session":"s"}"#);
    }

    #[test]
    fn bad_metrics_say_why() {
        let bad = |s: &str, b: &str| metric(s, b.as_bytes(), 0).expect_err("invalid");
        assert!(bad("s", r#"{"name": "Memory", "value": 1}"#).starts_with("invalid name"));
        assert_eq!(bad("s", r#"{"value": 1}"#), "missing name");
        assert_eq!(
            bad("s", r#"{"name": "m", "value": 1}"#).split(':').next(),
            Some("invalid name \"m\"")
        );
        assert_eq!(
            bad("s", r#"{"name": "mem", "value": "12"}"#),
            "invalid value: expected a number"
        );
        assert_eq!(bad("s", r#"{"name": "mem"}"#), "missing value");
        assert_eq!(
            bad("s", r#"{"name": "mem", "value": 1, "tags": "a"}"#),
            "invalid tags: expected an array of strings"
        );
        assert!(bad("s", "[1]").starts_with("expected a JSON object"));
        assert!(bad("s", "{").starts_with("invalid JSON"));
        assert!(bad("a/b", r#"{"name": "mem", "value": 1}"#).starts_with("invalid session id"));
    }

    #[test]
    fn events_carry_their_data_and_session() {
        let e = event(
            "550e8400",
            br#"{"name": "api_call_completed", "data": {"endpoint": "/users", "status": 200, "session": "other"}}"#,
            1,
        )
        .expect("valid");
        let d: Value = serde_json::from_str(&e.data.json()).expect("json");
        assert_eq!(
            d,
            json!({"endpoint": "/users", "status": 200, "session": "550e8400"})
        );
        assert!(event("s", br#"{"name": "done", "data": 5}"#, 0).is_err());
        assert_eq!(
            event("s", br#"{"name": "done", "time": 1000}"#, 0)
                .expect("valid")
                .time,
            1000
        );
    }
}
