//! e-metrics units as events — pure.
//!
//! A dump holds raw units `{"category","tag","type":"counter"|"timer"|"flow","content":{…}}`
//! and alarm-wrapped bundles `{"alarm_type","env","content": unit or [units]}`,
//! either may carry `send_timestamp` and `public_ip` (a unit's own win). Each
//! unit becomes an event of type `counter`, `timer` or `flow` whose data is
//! `{category, tag, env?, alarm_type?, public_ip?}` plus the unit's content
//! flattened: numbers stay numbers and numeric strings (`"tps": "1.39"`)
//! become numbers.
//!
//! Time: `send_timestamp` as ISO 8601 or epoch milliseconds; a number below
//! 10^11 is taken as epoch seconds (10^11 ms is 1973); absent: now.

use serde_json::{Map, Value};

use crate::model::event::NewEvent;
use crate::model::time;

/// The unit types, which are also the event types.
pub const UNIT_TYPES: [&str; 3] = ["counter", "timer", "flow"];

/// One bad item of a dump: its index among the dump's items (array element
/// or non-empty line, from 0), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitError {
    pub index: usize,
    pub reason: String,
}

/// Why a dump was refused; nothing of it is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum EmetricsError {
    /// The body is neither a JSON array nor newline-delimited JSON.
    Json {
        index: usize,
        message: String,
    },
    Invalid(Vec<UnitError>),
}

impl std::fmt::Display for EmetricsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmetricsError::Json { index, message } => write!(f, "item {index}: {message}"),
            EmetricsError::Invalid(list) => {
                let parts: Vec<String> = list
                    .iter()
                    .map(|e| format!("item {}: {}", e.index, e.reason))
                    .collect();
                f.write_str(&parts.join("; "))
            }
        }
    }
}

/// The items of a body: a JSON array's elements, or one JSON value per
/// non-empty line.
pub fn items(body: &[u8]) -> Result<Vec<Value>, EmetricsError> {
    let text = std::str::from_utf8(body).map_err(|e| EmetricsError::Json {
        index: 0,
        message: format!("not UTF-8: {e}"),
    })?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<Value>>(trimmed).map_err(|e| EmetricsError::Json {
            index: 0,
            message: format!("invalid JSON array: {e}"),
        });
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|e| EmetricsError::Json {
                index,
                message: format!("invalid JSON: {e}"),
            })
        })
        .collect()
}

/// Converts a whole dump; any bad unit refuses all of it.
pub fn convert(body: &[u8], now: i64) -> Result<Vec<NewEvent<'static>>, EmetricsError> {
    let items = items(body)?;
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match convert_item(item, now) {
            Ok(mut e) => events.append(&mut e),
            Err(reason) => errors.push(UnitError { index, reason }),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(EmetricsError::Invalid(errors))
    }
}

/// What a wrapper passes down to its units.
#[derive(Default, Clone)]
struct Context {
    env: Option<Value>,
    alarm_type: Option<Value>,
    public_ip: Option<Value>,
    send_timestamp: Option<Value>,
}

/// The events of one item (a unit, or a wrapper of one or more units).
pub fn convert_item(item: &Value, now: i64) -> Result<Vec<NewEvent<'static>>, String> {
    let obj = item.as_object().ok_or("expected an object")?;
    if obj.contains_key("category") || obj.contains_key("tag") {
        return Ok(vec![unit(obj, &Context::default(), now)?]);
    }
    let ctx = Context {
        env: obj.get("env").cloned(),
        alarm_type: obj.get("alarm_type").cloned(),
        public_ip: obj.get("public_ip").cloned(),
        send_timestamp: obj.get("send_timestamp").cloned(),
    };
    match obj.get("content") {
        Some(Value::Object(u)) => Ok(vec![unit(u, &ctx, now)?]),
        Some(Value::Array(units)) => units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                u.as_object()
                    .ok_or_else(|| format!("content[{i}]: expected a unit object"))
                    .and_then(|u| unit(u, &ctx, now).map_err(|e| format!("content[{i}]: {e}")))
            })
            .collect(),
        _ => Err("expected a unit (category, tag, type, content) or a wrapper (alarm_type, env, content)".into()),
    }
}

fn scalar(v: &Value, what: &str) -> Result<Value, String> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v.clone()),
        _ => Err(format!("{what}: expected a string or number")),
    }
}

