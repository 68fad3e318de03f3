//! JavaScript's `String(v)` of JSON values — pure. Cube ran on Node.js, so
//! where Cube compared values as text (`distinct`) or as JavaScript numbers
//! (ids read by `JSON.parse`), this is the text it compared.

use serde_json::Value;

/// A finite number as JSON: integral values within 2^53 as integers; NaN and
/// infinities (which JSON cannot spell) as `null`.
pub fn number_json(x: f64) -> Value {
    match safe_integer(x) {
        Some(n) => Value::from(n),
        None => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
    }
}

/// `x` as an integer if it is integral and within 2^53 in magnitude (how
/// [`number_json`] spells it).
pub fn safe_integer(x: f64) -> Option<i64> {
    const SAFE: f64 = 9_007_199_254_740_992.0;
    (x.fract() == 0.0 && x.abs() <= SAFE).then_some(x as i64)
}

/// `String(x)` of a double, as JavaScript writes it: the shortest digits
/// that read back to the same double, in decimal notation from 1e-6 up to
/// 1e21 and in exponent notation (`1e+21`, `1.5e-7`) outside; `-0` is `"0"`.
pub fn number_string(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if x == 0.0 {
        "0".into()
    } else if (1e-6..1e21).contains(&x.abs()) {
        format!("{x}")
    } else {
        let e = format!("{x:e}");
        match e.split_once('e') {
            Some((m, exp)) if !exp.starts_with('-') => format!("{m}e+{exp}"),
            _ => e,
        }
    }
}

/// `String(v)` of a JSON value: arrays joined by commas (null elements
/// empty), objects `[object Object]`.
pub fn string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_string(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                if i.is_null() {
                    String::new()
                } else {
                    string(i)
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_javascript_writes_them() {
        for (x, js) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-12.0, "-12"),
            (0.5, "0.5"),
            (123.456, "123.456"),
            (1e-6, "0.000001"),
            (1.5e-7, "1.5e-7"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (-1.25e300, "-1.25e+300"),
            (5e-324, "5e-324"),
            (9007199254740993.0, "9007199254740992"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(number_string(x), js, "{x}");
        }
    }
}
