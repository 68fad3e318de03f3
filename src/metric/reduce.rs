//! Reduces: how the values of one bin become one number.
//!
//! Empty bins: `sum`, `count`, `distinct` give 0; the others are undefined
//! (`None`). Numeric reduces consider numbers only (a string, or arithmetic
//! on one, contributes nothing). `distinct` compares values by their
//! JavaScript string form (1 and "1" are one value). `median` and the
//! percentiles interpolate linearly between the two nearest ranks
//! (`h = (n - 1) p`), so the median of an even count is the mean of the two
//! middle values. `stddev` is the sample standard deviation (undefined below
//! two values).

use std::collections::HashSet;

use crate::expr::Reduce;
use crate::model::js::{number_string, string as js_string};
use crate::plan::Scalar;

/// The running state of one bin.
#[derive(Debug, Clone)]
pub enum Accumulator {
    Sum(f64),
    Min(Option<f64>),
    Max(Option<f64>),
    Count(u64),
    Avg {
        sum: f64,
        n: u64,
    },
    /// Welford's running mean and sum of squared deviations.
    Stddev {
        n: u64,
        mean: f64,
        m2: f64,
    },
    Quantile {
        q: f64,
        values: Vec<f64>,
    },
    Distinct(HashSet<String>),
    /// A bin already finished ([`Accumulator::close`]): its value.
    Done(Option<f64>),
}

/// JavaScript's `String(v)`, for `distinct`.
pub fn distinct_key(v: &Scalar) -> String {
    match v {
        Scalar::Number(x) => number_string(*x),
        Scalar::Other(v) => js_string(v),
    }
}

/// Bytes a set entry is charged beyond its text (the `String` and the
/// table's own slot).
const SET_ENTRY_BYTES: usize = 48;

fn distinct_insert(set: &mut HashSet<String>, key: String) -> usize {
    let bytes = key.len() + SET_ENTRY_BYTES;
    if set.insert(key) { bytes } else { 0 }
}

/// Linear interpolation between closest ranks of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let h = (n - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    Some(a + (b - a) * (h - lo as f64))
}

impl Accumulator {
    pub fn new(reduce: Reduce) -> Self {
        match reduce {
            Reduce::Sum => Accumulator::Sum(0.0),
            Reduce::Min => Accumulator::Min(None),
            Reduce::Max => Accumulator::Max(None),
            Reduce::Count => Accumulator::Count(0),
            Reduce::Avg => Accumulator::Avg { sum: 0.0, n: 0 },
            Reduce::Stddev => Accumulator::Stddev {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            },
            Reduce::Distinct => Accumulator::Distinct(HashSet::new()),
            Reduce::Median => Accumulator::quantile(0.5),
            Reduce::P50 => Accumulator::quantile(0.5),
            Reduce::P75 => Accumulator::quantile(0.75),
            Reduce::P90 => Accumulator::quantile(0.9),
            Reduce::P95 => Accumulator::quantile(0.95),
            Reduce::P99 => Accumulator::quantile(0.99),
            Reduce::P999 => Accumulator::quantile(0.999),
        }
    }

    fn quantile(q: f64) -> Self {
        Accumulator::Quantile {
            q,
            values: Vec::new(),
        }
    }

    /// Adds one event's value; returns how many bytes more it now holds.
    pub fn add(&mut self, v: &Scalar) -> usize {
        match self {
            Accumulator::Count(n) => {
                *n += 1;
                0
            }
            Accumulator::Distinct(set) => distinct_insert(set, distinct_key(v)),
            _ => v.as_number().map_or(0, |x| self.add_number(x)),
        }
    }

