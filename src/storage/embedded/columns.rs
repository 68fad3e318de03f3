//! Typed columns of a block's top-level fields — pure.
//!
//! When a block is written, each top-level field that is a number in every
//! event that has it (or a string in every event that has it) is also stored
//! as a column; the evaluator reads those instead of parsing each event's
//! JSON. A field of any other kind, or mixed kinds, gets no column (readers
//! fall back to the JSON, which stays the source of truth). Data that is not
//! an object gives the block no columns at all.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::model::EventData;
use crate::model::event::{Field, json_str, object_fields};

/// Most columns one block gets (wide events keep the rest in JSON only).
pub const MAX_COLUMNS: usize = 32;

/// A column being built; text borrows from the events' JSON where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData<'a> {
    Number(Vec<Option<f64>>),
    Text(Vec<Option<Cow<'a, str>>>),
    /// Seen with a kind no column holds.
    Mixed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column<'a> {
    pub name: Cow<'a, str>,
    pub data: ColumnData<'a>,
}

enum Scalar<'a> {
    Number(f64),
    Text(Cow<'a, str>),
    Other,
}

fn classify(raw: &RawValue) -> Scalar<'_> {
    let t = raw.get();
    match t.as_bytes().first() {
        // Borrowed when it has no escapes.
        Some(b'"') => json_str(raw).map_or(Scalar::Other, Scalar::Text),
        // A JSON number is also a Rust float literal. Both this and serde_json
        // (built with `float_roundtrip`) round correctly, so a column holds
        // exactly what a reader of the JSON gets; out of range is no number.
        Some(b'-' | b'0'..=b'9') => match t.parse::<f64>() {
            Ok(x) if x.is_finite() => Scalar::Number(x),
            _ => Scalar::Other,
        },
        _ => Scalar::Other,
    }
}

/// The top-level fields of one event's data: `None` if it is not an object.
fn fields<'a>(data: &'a EventData<'_>) -> Option<Cow<'a, [Field<'a>]>> {
    match data {
        EventData::Fields(f) => Some(Cow::Borrowed(f.as_slice())),
        EventData::Json(t) => object_fields(t).map(Cow::Owned),
    }
}

/// Builds the columns of a block from its events' data, in block order.
pub fn build_columns<'a, 'd: 'a>(
    datas: impl ExactSizeIterator<Item = &'a EventData<'d>>,
) -> Vec<Column<'a>> {
    let n = datas.len();
    let mut cols: Vec<Column<'a>> = Vec::new();
    // Where the previous event's fields went, in their order: events of one
    // type usually list the same fields in the same order.
    let mut last_positions: Vec<usize> = Vec::new();
    for (i, data) in datas.enumerate() {
        let Some(fields) = fields(data) else {
            return Vec::new();
        };
        for (f, (name, raw)) in fields.iter().enumerate() {
            let raw: &'a RawValue = raw;
            let guess = last_positions.get(f).copied();
            let pos = match guess.filter(|&p| cols.get(p).is_some_and(|c| c.name == *name)) {
                Some(p) => p,
                None => match cols.iter().position(|c| c.name == *name) {
                    Some(p) => p,
                    None if cols.len() < MAX_COLUMNS => {
                        let data = match classify(raw) {
                            Scalar::Number(_) => ColumnData::Number(vec![None; n]),
                            Scalar::Text(_) => ColumnData::Text(vec![None; n]),
                            Scalar::Other => ColumnData::Mixed,
                        };
                        cols.push(Column {
                            name: name.clone(),
                            data,
                        });
                        cols.len() - 1
                    }
                    None => continue,
                },
            };
            match last_positions.get_mut(f) {
                Some(slot) => *slot = pos,
                None => last_positions.push(pos),
            }
            let col = &mut cols[pos].data;
            match (col, classify(raw)) {
                (ColumnData::Number(v), Scalar::Number(x)) => v[i] = Some(x),
                (ColumnData::Text(v), Scalar::Text(s)) => v[i] = Some(s),
                (ColumnData::Mixed, _) => {}
                (c, _) => *c = ColumnData::Mixed,
            }
        }
    }
    // Only what the layout's widths hold: names up to `u16`, text up to
    // `u32` offsets (the JSON keeps the rest; limits on events keep both far
    // below these).
    cols.retain(|c| {
        c.name.len() <= u16::MAX as usize
            && match &c.data {
                ColumnData::Number(_) => true,
                ColumnData::Text(v) => {
                    v.iter().flatten().map(|s| s.len()).sum::<usize>() <= u32::MAX as usize
                }
                ColumnData::Mixed => false,
            }
    });
    cols
}

/// Most distinct strings a dictionary column holds.
pub const MAX_DICTIONARY: usize = 4096;

