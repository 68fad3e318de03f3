//! The metric cache's read memo: per type, source and tier, a run of time
//! `[lo, hi)` whose valid cached bins are held decoded in memory, so that a
//! read inside it (a dashboard asking for the same range again, or for a
//! window that slid by a few steps) skips the range scan of `metrics`,
//! which for 8,640 bins is most of a cached answer's time.
//!
//! The memo mirrors the store: every write to a type's cached bins first
//! commits to the store and then is applied here under the memo's lock
//! (bins put, bins invalidated or evicted, a type's bins expired, the
//! cache cleared), and advances the type's generation. A read that missed
//! takes the type's generation *before* it scans and merges its answer
//! only if the generation is unchanged by then: a write committed during
//! the scan (which the scan's snapshot may not show) has advanced it. A
//! reopened store starts with an empty memo.
//!
//! Bounded by bytes ([`CACHE_READ_MEMO_BYTES`]); the least recently read
//! runs go first.
//! Pure data, no IO: the store holds it under a mutex.

use std::collections::HashMap;

pub use crate::limits::CACHE_READ_MEMO_BYTES;
use crate::storage::CachedBin;

/// One run: the valid bins of `[lo, hi)`, by time.
struct Run {
    lo: i64,
    hi: i64,
    bins: Vec<CachedBin>,
    /// When it was last read (the memo's clock).
    used: u64,
}

impl Run {
    fn bytes(&self, source: &str) -> usize {
        64 + source.len() + self.bins.len() * std::mem::size_of::<CachedBin>()
    }

    /// Index of the first bin at or after `t`.
    fn at(&self, t: i64) -> usize {
        self.bins.partition_point(|b| b.time < t)
    }
}

#[derive(Default)]
struct TypeMemo {
    generation: u64,
    runs: HashMap<(String, i64), Run>,
}

/// The memo of one store, by type prefix.
pub struct ReadMemo {
    types: HashMap<Vec<u8>, TypeMemo>,
    /// Advanced by [`forget_all`](Self::forget_all): a scan begun before a
    /// clear is not kept, also of a type the memo had no entry for.
    epoch: u64,
    bytes: usize,
    cap: usize,
    clock: u64,
}

/// A read's outcome: the bins, or the generation to merge a scan under.
pub enum Lookup {
    Hit(Vec<CachedBin>),
    Miss(Generation),
}

/// The memo's epoch and the type's generation when a read missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64, u64);

impl ReadMemo {
    pub fn new(cap: usize) -> Self {
        ReadMemo {
            types: HashMap::new(),
            epoch: 0,
            bytes: 0,
            cap,
            clock: 0,
        }
    }

    /// The valid bins of `source` at `tier` in `[start, stop)` if a run
    /// covers that range, or the type's generation for [`keep`](Self::keep).
    pub fn lookup(
        &mut self,
        prefix: &[u8],
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
    ) -> Lookup {
        self.clock += 1;
        if start >= stop {
            return Lookup::Hit(Vec::new());
        }
        let epoch = self.epoch;
        let Some(t) = self.types.get_mut(prefix) else {
            return Lookup::Miss(Generation(epoch, 0));
        };
        // By key: a type may have thousands of sources at several tiers.
        match t.runs.get_mut(&(source.to_owned(), tier)) {
            Some(r) if r.lo <= start && stop <= r.hi => {
                r.used = self.clock;
                Lookup::Hit(r.bins[r.at(start)..r.at(stop)].to_vec())
            }
            _ => Lookup::Miss(Generation(epoch, t.generation)),
        }
    }

