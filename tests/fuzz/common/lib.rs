//! What every fuzz target checks of events it got accepted: they store and
//! read back as they were accepted.

use cubed::model::{EventData, NewEvent};
use cubed::storage::embedded::blocks::{Block, encode_block};
use serde_json::Value;

/// Every accepted event is within every limit (checking it again changes
/// nothing), its data is JSON a reader loads, and the batch's block decodes
/// to the same times, ids and data.
pub fn stores_and_reads_back(events: &[NewEvent<'_>]) {
    for e in events {
        let again = e.clone().checked().expect("an accepted event passes the limits");
        assert_eq!(&again, e, "checking twice changes nothing (ids stay canonical)");
        serde_json::from_str::<Value>(&e.data.json()).expect("stored data loads as JSON");
        if let Some(id) = &e.id {
            serde_json::from_str::<Value>(id).expect("an id loads as JSON");
        }
    }
    let rows: Vec<(i64, Option<&str>, &EventData<'_>)> = events
        .iter()
        .map(|e| (e.time, e.id.as_deref(), &e.data))
        .collect();
    block_round_trip(&rows);
}

/// Encodes one block of `rows` and checks the decoded block against them:
/// times, ids and data text equal, and each column's value equal to that
/// field of the data as JSON gives it.
pub fn block_round_trip(rows: &[(i64, Option<&str>, &EventData<'_>)]) {
    let Ok(bytes) = encode_block(rows.iter().copied()) else {
        return;
    };
    let block = Block::decode(&bytes).expect("an encoded block decodes");
    assert_eq!(block.len(), rows.len());
    for (i, (t, id, data)) in rows.iter().enumerate() {
        assert_eq!(block.time(i), *t);
        assert_eq!(block.id(i), Some(id.unwrap_or("").as_bytes()));
        let text = data.json();
        assert_eq!(block.data(i), Some(text.as_bytes()));
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        for (name, value) in &fields {
            let Some(col) = block.column(name) else {
                continue;
            };
            match (col.value(i), value) {
                (Some(Value::Number(a)), Value::Number(b)) => {
                    assert_eq!(a.as_f64(), b.as_f64(), "column {name:?} of event {i}")
                }
                (got, want) => assert_eq!(got.as_ref(), Some(want), "column {name:?} of event {i}"),
            }
        }
    }
    if !bytes.is_empty() {
        assert!(Block::decode(&bytes[..bytes.len() - 1]).is_none());
    }
}
