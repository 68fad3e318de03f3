//! Events: what every ingest path checks an event against before it is
//! stored ([`NewEvent::checked`]), and what the store gives back. The wire
//! formats that produce events are in `crate::ingest`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::limits::{
    MAX_DATA_DEPTH, MAX_EVENT_BYTES, MAX_FIELD_NAME_BYTES, MAX_ID_BYTES, MAX_STRING_BYTES,
    MAX_TIME_MS, MAX_TYPE_BYTES, MIN_TIME_MS,
};

/// A validated event, ready to store. Events parsed from a request body
/// borrow from it (`'a`); events built by the server own their text.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent<'a> {
    pub event_type: Cow<'a, str>,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    /// The event's data (`{}` when the client sent none).
    pub data: EventData<'a>,
    /// The client's id as JSON text (`"abc"` or `42`), if it gave one.
    pub id: Option<Cow<'a, str>>,
}

impl NewEvent<'_> {
    /// The same event, owning its text.
    pub fn into_owned(self) -> NewEvent<'static> {
        NewEvent {
            event_type: Cow::Owned(self.event_type.into_owned()),
            time: self.time,
            data: EventData::Json(Cow::Owned(self.data.json().into_owned())),
            id: self.id.map(|i| Cow::Owned(i.into_owned())),
        }
    }
}

impl NewEvent<'static> {
    /// An event built by the server: data and id are JSON text.
    pub fn owned(event_type: String, time: i64, data: String, id: Option<String>) -> Self {
        NewEvent {
            event_type: Cow::Owned(event_type),
            time,
            data: EventData::Json(Cow::Owned(data)),
            id: id.map(Cow::Owned),
        }
    }
}

/// One top-level field of a data object: its key and its value's JSON text,
/// borrowed from the input where possible.
pub type Field<'a> = (Cow<'a, str>, &'a RawValue);

/// An event's data as the store gets it.
#[derive(Debug, Clone)]
pub enum EventData<'a> {
    /// JSON text.
    Json(Cow<'a, str>),
    /// A JSON object, as its top-level fields in the order sent (the batch
    /// parser splits objects while it validates them, so that the store's
    /// columns need not parse the text again). Its text is the compact
    /// object of these fields: whitespace between top-level tokens is not
    /// kept, whitespace inside the values is. A borrowed key is written
    /// between quotes as it is, so it must need no escaping (the parser
    /// borrows only keys that had no escapes); an owned key is escaped.
    Fields(Vec<Field<'a>>),
}

impl<'a> From<&'a str> for EventData<'a> {
    fn from(json: &'a str) -> Self {
        EventData::Json(Cow::Borrowed(json))
    }
}

impl From<String> for EventData<'static> {
    fn from(json: String) -> Self {
        EventData::Json(Cow::Owned(json))
    }
}

/// Equal when their JSON texts are.
impl PartialEq for EventData<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl EventData<'_> {
    /// The data as JSON text.
    pub fn json(&self) -> Cow<'_, str> {
        match self {
            EventData::Json(t) => Cow::Borrowed(t.as_ref()),
            EventData::Fields(_) => {
                let mut out = Vec::with_capacity(self.json_len());
                self.write_json(&mut out);
                // Only UTF-8 text (keys and raw values) went into it.
                Cow::Owned(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }

    /// The length of [`json`](Self::json) in bytes.
    pub fn json_len(&self) -> usize {
        match self {
            EventData::Json(t) => t.len(),
            EventData::Fields(fields) => {
                let commas = fields.len().saturating_sub(1);
                let mut len = 2 + commas;
                for (k, v) in fields {
                    len += quoted_len(k) + 1 + v.get().len();
                }
                len
            }
        }
    }

    /// Appends [`json`](Self::json) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            EventData::Json(t) => out.extend_from_slice(t.as_bytes()),
            EventData::Fields(fields) => {
                out.push(b'{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_quoted(k, out);
                    out.push(b':');
                    out.extend_from_slice(v.get().as_bytes());
                }
                out.push(b'}');
            }
        }
    }
}