    /// Merges what a scan of `[start, stop)` read, if no write to the type
    /// was applied since `generation` was looked up: it joins the run it
    /// overlaps or touches, or replaces a run it does not.
    #[allow(clippy::too_many_arguments)]
    pub fn keep(
        &mut self,
        prefix: &[u8],
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
        generation: Generation,
        bins: &[CachedBin],
    ) {
        if start >= stop || generation.0 != self.epoch {
            return;
        }
        // A type never written (or asked for by a made-up name) gets no
        // entry for an empty scan: such reads do not grow the memo.
        if bins.is_empty() && !self.types.contains_key(prefix) {
            return;
        }
        let t = self.types.entry(prefix.to_vec()).or_default();
        if t.generation != generation.1 {
            return;
        }
        let key = (source.to_owned(), tier);
        let run = match t.runs.remove(&key) {
            Some(mut r) if r.lo <= stop && start <= r.hi => {
                self.bytes -= r.bytes(source);
                let (a, b) = (r.at(start), r.at(stop));
                r.bins.splice(a..b, bins.iter().copied());
                r.lo = r.lo.min(start);
                r.hi = r.hi.max(stop);
                r
            }
            old => {
                if let Some(r) = old {
                    self.bytes -= r.bytes(source);
                }
                Run {
                    lo: start,
                    hi: stop,
                    bins: bins.to_vec(),
                    used: 0,
                }
            }
        };
        let mut run = run;
        run.used = self.clock;
        let size = run.bytes(source);
        if size > self.cap {
            return;
        }
        self.bytes += size;
        t.runs.insert(key, run);
        self.shrink();
    }

    /// Once over its cap, drops the least recently read runs until the
    /// memo holds at most 7/8 of it (one sort of the runs, however many
    /// go, and room for a while before the next).
    fn shrink(&mut self) {
        if self.bytes <= self.cap {
            return;
        }
        let target = self.cap / 8 * 7;
        let mut by_use: Vec<(u64, Vec<u8>, (String, i64))> = self
            .types
            .iter()
            .flat_map(|(p, t)| {
                t.runs
                    .iter()
                    .map(move |(k, r)| (r.used, p.clone(), k.clone()))
            })
            .collect();
        by_use.sort_unstable_by_key(|(used, _, _)| *used);
        for (_, p, k) in by_use {
            if self.bytes <= target {
                break;
            }
            if let Some(t) = self.types.get_mut(&p)
                && let Some(r) = t.runs.remove(&k)
            {
                self.bytes -= r.bytes(&k.0);
            }
        }
    }

    /// The type's runs, after a write to its bins (its generation advances).
    /// (Always advanced, also for a type with no runs: a read that missed
    /// before the write must not keep what it scanned.)
    fn written(&mut self, prefix: &[u8]) -> &mut TypeMemo {
        let t = self.types.entry(prefix.to_vec()).or_default();
        t.generation += 1;
        t
    }

    /// Bins put (valid) for `source` at `tier`: runs covering their times
    /// hold them from now on.
    pub fn put(&mut self, prefix: &[u8], source: &str, tier: i64, bins: &[CachedBin]) {
        let t = self.written(prefix);
        let Some(r) = t.runs.get_mut(&(source.to_owned(), tier)) else {
            return;
        };
        let before = r.bins.len();
        let inside: Vec<CachedBin> = bins
            .iter()
            .filter(|b| r.lo <= b.time && b.time < r.hi)
            .copied()
            .collect();
        if inside.is_empty() {
            return;
        }
        // Both sorted by time: one merge, the new bin winning a tie.
        let mut merged = Vec::with_capacity(r.bins.len() + inside.len());
        let (mut i, mut j) = (0, 0);
        while i < r.bins.len() || j < inside.len() {
            match (r.bins.get(i), inside.get(j)) {
                (Some(a), Some(b)) if a.time < b.time => {
                    merged.push(*a);
                    i += 1;
                }
                (Some(a), Some(b)) if a.time == b.time => {
                    merged.push(*b);
                    i += 1;
                    j += 1;
                }
                (_, Some(b)) => {
                    // Of two puts of one time in a batch, the store keeps the last.
                    match merged.last_mut() {
                        Some(last) if last.time == b.time => *last = *b,
                        _ => merged.push(*b),
                    }
                    j += 1;
                }
                (Some(a), None) => {
                    merged.push(*a);
                    i += 1;
                }
                (None, None) => break,
            }
        }
        r.bins = merged;
        let grown = r.bins.len() - before;
        self.bytes += grown * std::mem::size_of::<CachedBin>();
        self.shrink();
    }

    /// Bins no longer valid: of every source at each `(tier, time)` when
    /// `source` is `None` (an invalidation), or of that source (an eviction).
    pub fn remove(&mut self, prefix: &[u8], source: Option<&str>, bins: &[(i64, i64)]) {
        let t = self.written(prefix);
        let mut removed = 0;
        for ((s, tier), r) in t.runs.iter_mut() {
            if source.is_some_and(|src| src != s) {
                continue;
            }
            let before = r.bins.len();
            for &(bt, time) in bins {
                if bt != *tier || time < r.lo || time >= r.hi {
                    continue;
                }
                let i = r.at(time);
                if r.bins.get(i).is_some_and(|b| b.time == time) {
                    r.bins.remove(i);
                }
            }
            removed += before - r.bins.len();
        }
        self.bytes -= removed * std::mem::size_of::<CachedBin>();
    }

