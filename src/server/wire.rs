//! JSON shapes of answers that HTTP and WebSocket endpoints share.

use serde_json::Value;

use crate::model::js::{number_json, safe_integer};
use crate::model::time::format_iso;

/// `{time, value?, id?}`: an undefined value is left out; NaN and infinities are null.
pub fn metric_json(time: i64, value: Option<f64>, id: Option<&Value>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("time".into(), Value::String(format_iso(time)));
    if let Some(v) = value {
        m.insert("value".into(), number_json(v));
    }
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m)
}

/// One row of a grouped metric at one bin: `{time, group, value?, id?}`;
/// the `other` row (the groups beyond a `top`) has `"group": null` and
/// `"other": true`.
pub fn grouped_metric_json(
    time: i64,
    group: Option<&str>,
    value: Option<f64>,
    id: Option<&Value>,
) -> Value {
    let mut v = metric_json(time, value, id);
    if let Some(m) = v.as_object_mut() {
        match group {
            Some(g) => {
                m.insert("group".into(), Value::String(g.to_owned()));
            }
            None => {
                m.insert("group".into(), Value::Null);
                m.insert("other".into(), Value::Bool(true));
            }
        }
    }
    v
}

const DAY_MS: i64 = 86_400_000;

/// `"00"` to `"99"`.
const TWO_DIGITS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// An ungrouped metric's bins as HTTP answers them, `[{time, value?}, …]`,
/// written straight to bytes: the bytes `serde_json` writes for the
/// [`metric_json`] of each bin (a test compares them), without a JSON value
/// and a time string made for each bin. A day's date is formatted once.
pub fn metric_series_json(bins: impl ExactSizeIterator<Item = (i64, Option<f64>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + bins.len() * 48);
    let mut days = DayCache::default();
    out.push(b'[');
    for (k, (time, value)) in bins.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_bin(&mut out, &mut days, time, value, None);
    }
    out.push(b']');
    out
}

/// `{"time":…,"value":…,"id":…}` as serde_json writes [`metric_json`]
/// (`id`: the id's JSON text).
fn write_bin(
    out: &mut Vec<u8>,
    days: &mut DayCache,
    time: i64,
    value: Option<f64>,
    id: Option<&str>,
) {
    out.extend_from_slice(b"{\"time\":");
    days.write_iso(out, time);
    if let Some(v) = value {
        out.extend_from_slice(b",\"value\":");
        write_number(out, v);
    }
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.as_bytes());
    }
    out.push(b'}');
}

/// One request's bins as WebSocket messages, `{time, value?, id?}` each:
/// the text of [`metric_json`] (a test compares them), without a JSON
/// value per bin; the id is written to JSON once.
pub struct BinMessages {
    days: DayCache,
    id: Option<String>,
}

impl BinMessages {
    pub fn new(id: Option<&Value>) -> Self {
        BinMessages {
            days: DayCache::default(),
            id: id.map(Value::to_string),
        }
    }

