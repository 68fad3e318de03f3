//! Batched invalidation of cached metric bins.
//!
//! Every acknowledged put records the times it wrote (and the old times of
//! upserted events) per tenant and type, with the dirty marks the store
//! wrote in the same atomic batch as the events. Pending times are flushed
//! to the metric cache — marking invalid the bins of every tier that contain
//! them and removing their marks, atomically — every invalidation interval,
//! and also right before a query reads the cache of that type, so a query
//! always sees every acknowledged event. A flush that fails keeps what it
//! could not apply. A crash between a put and its flush leaves the marks,
//! and the store invalidates their bins when it opens again: no cached bin
//! is served stale after a crash at any instant.
//!
//! A bin computed while a put to its range was in flight must not be cached as
//! valid: each type keeps a generation counter and a short log of the time
//! ranges written per generation. [`Invalidator::cache_unless_dirty`] checks
//! that log and writes the bins under the type's lock, so no put can record
//! (and no flush can run for it) between the check and the write; a flush
//! also holds the type's lock until its invalidations are written, so a
//! query never reads the cache while a flush of its type is under way.
//! Lock order: a type's lock, then the store's own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::metric::TIERS;
use crate::model::Tenant;
use crate::storage::{DirtyMark, MetricCache, PutOutcome, StoreError};
use crate::sync::lock;

/// How many write ranges each type remembers for the dirty check.
const LOG_LEN: usize = 4096;

#[derive(Default)]
struct TypeState {
    generation: u64,
    pending: Vec<i64>,
    marks: Vec<DirtyMark>,
    /// (generation, min time, max time) of recent writes, oldest first.
    log: VecDeque<(u64, i64, i64)>,
}

impl TypeState {
    /// Whether anything in `[lo, hi)` was written after `generation`.
    fn dirty_since(&self, generation: u64, lo: i64, hi: i64) -> bool {
        if self.generation == generation {
            return false;
        }
        // Forgotten generations might have touched the range: assume they did.
        if self.log.front().is_none_or(|(g, _, _)| *g > generation + 1) {
            return true;
        }
        self.log
            .iter()
            .any(|(g, min, max)| *g > generation && *min < hi && *max >= lo)
    }
}

type Key = (Tenant, String);

pub struct Invalidator {
    cache: Arc<dyn MetricCache>,
    types: Mutex<HashMap<Key, Arc<Mutex<TypeState>>>>,
}

impl Invalidator {
    pub fn new(cache: Arc<dyn MetricCache>) -> Self {
        Invalidator {
            cache,
            types: Mutex::default(),
        }
    }

    fn state(&self, tenant: &Tenant, event_type: &str) -> Arc<Mutex<TypeState>> {
        let mut types = lock(&self.types);
        Arc::clone(
            types
                .entry((tenant.clone(), event_type.to_owned()))
                .or_default(),
        )
    }

    /// Records what a put wrote (called before the put is acknowledged).
    pub fn record(&self, tenant: &Tenant, outcome: &PutOutcome) {
        let mut touched: HashMap<&str, (Vec<i64>, Vec<DirtyMark>)> = HashMap::new();
        for (t, times) in &outcome.written {
            touched.entry(t).or_default().0.extend_from_slice(times);
        }
        for (t, time) in &outcome.replaced {
            touched.entry(t).or_default().0.push(*time);
        }
        for (t, mark) in &outcome.marks {
            touched.entry(t).or_default().1.push(mark.clone());
        }
        for (event_type, (times, marks)) in touched {
            let state = self.state(tenant, event_type);
            let mut st = lock(&state);
            if let (Some(lo), Some(hi)) = (times.iter().min(), times.iter().max()) {
                st.generation += 1;
                let g = st.generation;
                st.log.push_back((g, *lo, *hi));
                if st.log.len() > LOG_LEN {
                    st.log.pop_front();
                }
            }
            st.pending.extend_from_slice(&times);
            st.marks.extend(marks);
        }
    }

    /// The type's current generation (read before computing bins).
    /// Does not remember a type it has not seen (queries of made-up
    /// types must not grow this map): an unseen type is at generation 0,
    /// and its first put makes it 1.
    pub fn generation(&self, tenant: &Tenant, event_type: &str) -> u64 {
        let state = lock(&self.types)
            .get(&(tenant.clone(), event_type.to_owned()))
            .map(Arc::clone);
        state.map_or(0, |s| lock(&s).generation)
    }