/// A key as a JSON string: borrowed keys need only quotes (see
/// [`EventData::Fields`]), owned ones are escaped by serde_json.
fn quoted_owned(k: &str) -> String {
    // Serialising a str cannot fail.
    serde_json::to_string(k).unwrap_or_default()
}

#[allow(
    clippy::ptr_arg,
    reason = "borrowed and owned keys are written differently"
)]
fn quoted_len(k: &Cow<'_, str>) -> usize {
    match k {
        Cow::Borrowed(k) => k.len() + 2,
        Cow::Owned(k) => quoted_owned(k).len(),
    }
}

#[allow(
    clippy::ptr_arg,
    reason = "borrowed and owned keys are written differently"
)]
fn write_quoted(k: &Cow<'_, str>, out: &mut Vec<u8>) {
    match k {
        Cow::Borrowed(k) => {
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(k) => out.extend_from_slice(quoted_owned(k).as_bytes()),
    }
}

/// A string borrowed from the input when it has no escapes (serde's own
/// `Cow<str>` always copies).
pub(crate) struct BorrowedStr<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The top-level fields of a JSON object, borrowed from the input.
pub(crate) struct ObjectFields<'a>(pub(crate) Vec<Field<'a>>);

impl<'de> Deserialize<'de> for ObjectFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ObjectFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(BorrowedStr(k)) = map.next_key::<BorrowedStr<'de>>()? {
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(ObjectFields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The top-level fields of an object's JSON text; `None` if it is not an object.
pub fn object_fields(json: &str) -> Option<Vec<Field<'_>>> {
    let mut de = serde_json::Deserializer::from_str(json);
    let ObjectFields(fields) = ObjectFields::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(fields)
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub time: i64,
    pub data: Value,
    pub id: Option<Value>,
}

/// Why one event was refused: [`error`](Self::error) is the short text
/// clients match on (Cube's, where Cube had one), [`message`](Self::message)
/// the details, naming the limit crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    NotAnObject,
    /// Missing, not a string, or not `^[a-z][a-zA-Z0-9_]+$`.
    InvalidType,
    TypeTooLong,
    /// Not an ISO 8601 time or epoch milliseconds within years 0 to 9999.
    InvalidTime,
    /// Neither a string nor a number.
    InvalidId,
    /// A number out of range, or a string with a lone surrogate escape.
    IdNotAValue,
    IdTooLong,
    InvalidData(DataError),
    TooLarge,
    /// Older than its type's retention horizon: it would be deleted.
    Expired(super::retention::Horizon),
}

/// What is wrong with an event's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    TooDeep,
    FieldNameTooLong,
    StringTooLong,
    /// A number that is no finite double (`1e400`): no reader could load it.
    NumberOutOfRange,
    /// A `\u` escape of half a surrogate pair: not text any reader accepts.
    LoneSurrogate,
}

impl EventError {
    /// The short error text (`"invalid type"`).
    pub fn error(&self) -> &'static str {
        match self {
            EventError::NotAnObject | EventError::TooLarge => "invalid event",
            EventError::InvalidType | EventError::TypeTooLong => "invalid type",
            EventError::InvalidTime | EventError::Expired(_) => "invalid time",
            EventError::InvalidId | EventError::IdNotAValue | EventError::IdTooLong => "invalid id",
            EventError::InvalidData(_) => "invalid data",
        }
    }

    /// The details, naming the limit crossed.
    pub fn message(&self) -> String {
        use crate::limits::*;
        match self {
            EventError::NotAnObject => "not a JSON object".into(),
            EventError::InvalidType => "a type must match ^[a-z][a-zA-Z0-9_]+$".into(),
            EventError::TypeTooLong => format!("type longer than {MAX_TYPE_BYTES} bytes"),
            EventError::InvalidTime => {
                "expected ISO 8601 or epoch milliseconds, within years 0 to 9999".into()
            }
            EventError::InvalidId => "must be a string or a number".into(),
            EventError::IdNotAValue => {
                "a number out of range or a string with a lone surrogate escape".into()
            }
            EventError::IdTooLong => format!("id longer than {MAX_ID_BYTES} bytes"),
            EventError::InvalidData(d) => match d {
                DataError::TooDeep => format!("nested more than {MAX_DATA_DEPTH} levels deep"),
                DataError::FieldNameTooLong => {
                    format!("field name longer than {MAX_FIELD_NAME_BYTES} bytes")
                }
                DataError::StringTooLong => format!("string longer than {MAX_STRING_BYTES} bytes"),
                DataError::NumberOutOfRange => "number out of range".into(),
                DataError::LoneSurrogate => "lone surrogate in a \\u escape".into(),
            },
            EventError::TooLarge => format!(
                "event larger than {MAX_EVENT_BYTES} bytes (type, id and data JSON together)"
            ),
            EventError::Expired(h) => format!(
                "older than this type's retention ({h}): it would be deleted, so it is not stored"
            ),
        }
    }
}