    /// The message of one bin.
    pub fn text(&mut self, time: i64, value: Option<f64>) -> String {
        let mut out = Vec::with_capacity(64 + self.id.as_ref().map_or(0, String::len));
        write_bin(&mut out, &mut self.days, time, value, self.id.as_deref());
        // Only ASCII and the id's own JSON text were written.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Writes `x` as serde_json writes its [`number_json`] (an integer up to
/// 2^53 in magnitude without a fraction, other finite numbers in their
/// shortest round-trip form, NaN and infinities as `null`), without the
/// JSON value.
fn write_number(out: &mut Vec<u8>, x: f64) {
    let written = if let Some(n) = safe_integer(x) {
        serde_json::to_writer(&mut *out, &n)
    } else if x.is_finite() {
        serde_json::to_writer(&mut *out, &x)
    } else {
        out.extend_from_slice(b"null");
        Ok(())
    };
    if written.is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The date of the last day written, as [`format_iso`] writes it, where it
/// is the plain `YYYY-MM-DD` form (years 0 to 9999).
#[derive(Default)]
struct DayCache {
    day: Option<i64>,
    date: Option<[u8; 10]>,
}

impl DayCache {
    /// Writes `ms` as a JSON string, as `format_iso` gives it.
    fn write_iso(&mut self, out: &mut Vec<u8>, ms: i64) {
        let day = ms.div_euclid(DAY_MS);
        if self.day != Some(day) {
            self.day = Some(day);
            self.date = day.checked_mul(DAY_MS).and_then(|start| {
                let s = format_iso(start);
                let b = s.as_bytes();
                (b.len() == 24 && s.ends_with("T00:00:00.000Z") && b[0].is_ascii_digit()).then(
                    || {
                        let mut d = [0u8; 10];
                        d.copy_from_slice(&b[..10]);
                        d
                    },
                )
            });
        }
        let Some(date) = self.date else {
            if serde_json::to_writer(&mut *out, &format_iso(ms)).is_err() {
                out.extend_from_slice(b"null");
            }
            return;
        };
        // Under 86,400,000: u32 arithmetic, two digits at a time.
        let rem = u32::try_from(ms.rem_euclid(DAY_MS)).unwrap_or(0);
        let (secs, milli) = (rem / 1000, rem % 1000);
        let (h, m, sec) = (secs / 3600, secs / 60 % 60, secs % 60);
        let two = |x: u32| TWO_DIGITS[x as usize % 100];
        let (m1, m2) = (milli / 100, milli % 100);
        let mut text = [0u8; 26];
        text[0] = b'"';
        text[1..11].copy_from_slice(&date);
        text[11] = b'T';
        text[12..14].copy_from_slice(&two(h));
        text[14] = b':';
        text[15..17].copy_from_slice(&two(m));
        text[17] = b':';
        text[18..20].copy_from_slice(&two(sec));
        text[20] = b'.';
        text[21] = b'0' + m1 as u8;
        text[22..24].copy_from_slice(&two(m2));
        text[24] = b'Z';
        text[25] = b'"';
        out.extend_from_slice(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the HTTP answer was before: a JSON value per bin, serialised.
    fn by_values(bins: &[(i64, Option<f64>)]) -> Vec<u8> {
        let values: Vec<Value> = bins.iter().map(|&(t, v)| metric_json(t, v, None)).collect();
        serde_json::to_vec(&Value::Array(values)).unwrap_or_default()
    }

    fn time() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            -100_000_000_000_000i64..400_000_000_000_000,
            // around year 0, year 10,000, 1970 and the ends
            (-62_167_219_200_000i64 - DAY_MS..-62_167_219_200_000 + DAY_MS),
            (253_402_300_800_000i64 - DAY_MS..253_402_300_800_000 + DAY_MS),
            (-2 * DAY_MS..2 * DAY_MS),
            (i64::MIN..i64::MIN + 2 * DAY_MS),
            (i64::MAX - 2 * DAY_MS..=i64::MAX),
        ]
    }

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            any::<f64>().prop_map(Some),
            (-1_000_000i64..1_000_000).prop_map(|x| Some(x as f64)),
            prop::sample::select(vec![
                0.0,
                -0.0,
                9_007_199_254_740_992.0,
                9_007_199_254_740_993.0,
                -9_007_199_254_740_992.0,
                9_007_199_254_740_994.0,
                1e21,
                1e-7,
                0.1,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MAX,
                f64::MIN_POSITIVE,
            ])
            .prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Any bins, in steps or scattered: the same bytes as before.
        #[test]
        fn series_bytes_are_those_of_the_values(
            first in time(),
            step in prop::sample::select(vec![1i64, 10_000, 60_000, 300_000, 3_600_000, DAY_MS]),
            values in prop::collection::vec(value(), 0..50),
            scattered in prop::collection::vec((time(), value()), 0..20),
        ) {
            let stepped: Vec<(i64, Option<f64>)> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (first.saturating_add(i as i64 * step), v))
                .collect();
            for bins in [stepped, scattered] {
                let written = String::from_utf8_lossy(&metric_series_json(bins.iter().copied())).into_owned();
                let before = String::from_utf8_lossy(&by_values(&bins)).into_owned();
                prop_assert_eq!(written, before);
            }
        }
    }

    fn id() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            any::<String>().prop_map(|s| Some(Value::String(s))),
            any::<i64>().prop_map(|n| Some(Value::from(n))),
            any::<f64>().prop_map(|x| Some(
                serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Any bin and id: a WebSocket message's text as that of its value.
        #[test]
        fn bin_messages_are_the_text_of_the_values(
            bins in prop::collection::vec((time(), value()), 1..20),
            id in id(),
        ) {
            let mut m = BinMessages::new(id.as_ref());
            for (t, v) in bins {
                prop_assert_eq!(m.text(t, v), metric_json(t, v, id.as_ref()).to_string());
            }
        }
    }

    #[test]
    fn a_day_of_ten_second_bins_is_written_as_before() {
        let bins: Vec<(i64, Option<f64>)> = (0..8640)
            .map(|i| {
                (
                    1_700_000_000_000 / DAY_MS * DAY_MS + i * 10_000,
                    Some(i as f64 / 3.0),
                )
            })
            .collect();
        assert_eq!(metric_series_json(bins.iter().copied()), by_values(&bins));
    }
}
