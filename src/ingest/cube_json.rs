//! Cube's JSON event batches (`POST /1.0/event/put`, WebSocket `put`, UDP
//! datagrams): `[{type, time, data, id}, ...]`, parsed in one pass where it
//! can, every event checked by [`NewEvent::checked`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::event::{
    BatchError, BorrowedStr, EventData, EventError, NewEvent, ObjectFields, json_str, validate_all,
};
use crate::model::time;

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

/// Why a WebSocket put message is not an event.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageError {
    /// Not JSON text (serde's message).
    Json(String),
    /// JSON, but not a valid event.
    Event(EventError),
}

/// One WebSocket put message (one event's JSON object), validated.
/// The event borrows its text from `text`. As for batches, one pass where
/// the message is an event object whose data, if any, is an object (split
/// into its fields as it is read); anything else is read again the slow way,
/// for the error it deserves.
pub fn parse_message(text: &str, now: i64) -> Result<NewEvent<'_>, MessageError> {
    if let Ok(wire) = serde_json::from_str::<WireEvent<'_, ObjectFields<'_>>>(text) {
        return validate_wire(wire, now).map_err(MessageError::Event);
    }
    let raw: &RawValue =
        serde_json::from_str(text).map_err(|e| MessageError::Json(e.to_string()))?;
    validate_event(raw, now).map_err(MessageError::Event)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::*;
    use crate::model::event::*;
    use serde_json::Value;

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

    /// A WebSocket message read in one pass gives what reading it as raw
    /// JSON first (the slow way) gives, and what the same event in a batch
    /// gives: the same event, or the same refusal.
    #[test]
    fn messages_read_in_one_pass_as_the_slow_way() {
        let deep = format!(
            r#"{{"type":"ab","data":{}1{}}}"#,
            r#"{"a":"#.repeat(70),
            "}".repeat(70)
        );
        let long_name = format!(r#"{{"type":"ab","data":{{"{}":1}}}}"#, "k".repeat(2000));
        let messages = [
            r#"{"type":"ab","time":"2012-04-16T16:00:00Z","data":{"a":1,"b":[1,{"c":"x"}]},"id":"x"}"#,
            r#"{"type":"ab","time":5,"data":{},"id":7.0}"#,
            r#" { "type" : "ab" , "data" : { "a" : 1 , "b" : [ 1 , 2 ] } } "#,
            r#"{"type":"ab"}"#,
            r#"{"type":"ab","data":null}"#,
            r#"{"type":"ab","data":5}"#,
            r#"{"type":"ab","data":[1,2]}"#,
            r#"{"type":"ab","data":"text","other":{"x":1}}"#,
            r#"{"type":"ab","time":null,"id":null}"#,
            r#"{"type":"a","data":{"a":1}}"#,
            r#"{"type":"Ab","data":{"a":1}}"#,
            r#"{"type":"ab","time":"later","data":{"a":1}}"#,
            r#"{"type":"ab","time":true,"data":{"a":1}}"#,
            r#"{"type":"ab","data":{"a":1},"data":{"b":2}}"#,
            r#"["type","ab"]"#,
            r#"5"#,
            r#"{"type":"ab","data":{"a":1}} x"#,
            r#"{"type":"ab","data":{"a":1"#,
            "not json",
            &deep,
            &long_name,
        ];
        for m in messages {
            let fast = parse_message(m, 1000);
            let slow = serde_json::from_str::<&RawValue>(m)
                .map_err(|e| MessageError::Json(e.to_string()))
                .and_then(|raw| validate_event(raw, 1000).map_err(MessageError::Event));
            let batch_body = format!("[{m}]");
            let in_batch = parse_event_batch(batch_body.as_bytes(), 1000);
            let key = |e: &NewEvent<'_>| {
                (
                    e.event_type.to_string(),
                    e.time,
                    // The same data, if not the same spacing.
                    serde_json::from_str::<serde_json::Value>(&e.data.json()).ok(),
                    e.id.as_deref().map(str::to_owned),
                )
            };
            match (&fast, &slow) {
                (Ok(f), Ok(s)) => {
                    assert_eq!(key(f), key(s), "{m}");
                    let batch = in_batch.as_ref().map(|b| key(&b[0]));
                    assert_eq!(batch, Ok(key(f)), "{m}");
                }
                (Err(MessageError::Event(f)), Err(MessageError::Event(s))) => {
                    assert_eq!(f, s, "{m}");
                    assert_eq!(
                        in_batch,
                        Err(BatchError::Invalid(vec![(0, f.clone())])),
                        "{m}"
                    );
                }
                (Err(MessageError::Json(_)), Err(MessageError::Json(_))) => {
                    assert!(matches!(in_batch, Err(BatchError::Json(_))), "{m}");
                }
                (f, s) => panic!("{m}: one pass {f:?}, slow {s:?}"),
            }
        }
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