    /// Every bin of the type may have changed (an expiry): its runs go.
    pub fn forget_type(&mut self, prefix: &[u8]) {
        let runs = std::mem::take(&mut self.written(prefix).runs);
        for ((s, _), r) in runs {
            self.bytes -= r.bytes(&s);
        }
    }

    /// The whole cache was cleared (or a tenant's): every run goes.
    pub fn forget_all(&mut self) {
        self.epoch += 1;
        let prefixes: Vec<Vec<u8>> = self.types.keys().cloned().collect();
        for p in prefixes {
            self.forget_type(&p);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 10;

    fn bin(time: i64, v: f64) -> CachedBin {
        CachedBin {
            time,
            value: Some(v),
        }
    }

    /// Bins every step of `[lo, hi)` valued `v`.
    fn bins(lo: i64, hi: i64, v: f64) -> Vec<CachedBin> {
        (lo..hi).step_by(STEP as usize).map(|t| bin(t, v)).collect()
    }

    fn read(m: &mut ReadMemo, p: &[u8], s: &str, lo: i64, hi: i64) -> Option<Vec<CachedBin>> {
        match m.lookup(p, s, STEP, lo, hi) {
            Lookup::Hit(b) => Some(b),
            Lookup::Miss(_) => None,
        }
    }

    /// What a scan would read: `store`'s bins in `[lo, hi)`; merged.
    fn scan(m: &mut ReadMemo, p: &[u8], s: &str, lo: i64, hi: i64, store: &[CachedBin]) {
        let Lookup::Miss(g) = m.lookup(p, s, STEP, lo, hi) else {
            panic!("expected a miss");
        };
        let got: Vec<CachedBin> = store
            .iter()
            .filter(|b| lo <= b.time && b.time < hi)
            .copied()
            .collect();
        m.keep(p, s, STEP, lo, hi, g, &got);
    }

    #[test]
    fn a_run_read_serves_the_ranges_inside_it_and_slides() {
        let mut m = ReadMemo::new(1 << 20);
        let store = bins(0, 200, 1.0);
        assert!(read(&mut m, b"a", "s", 0, 100).is_none());
        scan(&mut m, b"a", "s", 0, 100, &store);
        assert_eq!(read(&mut m, b"a", "s", 0, 100), Some(bins(0, 100, 1.0)));
        assert_eq!(read(&mut m, b"a", "s", 20, 50), Some(bins(20, 50, 1.0)));
        // The window slides: the new part is scanned and joins the run.
        assert!(read(&mut m, b"a", "s", 10, 110).is_none());
        scan(&mut m, b"a", "s", 10, 110, &store);
        assert_eq!(read(&mut m, b"a", "s", 0, 110), Some(bins(0, 110, 1.0)));
        // Another source or tier is not served by it.
        assert!(read(&mut m, b"a", "t", 0, 100).is_none());
        assert!(matches!(m.lookup(b"a", "s", 60, 0, 100), Lookup::Miss(_)));
        // A range apart replaces it.
        scan(&mut m, b"a", "s", 150, 200, &store);
        assert_eq!(read(&mut m, b"a", "s", 150, 200), Some(bins(150, 200, 1.0)));
        assert!(read(&mut m, b"a", "s", 0, 100).is_none());
    }

    #[test]
    fn writes_are_applied_to_the_runs_they_touch() {
        let mut m = ReadMemo::new(1 << 20);
        // Bins 50.. not cached yet.
        scan(&mut m, b"a", "s", 0, 100, &bins(0, 50, 1.0));
        scan(&mut m, b"a", "t", 0, 100, &bins(0, 100, 5.0));
        scan(&mut m, b"b", "s", 0, 100, &bins(0, 100, 7.0));
        m.put(b"a", "s", STEP, &bins(40, 120, 2.0));
        let mut want = bins(0, 40, 1.0);
        want.extend(bins(40, 100, 2.0));
        assert_eq!(read(&mut m, b"a", "s", 0, 100), Some(want.clone()));
        // Invalidated bins go from every source of the type.
        m.remove(b"a", None, &[(STEP, 30), (STEP, 90), (60, 0)]);
        want.retain(|b| b.time != 30 && b.time != 90);
        assert_eq!(read(&mut m, b"a", "s", 0, 100), Some(want.clone()));
        let mut t = bins(0, 100, 5.0);
        t.retain(|b| b.time != 30 && b.time != 90);
        assert_eq!(read(&mut m, b"a", "t", 0, 100), Some(t));
        // An eviction, from its source only.
        m.remove(b"a", Some("s"), &[(STEP, 0)]);
        want.retain(|b| b.time != 0);
        assert_eq!(read(&mut m, b"a", "s", 0, 100), Some(want));
        assert_eq!(read(&mut m, b"a", "t", 0, 10), Some(bins(0, 10, 5.0)));
        // Other types untouched; then an expiry and a clear.
        assert_eq!(read(&mut m, b"b", "s", 0, 100), Some(bins(0, 100, 7.0)));
        m.forget_type(b"a");
        assert!(read(&mut m, b"a", "t", 0, 100).is_none());
        assert!(read(&mut m, b"b", "s", 0, 100).is_some());
        m.forget_all();
        assert!(read(&mut m, b"b", "s", 0, 100).is_none());
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn a_scan_that_raced_a_write_is_not_kept() {
        let mut m = ReadMemo::new(1 << 20);
        scan(&mut m, b"a", "s", 0, 100, &bins(0, 100, 1.0));
        let Lookup::Miss(g) = m.lookup(b"a", "s", STEP, 0, 200) else {
            panic!("expected a miss");
        };
        // An invalidation commits while the scan of 0..200 runs; its
        // snapshot still had bin 40.
        m.remove(b"a", None, &[(STEP, 40)]);
        m.keep(b"a", "s", STEP, 0, 200, g, &bins(0, 200, 1.0));
        let got = read(&mut m, b"a", "s", 0, 100).expect("the first run stays");
        assert!(got.iter().all(|b| b.time != 40));
        assert!(read(&mut m, b"a", "s", 0, 200).is_none());
    }

    #[test]
    fn a_write_to_a_type_never_read_still_stops_a_racing_scan() {
        let mut m = ReadMemo::new(1 << 20);
        let Lookup::Miss(g) = m.lookup(b"a", "s", STEP, 0, 100) else {
            panic!("expected a miss");
        };
        m.remove(b"a", None, &[(STEP, 40)]);
        m.keep(b"a", "s", STEP, 0, 100, g, &bins(0, 100, 1.0));
        assert!(read(&mut m, b"a", "s", 0, 100).is_none());
        // Nor does a clear, for a type the memo had no entry for.
        let Lookup::Miss(g) = m.lookup(b"b", "s", STEP, 0, 100) else {
            panic!("expected a miss");
        };
        m.forget_all();
        m.keep(b"b", "s", STEP, 0, 100, g, &bins(0, 100, 1.0));
        assert!(read(&mut m, b"b", "s", 0, 100).is_none());
        // Reads of a type never written keep nothing when they find nothing.
        scan(&mut m, b"c", "s", 0, 100, &[]);
        assert!(!m.types.contains_key(b"c".as_slice()));
    }

    #[test]
    fn the_least_recently_read_runs_go_to_stay_under_the_cap() {
        let one = 64 + 2 + 10 * std::mem::size_of::<CachedBin>();
        let mut m = ReadMemo::new(3 * one);
        let store = bins(0, 100, 1.0);
        for s in ["s0", "s1", "s2"] {
            scan(&mut m, b"a", s, 0, 100, &store);
        }
        assert!(read(&mut m, b"a", "s0", 0, 100).is_some());
        scan(&mut m, b"a", "s3", 0, 100, &store);
        assert!(m.bytes() <= 3 * one);
        assert!(read(&mut m, b"a", "s1", 0, 100).is_none(), "least recent");
        assert!(read(&mut m, b"a", "s0", 0, 100).is_some());
        assert!(read(&mut m, b"a", "s3", 0, 100).is_some());
        // A run bigger than the cap is not kept.
        scan(&mut m, b"a", "big", 0, 1000, &bins(0, 1000, 1.0));
        assert!(read(&mut m, b"a", "big", 0, 1000).is_none());
        assert!(m.bytes() <= 3 * one);
    }
}
