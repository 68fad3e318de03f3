//! Live metrics: a WebSocket metric/get request without `stop` stays open.
//! Its client first gets the bins from `start` up to the last closed bin,
//! then each bin as it closes (a bin `[t, t + step)` closes once `now -
//! delay` reaches its end, `delay` leaving late events time to arrive, as
//! live event streams do), and a bin again whenever a put changes one it
//! was sent (a late event, an upsert, retention).
//!
//! Requests with the same tenant, expression, step and delay share one
//! poll ([`LiveMetrics::follow`]): every poll interval it asks the
//! invalidator which times were written since its last look, re-evaluates
//! the closed bins among them (through the cache, so only the bins the
//! puts touched are computed again) and broadcasts those whose value
//! changed, then evaluates the bins that closed meanwhile. It remembers
//! the values of the last [`MAX_METRIC_LIMIT`] bins it sent; corrections
//! reach back that far. Grouped expressions are followed group by group
//! (without a top N, which is a property of a whole range).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::evaluator::{BinValue, EvalError, Evaluator, MetricQuery};
use super::invalidation::Invalidator;
use crate::limits::MAX_METRIC_LIMIT;
use crate::model::{Clock, Tenant};
use crate::sync::lock;

/// One bin sent to live requests: its value, for one group of a grouped
/// expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub time: i64,
    pub group: Option<String>,
    pub value: BinValue,
    /// Sent again: a put changed a bin sent before.
    pub correction: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveMetricError {
    #[error(
        "at most {0} live metrics (distinct expression, step and delay) at once (--max-live-streams); retry later or share an expression"
    )]
    TooMany(usize),
    #[error(
        "a live metric request (no stop) cannot ask for the top N groups, which depend on a whole range; leave out the top, or give a stop"
    )]
    Top,
}

type Key = (Tenant, String, i64, i64);
type Batch = Arc<Vec<Update>>;

type Sent = BTreeMap<(i64, Option<String>), BinValue>;

/// What a shared poll and its subscribers share (the poll's sender is
/// held by the poll and the map of polls only, so that its subscribers see
/// the stream end when the poll ends).
struct Poll {
    /// Every bin before this time is closed and was sent (or is in every
    /// subscriber's history); moved only together with a broadcast.
    closed_until: Mutex<i64>,
    /// The values sent of the last [`MAX_METRIC_LIMIT`] closed bins, per
    /// group (in histories too), at most [`MAX_SENT`] of them, the oldest
    /// forgotten first: a bin is sent again only if it changed (or was
    /// forgotten).
    sent: Mutex<Sent>,
}

/// Most values a poll remembers: one request's bins.
const MAX_SENT: usize = crate::limits::MAX_BINS_PER_REQUEST;

/// Remembers `value` as sent, forgetting the oldest past [`MAX_SENT`].
fn remember(sent: &mut Sent, time: i64, group: Option<String>, value: BinValue) {
    sent.insert((time, group), value);
    while sent.len() > MAX_SENT {
        sent.pop_first();
    }
}

pub struct LiveMetrics {
    evaluator: Arc<Evaluator>,
    invalidator: Arc<Invalidator>,
    clock: Arc<dyn Clock>,
    poll: Duration,
    max_polls: usize,
    polls: Mutex<HashMap<Key, Running>>,
}

/// A running poll: its sender (held here and by the poll only) and what
/// it shares with its subscribers.
type Running = (broadcast::Sender<Batch>, Arc<Poll>);

/// What a live request receives after its history.
pub struct LiveMetric {
    rx: broadcast::Receiver<Batch>,
    /// The request's first bin: earlier corrections are not for it.
    first: i64,
    poll: Arc<Poll>,
}

