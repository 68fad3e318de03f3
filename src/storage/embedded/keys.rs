//! Byte layouts of the embedded backend's keys — pure. (The values of
//! event keys, blocks, are in [`super::blocks`].)
//!
//! Events are stored in blocks: the events of one put, one type and one hour
//! (the *bucket*) form one block. Block key: `tenant 0x00 type 0x00
//! bucket(8) run(8) seq(8)`, where `bucket` is the hour's start in
//! milliseconds with its sign bit flipped, big-endian, so keys sort by time;
//! `run` is unique per server run and `seq` counts blocks within it, so two
//! blocks never share a key. A time-range scan of one type is one contiguous
//! key range of buckets, forwards or backwards; one key holds many events, so
//! a scan pays the storage engine's per-item cost once per block, not once per
//! event. Tenant and type names never contain 0x00.

use crate::model::Tenant;

/// Bytes after the `tenant 0x00 type 0x00` prefix of a block key.
pub const EVENT_SUFFIX_LEN: usize = 24;

/// The time span of one bucket: an hour (the unit scans go forward by).
pub const BUCKET_MS: i64 = crate::storage::rows::HOUR_MS;

/// The bucket (hour start) of a time.
pub fn bucket(time: i64) -> i64 {
    crate::storage::rows::hour_of(time)
}

/// Order-preserving encoding of an i64.
pub fn encode_i64(x: i64) -> [u8; 8] {
    ((x as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn decode_i64(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// `tenant 0x00 type 0x00`
pub fn type_prefix(tenant: &Tenant, event_type: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.key().len() + event_type.len() + 2 + EVENT_SUFFIX_LEN);
    k.extend_from_slice(tenant.key().as_bytes());
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

/// Id index key: `tenant 0x00 type 0x00 id-json`.
pub fn id_key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + id.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Metric cache key: `tenant 0x00 type 0x00 tier(8) time(8) source`.
pub fn metric_key(prefix: &[u8], tier: i64, time: i64, source: &str) -> Vec<u8> {
    let mut k = metric_bin_prefix(prefix, tier, time);
    k.extend_from_slice(source.as_bytes());
    k
}

/// `tenant 0x00 type 0x00 tier(8) time(8)`: every source's entry for one bin.
pub fn metric_bin_prefix(prefix: &[u8], tier: i64, time: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16 + 64);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&encode_i64(tier));
    k.extend_from_slice(&encode_i64(time));
    k
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
            let p = type_prefix(&Tenant::default_tenant(), "test");
            let (k1, k2) = (block_key(&p, t1, 1, s1), block_key(&p, t2, 1, s2));
            if t1 != t2 {
                prop_assert_eq!(t1.cmp(&t2), k1.cmp(&k2));
            }
            prop_assert_eq!(block_bucket(&k1, p.len()), Some(t1));
            prop_assert!(k1.starts_with(&p));
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
        let a = type_prefix(&Tenant::default_tenant(), "ab");
        let b = type_prefix(&Tenant::default_tenant(), "abc");
        assert!(!b.starts_with(&a));
        let s = type_prefix(&Tenant::from_key("x"), "ab");
        assert!(!s.starts_with(&a) && !a.starts_with(&s));
    }
}