    /// Adds a number (the fast path when the value is numeric); returns how
    /// many bytes more it now holds (only `median`, percentiles and
    /// `distinct` keep values).
    pub fn add_number(&mut self, x: f64) -> usize {
        match self {
            Accumulator::Sum(s) => *s += x,
            Accumulator::Min(m) => *m = Some(m.map_or(x, |m| m.min(x))),
            Accumulator::Max(m) => *m = Some(m.map_or(x, |m| m.max(x))),
            Accumulator::Count(n) => *n += 1,
            Accumulator::Avg { sum, n } => {
                *sum += x;
                *n += 1;
            }
            Accumulator::Stddev { n, mean, m2 } => {
                *n += 1;
                let d = x - *mean;
                *mean += d / *n as f64;
                *m2 += d * (x - *mean);
            }
            Accumulator::Quantile { values, .. } => {
                values.push(x);
                return size_of::<f64>();
            }
            Accumulator::Distinct(set) => return distinct_insert(set, number_string(x)),
            // Finished: nothing more belongs to it.
            Accumulator::Done(_) => {}
        }
        0
    }

    /// Merges a partial value of this bin computed elsewhere (a
    /// database's per-bin aggregate: `storage::Selected::Partials`): a
    /// sum is added, a minimum or maximum compared, a count added. Only
    /// for pyramidal reduces ([`is_pyramidal`]); the others ignore it.
    pub fn merge_partial(&mut self, x: f64) {
        match self {
            Accumulator::Sum(s) => *s += x,
            Accumulator::Min(m) => *m = Some(m.map_or(x, |m| m.min(x))),
            Accumulator::Max(m) => *m = Some(m.map_or(x, |m| m.max(x))),
            Accumulator::Count(n) => *n += x.max(0.0) as u64,
            _ => {}
        }
    }

    /// Finishes the bin in place, dropping the values it kept; returns how
    /// many bytes it held (what [`add`](Self::add) reported for it).
    pub fn close(&mut self) -> usize {
        let held = match self {
            Accumulator::Quantile { values, .. } => values.len() * size_of::<f64>(),
            Accumulator::Distinct(set) => set.iter().map(|k| k.len() + SET_ENTRY_BYTES).sum(),
            _ => 0,
        };
        let value = std::mem::replace(self, Accumulator::Done(None)).finish();
        *self = Accumulator::Done(value);
        held
    }

    /// The bin's value; `None` is undefined.
    pub fn finish(self) -> Option<f64> {
        match self {
            Accumulator::Done(v) => v,
            Accumulator::Sum(s) => Some(s),
            Accumulator::Min(m) | Accumulator::Max(m) => m,
            Accumulator::Count(n) => Some(n as f64),
            Accumulator::Avg { sum, n } => (n > 0).then(|| sum / n as f64),
            Accumulator::Stddev { n, m2, .. } => (n > 1).then(|| (m2 / (n - 1) as f64).sqrt()),
            Accumulator::Quantile { q, mut values } => {
                values.sort_by(f64::total_cmp);
                quantile(&values, q)
            }
            Accumulator::Distinct(set) => Some(set.len() as f64),
        }
    }
}

/// Whether a coarser bin of `reduce` can be built from finer bins' values.
pub fn is_pyramidal(reduce: Reduce) -> bool {
    matches!(
        reduce,
        Reduce::Sum | Reduce::Min | Reduce::Max | Reduce::Count
    )
}

/// Combines finer bins' values into a coarser bin (pyramidal reduces only).
pub fn merge(reduce: Reduce, parts: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let defined = parts.into_iter().flatten();
    match reduce {
        Reduce::Sum | Reduce::Count => Some(defined.sum()),
        Reduce::Min => defined.reduce(f64::min),
        Reduce::Max => defined.reduce(f64::max),
        Reduce::Median
        | Reduce::Distinct
        | Reduce::Avg
        | Reduce::Stddev
        | Reduce::P50
        | Reduce::P75
        | Reduce::P90
        | Reduce::P95
        | Reduce::P99
        | Reduce::P999 => None,
    }
}

