//! collectd `write_http` JSON → Cube events, as Cube's collectd endpoint did it.
//! Pure: the derive state is passed in.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::{EventError, NewEvent, time};

/// One value list of collectd's JSON format.
#[derive(Debug, Deserialize)]
pub struct ValueList {
    pub values: Vec<Option<f64>>,
    #[serde(default)]
    pub dstypes: Vec<String>,
    #[serde(default)]
    pub dsnames: Vec<String>,
    pub time: f64,
    #[serde(default)]
    pub interval: Option<f64>,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub plugin: String,
    #[serde(default)]
    pub plugin_instance: String,
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub type_instance: String,
}

/// Previous `derive` samples, keyed by host/plugin/plugin_instance/type/type_instance/dsname.
#[derive(Debug, Default)]
pub struct DeriveState {
    last: HashMap<String, f64>,
}

/// Why a value list was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectdError {
    pub index: usize,
    pub reason: String,
}

impl DeriveState {
    /// The value to store for one data source: the raw value, or for `derive`
    /// the difference from the previous sample (0 for the first). New samples
    /// go into `pending`, kept apart until the whole body is accepted.
    fn value(&self, pending: &mut HashMap<String, f64>, vl: &ValueList, i: usize, raw: f64) -> f64 {
        if vl.dstypes.get(i).map(String::as_str) != Some("derive") {
            return raw;
        }
        let name = vl.dsnames.get(i).map_or("value", String::as_str);
        let key = format!(
            "{}/{}/{}/{}/{}/{}",
            vl.host, vl.plugin, vl.plugin_instance, vl.type_, vl.type_instance, name
        );
        let previous = pending.get(&key).or_else(|| self.last.get(&key)).copied();
        pending.insert(key, raw);
        previous.map_or(0.0, |p| raw - p)
    }
}

/// collectd 5.0.0 sent times in 2^-30 s units; anything later than
/// now + 1e9 s is taken to be in that format.
fn time_ms(time: f64, now_ms: i64) -> f64 {
    let now_s = now_ms as f64 / 1000.0;
    let seconds = if time > now_s + 1e9 {
        time / 1_073_741_824.0
    } else {
        time
    };
    seconds.round() * 1000.0
}

