//! The block codec of the embedded backend — pure: the events of one put,
//! one type and one hour ([`super::keys`]) as one value, with typed columns
//! of their top-level fields ([`super::columns`]).

use crate::model::EventData;

/// Why a block was not encoded: what it would hold does not fit a width
/// the layout stores. Nothing is written; the encoder never wraps a width.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a block cannot hold {0}")]
pub struct EncodeError(pub &'static str);

/// `x` as a `u32` width, or the error naming what overflowed.
fn width(x: usize, what: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(x).map_err(|_| EncodeError(what))
}

/// Encodes a block: `version(2) n(4) times(8n) id_offsets(4(n+1)) ids
/// data_offsets(4(n+1)) data columns`, little-endian (columns: see
/// [`super::columns`]). An event without id has an empty id (a JSON id is
/// never empty). Refuses what a `u32` count, offset or total would not hold.
pub fn encode_block<'a, 'd: 'a>(
    events: impl ExactSizeIterator<Item = (i64, Option<&'a str>, &'a EventData<'d>)> + Clone,
) -> Result<Vec<u8>, EncodeError> {
    let n = events.len();
    width(n, "more than 2^32 - 1 events")?;
    let columns = super::columns::build_columns(events.clone().map(|(_, _, d)| d));
    let ids_len: usize = events
        .clone()
        .map(|(_, id, _)| id.map_or(0, str::len))
        .sum();
    width(ids_len, "more than 4 GiB of ids")?;
    let data_len: usize = events.clone().map(|(_, _, d)| d.json_len()).sum();
    let columns_len = super::columns::encoded_len(&columns, n);
    let total = 5 + 8 * n + 8 * (n + 1) + ids_len + data_len + columns_len;
    width(total, "more than 4 GiB")?;
    let mut v = Vec::with_capacity(total);
    v.push(2u8);
    v.extend_from_slice(&(n as u32).to_le_bytes());
    for (t, _, _) in events.clone() {
        v.extend_from_slice(&t.to_le_bytes());
    }
    let mut off = 0u32;
    v.extend_from_slice(&off.to_le_bytes());
    for (_, id, _) in events.clone() {
        // Cannot wrap: the sum of all ids fits (checked above).
        off += id.map_or(0, str::len) as u32;
        v.extend_from_slice(&off.to_le_bytes());
    }
    for (_, id, _) in events.clone() {
        v.extend_from_slice(id.unwrap_or("").as_bytes());
    }
    // Data offsets are patched in as each event's text is written, so they
    // hold what was written whatever `json_len` estimated.
    let offsets_at = v.len();
    v.resize(offsets_at + 4 * (n + 1), 0);
    let data_at = v.len();
    for (i, (_, _, d)) in events.enumerate() {
        d.write_json(&mut v);
        let off = width(v.len() - data_at, "more than 4 GiB of data")?.to_le_bytes();
        v[offsets_at + 4 * (i + 1)..offsets_at + 4 * (i + 2)].copy_from_slice(&off);
    }
    super::columns::encode_columns(&columns, n, &mut v);
    width(v.len(), "more than 4 GiB")?;
    Ok(v)
}

/// A decoded view of a block.
pub struct Block<'a> {
    n: usize,
    times: &'a [u8],
    id_offsets: &'a [u8],
    ids: &'a [u8],
    data_offsets: &'a [u8],
    data: &'a [u8],
    columns: Vec<super::columns::ColumnView<'a>>,
}

fn u32_at(b: &[u8], i: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(4 * i..4 * i + 4)?.try_into().ok()?) as usize)
}

/// Whether a stored block holds an event time in `[start, stop)`, read
/// from its times alone (nothing else decoded); `None` if the bytes are
/// not a block.
pub fn any_time_in(v: &[u8], start: i64, stop: i64) -> Option<bool> {
    let version = *v.first()?;
    if version != 1 && version != 2 {
        return None;
    }
    let n = u32::from_le_bytes(v.get(1..5)?.try_into().ok()?) as usize;
    let times = v.get(5..5usize.checked_add(n.checked_mul(8)?)?)?;
    Some(times.chunks_exact(8).any(|b| {
        let t = b.try_into().map_or(i64::MIN, i64::from_le_bytes);
        t >= start && t < stop
    }))
}

