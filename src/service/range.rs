//! Range queries at any step, as the Prometheus HTTP API asks for them
//! (`query_range`, and `query` as a range of one point): the points
//! `first + i * step` up to `end` inclusive, each the value of Cube's bin
//! that starts there.
//!
//! A step that is a tier is answered with that tier's bins, as
//! `/1.0/metric` answers them. A step that is a whole number of a tier's
//! steps (2 min, 15 min, 2 h, 1 week...) is computed exactly from the
//! bins of the largest such tier when every reduce of the expression is
//! pyramidal (`sum`, `count`, `min`, `max`) and it is not grouped: each
//! point merges the finer bins it covers. Any other step (15 s, or a
//! `median` at 2 min) is answered at the largest tier not above it, with
//! that tier's spacing. [`RangeAnswer::step`] says which spacing came back.

use super::evaluator::{BinValue, EvalError, Evaluator, MetricQuery, MetricQueryError};
use crate::limits::{MAX_BINS_PER_REQUEST, MAX_METRIC_LIMIT};
use crate::metric::Tier;
use crate::metric::reduce::{is_pyramidal, merge_every};
use crate::model::Tenant;
use crate::plan::MetricPlan;

/// The points `first + i * step` (`first` is `start` floored to the tier
/// answered) that are not after `end`.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    pub expression: String,
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

/// One series of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `None` for an ungrouped expression; `Some(Some(name))` for a group,
    /// `Some(None)` for the `other` row of a top-N.
    pub group: Option<Option<String>>,
    /// (time, value) of every point with a defined value, in time order;
    /// NaN where the expression's value is not a number (Cube's `null`).
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub struct RangeAnswer {
    /// The spacing of the points: the step asked for, or the tier it was
    /// answered at.
    pub step: i64,
    /// Whether the points are the step asked for (computed exactly).
    pub exact: bool,
    /// The field a grouped expression groups by, as written.
    pub group_field: Option<String>,
    pub series: Vec<Series>,
}

#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error("{0}")]
    Query(#[from] MetricQueryError),
    #[error("end timestamp must not be before start time")]
    EndBeforeStart,
    #[error(
        "exceeded maximum resolution of {max} points per timeseries ({points} asked for); try a larger step"
    )]
    TooManyPoints { points: u64, max: usize },
    #[error(
        "a step of {step} ms over this range needs {bins} bins of {tier} ms per reduce, more than the {max} one request may compute; try a step that is a tier (10s, 1m, 5m, 1h, 1d) or a shorter range"
    )]
    TooManyBins {
        step: i64,
        tier: i64,
        bins: u64,
        max: usize,
    },
    #[error("{0}")]
    Eval(#[from] EvalError),
}

/// How a step is answered: at `tier`, each point merging `k` of its bins.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Resolution {
    tier: Tier,
    k: i64,
}

impl Resolution {
    /// See the module's documentation.
    fn of(step: i64, plan: &MetricPlan, grouped: bool) -> Self {
        if let Some(tier) =
            Tier::dividing(step).filter(|t| step / t.step() <= MAX_METRIC_LIMIT as i64)
        {
            let k = step / tier.step();
            let mergeable = !grouped && plan.leaves().iter().all(|l| is_pyramidal(l.reduce));
            if k == 1 || mergeable {
                return Resolution { tier, k };
            }
        }
        Resolution {
            tier: Tier::at_most(step),
            k: 1,
        }
    }

    fn spacing(self) -> i64 {
        self.tier.step() * self.k
    }
}

/// Evaluates a range query (see the module's documentation).
pub async fn evaluate_range(
    evaluator: &Evaluator,
    tenant: &Tenant,
    r: &RangeQuery,
) -> Result<RangeAnswer, RangeError> {
    if r.end < r.start {
        return Err(RangeError::EndBeforeStart);
    }
    let probe = MetricQuery::bins(&r.expression, Tier::at_most(r.step), r.start, 0)?;
    let res = Resolution::of(r.step.max(1), &probe.plan, probe.group.is_some());
    let spacing = res.spacing();
    let first = res.tier.floor(r.start);
    let points = u64::try_from((r.end - first) / spacing).unwrap_or(0) + 1;
    if points > MAX_METRIC_LIMIT as u64 {
        return Err(RangeError::TooManyPoints {
            points,
            max: MAX_METRIC_LIMIT,
        });
    }
    let n = points as usize;
    let group_field = probe.group.as_ref().map(|g| g.field.to_string());
    let time = |i: usize| first + i as i64 * spacing;
    let series = if res.k == 1 {
        let q = MetricQuery::bins(&r.expression, res.tier, first, n)?;
        if q.group.is_some() {
            evaluator
                .evaluate_grouped(tenant, &q)
                .await?
                .into_iter()
                .map(|row| Series {
                    group: Some(row.group),
                    points: defined(row.values.iter().copied(), time),
                })
                .collect()
        } else {
            let values = evaluator.values(tenant, &q).await?;
            vec![Series {
                group: None,
                points: defined(values, time),
            }]
        }
    } else {
        let timeout = evaluator.query_timeout();
        let values =
            tokio::time::timeout(timeout, merged(evaluator, tenant, &probe, res, first, n))
                .await
                .unwrap_or(Err(RangeError::Eval(EvalError::Timeout(timeout))))?;
        vec![Series {
            group: None,
            points: defined(values, time),
        }]
    };
    Ok(RangeAnswer {
        step: spacing,
        exact: spacing == r.step,
        group_field,
        series,
    })
}