/// Converts a whole POST body; nothing is converted (and the derive state
/// is left as it was) unless every list is valid and its event within every
/// limit an event put has.
pub fn convert(
    body: &[u8],
    now_ms: i64,
    state: &mut DeriveState,
) -> Result<Vec<NewEvent<'static>>, Vec<CollectdError>> {
    let lists: Vec<Value> = serde_json::from_slice(body).map_err(|e| {
        vec![CollectdError {
            index: 0,
            reason: format!("body is not a JSON array: {e}"),
        }]
    })?;
    let mut events = Vec::with_capacity(lists.len());
    let mut errors = Vec::new();
    let mut pending = HashMap::new();
    for (index, v) in lists.into_iter().enumerate() {
        let error = |reason: String| CollectdError { index, reason };
        match serde_json::from_value::<ValueList>(v) {
            Ok(vl) if vl.plugin.is_empty() => errors.push(error("missing plugin".into())),
            Ok(vl) => match to_event(&vl, now_ms, state, &mut pending) {
                Ok(e) => events.push(e),
                Err(e) => errors.push(error(e.to_string())),
            },
            Err(e) => errors.push(error(format!("not a collectd value list: {e}"))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    state.last.extend(pending);
    Ok(events)
}

fn number(x: f64) -> Value {
    crate::model::js::number_json(x)
}

/// One value list → one `collectd` event, checked against the limits of
/// every event (its time among them: the same bounds as an event put's).
fn to_event(
    vl: &ValueList,
    now_ms: i64,
    state: &DeriveState,
    pending: &mut HashMap<String, f64>,
) -> Result<NewEvent<'static>, EventError> {
    let time = time::from_number(time_ms(vl.time, now_ms)).ok_or(EventError::InvalidTime)?;
    let mut data = Map::new();
    data.insert("host".into(), Value::String(vl.host.clone()));
    if !vl.plugin_instance.is_empty() {
        data.insert("plugin".into(), Value::String(vl.plugin_instance.clone()));
    }
    if !vl.type_instance.is_empty() {
        data.insert("type".into(), Value::String(vl.type_instance.clone()));
    }
    let values: Vec<Value> = vl
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| v.map_or(Value::Null, |raw| number(state.value(pending, vl, i, raw))))
        .collect();
    let innermost = if values.len() == 1 {
        values.into_iter().next().unwrap_or(Value::Null)
    } else {
        let mut m = Map::new();
        for (i, v) in values.into_iter().enumerate() {
            let name = vl.dsnames.get(i).cloned().unwrap_or_else(|| i.to_string());
            m.insert(name, v);
        }
        Value::Object(m)
    };
    let plugin_value = if vl.type_ != vl.plugin && !vl.type_.is_empty() {
        let mut m = Map::new();
        m.insert(vl.type_.clone(), innermost);
        Value::Object(m)
    } else {
        innermost
    };
    data.insert(vl.plugin.clone(), plugin_value);
    NewEvent::owned(
        "collectd".into(),
        time,
        Value::Object(data).to_string(),
        None,
    )
    .checked()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(e: &NewEvent<'static>) -> Value {
        serde_json::from_str(&e.data.json()).unwrap()
    }

    #[test]
    fn converts_as_cube_did() {
        let body = json!([
            {"values": [1230000000.0], "dstypes": ["gauge"], "dsnames": ["value"], "time": 1334592000.4,
             "interval": 10, "host": "web1", "plugin": "memory", "plugin_instance": "", "type": "memory", "type_instance": "free"},
            {"values": [0.5, 0.4, 0.3], "dstypes": ["gauge", "gauge", "gauge"], "dsnames": ["shortterm", "midterm", "longterm"],
             "time": 1334592000.6, "interval": 10, "host": "web1", "plugin": "load", "plugin_instance": "", "type": "load", "type_instance": ""},
            {"values": [100], "dstypes": ["derive"], "dsnames": ["value"], "time": 1334592000, "host": "h", "plugin": "cpu",
             "plugin_instance": "0", "type": "cpu", "type_instance": "user"},
            {"values": [5, 7], "dstypes": ["derive", "derive"], "dsnames": ["rx", "tx"], "time": 1334592000, "host": "h",
             "plugin": "interface", "plugin_instance": "eth0", "type": "if_octets", "type_instance": ""}
        ]);
        let mut state = DeriveState::default();
        let now = 1_334_592_000_000;
        let events = convert(body.to_string().as_bytes(), now, &mut state).unwrap();
        assert_eq!(events[0].time, 1_334_592_000_000);
        assert_eq!(events[1].time, 1_334_592_001_000);
        assert_eq!(
            data(&events[0]),
            json!({"host": "web1", "type": "free", "memory": 1230000000})
        );
        assert_eq!(
            data(&events[1]),
            json!({"host": "web1", "load": {"shortterm": 0.5, "midterm": 0.4, "longterm": 0.3}})
        );
        assert_eq!(
            data(&events[2]),
            json!({"host": "h", "plugin": "0", "type": "user", "cpu": 0})
        );
        assert_eq!(
            data(&events[3]),
            json!({"host": "h", "plugin": "eth0", "interface": {"if_octets": {"rx": 0, "tx": 0}}})
        );
        assert!(events.iter().all(|e| e.event_type == "collectd"));
        // derive: the next sample stores the difference
        let body2 = json!([{"values": [130], "dstypes": ["derive"], "dsnames": ["value"], "time": 1334592010, "host": "h",
            "plugin": "cpu", "plugin_instance": "0", "type": "cpu", "type_instance": "user"}]);
        let events = convert(body2.to_string().as_bytes(), now, &mut state).unwrap();
        assert_eq!(data(&events[0])["cpu"], json!(30));
    }

    #[test]
    fn reads_collectd_5_0_high_resolution_times() {
        let now = 1_334_592_000_000;
        let hr = 1_334_592_000.0 * 1_073_741_824.0;
        assert_eq!(time_ms(hr, now), 1_334_592_000_000.0);
        assert_eq!(time_ms(1_334_592_000.0, now), 1_334_592_000_000.0);
    }

    #[test]
    fn refuses_malformed_lists_whole() {
        let mut state = DeriveState::default();
        let body = br#"[{"values":[1],"time":1,"plugin":"x"},{"values":"no","time":1,"plugin":"x"},{"values":[1],"time":1}]"#;
        let errs = convert(body, 0, &mut state).unwrap_err();
        assert_eq!(errs.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2]);
        assert!(convert(b"{}", 0, &mut state).is_err());
    }
}
