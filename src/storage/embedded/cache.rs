//! The metric cache of the embedded backend: bins in `metrics`, their
//! insertion order in `metric_log` (for the byte cap per type), the sources
//! cached per type in `metric_sources` (for invalidation).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;

use fjall::PersistMode;

use super::keys;
use super::memo::Lookup;
use super::{EmbeddedStore, corrupt, engine, fits};
use crate::model::Tenant;
use crate::storage::{CachedBin, CachedGroups, DirtyMark, MetricCache, StoreError};
use crate::sync::lock;

/// Cache value: `valid(1) has_value(1) value(8) seq(8)`; a grouped bin's
/// has `has_value` 2 and then its groups (see [`encode_grouped`]).
pub(super) fn encode_bin(valid: bool, value: Option<f64>, seq: u64) -> [u8; 18] {
    let mut v = [0u8; 18];
    v[0] = u8::from(valid);
    v[1] = u8::from(value.is_some());
    v[2..10].copy_from_slice(&value.unwrap_or(0.0).to_be_bytes());
    v[10..18].copy_from_slice(&seq.to_be_bytes());
    v
}

/// `(valid, value, seq)` of an entry (a grouped bin's value is `None`).
pub(super) fn decode_bin(v: &[u8]) -> Option<(bool, Option<f64>, u64)> {
    if v.len() < 18 || (v.len() > 18) != (v[1] == GROUPED) {
        return None;
    }
    let value = f64::from_be_bytes(v[2..10].try_into().ok()?);
    let seq = u64::from_be_bytes(v[10..18].try_into().ok()?);
    Some((v[0] == 1, (v[1] == 1).then_some(value), seq))
}

/// A grouped bin's groups and their values.
type Groups = Vec<(String, Option<f64>)>;

/// `has_value` of a grouped bin.
const GROUPED: u8 = 2;

/// Bytes of a grouped bin's groups once encoded.
fn groups_len(groups: &[(String, Option<f64>)]) -> usize {
    4 + groups.iter().map(|(g, _)| 4 + g.len() + 9).sum::<usize>()
}

/// A grouped bin: the header, `count(4)`, then per group `len(4) name
/// has_value(1) value(8)`.
pub(super) fn encode_grouped(valid: bool, groups: &[(String, Option<f64>)], seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(18 + groups_len(groups));
    v.extend_from_slice(&encode_bin(valid, None, seq));
    v[1] = GROUPED;
    v.extend_from_slice(&(groups.len() as u32).to_be_bytes());
    for (g, value) in groups {
        v.extend_from_slice(&(g.len() as u32).to_be_bytes());
        v.extend_from_slice(g.as_bytes());
        v.push(u8::from(value.is_some()));
        v.extend_from_slice(&value.unwrap_or(0.0).to_be_bytes());
    }
    v
}

/// `(valid, groups)` of a grouped bin.
pub(super) fn decode_grouped(v: &[u8]) -> Option<(bool, Groups)> {
    if v.len() < 22 || v[1] != GROUPED {
        return None;
    }
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = v.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    let mut at = 18;
    let count = u32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
    let mut groups = Vec::with_capacity(count.min(v.len() / 13));
    for _ in 0..count {
        let len = u32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(&mut at, len)?).ok()?.to_owned();
        let has = take(&mut at, 1)?[0] == 1;
        let x = f64::from_be_bytes(take(&mut at, 8)?.try_into().ok()?);
        groups.push((name, has.then_some(x)));
    }
    (at == v.len()).then_some((v[0] == 1, groups))
}

/// The same entry marked invalid, whatever its kind.
pub(super) fn invalidated(v: &[u8]) -> Vec<u8> {
    let mut v = v.to_vec();
    if let Some(flag) = v.first_mut() {
        *flag = 0;
    }
    v
}

/// Bytes one cache entry is charged: what it stores, its key and value in
/// `metrics` and its record in `metric_log` (key: type prefix of
/// `prefix_len` bytes and a sequence number; value: the metric key).
pub(super) fn entry_bytes(prefix_len: usize, metric_key_len: usize) -> u64 {
    (2 * metric_key_len + prefix_len + 8 + 18) as u64
}