fn unit(u: &Map<String, Value>, ctx: &Context, now: i64) -> Result<NewEvent<'static>, String> {
    let unit_type = match u.get("type") {
        Some(Value::String(t)) if UNIT_TYPES.contains(&t.as_str()) => t.clone(),
        Some(other) => {
            return Err(format!(
                "invalid type {other}: expected \"counter\", \"timer\" or \"flow\""
            ));
        }
        None => return Err("missing type".into()),
    };
    let text = |k: &str| match u.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{k}: expected a string")),
        None => Err(format!("missing {k}")),
    };
    let category = text("category")?;
    let tag = text("tag")?;
    let content = match u.get("content") {
        Some(Value::Object(c)) => c,
        Some(_) => return Err("content: expected an object".into()),
        None => return Err("missing content".into()),
    };
    let mut data = Map::new();
    data.insert("category".into(), Value::String(category));
    data.insert("tag".into(), Value::String(tag));
    let own = |k: &str, inherited: &Option<Value>| u.get(k).or(inherited.as_ref()).cloned();
    for (k, v) in [
        ("env", own("env", &ctx.env)),
        ("alarm_type", own("alarm_type", &ctx.alarm_type)),
        ("public_ip", own("public_ip", &ctx.public_ip)),
    ] {
        if let Some(v) = v {
            data.insert(k.into(), scalar(&v, k)?);
        }
    }
    for (k, v) in content {
        if data.contains_key(k) {
            continue; // the unit's identity wins over a content key of the same name
        }
        let v = match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => serde_json::Number::from_f64(x)
                    .map(Value::Number)
                    .unwrap_or_else(|| v.clone()),
                _ => v.clone(),
            },
            Value::Bool(_) | Value::Null => v.clone(),
            _ => return Err(format!("content.{k}: expected a number")),
        };
        data.insert(k.clone(), v);
    }
    let time = match own("send_timestamp", &ctx.send_timestamp) {
        None | Some(Value::Null) => now,
        Some(Value::Number(n)) => {
            let x = n.as_f64().ok_or("send_timestamp: invalid number")?;
            let ms = if x.abs() < 1e11 { x * 1000.0 } else { x };
            time::from_number(ms).ok_or("send_timestamp: out of range")?
        }
        Some(Value::String(s)) => time::parse_param(&s).ok_or("send_timestamp: invalid time")?,
        Some(_) => return Err("send_timestamp: expected a time".into()),
    };
    NewEvent::owned(unit_type, time, Value::Object(data).to_string(), None)
        .checked()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(e: &NewEvent<'static>) -> Value {
        serde_json::from_str(&e.data.json()).expect("json")
    }

    #[test]
    fn the_seed_units() {
        let dump = concat!(
            r#"{"category":"xvm","tag":"call_contract_succ","type":"counter","content":{"count":10,"value":9}}"#,
            "\n",
            r#"{"category":"xvm","tag":"execute_time","type":"timer","content":{"count":3060,"max_time":93926,"min_time":18,"avg_time":153}}"#,
            "\n\n",
            r#"{"category":"vhost","tag":"handle_data_ready_called","type":"flow","content":{"count":92,"max_flow":10,"min_flow":1,"sum_flow":131,"avg_flow":1,"tps_flow":131,"tps":"1.39"}}"#,
            "\n"
        );
        let events = convert(dump.as_bytes(), 5000).expect("valid");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event_type, "counter");
        assert_eq!(events[0].time, 5000);
        assert_eq!(
            data(&events[0]),
            json!({"category": "xvm", "tag": "call_contract_succ", "count": 10, "value": 9})
        );
        assert_eq!(events[1].event_type, "timer");
        assert_eq!(data(&events[1])["avg_time"], json!(153));
        assert_eq!(events[2].event_type, "flow");
        assert_eq!(data(&events[2])["tps"], json!(1.39));
        // The same units as a JSON array.
        let array = format!(
            "[{}]",
            dump.lines()
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(convert(array.as_bytes(), 5000).expect("valid"), events);
    }

    #[test]
    fn wrapped_bundles_pass_env_alarm_ip_and_time_down() {
        let w = json!({
            "alarm_type": "metrics", "env": "prod", "send_timestamp": 1_700_000_000,
            "public_ip": "10.0.0.1",
            "content": [
                {"category": "xvm", "tag": "a", "type": "counter", "content": {"count": 1, "value": 2}},
                {"category": "xvm", "tag": "b", "type": "timer", "public_ip": "10.0.0.2",
                 "send_timestamp": "2023-11-14T22:13:21Z",
                 "content": {"count": 1, "max_time": 3, "min_time": 3, "avg_time": 3}}
            ]
        });
        let events = convert(w.to_string().as_bytes(), 0).expect("valid");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].time, 1_700_000_000_000);
        assert_eq!(
            data(&events[0]),
            json!({"category": "xvm", "tag": "a", "env": "prod", "alarm_type": "metrics",
                   "public_ip": "10.0.0.1", "count": 1, "value": 2})
        );
        assert_eq!(data(&events[1])["public_ip"], json!("10.0.0.2"));
        assert_eq!(events[1].time, 1_700_000_001_000);
        let single = json!({"alarm_type": 1, "env": "test", "content":
            {"category": "c", "tag": "t", "type": "flow", "content": {"count": 1}}});
        let e = convert(single.to_string().as_bytes(), 7).expect("valid");
        assert_eq!(data(&e[0])["alarm_type"], json!(1));
        assert_eq!(e[0].time, 7);
    }

    #[test]
    fn bad_units_are_all_named_and_nothing_is_kept() {
        let dump = [
            json!({"category": "x", "tag": "ok", "type": "counter", "content": {"count": 1}}),
            json!({"category": "x", "tag": "t", "type": "gauge", "content": {}}),
            json!({"tag": "t", "type": "counter", "content": {}}),
            json!({"category": "x", "tag": "t", "type": "timer", "content": {"count": {"a": 1}}}),
            json!({"env": "prod", "content": [{"category": "x", "type": "flow", "content": {}}]}),
            json!(42),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
        let Err(EmetricsError::Invalid(errors)) = convert(dump.as_bytes(), 0) else {
            panic!("expected errors");
        };
        let indexes: Vec<usize> = errors.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [1, 2, 3, 4, 5]);
        assert!(errors[0].reason.contains("invalid type"), "{errors:?}");
        assert_eq!(errors[1].reason, "missing category");
        assert_eq!(errors[2].reason, "content.count: expected a number");
        assert_eq!(errors[3].reason, "content[0]: missing tag");
        assert!(matches!(
            convert(b"{\"category\": ", 0),
            Err(EmetricsError::Json { index: 0, .. })
        ));
        assert!(matches!(
            convert(b"[1,", 0),
            Err(EmetricsError::Json { .. })
        ));
    }
}
