//! Batched invalidation of cached metric bins.
//!
//! Every acknowledged put records the times it wrote (and the old times of
//! upserted events) per service and type. Pending times are flushed to the
//! metric cache — marking invalid the bins of every tier that contain them —
//! every invalidation interval, and also right before a query reads the cache
//! of that type, so a query always sees every acknowledged event.
//!
//! A bin computed while a put to its range was in flight must not be cached as
//! valid: each type keeps a generation counter and a short log of the time
//! ranges written per generation; [`Invalidator::dirty_since`] tells the
//! evaluator whether its range was written since it started computing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::metric::TIERS;
use crate::model::Service;
use crate::storage::{MetricCache, PutOutcome, StoreError};

/// How many write ranges each type remembers for [`Invalidator::dirty_since`].
const LOG_LEN: usize = 4096;

#[derive(Default)]
struct TypeState {
    generation: u64,
    pending: Vec<i64>,
    /// (generation, min time, max time) of recent writes, oldest first.
    log: VecDeque<(u64, i64, i64)>,
}

pub struct Invalidator {
    cache: Arc<dyn MetricCache>,
    types: Mutex<HashMap<(Service, String), TypeState>>,
}

impl Invalidator {
    pub fn new(cache: Arc<dyn MetricCache>) -> Self {
        Invalidator {
            cache,
            types: Mutex::default(),
        }
    }

    /// Records what a put wrote (called before the put is acknowledged).
    pub fn record(&self, service: &Service, outcome: &PutOutcome) {
        let Ok(mut types) = self.types.lock() else {
            return;
        };
        let mut touch = |event_type: &str, times: &[i64]| {
            let (Some(lo), Some(hi)) = (times.iter().min(), times.iter().max()) else {
                return;
            };
            let st = types
                .entry((service.clone(), event_type.to_owned()))
                .or_default();
            st.generation += 1;
            st.pending.extend_from_slice(times);
            st.log.push_back((st.generation, *lo, *hi));
            if st.log.len() > LOG_LEN {
                st.log.pop_front();
            }
        };
        for (t, times) in &outcome.written {
            touch(t, times);
        }
        for (t, time) in &outcome.replaced {
            touch(t, &[*time]);
        }
    }

    /// The type's current generation (read before computing bins).
    pub fn generation(&self, service: &Service, event_type: &str) -> u64 {
        self.types
            .lock()
            .ok()
            .and_then(|t| {
                t.get(&(service.clone(), event_type.to_owned()))
                    .map(|s| s.generation)
            })
            .unwrap_or(0)
    }

    /// Whether anything in `[lo, hi)` was written after `generation`.
    pub fn dirty_since(
        &self,
        service: &Service,
        event_type: &str,
        generation: u64,
        lo: i64,
        hi: i64,
    ) -> bool {
        let Ok(types) = self.types.lock() else {
            return true;
        };
        let Some(st) = types.get(&(service.clone(), event_type.to_owned())) else {
            return false;
        };
        if st.generation == generation {
            return false;
        }
        // Forgotten generations might have touched the range: assume they did.
        if st.log.front().is_none_or(|(g, _, _)| *g > generation + 1) {
            return true;
        }
        st.log
            .iter()
            .any(|(g, min, max)| *g > generation && *min < hi && *max >= lo)
    }

    /// Flushes the pending invalidations of one type (before a query reads its cache).
    pub fn flush_type(&self, service: &Service, event_type: &str) -> Result<(), StoreError> {
        let times = {
            let Ok(mut types) = self.types.lock() else {
                return Err(StoreError::Closed);
            };
            match types.get_mut(&(service.clone(), event_type.to_owned())) {
                Some(st) if !st.pending.is_empty() => std::mem::take(&mut st.pending),
                _ => return Ok(()),
            }
        };
        self.invalidate(service, event_type, times)
    }

    /// Flushes every pending invalidation (the periodic batch).
    pub fn flush_all(&self) -> Result<(), StoreError> {
        let batches: Vec<((Service, String), Vec<i64>)> = {
            let Ok(mut types) = self.types.lock() else {
                return Err(StoreError::Closed);
            };
            types
                .iter_mut()
                .filter(|(_, st)| !st.pending.is_empty())
                .map(|(k, st)| (k.clone(), std::mem::take(&mut st.pending)))
                .collect()
        };
        for ((service, event_type), times) in batches {
            self.invalidate(&service, &event_type, times)?;
        }
        Ok(())
    }

    fn invalidate(
        &self,
        service: &Service,
        event_type: &str,
        mut times: Vec<i64>,
    ) -> Result<(), StoreError> {
        // One time per finest bin is enough: coarser bins contain the finer ones.
        let finest = TIERS[0];
        for t in &mut times {
            *t -= t.rem_euclid(finest);
        }
        times.sort_unstable();
        times.dedup();
        self.cache.invalidate(service, event_type, &TIERS, &times)
    }
}