impl<'a> Block<'a> {
    /// Checks the layout; `None` if the bytes are not a block.
    pub fn decode(v: &'a [u8]) -> Option<Block<'a>> {
        let version = *v.first()?;
        if version != 1 && version != 2 {
            return None;
        }
        let n = u32::from_le_bytes(v.get(1..5)?.try_into().ok()?) as usize;
        let mut at: usize = 5;
        let mut take = |len: usize| {
            let s = v.get(at..at.checked_add(len)?)?;
            at += len;
            Some(s)
        };
        let times = take(8 * n)?;
        let id_offsets = take(4 * (n + 1))?;
        let ids_len = u32_at(id_offsets, n)?;
        let ids = take(ids_len)?;
        let data_offsets = take(4 * (n + 1))?;
        let data_len = u32_at(data_offsets, n)?;
        let data = take(data_len)?;
        let columns = if version == 2 {
            super::columns::decode_columns(v.get(at..)?, n)?
        } else {
            Vec::new()
        };
        let block = Block {
            n,
            times,
            id_offsets,
            ids,
            data_offsets,
            data,
            columns,
        };
        // Offsets must be non-decreasing and within bounds for every event.
        (0..n)
            .all(|i| block.id(i).is_some() && block.data(i).is_some())
            .then_some(block)
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn time(&self, i: usize) -> i64 {
        self.times
            .get(8 * i..8 * i + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(i64::MIN, i64::from_le_bytes)
    }

    /// The event's id JSON text (`Some(b"")`: no id).
    pub fn id(&self, i: usize) -> Option<&'a [u8]> {
        self.ids
            .get(u32_at(self.id_offsets, i)?..u32_at(self.id_offsets, i + 1)?)
    }

    /// The column of a top-level field, if the block has one.
    pub fn column(&self, name: &str) -> Option<super::columns::ColumnView<'a>> {
        self.columns.iter().find(|c| c.name == name).copied()
    }

    pub fn data(&self, i: usize) -> Option<&'a [u8]> {
        self.data
            .get(u32_at(self.data_offsets, i)?..u32_at(self.data_offsets, i + 1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn blocks_round_trip(events in prop::collection::vec((any::<i64>(), prop::option::of("[a-z0-9\"]{1,12}"), "\\PC{0,30}"), 0..20)) {
            let datas: Vec<EventData<'_>> = events.iter().map(|(_, _, d)| EventData::Json(d.as_str().into())).collect();
            let v = encode_block(events.iter().zip(&datas).map(|((t, id, _), d)| (*t, id.as_deref(), d))).unwrap();
            let b = Block::decode(&v).unwrap();
            prop_assert_eq!(b.len(), events.len());
            for (i, (t, id, d)) in events.iter().enumerate() {
                prop_assert_eq!(b.time(i), *t);
                prop_assert_eq!(b.id(i).unwrap(), id.as_deref().unwrap_or("").as_bytes());
                prop_assert_eq!(b.data(i).unwrap(), d.as_bytes());
            }
            // a truncated block is refused, never misread
            prop_assert!(Block::decode(&v[..v.len() - 1]).is_none());
        }
    }

    #[test]
    fn columns_the_layout_cannot_hold_are_left_to_the_json() {
        let long = "k".repeat(u16::MAX as usize + 1);
        let text = format!(r#"{{"{long}": 1, "ok": 2}}"#);
        let data = EventData::Json(text.as_str().into());
        let v = encode_block([(5, Some("\"i\""), &data)].into_iter()).unwrap();
        let b = Block::decode(&v).unwrap();
        assert!(b.column(&long).is_none());
        assert_eq!(b.column("ok").and_then(|c| c.number(0)), Some(2.0));
        assert_eq!(b.data(0), Some(text.as_bytes()));
    }
}
