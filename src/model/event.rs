//! Events: validation of what clients send, and what the store gives back.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::time;
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
struct BorrowedStr<'a>(Cow<'a, str>);

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
struct ObjectFields<'a>(Vec<Field<'a>>);

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
            EventError::InvalidTime => "invalid time",
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

/// The wire shape of an event; every field is checked by [`validate_event`].
/// Only a JSON object deserializes into it (serde's derive would also take an
/// array). `D` is how `data` is read: as raw text, or split into an object's
/// fields ([`ObjectFields`], which refuses anything but an object).
struct WireEvent<'a, D> {
    event_type: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    data: Option<D>,
    id: Option<&'a RawValue>,
}

impl<'de: 'a, 'a, D: Deserialize<'de>> Deserialize<'de> for WireEvent<'a, D> {
    fn deserialize<De: serde::Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        struct Visitor<'a, D>(std::marker::PhantomData<(&'a (), D)>);
        impl<'de: 'a, 'a, D: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<'a, D> {
            type Value = WireEvent<'a, D>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut w = WireEvent {
                    event_type: None,
                    time: None,
                    data: None,
                    id: None,
                };
                while let Some(BorrowedStr(key)) = map.next_key::<BorrowedStr<'de>>()? {
                    let slot = match key.as_ref() {
                        "type" => &mut w.event_type,
                        "time" => &mut w.time,
                        "id" => &mut w.id,
                        "data" => {
                            w.data = Some(map.next_value::<D>()?);
                            continue;
                        }
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

/// How a wire event's `data` becomes [`EventData`].
trait WireData<'a> {
    fn into_data(self) -> EventData<'a>;
}

impl<'a> WireData<'a> for &'a RawValue {
    fn into_data(self) -> EventData<'a> {
        EventData::Json(Cow::Borrowed(self.get()))
    }
}

impl<'a> WireData<'a> for ObjectFields<'a> {
    fn into_data(self) -> EventData<'a> {
        EventData::Fields(self.0)
    }
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

fn validate_wire<'a, D: WireData<'a>>(
    wire: WireEvent<'a, D>,
    now: i64,
) -> Result<NewEvent<'a>, EventError> {
    let event_type = wire
        .event_type
        .and_then(json_str)
        .ok_or(EventError::InvalidType)?;
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
    let id = match wire.id.map(RawValue::get) {
        None | Some("null") => None,
        Some(t) => Some(Cow::Borrowed(t)),
    };
    let data = match wire.data {
        None => EventData::Json(Cow::Borrowed("{}")),
        Some(d) => d.into_data(),
    };
    NewEvent {
        event_type,
        time,
        data,
        id,
    }
    .checked()
}

/// Validates one event given as JSON text; `now` fills a missing time.
pub fn validate_event(raw: &RawValue, now: i64) -> Result<NewEvent<'_>, EventError> {
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return Err(EventError::NotAnObject);
    }
    let wire: WireEvent<'_, &RawValue> =
        serde_json::from_str(text).map_err(|_| EventError::NotAnObject)?;
    validate_wire(wire, now)
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