/// The distinct strings of a text column in first-seen order, and each
/// event's code, if the column repeats itself enough for a dictionary
/// (at most half as many distinct values as events, at most 4096).
fn dictionary<'s>(v: &'s [Option<Cow<'_, str>>]) -> Option<(Vec<&'s str>, Vec<u16>)> {
    let limit = (v.len() / 2).min(MAX_DICTIONARY);
    // Give up early on a column that is mostly distinct (ids, users): when the
    // first values are almost all new, the whole column will not fit.
    let sample = v.iter().flatten().take(64).count();
    if sample == 64 {
        let mut first: Vec<&str> = v.iter().flatten().take(64).map(|s| s.as_ref()).collect();
        first.sort_unstable();
        first.dedup();
        if first.len() > 48 {
            return None;
        }
    }
    let mut index: HashMap<&str, u16, rustc_hash::FxBuildHasher> =
        HashMap::with_capacity_and_hasher(limit.min(64), rustc_hash::FxBuildHasher);
    let mut dict: Vec<&str> = Vec::new();
    let mut codes = Vec::with_capacity(v.len());
    for s in v {
        let code = match s {
            None => 0,
            Some(s) => match index.get(s.as_ref()) {
                Some(c) => *c,
                None => {
                    if dict.len() >= limit {
                        return None;
                    }
                    let c = dict.len() as u16;
                    index.insert(s, c);
                    dict.push(s);
                    c
                }
            },
        };
        codes.push(code);
    }
    Some((dict, codes))
}

/// About the bytes [`encode_columns`] appends (text columns counted without
/// dictionaries), for sizing buffers.
pub fn encoded_len(cols: &[Column<'_>], n: usize) -> usize {
    2 + cols
        .iter()
        .map(|c| {
            let payload = match &c.data {
                ColumnData::Number(_) => 8 * n,
                ColumnData::Text(v) => {
                    4 * (n + 1) + v.iter().flatten().map(|s| s.len()).sum::<usize>()
                }
                ColumnData::Mixed => 0,
            };
            3 + c.name.len() + n.div_ceil(8) + payload
        })
        .sum::<usize>()
}

/// Appends `ncols(2) { name_len(2) name kind(1) presence(ceil(n/8)) payload }`,
/// little-endian: kind 1 (numbers) payload `n × f64`; kind 2 (text)
/// `offsets(4(n+1)) bytes`; kind 3 (dictionary text) `count(4)
/// offsets(4(count+1)) bytes codes(n × u16)`.
pub fn encode_columns(cols: &[Column<'_>], n: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(cols.len() as u16).to_le_bytes());
    for c in cols {
        out.extend_from_slice(&(c.name.len() as u16).to_le_bytes());
        out.extend_from_slice(c.name.as_bytes());
        let present = |i: usize| match &c.data {
            ColumnData::Number(v) => v[i].is_some(),
            ColumnData::Text(v) => v[i].is_some(),
            ColumnData::Mixed => false,
        };
        let dict = match &c.data {
            ColumnData::Text(v) => dictionary(v),
            _ => None,
        };
        out.push(match (&c.data, &dict) {
            (ColumnData::Number(_), _) => 1,
            (_, Some(_)) => 3,
            _ => 2,
        });
        let mut bits = vec![0u8; n.div_ceil(8)];
        for (i, byte) in (0..n).map(|i| (i, i / 8)) {
            if present(i) {
                bits[byte] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&bits);
        match &c.data {
            ColumnData::Number(v) => {
                for x in v {
                    out.extend_from_slice(&x.unwrap_or(0.0).to_le_bytes());
                }
            }
            ColumnData::Text(_) if dict.is_some() => {
                let (dict, codes) = dict
                    .as_ref()
                    .map(|(d, c)| (d.as_slice(), c.as_slice()))
                    .unwrap_or_default();
                out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
                let mut off = 0u32;
                out.extend_from_slice(&off.to_le_bytes());
                for s in dict {
                    off += s.len() as u32;
                    out.extend_from_slice(&off.to_le_bytes());
                }
                for s in dict {
                    out.extend_from_slice(s.as_bytes());
                }
                for c in codes {
                    out.extend_from_slice(&c.to_le_bytes());
                }
            }
            ColumnData::Text(v) => {
                let mut off = 0u32;
                out.extend_from_slice(&off.to_le_bytes());
                for s in v {
                    off += s.as_deref().map_or(0, str::len) as u32;
                    out.extend_from_slice(&off.to_le_bytes());
                }
                for s in v.iter().flatten() {
                    out.extend_from_slice(s.as_bytes());
                }
            }
            ColumnData::Mixed => {}
        }
    }
}

/// A decoded column.
#[derive(Debug, Clone, Copy)]
pub struct ColumnView<'a> {
    pub name: &'a str,
    kind: u8,
    n: usize,
    presence: &'a [u8],
    payload: &'a [u8],
}

impl<'a> ColumnView<'a> {
    /// Writes event `i`'s value into `slot`, reusing a string's buffer.
    pub fn write_into(&self, i: usize, slot: &mut Option<Value>) {
        if self.kind != 1
            && let Some(s) = self.text(i)
            && let Some(Value::String(buf)) = slot
        {
            buf.clear();
            buf.push_str(s);
            return;
        }
        *slot = self.value(i);
    }

    /// Whether this is a number column.
    pub fn is_number(&self) -> bool {
        self.kind == 1
    }

    /// The number of event `i` in a number column.
    pub fn number(&self, i: usize) -> Option<f64> {
        if self.kind != 1 || !self.present(i) {
            return None;
        }
        let b: [u8; 8] = self.payload.get(8 * i..8 * i + 8)?.try_into().ok()?;
        Some(f64::from_le_bytes(b))
    }

    fn present(&self, i: usize) -> bool {
        i < self.n
            && self
                .presence
                .get(i / 8)
                .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// The text of event `i` in a string column.
    pub fn text(&self, i: usize) -> Option<&'a str> {
        match self.kind {
            2 if self.present(i) => {
                let base = 4 * (self.n + 1);
                let (a, b) = (self.u32_at(4 * i)?, self.u32_at(4 * (i + 1))?);
                std::str::from_utf8(self.payload.get(base + a..base + b)?).ok()
            }
            3 => self.entry(self.code(i)? as usize),
            _ => None,
        }
    }

    fn u32_at(&self, at: usize) -> Option<usize> {
        Some(u32::from_le_bytes(self.payload.get(at..at + 4)?.try_into().ok()?) as usize)
    }

    /// A dictionary column's distinct strings, in code order.
    pub fn dictionary(&self) -> Option<Vec<&'a str>> {
        if self.kind != 3 {
            return None;
        }
        (0..self.u32_at(0)?).map(|j| self.entry(j)).collect()
    }

    fn entry(&self, j: usize) -> Option<&'a str> {
        let count = self.u32_at(0)?;
        if j >= count {
            return None;
        }
        let base = 4 + 4 * (count + 1);
        let (a, b) = (self.u32_at(4 + 4 * j)?, self.u32_at(4 + 4 * (j + 1))?);
        std::str::from_utf8(self.payload.get(base + a..base + b)?).ok()
    }

    /// Event `i`'s code in a dictionary column (`None`: the field is absent).
    pub fn code(&self, i: usize) -> Option<u16> {
        if self.kind != 3 || !self.present(i) {
            return None;
        }
        let at = self.payload.len().checked_sub(2 * (self.n - i))?;
        Some(u16::from_le_bytes(
            self.payload.get(at..at + 2)?.try_into().ok()?,
        ))
    }

    /// The value of event `i` as JSON would give it; `None` if the event lacks the field.
    pub fn value(&self, i: usize) -> Option<Value> {
        if i >= self.n || self.presence.get(i / 8)? & (1 << (i % 8)) == 0 {
            return None;
        }
        match self.kind {
            1 => {
                let b: [u8; 8] = self.payload.get(8 * i..8 * i + 8)?.try_into().ok()?;
                serde_json::Number::from_f64(f64::from_le_bytes(b)).map(Value::Number)
            }
            _ => self.text(i).map(|s| Value::String(s.to_owned())),
        }
    }
}