/// A `metric_log` record's value: the metric key, and for a grouped bin the
/// bytes of its groups (`len(4)` and a final `0xff`, which no metric key
/// ends with: keys end with a source's UTF-8 text).
pub(super) fn log_value(metric_key: &[u8], groups_bytes: usize) -> Vec<u8> {
    let mut v = metric_key.to_vec();
    if groups_bytes > 0 {
        v.extend_from_slice(&(groups_bytes as u32).to_be_bytes());
        v.push(0xff);
    }
    v
}

/// The metric key a `metric_log` record names, and what its entry was charged.
pub(super) fn log_record(prefix_len: usize, value: &[u8]) -> (&[u8], u64) {
    match value.split_last() {
        Some((0xff, rest)) if rest.len() >= 4 => {
            let (mk, len) = rest.split_at(rest.len() - 4);
            let extra = len.try_into().map(u32::from_be_bytes).unwrap_or(0);
            (mk, entry_bytes(prefix_len, mk.len()) + 2 * u64::from(extra))
        }
        _ => (value, entry_bytes(prefix_len, value.len())),
    }
}

/// `(source, tier, time)` of a metric key whose type prefix is `prefix_len` bytes.
fn key_bin(prefix_len: usize, key: &[u8]) -> Option<(String, i64, i64)> {
    let tier = keys::decode_i64(key.get(prefix_len..)?)?;
    let time = keys::decode_i64(key.get(prefix_len + 8..)?)?;
    let source = std::str::from_utf8(key.get(prefix_len + 16..)?).ok()?;
    Some((source.to_owned(), tier, time))
}

pub(super) fn log_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[cfg(test)]
thread_local! {
    /// Run once by the next `get` of this thread between its scan and the
    /// memo: the tests' way to commit a write during a scan.
    static AFTER_SCAN: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

/// What one cached entry holds.
enum Entry<'a> {
    Plain(Option<f64>),
    Grouped(&'a [(String, Option<f64>)]),
}

impl Entry<'_> {
    fn groups_bytes(&self) -> usize {
        match self {
            Entry::Plain(_) => 0,
            Entry::Grouped(g) => groups_len(g),
        }
    }

    fn encode(&self, seq: u64) -> Vec<u8> {
        match self {
            Entry::Plain(v) => encode_bin(true, *v, seq).to_vec(),
            Entry::Grouped(g) => encode_grouped(true, g, seq),
        }
    }
}

impl EmbeddedStore {
    /// The valid entries of `source` at `tier` with `start <= time < stop`,
    /// by time, decoded with `decode` (`(valid, what)`; `None`: corrupt).
    #[allow(clippy::too_many_arguments)]
    fn valid_entries<T>(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
        decode: impl Fn(&[u8]) -> Option<(bool, T)>,
    ) -> Result<Vec<(i64, T)>, StoreError> {
        let mut out = Vec::new();
        if start >= stop {
            return Ok(out);
        }
        let prefix = keys::type_prefix(tenant, event_type);
        let lo = keys::metric_key(&prefix, tier, start, source);
        let hi = keys::metric_key(&prefix, tier, stop, source);
        // One source's bins are interleaved with other sources' in the same
        // bins; the per-type source count is small.
        let tail_start = keys::metric_bin_prefix(&prefix, tier, 0).len();
        for item in self.metrics.range(lo..hi) {
            let (k, v) = item.into_inner().map_err(engine)?;
            if k.get(tail_start..) != Some(source.as_bytes()) {
                continue;
            }
            let time =
                keys::decode_i64(&k[tail_start - 8..]).ok_or_else(|| corrupt("metric key"))?;
            let (valid, what) = decode(&v).ok_or_else(|| corrupt("metric value"))?;
            if valid && time >= start && time < stop {
                out.push((time, what));
            }
        }
        Ok(out)
    }