impl LiveMetric {
    /// The request's history (`q`: its bins up to where
    /// [`LiveMetrics::follow`] said the poll stands), evaluated; the values
    /// of bins the poll has not sent yet are remembered as sent, so that
    /// only a change makes it send them again. A value that differs from
    /// one remembered (two histories either side of a put) is forgotten, so
    /// that the put's correction goes to everyone.
    pub async fn history(
        &self,
        evaluator: &Evaluator,
        tenant: &Tenant,
        q: &MetricQuery,
    ) -> Result<Vec<Update>, EvalError> {
        let bins = evaluate(evaluator, tenant, q, q.first, q.n, Vec::new()).await?;
        let oldest = *lock(&self.poll.closed_until) - MAX_METRIC_LIMIT as i64 * q.tier.step();
        let mut sent = lock(&self.poll.sent);
        for u in bins.iter().filter(|u| u.time >= oldest) {
            let k = (u.time, u.group.clone());
            match sent.get(&k) {
                None => remember(&mut sent, u.time, u.group.clone(), u.value),
                Some(v) if !same(*v, u.value) => {
                    sent.remove(&k);
                }
                Some(_) => {}
            }
        }
        Ok(bins)
    }

    /// The next bins to send (closed, or corrected); `None` once the
    /// shared poll ended. A receiver that fell behind the broadcast's
    /// buffer skips what it missed (its socket was not being written).
    pub async fn next(&mut self) -> Option<Vec<Update>> {
        loop {
            match self.rx.recv().await {
                Ok(batch) => {
                    let out: Vec<Update> = batch
                        .iter()
                        .filter(|u| u.time >= self.first)
                        .cloned()
                        .collect();
                    if !out.is_empty() {
                        return Some(out);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Whether two bin values are the same (NaN is NaN).
fn same(a: BinValue, b: BinValue) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    }
}

/// `n` bins of `template`'s expression from `first`, as updates; a grouped
/// expression's rows include the groups `also` names, even without events
/// in these bins (so that a group whose events left a bin gets its empty
/// value).
async fn evaluate(
    evaluator: &Evaluator,
    tenant: &Tenant,
    template: &MetricQuery,
    first: i64,
    n: usize,
    also: Vec<String>,
) -> Result<Vec<Update>, EvalError> {
    let q = MetricQuery {
        first,
        n,
        end: first + n as i64 * template.tier.step(),
        ..template.clone()
    };
    let mut out = Vec::new();
    if q.group.is_some() {
        for row in evaluator.evaluate_grouped_also(tenant, &q, also).await? {
            for (i, v) in row.values.iter().enumerate() {
                out.push(Update {
                    time: q.time(i),
                    group: row.group.clone(),
                    value: *v,
                    correction: false,
                });
            }
        }
    } else {
        let values = evaluator.values(tenant, &q).await?;
        out.extend(values.into_iter().enumerate().map(|(i, value)| Update {
            time: q.time(i),
            group: None,
            value,
            correction: false,
        }));
    }
    Ok(out)
}

/// Sorted, merged `[lo, hi)` runs.
fn merge_runs(mut runs: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    runs.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(runs.len());
    for (lo, hi) in runs {
        if hi <= lo {
            continue;
        }
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

impl LiveMetrics {
    pub fn new(
        evaluator: Arc<Evaluator>,
        invalidator: Arc<Invalidator>,
        clock: Arc<dyn Clock>,
        poll: Duration,
        max_polls: usize,
    ) -> Arc<Self> {
        Arc::new(LiveMetrics {
            evaluator,
            invalidator,
            clock,
            poll,
            max_polls,
            polls: Mutex::default(),
        })
    }

    /// Follows `q` (its expression, tier and first bin; its other bins are
    /// not used) with `delay`: joins or starts the shared poll. The bins
    /// before the time returned are the request's history, for the caller
    /// to evaluate and send first; the stream gives every bin after, and
    /// corrections from `q.first` on.
    pub fn follow(
        self: &Arc<Self>,
        tenant: &Tenant,
        q: &MetricQuery,
        delay: i64,
    ) -> Result<(i64, LiveMetric), LiveMetricError> {
        if q.group.as_ref().is_some_and(|g| g.top.is_some()) {
            return Err(LiveMetricError::Top);
        }
        let canonical = crate::plan::compile_metric(&q.expression)
            .map(|(ast, _)| ast.to_string())
            .unwrap_or_else(|_| q.expression.clone());
        let key = (tenant.clone(), canonical, q.tier.step(), delay);
        // Under the lock of the polls, which a poll also takes to end: a
        // poll joined here has not ended, and sees this subscriber.
        let mut polls = lock(&self.polls);
        let (tx, poll) = match polls.get(&key) {
            Some((tx, p)) if tx.receiver_count() > 0 => (tx.clone(), Arc::clone(p)),
            _ => {
                // Polls whose last subscriber left end at their next tick.
                polls.retain(|_, (tx, _)| tx.receiver_count() > 0);
                if polls.len() >= self.max_polls {
                    return Err(LiveMetricError::TooMany(self.max_polls));
                }
                let closed = q.tier.floor(self.clock.now_ms() - delay);
                let (tx, _) = broadcast::channel(64);
                let poll = Arc::new(Poll {
                    closed_until: Mutex::new(closed),
                    sent: Mutex::default(),
                });
                polls.insert(key.clone(), (tx.clone(), Arc::clone(&poll)));
                let me = Arc::clone(self);
                let (t, p, template) = (tx.clone(), Arc::clone(&poll), q.clone());
                tokio::spawn(async move { me.poll_loop(key, template, t, p).await });
                (tx, poll)
            }
        };
        // Subscribing and reading where the poll stands at once: every bin
        // from there on comes through the stream.
        let guard = lock(&poll.closed_until);
        let rx = tx.subscribe();
        let closed = *guard;
        drop(guard);
        drop(polls);
        Ok((
            closed,
            LiveMetric {
                rx,
                first: q.first,
                poll,
            },
        ))
    }

    /// The bins of `[lo, lo + n * step)` that changed since they were sent
    /// (or were not sent yet: new groups of a grouped expression, which a
    /// request of the range would also answer). A group sent for a bin
    /// whose events have all left these bins gets its value over nothing
    /// there (as many such groups as one request's bins allow; past that
    /// they are forgotten, and sent again if they come back).
    async fn corrections(
        &self,
        tenant: &Tenant,
        template: &MetricQuery,
        poll: &Poll,
        lo: i64,
        n: usize,
    ) -> Result<Vec<Update>, EvalError> {
        let step = template.tier.step();
        let hi = lo + n as i64 * step;
        let mut found = evaluate(&self.evaluator, tenant, template, lo, n, Vec::new()).await?;
        if template.group.is_some() {
            let present: std::collections::BTreeSet<String> =
                found.iter().filter_map(|u| u.group.clone()).collect();
            let mut gone: Vec<String> = {
                let sent = lock(&poll.sent);
                sent.range((lo, None)..(hi, None))
                    .filter_map(|((_, g), _)| g.as_deref())
                    .filter(|g| !present.contains(*g))
                    .map(str::to_owned)
                    .collect()
            };
            gone.sort_unstable();
            gone.dedup();
            if !gone.is_empty() {
                let room = crate::limits::MAX_BINS_PER_REQUEST / n.max(1);
                if gone.len() > room {
                    let mut sent = lock(&poll.sent);
                    for g in gone.drain(room..) {
                        sent.retain(|(t, sg), _| {
                            !(*t >= lo && *t < hi && sg.as_deref() == Some(&g))
                        });
                    }
                }
                let emptied = evaluate(&self.evaluator, tenant, template, lo, n, gone).await?;
                let sent = lock(&poll.sent);
                // Only where the group was sent, and only the groups gone.
                found.extend(emptied.into_iter().filter(|u| {
                    u.group.as_deref().is_some_and(|g| !present.contains(g))
                        && sent.contains_key(&(u.time, u.group.clone()))
                }));
            }
        }
        let mut sent = lock(&poll.sent);
        let mut out = Vec::new();
        for mut u in found {
            if sent
                .get(&(u.time, u.group.clone()))
                .is_some_and(|v| same(*v, u.value))
            {
                continue;
            }
            remember(&mut sent, u.time, u.group.clone(), u.value);
            u.correction = true;
            out.push(u);
        }
        Ok(out)
    }

    async fn poll_loop(
        self: Arc<Self>,
        key: Key,
        template: MetricQuery,
        tx: broadcast::Sender<Batch>,
        poll: Arc<Poll>,
    ) {
        let (tenant, _, step, delay) = key.clone();
        let tier = template.tier;
        let mut types: Vec<String> = template
            .plan
            .leaves()
            .iter()
            .map(|l| l.event_type.clone())
            .collect();
        types.sort_unstable();
        types.dedup();
        let mut generations: Vec<u64> = types
            .iter()
            .map(|t| self.invalidator.generation(&tenant, t))
            .collect();
        let span = MAX_METRIC_LIMIT as i64 * step;
        let mut failures = 0u32;
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            {
                // Ends under the lock of the polls (see `follow`).
                let mut polls = lock(&self.polls);
                if tx.receiver_count() == 0 {
                    if polls.get(&key).is_some_and(|(t, _)| t.same_channel(&tx)) {
                        polls.remove(&key);
                    }
                    break;
                }
            }
            let closed_until = *lock(&poll.closed_until);
            let oldest = closed_until - span;
            // What was written since the last look, among the closed bins.
            let mut touched = Vec::new();
            let mut now_generations = Vec::with_capacity(types.len());
            for (t, g) in types.iter().zip(&generations) {
                let (now, ranges) = self.invalidator.written_since(&tenant, t, *g);
                now_generations.push(now);
                match ranges {
                    None => touched.push((oldest, closed_until)),
                    Some(ranges) => touched.extend(ranges.into_iter().map(|(lo, hi)| {
                        (
                            tier.floor(lo.max(oldest)),
                            tier.floor(hi.min(closed_until - 1)) + step,
                        )
                    })),
                }
            }
            let mut updates = Vec::new();
            let mut failed = false;
            for (lo, hi) in merge_runs(touched) {
                let (lo, hi) = (lo.max(oldest), hi.min(closed_until));
                if hi <= lo {
                    continue;
                }
                let n = usize::try_from((hi - lo) / step).unwrap_or(0);
                match self.corrections(&tenant, &template, &poll, lo, n).await {
                    Ok(found) => updates.extend(found),
                    Err(e) => {
                        tracing::warn!(error = %e, "live metric correction failed");
                        failed = true;
                    }
                }
            }
            // Looked at: what a failed correction missed is looked at again
            // next time, three times at most (one that always fails, say
            // more groups than a request may have, must not be retried
            // forever).
            if failed && failures < 3 {
                failures += 1;
            } else {
                failures = 0;
                generations = now_generations;
            }
            // The bins closed since.
            let now_closed = tier.floor(self.clock.now_ms() - delay);
            let mut closed_to = closed_until;
            if now_closed > closed_until {
                let lo = closed_until.max(now_closed - span);
                let n = usize::try_from((now_closed - lo) / step).unwrap_or(0);
                match evaluate(&self.evaluator, &tenant, &template, lo, n, Vec::new()).await {
                    Ok(bins) => {
                        let mut sent = lock(&poll.sent);
                        for u in bins {
                            remember(&mut sent, u.time, u.group.clone(), u.value);
                            updates.push(u);
                        }
                        closed_to = now_closed;
                    }
                    Err(e) => tracing::warn!(error = %e, "live metric bins failed"),
                }
            }
            let keep_from = closed_to - span;
            lock(&poll.sent).retain(|(t, _), _| *t >= keep_from);
            let mut closed = lock(&poll.closed_until);
            if !updates.is_empty() {
                let _ = tx.send(Arc::new(updates));
            }
            *closed = closed_to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge() {
        assert_eq!(
            merge_runs(vec![(30, 40), (0, 10), (5, 20), (20, 25), (50, 50)]),
            vec![(0, 25), (30, 40)]
        );
        assert!(same(Some(f64::NAN), Some(f64::NAN)));
        assert!(!same(Some(1.0), None));
    }
}