    /// The type's generation now, and the time ranges `[min, max]` (both
    /// inclusive) written after `generation`: `None` when the log no longer
    /// reaches back that far (anything may have been written). Does not
    /// remember a type it has not seen.
    pub fn written_since(
        &self,
        tenant: &Tenant,
        event_type: &str,
        generation: u64,
    ) -> (u64, Option<Vec<(i64, i64)>>) {
        let state = lock(&self.types)
            .get(&(tenant.clone(), event_type.to_owned()))
            .map(Arc::clone);
        let Some(state) = state else {
            return (0, Some(Vec::new()));
        };
        let st = lock(&state);
        if st.generation == generation {
            return (generation, Some(Vec::new()));
        }
        if st.log.front().is_none_or(|(g, _, _)| *g > generation + 1) {
            return (st.generation, None);
        }
        let ranges = st
            .log
            .iter()
            .filter(|(g, _, _)| *g > generation)
            .map(|&(_, lo, hi)| (lo, hi))
            .collect();
        (st.generation, Some(ranges))
    }

    /// Drops the type's cached bins before `before` (retention deleted the
    /// events they summarise), under the type's lock and as a write of
    /// everything before `before`: a bin computed from the deleted events
    /// and cached after this is refused by [`cache_unless_dirty`], one
    /// cached before is dropped here. The number dropped.
    pub fn expire_bins(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<u64, StoreError> {
        let state = self.state(tenant, event_type);
        let mut st = lock(&state);
        st.generation += 1;
        let g = st.generation;
        st.log.push_back((g, i64::MIN, before.saturating_sub(1)));
        if st.log.len() > LOG_LEN {
            st.log.pop_front();
        }
        self.cache.expire_bins(tenant, event_type, before)
    }

    /// Runs `write` (the cache write of bins of `[lo, hi)` computed from the
    /// events as of `generation`) unless a put touched that range since,
    /// holding the type's lock throughout. Whether it wrote.
    pub fn cache_unless_dirty(
        &self,
        tenant: &Tenant,
        event_type: &str,
        generation: u64,
        lo: i64,
        hi: i64,
        write: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let state = self.state(tenant, event_type);
        let st = lock(&state);
        if st.dirty_since(generation, lo, hi) {
            return Ok(false);
        }
        write()?;
        drop(st);
        Ok(true)
    }

    /// Flushes the pending invalidations of one type (before a query reads its cache).
    pub fn flush_type(&self, tenant: &Tenant, event_type: &str) -> Result<(), StoreError> {
        let state = self.state(tenant, event_type);
        self.flush(tenant, event_type, &state)
    }

    /// Flushes every pending invalidation (the periodic batch). A type whose
    /// flush fails keeps its pending work, and the others are still flushed;
    /// the first error is returned.
    pub fn flush_all(&self) -> Result<(), StoreError> {
        let all: Vec<(Key, Arc<Mutex<TypeState>>)> = lock(&self.types)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut first_error = None;
        for ((tenant, event_type), state) in all {
            if let Err(e) = self.flush(&tenant, &event_type, &state) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Applies the type's pending invalidations, holding its lock until
    /// they are in the cache: a query's flush that finds nothing pending
    /// must not read the cache while another flush is still writing.
    fn flush(
        &self,
        tenant: &Tenant,
        event_type: &str,
        state: &Mutex<TypeState>,
    ) -> Result<(), StoreError> {
        let mut st = lock(state);
        if st.pending.is_empty() && st.marks.is_empty() {
            return Ok(());
        }
        let mut times = std::mem::take(&mut st.pending);
        let marks = std::mem::take(&mut st.marks);
        // One time per finest bin is enough: coarser bins contain the finer ones.
        let finest = TIERS[0];
        for t in &mut times {
            *t -= t.rem_euclid(finest);
        }
        times.sort_unstable();
        times.dedup();
        let r = self
            .cache
            .invalidate(tenant, event_type, &TIERS, &times, &marks);
        if r.is_err() {
            // Keep what could not be applied, for the next flush.
            st.pending.extend(times);
            st.marks.extend(marks);
        }
        r
    }
}
