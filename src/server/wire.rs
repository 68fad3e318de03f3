//! JSON shapes of answers that HTTP and WebSocket endpoints share.

use serde_json::Value;

use crate::model::js::number_json;

/// `{time, value?, id?}`: an undefined value is left out; NaN and infinities are null.
pub fn metric_json(time: i64, value: Option<f64>, id: Option<&Value>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "time".into(),
        Value::String(crate::model::time::format_iso(time)),
    );
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
