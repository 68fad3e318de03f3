//! JavaScript's `String(v)` of JSON values — pure. Cube ran on Node.js, so
//! where Cube compared values as text (`distinct`) or as JavaScript numbers
//! (ids read by `JSON.parse`), this is the text it compared.

use serde_json::Value;

/// `String(x)` of a double: integers below 10^21 without a fraction, other
/// numbers in their shortest round-trip form; `-0` is `"0"`.
pub fn number_string(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if x == x.trunc() && x.abs() < 1e21 {
        format!("{}", x as i128)
    } else {
        format!("{x}")
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