/// Every `k` consecutive bins merged into one (pyramidal reduces only;
/// `None` for the others): bins of a step `k` times a tier's.
pub fn merge_every(reduce: Reduce, bins: &[Option<f64>], k: usize) -> Vec<Option<f64>> {
    bins.chunks(k.max(1))
        .map(|run| merge(reduce, run.iter().copied()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(r: Reduce, values: &[Scalar]) -> Option<f64> {
        let mut acc = Accumulator::new(r);
        for v in values {
            acc.add(v);
        }
        acc.finish()
    }

    fn nums(xs: &[f64]) -> Vec<Scalar> {
        xs.iter().map(|x| Scalar::Number(*x)).collect()
    }

    #[test]
    fn empty_bins() {
        assert_eq!(run(Reduce::Sum, &[]), Some(0.0));
        assert_eq!(run(Reduce::Count, &[]), Some(0.0));
        assert_eq!(run(Reduce::Distinct, &[]), Some(0.0));
        for r in [
            Reduce::Min,
            Reduce::Max,
            Reduce::Median,
            Reduce::Avg,
            Reduce::Stddev,
            Reduce::P99,
        ] {
            assert_eq!(run(r, &[]), None, "{r:?}");
        }
    }

    #[test]
    fn values() {
        let v = nums(&[3.0, 1.0, 4.0, 1.0, 5.0, 9.0]);
        assert_eq!(run(Reduce::Sum, &v), Some(23.0));
        assert_eq!(run(Reduce::Min, &v), Some(1.0));
        assert_eq!(run(Reduce::Max, &v), Some(9.0));
        assert_eq!(run(Reduce::Median, &v), Some(3.5));
        assert_eq!(run(Reduce::Median, &nums(&[5.0, 1.0, 3.0])), Some(3.0));
        assert_eq!(run(Reduce::Count, &v), Some(6.0));
        assert_eq!(run(Reduce::Distinct, &v), Some(5.0));
        assert!((run(Reduce::Avg, &v).unwrap() - 23.0 / 6.0).abs() < 1e-12);
        let sd = run(
            Reduce::Stddev,
            &nums(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),
        )
        .unwrap();
        assert!((sd - 2.138089935299395).abs() < 1e-12, "{sd}");
        assert_eq!(run(Reduce::P50, &nums(&[1.0, 2.0, 3.0, 4.0])), Some(2.5));
        assert_eq!(
            run(
                Reduce::P90,
                &nums(&(1..=11).map(f64::from).collect::<Vec<_>>())
            ),
            Some(10.0)
        );
        assert_eq!(run(Reduce::P999, &nums(&[7.0])), Some(7.0));
    }

    #[test]
    fn numeric_reduces_skip_non_numbers_distinct_uses_strings() {
        let v = vec![
            Scalar::Number(1.0),
            Scalar::Other(json!("1")),
            Scalar::Other(json!("x")),
            Scalar::Number(f64::NAN),
            Scalar::Number(2.0),
        ];
        assert_eq!(run(Reduce::Sum, &v), Some(3.0));
        assert_eq!(run(Reduce::Max, &v), Some(2.0));
        assert_eq!(run(Reduce::Median, &v), Some(1.5));
        // 1 and "1" are one value; NaN is its own
        assert_eq!(run(Reduce::Distinct, &v), Some(4.0));
        assert_eq!(run(Reduce::Count, &v), Some(5.0));
        assert_eq!(distinct_key(&Scalar::Other(json!([1, null, "a"]))), "1,,a");
        assert_eq!(distinct_key(&Scalar::Number(1.5)), "1.5");
        assert_eq!(distinct_key(&Scalar::Other(json!(true))), "true");
    }

    #[test]
    fn pyramids_merge_finer_bins() {
        assert_eq!(merge(Reduce::Sum, [Some(1.0), Some(2.0)]), Some(3.0));
        assert_eq!(merge(Reduce::Min, [None, Some(2.0), Some(1.0)]), Some(1.0));
        assert_eq!(merge(Reduce::Max, [None, None]), None);
        assert_eq!(merge(Reduce::Count, [Some(1.0), Some(0.0)]), Some(1.0));
        assert!(is_pyramidal(Reduce::Sum) && !is_pyramidal(Reduce::Median));
        let bins = [Some(1.0), None, Some(3.0), Some(4.0), Some(5.0)];
        assert_eq!(
            merge_every(Reduce::Sum, &bins, 2),
            vec![Some(1.0), Some(7.0), Some(5.0)]
        );
        assert_eq!(
            merge_every(Reduce::Max, &[None, None, Some(2.0)], 2),
            vec![None, Some(2.0)]
        );
    }
}