    /// Stores entries (or overwrites them, as valid), as many of the newest
    /// as fit the type's cap; the oldest entries go to make room.
    fn put_entries(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[(i64, Entry)],
    ) -> Result<(), StoreError> {
        if bins.is_empty() {
            return Ok(());
        }
        let prefix = keys::type_prefix(tenant, event_type);
        let key_len = keys::metric_key(&prefix, tier, 0, source).len();
        fits(key_len, "metric source")?;
        let base = entry_bytes(prefix.len(), key_len);
        // A grouped entry is charged its groups twice: in `metrics`, and as
        // written to the journal.
        let charge = |e: &Entry| base + 2 * e.groups_bytes() as u64;
        let all: u64 = bins.iter().map(|(_, e)| charge(e)).sum();
        self.check_space(2 * all)?;
        let mut usage_map = lock(&self.cache_usage);
        let new_source = !self
            .sources
            .get(&prefix)
            .is_some_and(|s| s.contains(source));
        if new_source
            && self
                .tenant_sources
                .get(tenant.key())
                .is_some_and(|n| *n >= self.max_sources.load(Ordering::Relaxed))
        {
            // Beyond --max-cached-expressions: computed, not cached.
            return Ok(());
        }
        let entry = usage_map.entry(prefix.clone()).or_default();
        // The type's cap, and no more than the total budget leaves it.
        let total = self.cache_total.load(Ordering::Relaxed);
        let budget = self.cache_budget.load(Ordering::Relaxed);
        let cap = self
            .cache_cap
            .min(entry.bytes.saturating_add(budget.saturating_sub(total)));
        // The newest bins that fit the cap: one put never overfills it.
        let mut adding = 0u64;
        let mut fit = 0;
        for (_, e) in bins.iter().rev() {
            if adding + charge(e) > cap {
                break;
            }
            adding += charge(e);
            fit += 1;
        }
        let bins = &bins[bins.len() - fit..];
        if bins.is_empty() {
            return Ok(());
        }
        let before = entry.bytes;
        // Worked on a copy, kept only if the batch commits.
        let mut copy = *entry;
        let usage = &mut copy;
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        // Evict the oldest entries until the new ones fit.
        let mut evicted: Vec<Option<(String, i64, i64)>> = Vec::new();
        if usage.bytes + adding > cap {
            let mut end = prefix.clone();
            end.extend_from_slice(&[0xff; 9]);
            for item in self
                .metric_log
                .range(log_key(&prefix, usage.first_seq)..end)
            {
                if usage.bytes + adding <= cap {
                    break;
                }
                let (lk, record) = item.into_inner().map_err(engine)?;
                let seq = u64::from_be_bytes(
                    lk[prefix.len()..]
                        .try_into()
                        .map_err(|_| corrupt("log key"))?,
                );
                let (mk, charged) = log_record(prefix.len(), &record);
                usage.bytes = usage.bytes.saturating_sub(charged);
                usage.first_seq = seq + 1;
                batch.remove(&self.metric_log, lk.to_vec());
                // Remove the entry only if this log record is its latest write.
                let current = self.metrics.get(mk).map_err(engine)?;
                let latest_in_store = current
                    .as_deref()
                    .and_then(decode_bin)
                    .is_some_and(|(_, _, s)| s == seq);
                if latest_in_store {
                    batch.remove(&self.metrics, mk.to_vec());
                    evicted.push(key_bin(prefix.len(), mk));
                }
            }
        }
        if new_source {
            *self
                .tenant_sources
                .entry(tenant.key().to_owned())
                .or_default() += 1;
            let mut k = prefix.clone();
            k.extend_from_slice(source.as_bytes());
            batch.insert(&self.metric_sources, k, Vec::<u8>::new());
            self.sources
                .entry(prefix.clone())
                .or_default()
                .insert(source.to_owned());
        }
        for (time, entry) in bins {
            let key = keys::metric_key(&prefix, tier, *time, source);
            let seq = usage.next_seq;
            usage.next_seq += 1;
            usage.bytes += charge(entry);
            batch.insert(
                &self.metric_log,
                log_key(&prefix, seq),
                log_value(&key, entry.groups_bytes()),
            );
            batch.insert(&self.metrics, key, entry.encode(seq));
        }
        batch.commit().map_err(engine)?;
        {
            let mut memo = lock(&self.memo);
            // One removal per source evicted from, not one per bin (each
            // walks the type's runs).
            let mut by_source: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
            for bin in &evicted {
                match bin {
                    Some((src, tier, time)) => {
                        by_source.entry(src).or_default().push((*tier, *time))
                    }
                    // A key not read back (never written so): nothing of the type is trusted.
                    None => memo.forget_type(&prefix),
                }
            }
            for (src, bins) in by_source {
                memo.remove(&prefix, Some(src), &bins);
            }
            let put: Vec<CachedBin> = bins
                .iter()
                .map(|(time, e)| CachedBin {
                    time: *time,
                    // As a plain read decodes it: a grouped bin has no value.
                    value: match e {
                        Entry::Plain(v) => *v,
                        Entry::Grouped(_) => None,
                    },
                })
                .collect();
            memo.put(&prefix, source, tier, &put);
        }
        *entry = copy;
        self.cache_total.store(
            total.saturating_sub(before).saturating_add(copy.bytes),
            Ordering::Relaxed,
        );
        Ok(())
    }
}

