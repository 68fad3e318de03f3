//! Retention and figures of the embedded backend: expiring whole hours of
//! a type's blocks (with the ids and tombstones that point into them),
//! giving their space back by compaction, per-type statistics, and the
//! retention overrides (keyspace `retention`).

use std::sync::atomic::Ordering;

use fjall::PersistMode;

use super::{EmbeddedStore, blocks, corrupt, engine, keys, type_key};
use crate::metric::TIERS;
use crate::model::Tenant;
use crate::storage::{Expired, RetentionOverride, StoreError, TypeStats};
use crate::sync::lock;

/// Blocks deleted per batch (the writer lock is taken per batch, so puts
/// wait at most one batch).
const EXPIRE_CHUNK: usize = 512;

impl EmbeddedStore {
    pub(super) fn expire_type(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<Expired, StoreError> {
        let prefix = keys::type_prefix(tenant, event_type);
        // A block holds one hour: those of hours that end by `before` hold
        // only older events.
        let cutoff = keys::bucket(before);
        let mut out = Expired {
            cutoff,
            ..Expired::default()
        };
        let end = keys::time_bound(&prefix, cutoff);
        loop {
            let mut chunk = Vec::with_capacity(EXPIRE_CHUNK);
            for item in self
                .events
                .range(prefix.clone()..end.clone())
                .take(EXPIRE_CHUNK)
            {
                chunk.push(item.into_inner().map_err(engine)?);
            }
            if chunk.is_empty() {
                break;
            }
            let _writer = lock(&self.writer);
            let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
            for (k, v) in &chunk {
                let block = blocks::Block::decode(v).ok_or_else(|| corrupt("event block"))?;
                let dead = self.tombstones(&prefix, k)?;
                for i in 0..block.len() {
                    if !dead.contains(i) {
                        out.events += 1;
                    }
                    let id = block.id(i).ok_or_else(|| corrupt("event block"))?;
                    if id.is_empty() {
                        continue;
                    }
                    let id = std::str::from_utf8(id).map_err(|_| corrupt("event id"))?;
                    let ik = keys::id_key(&prefix, id);
                    // Only if the id still names this block (a later put
                    // of the id moved it elsewhere).
                    if let Some(loc) = self.ids.get(&ik).map_err(engine)?
                        && keys::decode_id_location(&loc).is_some_and(|(_, _, b)| b == &k[..])
                    {
                        batch.remove(&self.ids, ik);
                    }
                }
                for t in self.deleted.prefix(k) {
                    batch.remove(&self.deleted, t.key().map_err(engine)?);
                }
                batch.remove(&self.events, k.clone());
                out.bytes += (k.len() + v.len()) as u64;
            }
            batch.commit().map_err(engine)?;
            if chunk.len() < EXPIRE_CHUNK {
                break;
            }
        }
        self.expired_bytes.fetch_add(out.bytes, Ordering::Relaxed);
        // Also when nothing expired now: a sweep that stopped after its
        // last batch (a crash, an error) left the type empty.
        out.type_removed = self.forget_if_empty(tenant, event_type, &prefix)?;
        Ok(out)
    }

    /// Forgets a type that has no blocks left (under the writer lock, so
    /// that no put adds one meanwhile): its entry in `types`, its ids and
    /// tombstones.
    fn forget_if_empty(
        &self,
        tenant: &Tenant,
        event_type: &str,
        prefix: &[u8],
    ) -> Result<bool, StoreError> {
        let _writer = lock(&self.writer);
        if self.events.prefix(prefix).next().is_some() {
            return Ok(false);
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        batch.remove(&self.types, type_key(tenant, event_type));
        for ks in [&self.ids, &self.deleted] {
            for item in ks.prefix(prefix) {
                batch.remove(ks, item.key().map_err(engine)?);
            }
        }
        batch.commit().map_err(engine)?;
        self.tombstoned.remove(prefix);
        let empty = match self.known_types.get_mut(tenant.key()) {
            Some(mut set) => {
                set.remove(event_type);
                set.is_empty()
            }
            None => false,
        };
        if empty {
            self.known_types
                .remove_if(tenant.key(), |_, set| set.is_empty());
        }
        Ok(true)
    }

    /// Compacts `events` once what expired since the last compaction is
    /// about a quarter of what it holds (a major compaction rewrites the
    /// keyspace, dropping what was deleted; hence the threshold). Expired
    /// bytes are counted uncompressed and the disk holds them compressed,
    /// about 4 to 1 for event blocks: the threshold is expired bytes
    /// reaching the keyspace's size on disk.
    pub(super) fn reclaim_space(&self) -> Result<(), StoreError> {
        let expired = self.expired_bytes.load(Ordering::Relaxed);
        if expired == 0 {
            return Ok(());
        }
        let on_disk = self.events.disk_space();
        if expired < on_disk {
            return Ok(());
        }
        self.expired_bytes.store(0, Ordering::Relaxed);
        let started = std::time::Instant::now();
        // Every keyspace's memtable written out, so that the journal that
        // still held the deleted blocks can go too.
        for ks in [
            &self.events,
            &self.ids,
            &self.deleted,
            &self.types,
            &self.dirty,
            &self.metrics,
            &self.metric_log,
            &self.metric_sources,
            &self.retention,
        ] {
            ks.rotate_memtable_and_wait().map_err(engine)?;
        }
        self.events.major_compact().map_err(engine)?;
        tracing::info!(
            expired_bytes = expired,
            before = on_disk,
            after = self.events.disk_space(),
            ms = started.elapsed().as_millis() as u64,
            "compacted the events after retention"
        );
        Ok(())
    }

    pub(super) fn type_stats(&self, tenant: &Tenant) -> Result<Vec<TypeStats>, StoreError> {
        let types: Vec<String> = self
            .known_types
            .get(tenant.key())
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(types.len());
        for event_type in types {
            let prefix = keys::type_prefix(tenant, &event_type);
            let mut s = TypeStats {
                event_type,
                events: 0,
                bytes: 0,
                oldest: None,
            };
            // The oldest live event is in the first bucket that has one.
            let mut oldest_bucket: Option<i64> = None;
            for item in self.events.prefix(&prefix) {
                let (k, v) = item.into_inner().map_err(engine)?;
                let block = blocks::Block::decode(&v).ok_or_else(|| corrupt("event block"))?;
                let dead = self.tombstones(&prefix, &k)?;
                let bucket =
                    keys::block_bucket(&k, prefix.len()).ok_or_else(|| corrupt("block key"))?;
                s.bytes += (k.len() + v.len()) as u64;
                for i in 0..block.len() {
                    if dead.contains(i) {
                        continue;
                    }
                    s.events += 1;
                    if oldest_bucket.is_none_or(|b| b == bucket) {
                        let t = block.time(i);
                        s.oldest = Some(s.oldest.map_or(t, |o| o.min(t)));
                        oldest_bucket = Some(bucket);
                    }
                }
            }
            out.push(s);
        }
        Ok(out)
    }

    pub(super) fn read_retention(&self) -> Result<Vec<RetentionOverride>, StoreError> {
        let mut out = Vec::new();
        for item in self.retention.iter() {
            let (k, v) = item.into_inner().map_err(engine)?;
            let key = std::str::from_utf8(&k).map_err(|_| corrupt("retention key"))?;
            let (tenant, event_type) = key
                .split_once('\0')
                .ok_or_else(|| corrupt("retention key"))?;
            let horizon = std::str::from_utf8(&v).map_err(|_| corrupt("retention value"))?;
            out.push(RetentionOverride {
                tenant: Tenant::from_key(tenant),
                event_type: (!event_type.is_empty()).then(|| event_type.to_owned()),
                horizon: horizon.to_owned(),
            });
        }
        Ok(out)
    }

    pub(super) fn write_retention(
        &self,
        tenant: &Tenant,
        event_type: Option<&str>,
        horizon: Option<&str>,
    ) -> Result<(), StoreError> {
        let key = type_key(tenant, event_type.unwrap_or(""));
        super::fits(key.len(), "event type")?;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        match horizon {
            Some(h) => {
                self.check_space(4096)?;
                batch.insert(&self.retention, key, h.as_bytes().to_vec());
            }
            None => batch.remove(&self.retention, key),
        }
        batch.commit().map_err(engine)
    }

    /// Drops the cached bins of one type before `before`, at every tier.
    pub(super) fn expire_cached_bins(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<u64, StoreError> {
        let prefix = keys::type_prefix(tenant, event_type);
        let _guard = lock(&self.cache_usage);
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        let mut n = 0u64;
        for tier in TIERS {
            let lo = keys::metric_bin_prefix(&prefix, tier, i64::MIN);
            let hi = keys::metric_bin_prefix(&prefix, tier, before);
            for item in self.metrics.range(lo..hi) {
                batch.remove(&self.metrics, item.key().map_err(engine)?);
                n += 1;
            }
        }
        // Their records in `metric_log` stay charged to the type's cap
        // until eviction reaches them (it skips records whose entry is gone).
        batch.commit().map_err(engine)?;
        lock(&self.memo).forget_type(&prefix);
        Ok(n)
    }
}