/// `error: message`
impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error(), self.message())
    }
}

impl std::error::Error for EventError {}

impl From<DataError> for EventError {
    fn from(e: DataError) -> Self {
        EventError::InvalidData(e)
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

/// Checks an event type: the pattern, then the length limit.
pub fn check_type(t: &str) -> Result<(), EventError> {
    if !is_valid_type(t) {
        return Err(EventError::InvalidType);
    }
    if t.len() > MAX_TYPE_BYTES {
        return Err(EventError::TypeTooLong);
    }
    Ok(())
}

/// Checks a JSON text that is already known to be valid JSON against the
/// limits on data: nesting (`depth` levels are already open around it),
/// field names, strings, numbers a reader could not load (`1e400`) and
/// lone surrogate escapes, so that whatever passes reads back as it was
/// stored. One pass over the bytes; scalars cost a few comparisons.
pub fn check_json(text: &str, mut depth: usize) -> Result<(), DataError> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                let mut escaped = false;
                while let Some(&c) = b.get(j) {
                    match c {
                        b'\\' => {
                            escaped = true;
                            j += 2;
                        }
                        b'"' => break,
                        _ => j += 1,
                    }
                }
                let end = j.min(b.len());
                let mut k = end + 1;
                while b.get(k).is_some_and(u8::is_ascii_whitespace) {
                    k += 1;
                }
                let (max, err) = if b.get(k) == Some(&b':') {
                    (MAX_FIELD_NAME_BYTES, DataError::FieldNameTooLong)
                } else {
                    (MAX_STRING_BYTES, DataError::StringTooLong)
                };
                // Measured decoded: `\u0041` is one byte of text, as it is
                // on every path whichever way the text was sent.
                let len = if escaped {
                    decoded_len(&b[start..end])?
                } else {
                    end - start
                };
                if len > max {
                    return Err(err);
                }
                i = end + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DATA_DEPTH {
                    return Err(DataError::TooDeep);
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while b
                    .get(i)
                    .is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    i += 1;
                }
                check_number(&text[start..i])?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// A JSON number a reader can load: a finite double. Short numbers without
/// an exponent always are (the largest double has 309 digits).
fn check_number(t: &str) -> Result<(), DataError> {
    if t.len() <= 300 && !t.bytes().any(|c| c == b'e' || c == b'E') {
        return Ok(());
    }
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(()),
        _ => Err(DataError::NumberOutOfRange),
    }
}

/// The length in UTF-8 bytes of a JSON string's body with its escapes
/// decoded, checking them: every `\uD800`–`\uDBFF` must be followed by a
/// `\uDC00`–`\uDFFF`, and no low surrogate may stand alone.
fn decoded_len(body: &[u8]) -> Result<usize, DataError> {
    let hex = |at: usize| -> Option<u32> {
        let h = std::str::from_utf8(body.get(at..at + 4)?).ok()?;
        u32::from_str_radix(h, 16).ok()
    };
    let (mut i, mut len) = (0, 0);
    while i < body.len() {
        if body[i] != b'\\' {
            i += 1;
            len += 1;
            continue;
        }
        if body.get(i + 1) != Some(&b'u') {
            i += 2;
            len += 1;
            continue;
        }
        let code = hex(i + 2).unwrap_or(0);
        i += 6;
        len += match code {
            0..0x80 => 1,
            0x80..0x800 => 2,
            0xD800..0xDC00 => {
                let low = (body.get(i..i + 2) == Some(b"\\u"))
                    .then(|| hex(i + 2))
                    .flatten();
                if !low.is_some_and(|l| (0xDC00..0xE000).contains(&l)) {
                    return Err(DataError::LoneSurrogate);
                }
                i += 6;
                4
            }
            0xDC00..0xE000 => return Err(DataError::LoneSurrogate),
            _ => 3,
        };
    }
    Ok(len)
}

/// Checks an event's data against the limits on data.
pub fn check_data(data: &EventData<'_>) -> Result<(), DataError> {
    match data {
        EventData::Json(t) => check_json(t, 0),
        EventData::Fields(fields) => {
            for (k, v) in fields {
                // The key's text, decoded (as `check_json` measures names).
                if k.len() > MAX_FIELD_NAME_BYTES {
                    return Err(DataError::FieldNameTooLong);
                }
                // The object itself is the first level.
                check_json(v.get(), 1)?;
            }
            Ok(())
        }
    }
}

/// The canonical text of an id, so that ids equal as MongoDB compares
/// `_id`s are one key: a string with its escapes decoded and written as
/// serde_json writes strings (`"\u006b"` is `"k"`), a number as JavaScript
/// prints the double it reads as (`1.0`, `1e0` and `1` are `1`; `-0` is `0`).
/// Borrowed when the text already is canonical.
pub fn canonical_id(raw: &str) -> Result<Cow<'_, str>, EventError> {
    let canonical = match raw.as_bytes().first() {
        Some(b'"') if !raw.contains('\\') => Cow::Borrowed(raw),
        Some(b'"') => {
            let s: String = serde_json::from_str(raw).map_err(|_| EventError::IdNotAValue)?;
            Cow::Owned(serde_json::to_string(&s).map_err(|_| EventError::IdNotAValue)?)
        }
        Some(b'-' | b'0'..=b'9') => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            let plain_integer = (1..=15).contains(&digits.len())
                && digits.bytes().all(|c| c.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
                && raw != "-0";
            if plain_integer {
                Cow::Borrowed(raw)
            } else {
                match raw.parse::<f64>() {
                    Ok(x) if x.is_finite() => Cow::Owned(super::js::number_string(x)),
                    _ => return Err(EventError::IdNotAValue),
                }
            }
        }
        _ => return Err(EventError::InvalidId),
    };
    if canonical.len() > MAX_ID_BYTES {
        return Err(EventError::IdTooLong);
    }
    Ok(canonical)
}

