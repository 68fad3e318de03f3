//! Events: validation of what clients send, and what the store gives back.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::time;

/// Deepest nesting of arrays and objects accepted in an event's `data`.
pub const MAX_DATA_DEPTH: usize = 64;

/// A validated event, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    /// The event's data as compact JSON text (`{}` when the client sent none).
    pub data: String,
    /// The client's id as JSON text (`"abc"` or `42`), if it gave one.
    pub id: Option<String>,
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub time: i64,
    pub data: Value,
    pub id: Option<Value>,
}

/// Why one event was refused. The `Display` strings are Cube's where Cube had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    NotAnObject,
    InvalidType,
    InvalidTime,
    InvalidId,
    DataTooDeep,
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventError::NotAnObject => "invalid event: not a JSON object",
            EventError::InvalidType => "invalid type",
            EventError::InvalidTime => "invalid time",
            EventError::InvalidId => "invalid id: must be a string or a number",
            EventError::DataTooDeep => "invalid data: nested too deeply",
        })
    }
}

impl std::error::Error for EventError {}

/// The wire shape of an event; every field is checked by [`validate_event`].
/// Only a JSON object deserializes into it (serde's derive would also take an array).
#[derive(Default)]
struct WireEvent<'a> {
    event_type: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for WireEvent<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = WireEvent<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut w = WireEvent::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let slot = match key.as_ref() {
                        "type" => &mut w.event_type,
                        "time" => &mut w.time,
                        "data" => &mut w.data,
                        "id" => &mut w.id,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<&'de RawValue>()?);
                }
                Ok(w)
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// `^[a-z][a-zA-Z0-9_]+$`
pub fn is_valid_type(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Nesting depth of a JSON text (strings skipped), without building it.
pub fn json_depth(text: &str) -> usize {
    // Cheap bound first: depth never exceeds the number of opening brackets.
    let openers = text.bytes().filter(|b| *b == b'{' || *b == b'[').count();
    if openers <= MAX_DATA_DEPTH {
        return openers;
    }
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The text of a JSON string literal, borrowed when it has no escapes.
fn json_str(raw: &RawValue) -> Option<std::borrow::Cow<'_, str>> {
    let t = raw.get();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') && !t.contains('\\') {
        return Some(std::borrow::Cow::Borrowed(&t[1..t.len() - 1]));
    }
    serde_json::from_str::<String>(t)
        .ok()
        .map(std::borrow::Cow::Owned)
}

fn validate_wire(wire: &WireEvent<'_>, now: i64) -> Result<NewEvent, EventError> {
    let event_type = match wire.event_type.and_then(json_str) {
        Some(t) if is_valid_type(&t) => t.into_owned(),
        _ => return Err(EventError::InvalidType),
    };
    let time = match wire.time.map(RawValue::get) {
        None | Some("null") => now,
        Some(t) if t.starts_with('"') => wire
            .time
            .and_then(json_str)
            .and_then(|s| time::parse_param(&s))
            .ok_or(EventError::InvalidTime)?,
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|_| t.starts_with(|c: char| c == '-' || c.is_ascii_digit()))
            .and_then(time::from_number)
            .ok_or(EventError::InvalidTime)?,
    };
    let data = match wire.data {
        None => "{}".to_owned(),
        Some(r) => {
            if json_depth(r.get()) > MAX_DATA_DEPTH {
                return Err(EventError::DataTooDeep);
            }
            r.get().to_owned()
        }
    };
    let id = match wire.id.map(RawValue::get) {
        None | Some("null") => None,
        Some(t) if t.starts_with(|c: char| c == '"' || c == '-' || c.is_ascii_digit()) => {
            Some(t.to_owned())
        }
        Some(_) => return Err(EventError::InvalidId),
    };
    Ok(NewEvent {
        event_type,
        time,
        data,
        id,
    })
}

/// Validates one event given as JSON text; `now` fills a missing time.
pub fn validate_event(raw: &RawValue, now: i64) -> Result<NewEvent, EventError> {
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return Err(EventError::NotAnObject);
    }
    let wire: WireEvent<'_> = serde_json::from_str(text).map_err(|_| EventError::NotAnObject)?;
    validate_wire(&wire, now)
}