/// Decodes a columns section of a block of `n` events; `None` if malformed.
pub fn decode_columns(mut b: &[u8], n: usize) -> Option<Vec<ColumnView<'_>>> {
    fn take<'a>(b: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
        let (head, rest) = (b.get(..len)?, b.get(len..)?);
        *b = rest;
        Some(head)
    }
    let count = u16::from_le_bytes(take(&mut b, 2)?.try_into().ok()?) as usize;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let name_len = u16::from_le_bytes(take(&mut b, 2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(&mut b, name_len)?).ok()?;
        let kind = *take(&mut b, 1)?.first()?;
        let presence = take(&mut b, n.div_ceil(8))?;
        let payload_len = match kind {
            1 => 8 * n,
            2 => {
                let offsets = b.get(..4 * (n + 1))?;
                let total =
                    u32::from_le_bytes(offsets.get(4 * n..4 * n + 4)?.try_into().ok()?) as usize;
                4 * (n + 1) + total
            }
            3 => {
                let count = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
                let end = 4 + 4 * count;
                let total = u32::from_le_bytes(b.get(end..end + 4)?.try_into().ok()?) as usize;
                4 + 4 * (count + 1) + total + 2 * n
            }
            _ => return None,
        };
        let payload = take(&mut b, payload_len)?;
        out.push(ColumnView {
            name,
            kind,
            n,
            presence,
            payload,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The same data as JSON text, and as split fields when every one is an
    /// object (as the batch parser gives it): columns must not depend on which.
    fn both<'a>(texts: &[&'a str]) -> Vec<Vec<EventData<'a>>> {
        let mut out = vec![texts.iter().map(|t| EventData::Json((*t).into())).collect()];
        if let Some(fields) = texts
            .iter()
            .map(|t| object_fields(t).map(EventData::Fields))
            .collect::<Option<Vec<_>>>()
        {
            out.push(fields);
        }
        out
    }

    #[test]
    fn columns_hold_scalar_fields_and_skip_mixed_ones() {
        let datas = [
            r#"{"ms": 5, "path": "/a", "mixed": 1, "obj": {"x": 1}}"#,
            r#"{"ms": 7.5, "mixed": "s", "path": "/\u00e9"}"#,
            r#"{"path": "/c", "ms": -1e3}"#,
        ];
        let variants = both(&datas);
        assert_eq!(variants.len(), 2);
        for data in &variants {
            let cols = build_columns(data.iter());
            let names: Vec<&str> = cols.iter().map(|c| c.name.as_ref()).collect();
            assert_eq!(names, ["ms", "path"]);
            let mut buf = Vec::new();
            encode_columns(&cols, 3, &mut buf);
            let views = decode_columns(&buf, 3).unwrap();
            let ms = views.iter().find(|c| c.name == "ms").unwrap();
            let path = views.iter().find(|c| c.name == "path").unwrap();
            for (i, d) in datas.iter().enumerate() {
                let v: Value = serde_json::from_str(d).unwrap();
                let as_num = |x: Option<&Value>| x.and_then(Value::as_f64);
                assert_eq!(as_num(ms.value(i).as_ref()), as_num(v.get("ms")));
                assert_eq!(path.value(i), v.get("path").cloned());
            }
            assert_eq!(path.value(1), Some(json!("/é")));
            let mut slot = Some(json!("old"));
            path.write_into(2, &mut slot);
            assert_eq!(slot, Some(json!("/c")));
            ms.write_into(2, &mut slot);
            assert_eq!(slot.as_ref().and_then(Value::as_f64), Some(-1000.0));
            // a truncated section is refused
            assert!(decode_columns(&buf[..buf.len() - 1], 3).is_none());
        }
        // data that is not an object: no columns
        let mixed = both(&[r#"{"a":1}"#, "[1]"]);
        assert_eq!(mixed.len(), 1);
        assert!(build_columns(mixed[0].iter()).is_empty());
    }

    #[test]
    fn repetitive_text_gets_a_dictionary() {
        let datas: Vec<String> = (0..10)
            .map(|i| match i % 4 {
                0 => r#"{"path": "/a", "user": "u0"}"#.to_owned(),
                1 => format!(r#"{{"path": "/b", "user": "u{i}"}}"#),
                2 => format!(r#"{{"user": "u{i}"}}"#),
                _ => format!(r#"{{"path": "/é", "user": "u{i}"}}"#),
            })
            .collect();
        let texts: Vec<&str> = datas.iter().map(String::as_str).collect();
        for data in both(&texts) {
            let cols = build_columns(data.iter());
            let mut buf = Vec::new();
            encode_columns(&cols, datas.len(), &mut buf);
            let views = decode_columns(&buf, datas.len()).unwrap();
            let path = views.iter().find(|c| c.name == "path").unwrap();
            let user = views.iter().find(|c| c.name == "user").unwrap();
            assert_eq!(path.dictionary(), Some(vec!["/a", "/b", "/é"]));
            assert_eq!(user.dictionary(), None, "mostly distinct: plain text");
            for (i, d) in datas.iter().enumerate() {
                let v: Value = serde_json::from_str(d).unwrap();
                assert_eq!(path.value(i), v.get("path").cloned(), "event {i}");
                assert_eq!(path.text(i), v.get("path").and_then(Value::as_str));
                assert_eq!(user.value(i), v.get("user").cloned());
                let code = path.code(i).map(|c| path.dictionary().unwrap()[c as usize]);
                assert_eq!(code, v.get("path").and_then(Value::as_str));
            }
            assert!(decode_columns(&buf[..buf.len() - 1], datas.len()).is_none());
        }
    }

    #[test]
    fn absent_fields_and_duplicate_keys() {
        for data in both(&[r#"{"a": 1}"#, r#"{"b": 2}"#, r#"{"a": 1, "a": 3}"#]) {
            let cols = build_columns(data.iter());
            let mut buf = Vec::new();
            encode_columns(&cols, 3, &mut buf);
            let views = decode_columns(&buf, 3).unwrap();
            let a = views.iter().find(|c| c.name == "a").unwrap();
            assert_eq!(a.value(0), Some(json!(1.0)));
            assert_eq!(a.value(1), None);
            // the last occurrence wins, as when parsing the JSON
            assert_eq!(a.value(2), Some(json!(3.0)));
        }
    }
}