/// The text of a JSON string literal, borrowed when it has no escapes.
pub fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let t = raw.get();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') && !t.contains('\\') {
        return Some(Cow::Borrowed(&t[1..t.len() - 1]));
    }
    serde_json::from_str::<String>(t).ok().map(Cow::Owned)
}

impl<'a> NewEvent<'a> {
    /// Checks an event against every limit (type, time, id, data, size),
    /// making its id canonical. Every event passes here before it is
    /// stored, whichever path it came by.
    pub fn checked(mut self) -> Result<Self, EventError> {
        check_type(&self.event_type)?;
        if !(MIN_TIME_MS..=MAX_TIME_MS).contains(&self.time) {
            return Err(EventError::InvalidTime);
        }
        if let Some(id) = self.id.take() {
            self.id = Some(match id {
                Cow::Borrowed(b) => canonical_id(b)?,
                Cow::Owned(o) => Cow::Owned(canonical_id(&o)?.into_owned()),
            });
        }
        check_data(&self.data)?;
        let size =
            self.event_type.len() + self.id.as_deref().map_or(0, str::len) + self.data.json_len();
        if size > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge);
        }
        Ok(self)
    }
}

/// Validates every event of a list; all of them or the bad indices.
pub fn validate_all<'a, W>(
    items: impl IntoIterator<Item = W>,
    validate: impl Fn(W) -> Result<NewEvent<'a>, EventError>,
) -> Result<Vec<NewEvent<'a>>, BatchError> {
    let items = items.into_iter();
    let mut events = Vec::with_capacity(items.size_hint().0);
    let mut bad = Vec::new();
    for (index, item) in items.enumerate() {
        match validate(item) {
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