impl MetricCache for EmbeddedStore {
    fn get(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
    ) -> Result<Vec<CachedBin>, StoreError> {
        let prefix = keys::type_prefix(tenant, event_type);
        let generation = match lock(&self.memo).lookup(&prefix, source, tier, start, stop) {
            Lookup::Hit(bins) => return Ok(bins),
            Lookup::Miss(generation) => generation,
        };
        let bins: Vec<CachedBin> = self
            .valid_entries(tenant, event_type, source, tier, start, stop, |v| {
                let (valid, value, _) = decode_bin(v)?;
                Some((valid, CachedBin { time: 0, value }))
            })?
            .into_iter()
            .map(|(time, b)| CachedBin { time, ..b })
            .collect();
        #[cfg(test)]
        if let Some(write) = AFTER_SCAN.with(|h| h.borrow_mut().take()) {
            write();
        }
        lock(&self.memo).keep(&prefix, source, tier, start, stop, generation, &bins);
        Ok(bins)
    }

    fn put(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
    ) -> Result<(), StoreError> {
        let entries: Vec<(i64, Entry)> = bins
            .iter()
            .map(|b| (b.time, Entry::Plain(b.value)))
            .collect();
        self.put_entries(tenant, event_type, source, tier, &entries)
    }

    fn get_grouped(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
    ) -> Result<Vec<CachedGroups>, StoreError> {
        self.valid_entries(
            tenant,
            event_type,
            source,
            tier,
            start,
            stop,
            decode_grouped,
        )
        .map(|bins| {
            bins.into_iter()
                .map(|(time, groups)| CachedGroups { time, groups })
                .collect()
        })
    }

