//! Fuzzes the block codec with arbitrary events: any times, ids, field
//! names and values (numbers, strings, nested values). Whatever the encoder
//! accepts decodes to exactly what went in, and every column agrees with
//! the data it was built from; a truncated block is refused, never misread.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Scalar {
    Number(f64),
    Int(i64),
    Text(String),
    Bool(bool),
    Null,
    List(Vec<String>),
}

#[derive(Debug, Arbitrary)]
struct Event {
    time: i64,
    id: Option<String>,
    fields: Vec<(String, Scalar)>,
    /// Data that is not an object (the block then has no columns).
    other: Option<String>,
}

fn json(s: &Scalar) -> String {
    match s {
        Scalar::Number(x) => serde_json::Number::from_f64(*x)
            .map_or("null".to_owned(), |n| n.to_string()),
        Scalar::Int(i) => i.to_string(),
        Scalar::Text(t) => serde_json::to_string(t).unwrap_or_default(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Null => "null".to_owned(),
        Scalar::List(l) => serde_json::to_string(l).unwrap_or_default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(events) = Vec::<Event>::arbitrary(&mut u) else {
        return;
    };
    let texts: Vec<(i64, Option<String>, String)> = events
        .iter()
        .map(|e| {
            let data = match &e.other {
                Some(t) => serde_json::to_string(t).unwrap_or_default(),
                None => {
                    let fields: Vec<String> = e
                        .fields
                        .iter()
                        .map(|(k, v)| {
                            format!("{}:{}", serde_json::to_string(k).unwrap_or_default(), json(v))
                        })
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }
            };
            let id = e.id.as_ref().map(|i| serde_json::to_string(i).unwrap_or_default());
            (e.time, id, data)
        })
        .collect();
    let datas: Vec<cubed::model::EventData<'_>> = texts
        .iter()
        .map(|(_, _, d)| match cubed::model::event::object_fields(d) {
            Some(f) => cubed::model::EventData::Fields(f),
            _ => cubed::model::EventData::from(&**d),
        })
        .collect();
    fuzz_common::block_round_trip(
        &texts
            .iter()
            .zip(&datas)
            .map(|((t, id, _), d)| (*t, id.as_deref(), d))
            .collect::<Vec<_>>(),
    );
});
