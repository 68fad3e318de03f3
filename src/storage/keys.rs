//! Byte layouts of stored keys and values — pure.
//!
//! Events are stored in blocks: the events of one put, one type and one hour
//! (the *bucket*) form one block. Block key: `service 0x00 type 0x00
//! bucket(8) run(8) seq(8)`, where `bucket` is the hour's start in
//! milliseconds with its sign bit flipped, big-endian, so keys sort by time;
//! `run` is unique per server run and `seq` counts blocks within it, so two
//! blocks never share a key. A time-range scan of one type is one contiguous
//! key range of buckets, forwards or backwards; one key holds many events, so
//! a scan pays the storage engine's per-item cost once per block, not once per
//! event. Service and type names never contain 0x00.

use crate::model::{EventData, Service};

/// Bytes after the `service 0x00 type 0x00` prefix of a block key.
pub const EVENT_SUFFIX_LEN: usize = 24;

/// The time span of one bucket: an hour.
pub const BUCKET_MS: i64 = 3_600_000;

/// The bucket (hour start) of a time.
pub fn bucket(time: i64) -> i64 {
    time.saturating_sub(time.rem_euclid(BUCKET_MS))
}

/// Order-preserving encoding of an i64.
pub fn encode_i64(x: i64) -> [u8; 8] {
    ((x as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn decode_i64(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// `service 0x00 type 0x00`
pub fn type_prefix(service: &Service, event_type: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(service.key().len() + event_type.len() + 2 + EVENT_SUFFIX_LEN);
    k.extend_from_slice(service.key().as_bytes());
    k.push(0);
    k.extend_from_slice(event_type.as_bytes());
    k.push(0);
    k
}

/// The key of one block.
pub fn block_key(prefix: &[u8], bucket: i64, run: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + EVENT_SUFFIX_LEN);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&encode_i64(bucket));
    k.extend_from_slice(&run.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The first key at or after `time` for this type.
pub fn time_bound(prefix: &[u8], time: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&encode_i64(time));
    k
}

/// The bucket of a block key with a prefix of `prefix_len` bytes.
pub fn block_bucket(key: &[u8], prefix_len: usize) -> Option<i64> {
    decode_i64(key.get(prefix_len..)?)
}

/// Id index key: `service 0x00 type 0x00 id-json`.
pub fn id_key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + id.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Metric cache key: `service 0x00 type 0x00 tier(8) time(8) source`.
pub fn metric_key(prefix: &[u8], tier: i64, time: i64, source: &str) -> Vec<u8> {
    let mut k = metric_bin_prefix(prefix, tier, time);
    k.extend_from_slice(source.as_bytes());
    k
}

/// `service 0x00 type 0x00 tier(8) time(8)`: every source's entry for one bin.
pub fn metric_bin_prefix(prefix: &[u8], tier: i64, time: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16 + 64);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&encode_i64(tier));
    k.extend_from_slice(&encode_i64(time));
    k
}

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

/// Id index value: `time(8) index(4) block key`.
pub fn encode_id_location(time: i64, index: u32, block_key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + block_key.len());
    v.extend_from_slice(&time.to_be_bytes());
    v.extend_from_slice(&index.to_be_bytes());
    v.extend_from_slice(block_key);
    v
}

/// (time, index, block key) of an id index value.
pub fn decode_id_location(v: &[u8]) -> Option<(i64, u32, &[u8])> {
    let time = i64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let index = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
    Some((time, index, v.get(12..)?))
}

/// Tombstone key of one event of a block: `block key index(4)`.
pub fn tombstone_key(block_key: &[u8], index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(block_key.len() + 4);
    k.extend_from_slice(block_key);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn i64_encoding_preserves_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), encode_i64(a).cmp(&encode_i64(b)));
            prop_assert_eq!(decode_i64(&encode_i64(a)), Some(a));
        }

        #[test]
        fn block_keys_sort_by_bucket_within_a_type(t1 in any::<i64>(), t2 in any::<i64>(), s1 in any::<u64>(), s2 in any::<u64>()) {
            let p = type_prefix(&Service::default_service(), "test");
            let (k1, k2) = (block_key(&p, t1, 1, s1), block_key(&p, t2, 1, s2));
            if t1 != t2 {
                prop_assert_eq!(t1.cmp(&t2), k1.cmp(&k2));
            }
            prop_assert_eq!(block_bucket(&k1, p.len()), Some(t1));
            prop_assert!(k1.starts_with(&p));
        }
    }

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
    fn buckets_are_hours() {
        assert_eq!(bucket(3_599_999), 0);
        assert_eq!(bucket(3_600_000), 3_600_000);
        assert_eq!(bucket(-1), -3_600_000);
    }

    #[test]
    fn type_prefixes_do_not_overlap() {
        let a = type_prefix(&Service::default_service(), "ab");
        let b = type_prefix(&Service::default_service(), "abc");
        assert!(!b.starts_with(&a));
        let s = type_prefix(&Service::from_key("x"), "ab");
        assert!(!s.starts_with(&a) && !a.starts_with(&s));
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