    fn put_grouped(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedGroups],
    ) -> Result<(), StoreError> {
        let entries: Vec<(i64, Entry)> = bins
            .iter()
            .map(|b| (b.time, Entry::Grouped(&b.groups)))
            .collect();
        self.put_entries(tenant, event_type, source, tier, &entries)
    }

    fn clear(&self) -> Result<(), StoreError> {
        let mut usage = lock(&self.cache_usage);
        // Whatever part of the clear is done, the memo holds none of it.
        let cleared = self.metrics.clear().map_err(engine);
        lock(&self.memo).forget_all();
        cleared?;
        self.metric_log.clear().map_err(engine)?;
        self.metric_sources.clear().map_err(engine)?;
        usage.clear();
        self.sources.clear();
        self.tenant_sources.clear();
        self.cache_total.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn clear_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut usage = lock(&self.cache_usage);
        let mut prefix = tenant.key().as_bytes().to_vec();
        prefix.push(0);
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for ks in [&self.metrics, &self.metric_log, &self.metric_sources] {
            for item in ks.prefix(&prefix) {
                batch.remove(ks, item.key().map_err(engine)?);
            }
        }
        batch.commit().map_err(engine)?;
        lock(&self.memo).forget_all();
        usage.retain(|k, _| !k.starts_with(&prefix));
        self.sources.retain(|k, _| !k.starts_with(&prefix));
        self.tenant_sources.remove(tenant.key());
        self.cache_total
            .store(usage.values().map(|u| u.bytes).sum(), Ordering::Relaxed);
        Ok(())
    }

    fn expire_bins(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<u64, StoreError> {
        self.expire_cached_bins(tenant, event_type, before)
    }

    fn invalidate(
        &self,
        tenant: &Tenant,
        event_type: &str,
        tiers: &[i64],
        times: &[i64],
        marks: &[DirtyMark],
    ) -> Result<(), StoreError> {
        let prefix = keys::type_prefix(tenant, event_type);
        // The sources as of now, under the lock that puts of a new source
        // hold: none of them can add a bin this misses.
        let _guard = lock(&self.cache_usage);
        let sources = self
            .sources
            .get(&prefix)
            .map(|s| s.clone())
            .unwrap_or_default();
        let mut bins: BTreeSet<(i64, i64)> = BTreeSet::new();
        if !sources.is_empty() {
            for &tier in tiers.iter().filter(|t| **t > 0) {
                for &t in times {
                    bins.insert((tier, t - t.rem_euclid(tier)));
                }
            }
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        let mut changed = Vec::new();
        for (tier, bin) in bins {
            let mut any = false;
            for source in &sources {
                let key = keys::metric_key(&prefix, tier, bin, source);
                if let Some(v) = self.metrics.get(&key).map_err(engine)?
                    && let Some((true, _, _)) = decode_bin(&v)
                {
                    batch.insert(&self.metrics, key, invalidated(&v));
                    any = true;
                }
            }
            // Listed once: the memo drops it from every source's run.
            if any {
                changed.push((tier, bin));
            }
        }
        for DirtyMark(m) in marks {
            batch.remove(&self.dirty, m.clone());
        }
        batch.commit().map_err(engine)?;
        if !changed.is_empty() {
            lock(&self.memo).remove(&prefix, None, &changed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::storage::embedded::Durability;

    const TIERS: [i64; 2] = [10_000, 60_000];
    const SOURCES: [&str; 2] = ["sum(a)", "max(a(x))"];

    #[derive(Debug, Clone)]
    enum Op {
        Put {
            source: usize,
            tier: usize,
            first: i64,
            n: i64,
            value: Option<i32>,
        },
        PutGrouped {
            source: usize,
            tier: usize,
            at: i64,
        },
        Invalidate(Vec<i64>),
        Get {
            source: usize,
            tier: usize,
            first: i64,
            n: i64,
        },
        Expire(i64),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..2usize, 0..2usize, 0..40i64, 1..20i64, proptest::option::of(-5..5i32))
                .prop_map(|(source, tier, first, n, value)| Op::Put { source, tier, first, n, value }),
            1 => (0..2usize, 0..2usize, 0..40i64)
                .prop_map(|(source, tier, at)| Op::PutGrouped { source, tier, at }),
            2 => proptest::collection::vec(0..2_400_000i64, 0..4).prop_map(Op::Invalidate),
            6 => (0..2usize, 0..2usize, 0..40i64, 1..40i64)
                .prop_map(|(source, tier, first, n)| Op::Get { source, tier, first, n }),
            1 => (0..2_400_000i64).prop_map(Op::Expire),
            1 => Just(Op::Clear),
        ]
    }

    /// What the store holds, read past the memo.
    fn scanned(
        s: &EmbeddedStore,
        t: &Tenant,
        src: &str,
        tier: i64,
        lo: i64,
        hi: i64,
    ) -> Vec<CachedBin> {
        s.valid_entries(t, "a", src, tier, lo, hi, |v| {
            let (valid, value, _) = decode_bin(v)?;
            Some((valid, value))
        })
        .expect("scan")
        .into_iter()
        .map(|(time, value)| CachedBin { time, value })
        .collect()
    }

    /// A write that commits while a read scans (run from the test hook
    /// between the scan and the memo): the read's scan is not kept.
    fn write_during_the_next_scan(write: impl FnOnce() + 'static) {
        AFTER_SCAN.with(|h| *h.borrow_mut() = Some(Box::new(write)));
    }

    /// Bins 0 to 9 of `step`, each valued its index.
    fn ten_bins(step: i64) -> Vec<CachedBin> {
        (0..10)
            .map(|i| CachedBin {
                time: i * step,
                value: Some(i as f64),
            })
            .collect()
    }

    #[test]
    fn a_scan_raced_by_an_invalidation_is_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = std::sync::Arc::new(
            EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).expect("open"),
        );
        let t = Tenant::default_tenant();
        let step = TIERS[0];
        let bins = ten_bins(step);
        s.put(&t, "a", SOURCES[0], step, &bins).expect("put");
        let (s2, t2) = (s.clone(), t.clone());
        write_during_the_next_scan(move || {
            s2.invalidate(&t2, "a", &TIERS, &[5 * step], &[])
                .expect("invalidate");
        });
        let raced = s.get(&t, "a", SOURCES[0], step, 0, 10 * step).expect("get");
        assert_eq!(raced, bins, "the scan ran before the invalidation");
        for _ in 0..2 {
            let got = s.get(&t, "a", SOURCES[0], step, 0, 10 * step).expect("get");
            assert_eq!(got.len(), 9);
            assert_eq!(got, scanned(&s, &t, SOURCES[0], step, 0, 10 * step));
        }
    }

    #[test]
    fn a_scan_raced_by_a_clear_is_not_kept_even_of_a_type_the_memo_never_saw() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Tenant::default_tenant();
        let step = TIERS[0];
        let bins = ten_bins(step);
        {
            let s = EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).expect("open");
            s.put(&t, "a", SOURCES[0], step, &bins).expect("put");
        }
        // Reopened: the bins are there, the memo knows nothing of them.
        let s = std::sync::Arc::new(
            EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).expect("reopen"),
        );
        let (s2, t2) = (s.clone(), t.clone());
        write_during_the_next_scan(move || s2.clear_tenant(&t2).expect("clear"));
        let raced = s.get(&t, "a", SOURCES[0], step, 0, 10 * step).expect("get");
        assert_eq!(raced, bins);
        let got = s.get(&t, "a", SOURCES[0], step, 0, 10 * step).expect("get");
        assert_eq!(got, Vec::new());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever writes come (puts that evict under a small cap,
        /// invalidations, expiries, clears), every read through the memo
        /// answers exactly what the store holds.
        #[test]
        fn reads_through_the_memo_answer_what_the_store_holds(
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            // Room for a few dozen bins: puts evict.
            let s = EmbeddedStore::open(dir.path(), Durability::Process, 4_000).expect("open");
            let t = Tenant::default_tenant();
            for op in ops {
                match op {
                    Op::Put { source, tier, first, n, value } => {
                        let step = TIERS[tier];
                        let bins: Vec<CachedBin> = (first..first + n)
                            .map(|i| CachedBin { time: i * step, value: value.map(|v| f64::from(v) + i as f64) })
                            .collect();
                        s.put(&t, "a", SOURCES[source], step, &bins).expect("put");
                    }
                    Op::PutGrouped { source, tier, at } => {
                        let step = TIERS[tier];
                        let g = CachedGroups { time: at * step, groups: vec![("g".into(), Some(1.0))] };
                        s.put_grouped(&t, "a", SOURCES[source], step, &[g]).expect("put grouped");
                    }
                    Op::Invalidate(times) => {
                        s.invalidate(&t, "a", &TIERS, &times, &[]).expect("invalidate");
                    }
                    Op::Get { source, tier, first, n } => {
                        let step = TIERS[tier];
                        let (lo, hi) = (first * step, (first + n) * step);
                        let got = s.get(&t, "a", SOURCES[source], step, lo, hi).expect("get");
                        prop_assert_eq!(got, scanned(&s, &t, SOURCES[source], step, lo, hi));
                    }
                    Op::Expire(before) => {
                        s.expire_bins(&t, "a", before).expect("expire");
                    }
                    Op::Clear => s.clear_tenant(&t).expect("clear"),
                }
                // Every run the memo holds agrees with the store.
                for src in SOURCES {
                    for step in TIERS {
                        let got = s.get(&t, "a", src, step, 0, 60 * step).expect("get");
                        prop_assert_eq!(got, scanned(&s, &t, src, step, 0, 60 * step));
                    }
                }
            }
        }
    }
}