/// Parses a batch body (a JSON array of events) and validates every event.
/// Nothing is stored unless all are valid; errors list every bad index.
pub fn parse_event_batch(body: &[u8], now: i64) -> Result<Vec<NewEvent>, BatchError> {
    // Fast path: one pass over the body when every item is an event object.
    if let Ok(wires) = serde_json::from_slice::<Vec<WireEvent<'_>>>(body) {
        let mut events = Vec::with_capacity(wires.len());
        let mut bad = Vec::new();
        for (index, wire) in wires.iter().enumerate() {
            match validate_wire(wire, now) {
                Ok(e) => events.push(e),
                Err(reason) => bad.push((index, reason)),
            }
        }
        return if bad.is_empty() {
            Ok(events)
        } else {
            Err(BatchError::Invalid(bad))
        };
    }
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            BatchError::Json(e.to_string())
        } else {
            BatchError::NotAnArray
        }
    })?;
    let mut events = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (index, raw) in items.into_iter().enumerate() {
        match validate_event(raw, now) {
            Ok(e) => events.push(e),
            Err(reason) => bad.push((index, reason)),
        }
    }
    if bad.is_empty() {
        Ok(events)
    } else {
        Err(BatchError::Invalid(bad))
    }
}

/// Why a whole batch was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchError {
    /// The body is not JSON, or JSON but not an array.
    NotAnArray,
    /// The body starts like an array but is not valid JSON.
    Json(String),
    /// These events (index, reason) are invalid.
    Invalid(Vec<(usize, EventError)>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<NewEvent, EventError> {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        validate_event(&raw, 1000)
    }

    #[test]
    fn validates_type_time_id_and_depth() {
        let e = one(r#"{"type":"test","time":"2012-04-16T16:00:00Z","data":{"a":1},"id":"x"}"#)
            .unwrap();
        assert_eq!(
            (
                e.event_type.as_str(),
                e.time,
                e.data.as_str(),
                e.id.as_deref()
            ),
            ("test", 1_334_592_000_000, r#"{"a":1}"#, Some("\"x\""))
        );
        assert_eq!(one(r#"{"type":"test"}"#).unwrap().time, 1000);
        assert_eq!(one(r#"{"type":"test","time":5}"#).unwrap().time, 5);
        assert_eq!(one(r#"{"type":"t"}"#), Err(EventError::InvalidType));
        assert_eq!(one(r#"{"type":"Test"}"#), Err(EventError::InvalidType));
        assert_eq!(one(r#"{"time":5}"#), Err(EventError::InvalidType));
        assert_eq!(one(r#"{"type":5}"#), Err(EventError::InvalidType));
        assert_eq!(
            one(r#"{"type":"test","time":"soon"}"#),
            Err(EventError::InvalidTime)
        );
        assert_eq!(
            one(r#"{"type":"test","time":true}"#),
            Err(EventError::InvalidTime)
        );
        assert_eq!(
            one(r#"{"type":"test","id":{"a":1}}"#),
            Err(EventError::InvalidId)
        );
        assert_eq!(one("[1]"), Err(EventError::NotAnObject));
        let deep = format!(
            r#"{{"type":"test","data":{}1{}}}"#,
            "[".repeat(65),
            "]".repeat(65)
        );
        assert_eq!(one(&deep), Err(EventError::DataTooDeep));
        let fine = format!(
            r#"{{"type":"test","data":{}"[[[" {}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert!(one(&fine).is_ok());
    }

    #[test]
    fn batches_are_validated_whole() {
        let body = br#"[{"type":"ok1"},{"type":"x"},{"type":"ok2","time":"bad"}]"#;
        match parse_event_batch(body, 0) {
            Err(BatchError::Invalid(bad)) => assert_eq!(
                bad,
                vec![(1, EventError::InvalidType), (2, EventError::InvalidTime)]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_event_batch(b"{}", 0), Err(BatchError::NotAnArray));
        assert!(matches!(
            parse_event_batch(b"[{", 0),
            Err(BatchError::Json(_))
        ));
        assert_eq!(parse_event_batch(b"[]", 0), Ok(vec![]));
    }
}
