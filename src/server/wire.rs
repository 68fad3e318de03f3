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