/// Parses a batch body (a JSON array of events) and validates every event.
/// Nothing is stored unless all are valid; errors list every bad index. The
/// events borrow from `body`.
pub fn parse_event_batch(body: &[u8], now: i64) -> Result<Vec<NewEvent<'_>>, BatchError> {
    // Fast path: one pass over the body when it is UTF-8 and every item is an
    // event object whose data, if any, is an object (split into its fields
    // as it is read).
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(wires) = serde_json::from_str::<Vec<WireEvent<'_, ObjectFields<'_>>>>(text)
    {
        return validate_all(wires, |w| validate_wire(w, now));
    }
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            BatchError::Json(e.to_string())
        } else {
            BatchError::NotAnArray
        }
    })?;
    validate_all(items, |raw| validate_event(raw, now))
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

    fn one(text: &str) -> Result<NewEvent<'static>, EventError> {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        validate_event(&raw, 1000).map(NewEvent::into_owned)
    }

    #[test]
    fn validates_type_time_id_and_depth() {
        let e = one(r#"{"type":"test","time":"2012-04-16T16:00:00Z","data":{"a":1},"id":"x"}"#)
            .unwrap();
        assert_eq!(
            (
                e.event_type.as_ref(),
                e.time,
                e.data.json().as_ref(),
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
        assert_eq!(one(&deep), Err(EventError::InvalidData(DataError::TooDeep)));
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

    #[test]
    fn batch_data_objects_are_split_into_fields_once() {
        let body = br#"[{"type":"t1","time":5,"data": { "a" : 1 , "b":"x\"y", "c\u0041": [1, { "d" : 2 }], "e":{} }},
                        {"type":"t1","time":6},
                        {"type":"t1","time":7,"data":{}}]"#;
        let events = parse_event_batch(body, 0).unwrap();
        let EventData::Fields(fields) = &events[0].data else {
            panic!("data objects are split: {:?}", events[0].data)
        };
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "b", "cA", "e"]);
        // compact at the top level, untouched inside the values
        assert_eq!(
            events[0].data.json(),
            r#"{"a":1,"b":"x\"y","cA":[1, { "d" : 2 }],"e":{}}"#
        );
        assert_eq!(events[0].data.json_len(), events[0].data.json().len());
        let sent: Value = serde_json::from_str(
            r#"{ "a" : 1 , "b":"x\"y", "c\u0041": [1, { "d" : 2 }], "e":{} }"#,
        )
        .unwrap();
        let stored: Value = serde_json::from_str(&events[0].data.json()).unwrap();
        assert_eq!(stored, sent);
        assert_eq!(events[1].data.json(), "{}");
        assert_eq!(events[2].data.json(), "{}");
        // a key that needs escaping is escaped again
        let body = br#"[{"type":"t1","data":{"q\"\n":1}}]"#;
        let events = parse_event_batch(body, 0).unwrap();
        assert_eq!(events[0].data.json(), r#"{"q\"\n":1}"#);
    }

    #[test]
    fn batches_with_other_data_keep_it_as_sent() {
        let body = br#"[{"type":"t1","data":{"a":1}},{"type":"t1","data":[1, 2]},{"type":"t1","data":5},{"type":"t1","data":null}]"#;
        let events = parse_event_batch(body, 0).unwrap();
        let texts: Vec<String> = events.iter().map(|e| e.data.json().into_owned()).collect();
        assert_eq!(texts, [r#"{"a":1}"#, "[1, 2]", "5", "null"]);
        // invalid events are still named by index on this path
        let body = br#"[{"type":"t1","data":5},{"type":"x"}]"#;
        assert_eq!(
            parse_event_batch(body, 0),
            Err(BatchError::Invalid(vec![(1, EventError::InvalidType)]))
        );
    }

    #[test]
    fn depth_is_checked_on_split_data() {
        let nested = |levels: usize| {
            format!(
                r#"[{{"type":"t1","data":{{"a":{}1{}}}}}]"#,
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        let deepest = nested(MAX_DATA_DEPTH);
        let ok = parse_event_batch(deepest.as_bytes(), 0).unwrap();
        assert!(matches!(ok[0].data, EventData::Fields(_)));
        assert_eq!(
            parse_event_batch(nested(MAX_DATA_DEPTH + 1).as_bytes(), 0),
            Err(BatchError::Invalid(vec![(
                0,
                EventError::InvalidData(DataError::TooDeep)
            )]))
        );
        // brackets inside strings do not count
        let body = format!(r#"[{{"type":"t1","data":{{"a":"{}"}}}}]"#, "[".repeat(100));
        assert!(parse_event_batch(body.as_bytes(), 0).is_ok());
    }

    #[test]
    fn ids_are_canonical_by_value() {
        let c = |raw: &str| canonical_id(raw).map(Cow::into_owned);
        for (raw, want) in [
            ("1", "1"),
            ("1.0", "1"),
            ("1e0", "1"),
            ("10e-1", "1"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("0.5", "0.5"),
            ("-12", "-12"),
            ("1e21", "1e+21"),
            ("9007199254740993", "9007199254740992"),
            ("123456789012345", "123456789012345"),
            (r#""k""#, r#""k""#),
            (r#""\u006b""#, r#""k""#),
            (r#""a\/b""#, r#""a/b""#),
            (r#""\n\u0001""#, r#""\n\u0001""#),
            (r#""\ud83d\ude00""#, "\"\u{1f600}\""),
        ] {
            assert_eq!(c(raw).as_deref(), Ok(want), "{raw}");
        }
        assert!(matches!(canonical_id("\"x\""), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonical_id("42"), Ok(Cow::Borrowed(_))));
        assert_eq!(c("1e400"), Err(EventError::IdNotAValue));
        assert_eq!(c(r#""\udc00""#), Err(EventError::IdNotAValue));
        assert_eq!(c("true"), Err(EventError::InvalidId));
        assert_eq!(c("[1]"), Err(EventError::InvalidId));
        let long = format!("\"{}\"", "x".repeat(MAX_ID_BYTES - 2));
        assert!(c(&long).is_ok());
        let longer = format!("\"{}\"", "x".repeat(MAX_ID_BYTES - 1));
        assert_eq!(c(&longer), Err(EventError::IdTooLong));
    }

    #[test]
    fn data_is_checked_against_every_limit() {
        let ok = |t: &str| check_json(t, 0);
        assert_eq!(ok(r#"{"a": [1, {"b": "c"}], "d": -1.5e300}"#), Ok(()));
        assert_eq!(ok(r#"{"a": 1e309}"#), Err(DataError::NumberOutOfRange));
        assert_eq!(ok(r#"[-1e999]"#), Err(DataError::NumberOutOfRange));
        assert_eq!(
            ok(&format!("[{}]", "9".repeat(400))),
            Err(DataError::NumberOutOfRange)
        );
        assert_eq!(ok(&format!("[{}]", "9".repeat(300))), Ok(()));
        assert_eq!(ok(r#"{"a": 1e-400}"#), Ok(()));
        assert_eq!(ok(r#"["\ud800"]"#), Err(DataError::LoneSurrogate));
        assert_eq!(ok(r#"["\ud800\u0041"]"#), Err(DataError::LoneSurrogate));
        assert_eq!(ok(r#"["\udfff"]"#), Err(DataError::LoneSurrogate));
        assert_eq!(ok(r#"{"\ud800": 1}"#), Err(DataError::LoneSurrogate));
        assert_eq!(ok(r#"["\ud800\udc00", "\\ud800"]"#), Ok(()));
        let name = |n: usize| format!(r#"{{"{}" : 1}}"#, "k".repeat(n));
        assert_eq!(ok(&name(MAX_FIELD_NAME_BYTES)), Ok(()));
        assert_eq!(
            ok(&name(MAX_FIELD_NAME_BYTES + 1)),
            Err(DataError::FieldNameTooLong)
        );
        // a long string value is not a name; a long name nested anywhere is
        let value = |n: usize| format!(r#"{{"k": ["{}"]}}"#, "v".repeat(n));
        assert_eq!(ok(&value(MAX_STRING_BYTES)), Ok(()));
        assert_eq!(
            ok(&value(MAX_STRING_BYTES + 1)),
            Err(DataError::StringTooLong)
        );
        let nested = format!(
            r#"[{{"x": {{"{}": 1}}}}]"#,
            "k".repeat(MAX_FIELD_NAME_BYTES + 1)
        );
        assert_eq!(ok(&nested), Err(DataError::FieldNameTooLong));
        // escapes count decoded: `\u0041` is one byte, `\u00e9` two,
        // `\ud83d\ude00` four
        let escaped = |e: &str, n: usize| format!(r#"{{"{}": 1}}"#, e.repeat(n));
        assert_eq!(ok(&escaped("\\u0041", MAX_FIELD_NAME_BYTES)), Ok(()));
        assert_eq!(
            ok(&escaped("\\u0041", MAX_FIELD_NAME_BYTES + 1)),
            Err(DataError::FieldNameTooLong)
        );
        assert_eq!(ok(&escaped("\\u00e9", MAX_FIELD_NAME_BYTES / 2)), Ok(()));
        assert_eq!(
            ok(&escaped("\\u00e9\\n", MAX_FIELD_NAME_BYTES / 3 + 1)),
            Err(DataError::FieldNameTooLong)
        );
        assert_eq!(
            ok(&escaped("\\ud83d\\ude00", MAX_FIELD_NAME_BYTES / 4 + 1)),
            Err(DataError::FieldNameTooLong)
        );
        // the same name split into fields (the batch parser) or not
        let name = "\\u0041".repeat(MAX_FIELD_NAME_BYTES + 1);
        for data in [
            format!(r#"{{"{name}": 1}}"#),
            format!(r#"[{{"{name}": 1}}]"#),
        ] {
            let body = format!(r#"[{{"type":"ab","data":{data}}}]"#);
            assert_eq!(
                parse_event_batch(body.as_bytes(), 0),
                Err(BatchError::Invalid(vec![(
                    0,
                    DataError::FieldNameTooLong.into()
                )])),
                "{data}"
            );
        }
        // brackets inside strings do not nest
        assert_eq!(ok(&format!(r#"["{}"]"#, "[".repeat(100))), Ok(()));
        assert_eq!(
            ok(&format!("{}1{}", "[".repeat(65), "]".repeat(65))),
            Err(DataError::TooDeep)
        );
    }

    #[test]
    fn every_event_passes_the_same_checks() {
        let e = |t: &str, time: i64, data: String, id: Option<&str>| {
            NewEvent::owned(t.into(), time, data, id.map(str::to_owned)).checked()
        };
        assert!(e("ab", 0, "{}".into(), Some("1.0")).is_ok_and(|e| e.id.as_deref() == Some("1")));
        assert_eq!(e("a", 0, "{}".into(), None), Err(EventError::InvalidType));
        let t = format!("a{}", "b".repeat(MAX_TYPE_BYTES));
        assert_eq!(e(&t, 0, "{}".into(), None), Err(EventError::TypeTooLong));
        assert_eq!(
            e("ab", MAX_TIME_MS + 1, "{}".into(), None),
            Err(EventError::InvalidTime)
        );
        assert_eq!(
            e("ab", MIN_TIME_MS - 1, "{}".into(), None),
            Err(EventError::InvalidTime)
        );
        assert!(e("ab", MIN_TIME_MS, "{}".into(), None).is_ok());
        let big = format!(r#"["{}"]"#, "v".repeat(60_000)).repeat(1);
        let many = format!("[{}]", vec![big; 18].join(","));
        assert_eq!(e("ab", 0, many, None), Err(EventError::TooLarge));
        // split fields are checked like text
        let body = format!(r#"[{{"type":"ab","data":{{"{}":1}}}}]"#, "k".repeat(2000));
        assert_eq!(
            parse_event_batch(body.as_bytes(), 0),
            Err(BatchError::Invalid(vec![(
                0,
                DataError::FieldNameTooLong.into()
            )]))
        );
    }
}
