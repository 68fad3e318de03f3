//! The metric cache of the embedded backend: bins in `metrics`, their
//! insertion order in `metric_log` (for the byte cap per type), the sources
//! cached per type in `metric_sources` (for invalidation).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use fjall::PersistMode;

use super::keys;
use super::{EmbeddedStore, corrupt, engine, fits};
use crate::model::Tenant;
use crate::storage::{CachedBin, DirtyMark, MetricCache, StoreError};
use crate::sync::lock;

/// Cache value: `valid(1) has_value(1) value(8) seq(8)`.
pub(super) fn encode_bin(valid: bool, value: Option<f64>, seq: u64) -> [u8; 18] {
    let mut v = [0u8; 18];
    v[0] = u8::from(valid);
    v[1] = u8::from(value.is_some());
    v[2..10].copy_from_slice(&value.unwrap_or(0.0).to_be_bytes());
    v[10..18].copy_from_slice(&seq.to_be_bytes());
    v
}

pub(super) fn decode_bin(v: &[u8]) -> Option<(bool, Option<f64>, u64)> {
    if v.len() != 18 {
        return None;
    }
    let value = f64::from_be_bytes(v[2..10].try_into().ok()?);
    let seq = u64::from_be_bytes(v[10..18].try_into().ok()?);
    Some((v[0] == 1, (v[1] == 1).then_some(value), seq))
}

/// Bytes one cache entry is charged: what it stores, its key and value in
/// `metrics` and its record in `metric_log` (key: type prefix of
/// `prefix_len` bytes and a sequence number; value: the metric key).
pub(super) fn entry_bytes(prefix_len: usize, metric_key_len: usize) -> u64 {
    (2 * metric_key_len + prefix_len + 8 + 18) as u64
}

pub(super) fn log_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
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
            let (valid, value, _) = decode_bin(&v).ok_or_else(|| corrupt("metric value"))?;
            if valid && time >= start && time < stop {
                out.push(CachedBin { time, value });
            }
        }
        Ok(out)
    }

    fn put(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
    ) -> Result<(), StoreError> {
        if bins.is_empty() {
            return Ok(());
        }
        let prefix = keys::type_prefix(tenant, event_type);
        let key_len = keys::metric_key(&prefix, tier, 0, source).len();
        fits(key_len, "metric source")?;
        let charge = entry_bytes(prefix.len(), key_len);
        self.check_space(2 * charge * bins.len() as u64)?;
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
        let fit = usize::try_from(cap / charge.max(1)).unwrap_or(usize::MAX);
        let bins = &bins[bins.len().saturating_sub(fit)..];
        if bins.is_empty() {
            return Ok(());
        }
        let adding = charge * bins.len() as u64;
        let before = entry.bytes;
        // Worked on a copy, kept only if the batch commits.
        let mut copy = *entry;
        let usage = &mut copy;
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        // Evict the oldest entries until the new ones fit.
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
                let (lk, mk) = item.into_inner().map_err(engine)?;
                let seq = u64::from_be_bytes(
                    lk[prefix.len()..]
                        .try_into()
                        .map_err(|_| corrupt("log key"))?,
                );
                usage.bytes = usage
                    .bytes
                    .saturating_sub(entry_bytes(prefix.len(), mk.len()));
                usage.first_seq = seq + 1;
                batch.remove(&self.metric_log, lk.to_vec());
                // Remove the entry only if this log record is its latest write.
                let current = self.metrics.get(&mk).map_err(engine)?;
                let latest_in_store = current
                    .as_deref()
                    .and_then(decode_bin)
                    .is_some_and(|(_, _, s)| s == seq);
                if latest_in_store {
                    batch.remove(&self.metrics, mk.to_vec());
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
        for bin in bins {
            let key = keys::metric_key(&prefix, tier, bin.time, source);
            let seq = usage.next_seq;
            usage.next_seq += 1;
            usage.bytes += charge;
            batch.insert(&self.metric_log, log_key(&prefix, seq), key.clone());
            batch.insert(
                &self.metrics,
                key,
                encode_bin(true, bin.value, seq).to_vec(),
            );
        }
        batch.commit().map_err(engine)?;
        *entry = copy;
        self.cache_total.store(
            total.saturating_sub(before).saturating_add(copy.bytes),
            Ordering::Relaxed,
        );
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        let mut usage = lock(&self.cache_usage);
        self.metrics.clear().map_err(engine)?;
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
        let _guard = lock(&self.cache_usage);
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for (tier, bin) in bins {
            for source in &sources {
                let key = keys::metric_key(&prefix, tier, bin, source);
                if let Some(v) = self.metrics.get(&key).map_err(engine)?
                    && let Some((true, value, seq)) = decode_bin(&v)
                {
                    batch.insert(&self.metrics, key, encode_bin(false, value, seq).to_vec());
                }
            }
        }
        for DirtyMark(m) in marks {
            batch.remove(&self.dirty, m.clone());
        }
        batch.commit().map_err(engine)
    }
}
