//! Event data between JSON text and BSON, the way Cube's Node.js driver
//! stored it and read it back.
//!
//! JSON → BSON: objects keep their key order; an integer that fits 32
//! bits is an `Int32` (as the Node driver wrote JavaScript integers), a
//! larger integer an `Int64` while it is exact as a double (|x| ≤ 2^53),
//! every other number a `Double`. Keys are stored as sent, `$` and `.`
//! included (MongoDB 5.0+ stores them; a filter cannot address a dotted
//! key, just as Cubed's own filters cannot); a key with a NUL character
//! cannot be a BSON key and is refused.
//!
//! BSON → JSON: numbers are printed as JavaScript prints them (`1.0` reads
//! back as `1`, the answer Cube gave); what JSON cannot hold is written as
//! `JSON.stringify` would on what the Node driver returns: a date as its
//! ISO 8601 text, an ObjectId as its hex, NaN and infinities as `null`, and
//! any other BSON type (binary, regex, code…, never written by Cube or
//! Cubed) as `null`.

use std::fmt;
use std::fmt::Write as _;

use mongodb::bson::{Bson, Document};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The largest integer a double holds exactly.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Why JSON data cannot be stored as BSON.
#[derive(Debug)]
pub struct Unstorable(pub String);

/// Parses JSON text into BSON, numbers typed as described in the module doc.
pub fn json_to_bson(json: &str) -> Result<Bson, Unstorable> {
    let mut de = serde_json::Deserializer::from_str(json);
    // The data was validated on ingest (depth, sizes); serde_json's own
    // recursion limit still applies.
    let value = BsonSeed
        .deserialize(&mut de)
        .map_err(|e| Unstorable(e.to_string()))?;
    de.end().map_err(|e| Unstorable(e.to_string()))?;
    Ok(value)
}

/// A number as the Node driver stored a JavaScript number.
pub fn number_bson(x: f64) -> Bson {
    if x.fract() == 0.0 && x.abs() <= EXACT {
        if x >= i32::MIN as f64 && x <= i32::MAX as f64 {
            // -0 is stored as the integer 0, as JavaScript's driver did.
            return Bson::Int32(x as i32);
        }
        return Bson::Int64(x as i64);
    }
    Bson::Double(x)
}

struct BsonSeed;

impl<'de> DeserializeSeed<'de> for BsonSeed {
    type Value = Bson;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Bson, D::Error> {
        d.deserialize_any(BsonVisitor)
    }
}

struct BsonVisitor;

impl<'de> Visitor<'de> for BsonVisitor {
    type Value = Bson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Bson, E> {
        Ok(Bson::Boolean(b))
    }
    fn visit_i64<E>(self, x: i64) -> Result<Bson, E> {
        Ok(match i32::try_from(x) {
            Ok(small) => Bson::Int32(small),
            Err(_) if x.unsigned_abs() <= 1 << 53 => Bson::Int64(x),
            Err(_) => Bson::Double(x as f64),
        })
    }
    fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<Bson, E> {
        match i64::try_from(x) {
            Ok(x) => self.visit_i64(x),
            Err(_) => Ok(Bson::Double(x as f64)),
        }
    }
    fn visit_f64<E>(self, x: f64) -> Result<Bson, E> {
        Ok(number_bson(x))
    }
    fn visit_str<E>(self, s: &str) -> Result<Bson, E> {
        Ok(Bson::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Bson, E> {
        Ok(Bson::String(s))
    }
    fn visit_unit<E>(self) -> Result<Bson, E> {
        Ok(Bson::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bson, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(BsonSeed)? {
            out.push(v);
        }
        Ok(Bson::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bson, A::Error> {
        let mut out = Document::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.contains('\0') {
                return Err(serde::de::Error::custom(
                    "a field name with a NUL character cannot be stored in MongoDB",
                ));
            }
            let value = map.next_value_seed(BsonSeed)?;
            // A repeated key: the last one wins, as JSON.parse does.
            out.insert(key, value);
        }
        Ok(Bson::Document(out))
    }
}

/// Writes BSON as JSON text (see the module doc).
pub fn bson_to_json(value: &Bson, out: &mut String) {
    match value {
        Bson::Double(x) => number_json(*x, out),
        Bson::Int32(x) => {
            let _ = write!(out, "{x}");
        }
        Bson::Int64(x) => {
            let _ = write!(out, "{x}");
        }
        Bson::String(s) => string_json(s, out),
        Bson::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Bson::Null | Bson::Undefined => out.push_str("null"),
        Bson::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                bson_to_json(v, out);
            }
            out.push(']');
        }
        Bson::Document(doc) => document_json(doc, out),
        Bson::DateTime(d) => match chrono::DateTime::from_timestamp_millis(d.timestamp_millis()) {
            Some(t) => string_json(&t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), out),
            None => out.push_str("null"),
        },
        Bson::ObjectId(id) => string_json(&id.to_hex(), out),
        Bson::Decimal128(d) => string_json(&d.to_string(), out),
        _ => out.push_str("null"),
    }
}

/// Writes a BSON document as a JSON object.
pub fn document_json(doc: &Document, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in doc.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string_json(k, out);
        out.push(':');
        bson_to_json(v, out);
    }
    out.push('}');
}

