//! Computing one leaf's bins: from the values a backend selected
//! ([`BinComputer::add_value`], [`BinComputer::add_scalar`]), or from
//! whole events, filter and value applied here ([`compute_bins`], the
//! reference the tests hold backends to).

use serde_json::Value;

use super::reduce::Accumulator;
use super::tiers::Tier;
use crate::expr::Reduce;
use crate::plan::{LeafPlan, Scalar};

/// The bins `[first, first + n * step)` of one leaf, filled event by event.
pub struct BinComputer<'p> {
    leaf: &'p LeafPlan,
    step: i64,
    first: i64,
    accs: Vec<Accumulator>,
    /// No filter and no value: every event counts 1.
    trivial: bool,
    /// Bytes of values the accumulators keep (see [`Accumulator::add`]).
    held: usize,
    /// Bins before this index are finished ([`close_before`](Self::close_before)).
    closed: usize,
}

impl<'p> BinComputer<'p> {
    pub fn new(leaf: &'p LeafPlan, tier: Tier, first: i64, n: usize) -> Self {
        BinComputer {
            leaf,
            step: tier.step(),
            first,
            accs: (0..n).map(|_| Accumulator::new(leaf.reduce)).collect(),
            trivial: leaf.filter.is_empty() && leaf.value.is_none(),
            held: 0,
            closed: 0,
        }
    }

    /// Finishes every bin that ends at or before `time`, dropping the
    /// values `median`, percentiles and `distinct` kept for them: called
    /// when no later event can fall into those bins (a scan that visits
    /// hours in order has moved past them).
    pub fn close_before(&mut self, time: i64) {
        let end = match time.checked_sub(self.first) {
            Some(d) if d > 0 => usize::try_from(d / self.step).unwrap_or(usize::MAX),
            _ => return,
        }
        .min(self.accs.len());
        for acc in self.accs.get_mut(self.closed..end).into_iter().flatten() {
            self.held -= acc.close();
        }
        self.closed = self.closed.max(end);
    }

    /// Bytes of values held so far for bins not finished (`median`,
    /// percentiles and `distinct` keep values; other reduces none).
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// The bin index of `time`, if it is one of ours.
    fn slot(&self, time: i64) -> Option<usize> {
        if time < self.first {
            return None;
        }
        let i = usize::try_from((time - self.first) / self.step).ok()?;
        (i < self.accs.len()).then_some(i)
    }

    /// Adds one event given as its whole data.
    pub fn add(&mut self, time: i64, data: &Value) {
        self.add_with(time, |leaf| {
            leaf.filter
                .matches(data)
                .then(|| leaf.value_of(data))
                .flatten()
        });
    }

    /// Adds the value of an event that already passed the filter, when
    /// it is a number (not NaN).
    pub fn add_value(&mut self, time: i64, x: f64) {
        if let Some(i) = self.slot(time) {
            self.held += self.accs[i].add_number(x);
        }
    }

    /// Adds the value of an event that already passed the filter.
    pub fn add_scalar(&mut self, time: i64, v: &Scalar) {
        if let Some(i) = self.slot(time) {
            self.held += self.accs[i].add(v);
        }
    }

    /// Merges a partial value of the bin starting at `time` (see
    /// [`Accumulator::merge_partial`]).
    pub fn add_partial(&mut self, time: i64, x: f64) {
        if let Some(i) = self.slot(time) {
            self.accs[i].merge_partial(x);
        }
    }

    /// `value`: the event's value if it passes the filter.
    fn add_with(&mut self, time: i64, value: impl FnOnce(&LeafPlan) -> Option<Scalar>) {
        let Some(i) = self.slot(time) else { return };
        if self.trivial {
            self.held += self.accs[i].add_number(1.0);
        } else if let Some(v) = value(self.leaf) {
            self.held += self.accs[i].add(&v);
        }
    }

    pub fn finish(self) -> Vec<Option<f64>> {
        self.accs.into_iter().map(Accumulator::finish).collect()
    }

    pub fn reduce(&self) -> Reduce {
        self.leaf.reduce
    }
}

/// Computes bins from events given as (time, data).
pub fn compute_bins<'a>(
    leaf: &LeafPlan,
    tier: Tier,
    first: i64,
    n: usize,
    events: impl IntoIterator<Item = (i64, &'a Value)>,
) -> Vec<Option<f64>> {
    let mut c = BinComputer::new(leaf, tier, first, n);
    for (t, d) in events {
        c.add(t, d);
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{MetricPlan, compile_metric};
    use serde_json::json;

    fn leaf(e: &str) -> LeafPlan {
        match compile_metric(e).unwrap().1 {
            MetricPlan::Leaf(l) => l,
            _ => panic!(),
        }
    }

    #[test]
    fn bins_events_by_tier() {
        let l = leaf("sum(t1(x).gt(x, 1))");
        let tier = Tier::from_step(60_000).unwrap();
        let events = [
            (0, json!({"x": 5})),
            (59_999, json!({"x": 1})),
            (60_000, json!({"x": 2})),
            (125_000, json!({"x": "7"})),
            (200_000, json!({"x": 100})),
            (-1, json!({"x": 100})),
        ];
        let got = compute_bins(&l, tier, 0, 3, events.iter().map(|(t, d)| (*t, d)));
        assert_eq!(got, [Some(5.0), Some(2.0), Some(0.0)]);
        let m = leaf("median(t1(x))");
        let got = compute_bins(&m, tier, 0, 3, events.iter().map(|(t, d)| (*t, d)));
        assert_eq!(got, [Some(3.0), Some(2.0), None]);
        let c = leaf("sum(t1)");
        let got = compute_bins(&c, tier, 0, 3, events.iter().map(|(t, d)| (*t, d)));
        assert_eq!(got, [Some(2.0), Some(1.0), Some(1.0)]);
    }

    #[test]
    fn finished_bins_give_back_what_they_kept() {
        let tier = Tier::from_step(60_000).unwrap();
        for source in [
            "median(t1(x))",
            "distinct(t1(x))",
            "p90(t1(x))",
            "sum(t1(x))",
        ] {
            let l = leaf(source);
            let events: Vec<(i64, Value)> = (0..300)
                .map(|i| (i * 1_000, json!({"x": i % 17})))
                .collect();
            let mut whole = BinComputer::new(&l, tier, 0, 5);
            let mut closing = BinComputer::new(&l, tier, 0, 5);
            let mut peak = 0;
            for (t, d) in &events {
                whole.add(*t, d);
                closing.close_before(*t - t % 60_000);
                closing.add(*t, d);
                peak = peak.max(closing.held_bytes());
            }
            if source.starts_with("sum") {
                assert_eq!(whole.held_bytes(), 0);
            } else {
                assert!(peak < whole.held_bytes(), "{source}: {peak}");
            }
            closing.close_before(i64::MAX);
            assert_eq!(closing.held_bytes(), 0, "{source}");
            assert_eq!(closing.finish(), whole.finish(), "{source}");
        }
    }
}
