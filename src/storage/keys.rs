//! Byte layouts of stored keys and values — pure.
//!
//! Event key: `service 0x00 type 0x00 time(8) run(8) seq(8)`, where `time` is
//! the millisecond time with its sign bit flipped, big-endian, so keys sort by
//! time; `run` is unique per server run and `seq` counts within it, so two
//! events never share a key. A time-range scan of one type is one contiguous
//! key range, forwards or backwards. Service and type names never contain 0x00.

use crate::model::Service;

/// Bytes after the `service 0x00 type 0x00` prefix of an event key.
pub const EVENT_SUFFIX_LEN: usize = 24;

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

/// The key of one event.
pub fn event_key(prefix: &[u8], time: i64, run: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + EVENT_SUFFIX_LEN);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&encode_i64(time));
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

/// The time of an event key with a prefix of `prefix_len` bytes.
pub fn event_time(key: &[u8], prefix_len: usize) -> Option<i64> {
    decode_i64(key.get(prefix_len..)?)
}

/// Event value: `flags(1) [id_len(4) id] data`, flags bit 0 = has id.
pub fn encode_event_value(id: Option<&str>, data: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + id.map_or(0, |i| 4 + i.len()) + data.len());
    match id {
        Some(id) => {
            v.push(1);
            v.extend_from_slice(&(id.len() as u32).to_be_bytes());
            v.extend_from_slice(id.as_bytes());
        }
        None => v.push(0),
    }
    v.extend_from_slice(data.as_bytes());
    v
}

/// Splits an event value into (id JSON text, data JSON text).
pub fn decode_event_value(v: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    match v.first()? {
        0 => Some((None, v.get(1..)?)),
        1 => {
            let len = u32::from_be_bytes(v.get(1..5)?.try_into().ok()?) as usize;
            let id = v.get(5..5 + len)?;
            Some((Some(id), v.get(5 + len..)?))
        }
        _ => None,
    }
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
        fn event_keys_sort_by_time_within_a_type(t1 in any::<i64>(), t2 in any::<i64>(), s1 in any::<u64>(), s2 in any::<u64>()) {
            let p = type_prefix(&Service::default_service(), "test");
            let (k1, k2) = (event_key(&p, t1, 1, s1), event_key(&p, t2, 1, s2));
            if t1 != t2 {
                prop_assert_eq!(t1.cmp(&t2), k1.cmp(&k2));
            }
            prop_assert_eq!(event_time(&k1, p.len()), Some(t1));
            prop_assert!(k1.starts_with(&p));
        }

        #[test]
        fn event_values_round_trip(id in prop::option::of("[a-z0-9\"]{0,20}"), data in "\\PC{0,40}") {
            let v = encode_event_value(id.as_deref(), &data);
            let (got_id, got_data) = decode_event_value(&v).unwrap();
            prop_assert_eq!(got_id, id.as_deref().map(str::as_bytes));
            prop_assert_eq!(got_data, data.as_bytes());
        }
    }

    #[test]
    fn type_prefixes_do_not_overlap() {
        let a = type_prefix(&Service::default_service(), "ab");
        let b = type_prefix(&Service::default_service(), "abc");
        assert!(!b.starts_with(&a));
        let s = type_prefix(&Service::from_key("x"), "ab");
        assert!(!s.starts_with(&a) && !a.starts_with(&s));
    }
}