fn number_json(x: f64, out: &mut String) {
    if x.is_finite() {
        out.push_str(&crate::model::js::number_string(x));
    } else {
        out.push_str("null");
    }
}

fn string_json(s: &str, out: &mut String) {
    // serde_json escapes exactly what JSON requires; writing a &str cannot fail.
    match serde_json::to_string(s) {
        Ok(text) => out.push_str(&text),
        Err(_) => out.push_str("null"),
    }
}

/// A BSON value as a JSON value (an id read back, a number in a stats
/// answer).
pub fn bson_to_value(value: &Bson) -> serde_json::Value {
    let mut text = String::new();
    bson_to_json(value, &mut text);
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(json: &str) -> String {
        let mut out = String::new();
        bson_to_json(&json_to_bson(json).unwrap(), &mut out);
        out
    }

    #[test]
    fn numbers_are_typed_as_the_node_driver_did() {
        assert_eq!(json_to_bson("1").unwrap(), Bson::Int32(1));
        assert_eq!(json_to_bson("1.0").unwrap(), Bson::Int32(1));
        assert_eq!(json_to_bson("-0").unwrap(), Bson::Int32(0));
        assert_eq!(json_to_bson("4294967296").unwrap(), Bson::Int64(1 << 32));
        assert_eq!(json_to_bson("2.5").unwrap(), Bson::Double(2.5));
        assert_eq!(
            json_to_bson("18446744073709551615").unwrap(),
            Bson::Double(18446744073709551615.0)
        );
        assert_eq!(
            json_to_bson("9007199254740993").unwrap(),
            Bson::Double(9007199254740992.0)
        );
    }

    #[test]
    fn data_round_trips_in_order_as_javascript_prints_it() {
        assert_eq!(
            round(r#"{"z":1,"a":[1.5,"x\"y",null,true,{"b":1e21}],"$k":{"a.b":-0.0}}"#),
            r#"{"z":1,"a":[1.5,"x\"y",null,true,{"b":1e+21}],"$k":{"a.b":0}}"#
        );
        assert_eq!(round(r#"{"a":1,"a":2}"#), r#"{"a":2}"#);
        assert!(json_to_bson(r#"{"a\u0000b":1}"#).is_err());
        assert!(json_to_bson("{} x").is_err());
    }

    #[test]
    fn what_json_cannot_hold_reads_as_javascript_would_print_it() {
        let mut out = String::new();
        bson_to_json(&Bson::Double(f64::NAN), &mut out);
        bson_to_json(
            &Bson::DateTime(mongodb::bson::DateTime::from_millis(0)),
            &mut out,
        );
        assert_eq!(out, r#"null"1970-01-01T00:00:00.000Z""#);
    }
}