/// The points with a defined value.
fn defined(
    values: impl IntoIterator<Item = BinValue>,
    time: impl Fn(usize) -> i64,
) -> Vec<(i64, f64)> {
    values
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (time(i), v)))
        .collect()
}

/// An ungrouped pyramidal expression at `k` bins of `res.tier` a point:
/// each leaf's bins (cached and computed as for `/1.0/metric`, in runs of
/// at most [`MAX_METRIC_LIMIT`] bins) merged `k` at a time, then combined.
async fn merged(
    evaluator: &Evaluator,
    tenant: &Tenant,
    probe: &MetricQuery,
    res: Resolution,
    first: i64,
    n: usize,
) -> Result<Vec<BinValue>, RangeError> {
    let (unique, index) = probe.plan.distinct_leaves();
    let k = usize::try_from(res.k).unwrap_or(usize::MAX);
    let bins = (n as u64).saturating_mul(k as u64);
    if bins.saturating_mul(unique.len() as u64) > MAX_BINS_PER_REQUEST as u64 {
        return Err(RangeError::TooManyBins {
            step: res.spacing(),
            tier: res.tier.step(),
            bins,
            max: MAX_BINS_PER_REQUEST,
        });
    }
    // Whole points per run, so that a run's bins merge on their own.
    let points_per_run = (MAX_METRIC_LIMIT / k).max(1);
    let mut per_leaf: Vec<Vec<BinValue>> = Vec::with_capacity(unique.len());
    for leaf in &unique {
        let mut out = Vec::with_capacity(n);
        let mut done = 0;
        while done < n {
            let count = points_per_run.min(n - done);
            let start = first + (done as i64) * res.spacing();
            let q = MetricQuery::bins(&leaf.source, res.tier, start, count * k)?.leaf(leaf);
            let fine = evaluator.values(tenant, &q).await?;
            out.extend(merge_every(leaf.reduce, &fine, k));
            done += count;
        }
        per_leaf.push(out);
    }
    if let MetricPlan::Leaf(_) = probe.plan {
        return Ok(per_leaf.into_iter().next().unwrap_or_default());
    }
    Ok((0..n)
        .map(|i| {
            let values: Vec<Option<f64>> = index.iter().map(|&j| per_leaf[j][i]).collect();
            Some(probe.plan.combine(&values))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolution(expr: &str, step: i64) -> (i64, i64) {
        let q = MetricQuery::bins(expr, Tier::at_most(step), 0, 0).expect("query");
        let r = Resolution::of(step, &q.plan, q.group.is_some());
        (r.tier.step(), r.k)
    }

    #[test]
    fn steps_map_to_tiers() {
        assert_eq!(resolution("sum(request)", 60_000), (60_000, 1));
        assert_eq!(resolution("sum(request)", 120_000), (60_000, 2));
        assert_eq!(
            resolution("sum(request) / max(request(d))", 90_000),
            (10_000, 9)
        );
        assert_eq!(resolution("sum(request)", 15_000), (10_000, 1));
        assert_eq!(resolution("median(request(d))", 120_000), (60_000, 1));
        assert_eq!(resolution("median(request(d))", 300_000), (300_000, 1));
        assert_eq!(resolution("sum(request).group(p)", 120_000), (60_000, 1));
        assert_eq!(resolution("sum(request)", 7 * 86_400_000), (86_400_000, 7));
        assert_eq!(resolution("sum(request)", 1), (10_000, 1));
        // More than 10,000 finer bins a point: answered at the day tier.
        assert_eq!(
            resolution("sum(request)", 10_950 * 86_400_000),
            (86_400_000, 1)
        );
    }
}
