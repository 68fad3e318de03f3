//! The evaluator: metric queries over the cache and the event store.
//!
//! For each leaf of an expression: flush pending invalidations of its type,
//! read its valid cached bins, compute the missing runs of bins (from finer
//! cached bins for pyramidal reduces at the hour and day tiers, else from
//! events), and cache what was computed unless a put touched the range
//! meanwhile. Bins whose every leaf was cached are emitted first. One run of
//! one leaf asked for by concurrent requests is computed once.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::join_all;
use tokio::sync::OnceCell;

use super::invalidation::Invalidator;
use crate::limits::MAX_BINS_PER_REQUEST;
use crate::metric::group::{GroupedBins, merge_groups};
use crate::metric::reduce::{is_pyramidal, merge};
use crate::metric::{BinComputer, GroupRow, GroupedBinComputer, LeafBins, Tier, combine_groups};
use crate::model::{Tenant, time};
use crate::plan::{GroupSpec, LeafPlan, MetricPlan, PlanError, compile_metric};
use crate::storage::{
    CachedBin, CachedGroups, EventStore, MetricCache, Selected, Selection, StoreError,
};
use crate::sync::lock;

/// Largest (and default) number of bins one request returns.
pub const MAX_METRIC_LIMIT: i64 = crate::limits::MAX_METRIC_LIMIT as i64;
/// Default step: 10 seconds.
pub const DEFAULT_STEP: i64 = 10_000;
/// Coarse bins whose finer bins a pyramid reads at once.
const PYRAMID_CHUNK: usize = 1024;

/// Why evaluation failed (shared between requests that wait on one computation).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EvalError {
    #[error("storage error: {0}")]
    Store(String),
    /// The store failed a write and is being reopened (see
    /// [`StoreError::Failed`]): retry.
    #[error("{0}")]
    StoreFailed(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The request would hold more than its memory budget.
    #[error("{0}")]
    TooLarge(String),
    /// The request did not finish within the query timeout; its result
    /// was not waited for.
    #[error("the query did not finish within {} ms", .0.as_millis())]
    Timeout(std::time::Duration),
    /// A scan stopped because nobody waits for its bins any more (its
    /// request timed out or went away); never answered to a client.
    #[error("the scan was abandoned")]
    Abandoned,
}

impl From<StoreError> for EvalError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Failed(_) => EvalError::StoreFailed(e.to_string()),
            e => EvalError::Store(e.to_string()),
        }
    }
}

/// Why a metric request was refused. `Display` is Cube's error text; the
/// variants are checked in this order.
#[derive(Debug, thiserror::Error)]
pub enum MetricQueryError {
    #[error("invalid start")]
    Start,
    #[error("invalid stop")]
    Stop,
    #[error("invalid expression")]
    Expression(PlanError),
    #[error("invalid step")]
    Step,
    #[error("invalid limit")]
    Limit,
    /// Distinct reduces times bins is over [`MAX_BINS_PER_REQUEST`].
    #[error("query too large")]
    TooManyBins { reduces: usize, bins: usize },
}

impl MetricQueryError {
    /// The details a client is told with a refused parameter.
    pub fn message(&self) -> Option<String> {
        match self {
            MetricQueryError::Start => Some(time::refused_time("start")),
            MetricQueryError::Stop => Some(time::refused_time("stop")),
            MetricQueryError::Step => Some(format!(
                "step must be one of {} (milliseconds: 10 s, 1 min, 5 min, 1 h, 1 day)",
                crate::metric::tiers::TIERS
                    .map(|t| t.to_string())
                    .join(", ")
            )),
            MetricQueryError::Limit => Some(time::refused_limit("bins", MAX_METRIC_LIMIT)),
            MetricQueryError::TooManyBins { reduces, bins } => Some(format!(
                "{reduces} distinct reduce(s) x {bins} bins is more than the \
                 {MAX_BINS_PER_REQUEST} bins one request may compute; ask for fewer bins or \
                 fewer reduces"
            )),
            MetricQueryError::Expression(_) => None,
        }
    }
}

/// A parsed metric request: the bins `first + i * step` for `i < n`.
#[derive(Debug, Clone)]
pub struct MetricQuery {
    pub expression: String,
    pub plan: MetricPlan,
    pub tier: Tier,
    pub first: i64,
    pub n: usize,
    /// `ceil(stop)`: the time of the WebSocket end marker.
    pub end: i64,
    /// How a grouped expression groups (`.group(field)`); `None`: ungrouped.
    pub group: Option<GroupSpec>,
}

impl MetricQuery {
    /// Cube's parameters and defaults: `step` 10000, `stop` now floored to
    /// the step, `start` 0, `limit` 10000 (also the maximum); when the range
    /// holds more than `limit` bins, the start moves forward.
    pub fn parse(
        expression: Option<&str>,
        start: Option<&str>,
        stop: Option<&str>,
        step: Option<&str>,
        limit: Option<&str>,
        now: i64,
    ) -> Result<Self, MetricQueryError> {
        let parsed_step = match step {
            None => Some(DEFAULT_STEP),
            Some(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.fract() == 0.0 && x.abs() < 1e15)
                .map(|x| x as i64),
        };
        let tier = parsed_step.and_then(Tier::from_step);
        let start = match start {
            None => 0,
            Some(s) => time::parse_param(s).ok_or(MetricQueryError::Start)?,
        };
        let stop = match stop {
            None => tier
                .unwrap_or(Tier::from_step(DEFAULT_STEP).ok_or(MetricQueryError::Step)?)
                .floor(now),
            Some(s) => time::parse_stop(s).ok_or(MetricQueryError::Stop)?,
        };
        let (ast, plan) =
            compile_metric(expression.unwrap_or_default()).map_err(MetricQueryError::Expression)?;
        let group = MetricPlan::group(&ast).map_err(MetricQueryError::Expression)?;
        let tier = tier.ok_or(MetricQueryError::Step)?;
        let limit = match limit {
            None => MAX_METRIC_LIMIT,
            Some(s) => {
                let x: f64 = s.trim().parse().map_err(|_| MetricQueryError::Limit)?;
                if x.is_nan() || x < 0.0 {
                    return Err(MetricQueryError::Limit);
                }
                (x as i64).min(MAX_METRIC_LIMIT)
            }
        };
        let end = tier.ceil(stop);
        let mut first = tier.floor(start);
        let mut n = tier.count(start, stop);
        if n > limit {
            first = end - limit * tier.step();
            n = limit;
        }
        let mut q = Self::planned(
            expression.unwrap_or_default(),
            plan,
            group,
            tier,
            first,
            usize::try_from(n).unwrap_or(0),
        )?;
        // Cube's end marker: `ceil(stop)`, also for an empty range.
        q.end = end;
        Ok(q)
    }

    /// The `n` bins of `tier` from `first` (a bin start) of an expression
    /// (`n` at most [`MAX_METRIC_LIMIT`]).
    pub fn bins(
        expression: &str,
        tier: Tier,
        first: i64,
        n: usize,
    ) -> Result<Self, MetricQueryError> {
        let (ast, plan) = compile_metric(expression).map_err(MetricQueryError::Expression)?;
        let group = MetricPlan::group(&ast).map_err(MetricQueryError::Expression)?;
        if n > crate::limits::MAX_METRIC_LIMIT {
            return Err(MetricQueryError::Limit);
        }
        Self::planned(expression, plan, group, tier, tier.floor(first), n)
    }

    /// The same bins of one of this query's leaves alone.
    pub fn leaf(&self, leaf: &LeafPlan) -> Self {
        MetricQuery {
            expression: leaf.source.clone(),
            plan: MetricPlan::Leaf(leaf.clone()),
            group: None,
            ..self.clone()
        }
    }

    fn planned(
        expression: &str,
        plan: MetricPlan,
        group: Option<GroupSpec>,
        tier: Tier,
        first: i64,
        n: usize,
    ) -> Result<Self, MetricQueryError> {
        let reduces = distinct_reduces(&plan);
        if reduces.saturating_mul(n) > MAX_BINS_PER_REQUEST {
            return Err(MetricQueryError::TooManyBins { reduces, bins: n });
        }
        let step = tier.step();
        Ok(MetricQuery {
            expression: expression.to_owned(),
            plan,
            tier,
            first,
            n,
            end: first.saturating_add((n as i64).saturating_mul(step)),
            group,
        })
    }

    pub fn time(&self, i: usize) -> i64 {
        self.first + i as i64 * self.tier.step()
    }
}

/// How many distinct reduces (leaf sources) a plan computes: what a
/// request's bins are multiplied by, for its bounds.
fn distinct_reduces(plan: &MetricPlan) -> usize {
    let mut sources: Vec<&str> = plan.leaves().iter().map(|l| l.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    sources.len()
}

type RunResult = Result<Arc<Vec<Option<f64>>>, EvalError>;

/// Removes a single-flight entry when the call that made or joined it
/// ends, however it ends, unless a newer one took its key (a later call
/// may then still join the one computing; it is dropped with its last user).
struct LeaveInflight<'a> {
    map: &'a Mutex<HashMap<RunKey, Arc<OnceCell<RunResult>>>>,
    key: RunKey,
    cell: Arc<OnceCell<RunResult>>,
}

impl Drop for LeaveInflight<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        if map
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            map.remove(&self.key);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RunKey {
    tenant: Tenant,
    event_type: String,
    source: String,
    tier: Tier,
    first: i64,
    n: usize,
}

/// Called after a leaf's bins were computed: (tenant, leaf source, milliseconds).
pub type ComputeListener = Arc<dyn Fn(&Tenant, &str, u64) + Send + Sync>;

pub struct Evaluator {
    store: Arc<dyn EventStore>,
    cache: Arc<dyn MetricCache>,
    invalidator: Arc<Invalidator>,
    inflight: Mutex<HashMap<RunKey, Arc<OnceCell<RunResult>>>>,
    listeners: Mutex<Vec<ComputeListener>>,
    run: Arc<crate::telemetry::results::Run>,
    /// Bytes of values one request may hold.
    query_memory: usize,
    /// Longest one request may take (`--query-timeout-ms`).
    query_timeout: std::time::Duration,
    /// Scans of events running at once, server-wide (`--max-computations`):
    /// a scan waits for a permit (within its request's deadline) and holds
    /// it until its blocking work ends, even if its request is gone.
    computations: Arc<tokio::sync::Semaphore>,
    /// Bins of metric requests being evaluated at once, server-wide
    /// (`--max-bins-in-flight`; a request counts its distinct reduces
    /// times its bins): a request waits for its turn, within its deadline,
    /// before it holds anything, so requests piling up (a client asking
    /// faster than its answers can be computed) wait without memory.
    bins_in_flight: tokio::sync::Semaphore,
    max_bins_in_flight: usize,
    /// Most groups one grouped reduce may have over a request's range
    /// (`--max-groups`).
    max_groups: usize,
}

/// One value per bin: `None` undefined; `Some(NaN)` shows as null.
pub type BinValue = Option<f64>;

impl Evaluator {
    /// Drops every cached bin of one tenant (`DELETE /1.0/metric/cache`).
    pub async fn clear_cache(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let cache = Arc::clone(&self.cache);
        let tenant = tenant.clone();
        super::on_store(move || cache.clear_tenant(&tenant)).await
    }

    pub fn new(
        store: Arc<dyn EventStore>,
        cache: Arc<dyn MetricCache>,
        invalidator: Arc<Invalidator>,
        run: Arc<crate::telemetry::results::Run>,
        query_memory: usize,
        query_timeout: std::time::Duration,
        max_computations: usize,
    ) -> Self {
        Evaluator {
            computations: Arc::new(tokio::sync::Semaphore::new(max_computations.max(1))),
            store,
            cache,
            invalidator,
            inflight: Mutex::default(),
            listeners: Mutex::default(),
            run,
            query_memory,
            query_timeout,
            bins_in_flight: tokio::sync::Semaphore::new(crate::limits::DEFAULT_MAX_BINS_IN_FLIGHT),
            max_bins_in_flight: crate::limits::DEFAULT_MAX_BINS_IN_FLIGHT,
            max_groups: crate::limits::DEFAULT_MAX_GROUPS,
        }
    }

    /// Puts this moment's gauges into the run's results: bins in flight, and
    /// what the store's engine holds in memory.
    pub fn sample_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let busy = self
            .max_bins_in_flight
            .saturating_sub(self.bins_in_flight.available_permits());
        self.run
            .evaluator
            .bins_in_flight
            .store(busy as u64, Relaxed);
        let memory = self.store.memory();
        self.run
            .store
            .memtable_bytes
            .store(memory.memtable_bytes, Relaxed);
        self.run
            .store
            .block_cache_bytes
            .store(memory.block_cache_bytes, Relaxed);
    }

    /// With another cap on bins being evaluated at once (at least one
    /// request's [`MAX_BINS_PER_REQUEST`], so that every request fits).
    pub fn with_max_bins_in_flight(mut self, max: usize) -> Self {
        let max = max.clamp(MAX_BINS_PER_REQUEST, tokio::sync::Semaphore::MAX_PERMITS);
        self.bins_in_flight = tokio::sync::Semaphore::new(max);
        self.max_bins_in_flight = max;
        self
    }

    /// Longest one request may take (`--query-timeout-ms`).
    pub fn query_timeout(&self) -> std::time::Duration {
        self.query_timeout
    }

    /// With another cap on groups per grouped reduce and request (at least 1).
    pub fn with_max_groups(mut self, max: usize) -> Self {
        self.max_groups = max.max(1);
        self
    }

    pub fn on_compute(&self, l: ComputeListener) {
        lock(&self.listeners).push(l);
    }

    /// Evaluates `q`, calling `emit(bin index, value)` once per bin: bins
    /// whose leaves were all cached first, then the rest. A request that
    /// has not finished within the query timeout ends with
    /// [`EvalError::Timeout`] (bins emitted before stay emitted).
    pub async fn evaluate(
        &self,
        tenant: &Tenant,
        q: &MetricQuery,
        emit: &mut (dyn FnMut(usize, BinValue) + Send),
    ) -> Result<(), EvalError> {
        if q.group.is_some() {
            return Err(EvalError::Internal(
                "a grouped expression is evaluated with evaluate_grouped".into(),
            ));
        }
        let started = std::time::Instant::now();
        let stats = &self.run.evaluator;
        stats.metric_requests.fetch_add(1, Relaxed);
        let cost = distinct_reduces(&q.plan)
            .saturating_mul(q.n)
            .clamp(1, self.max_bins_in_flight);
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        let r = tokio::time::timeout(self.query_timeout, async {
            // Never closed; a closed one would only mean no turn to wait for.
            let _turn = self.bins_in_flight.acquire_many(cost).await.ok();
            self.evaluate_inner(tenant, q, emit).await
        })
        .await
        .unwrap_or(Err(EvalError::Timeout(self.query_timeout)));
        stats.metric_latency.record(started.elapsed());
        match &r {
            Ok(()) => stats.bins_returned.fetch_add(q.n as u64, Relaxed),
            Err(_) => stats.metric_errors.fetch_add(1, Relaxed),
        };
        r
    }

    /// [`evaluate`](Self::evaluate) into a value per bin, in order.
    pub async fn values(
        &self,
        tenant: &Tenant,
        q: &MetricQuery,
    ) -> Result<Vec<BinValue>, EvalError> {
        let mut values: Vec<BinValue> = vec![None; q.n];
        self.evaluate(tenant, q, &mut |i, v| {
            if let Some(slot) = values.get_mut(i) {
                *slot = v;
            }
        })
        .await?;
        Ok(values)
    }

    /// Evaluates a grouped `q` (`q.group` is set): its rows, one per group
    /// (see `metric::group`), each with a value per bin. Grouped bins go
    /// through the cache as the others do.
    pub async fn evaluate_grouped(
        &self,
        tenant: &Tenant,
        q: &MetricQuery,
    ) -> Result<Vec<GroupRow>, EvalError> {
        self.evaluate_grouped_also(tenant, q, Vec::new()).await
    }

    /// [`evaluate_grouped`](Self::evaluate_grouped), with a row for each
    /// group `also` names too, even one without events in the range (its
    /// grouped reduces' values over nothing): live metrics correct a group
    /// whose events left a bin.
    pub async fn evaluate_grouped_also(
        &self,
        tenant: &Tenant,
        q: &MetricQuery,
        also: Vec<String>,
    ) -> Result<Vec<GroupRow>, EvalError> {
        let started = std::time::Instant::now();
        let stats = &self.run.evaluator;
        stats.metric_requests.fetch_add(1, Relaxed);
        let cost = distinct_reduces(&q.plan)
            .saturating_mul(q.n)
            .clamp(1, self.max_bins_in_flight);
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        let r = tokio::time::timeout(self.query_timeout, async {
            let _turn = self.bins_in_flight.acquire_many(cost).await.ok();
            self.evaluate_grouped_inner(tenant, q, &also).await
        })
        .await
        .unwrap_or(Err(EvalError::Timeout(self.query_timeout)));
        stats.metric_latency.record(started.elapsed());
        match &r {
            Ok(rows) => stats
                .bins_returned
                .fetch_add((q.n * rows.len()) as u64, Relaxed),
            Err(_) => stats.metric_errors.fetch_add(1, Relaxed),
        };
        r
    }

    async fn evaluate_grouped_inner(
        &self,
        tenant: &Tenant,
        q: &MetricQuery,
        also: &[String],
    ) -> Result<Vec<GroupRow>, EvalError> {
        let budget = Budget::new(self.query_memory);
        let max_groups = self
            .max_groups
            .min(MAX_BINS_PER_REQUEST / q.n.max(1))
            .max(1);
        let (distinct, index) = q.plan.distinct_leaves();
        let mut computed: Vec<LeafBins> = Vec::with_capacity(distinct.len());
        for leaf in distinct {
            let leaf = Arc::new(leaf.clone());
            let bins = if leaf.group.is_some() {
                LeafBins::Grouped(
                    self.grouped(tenant, &leaf, q.tier, q.first, q.n, max_groups, &budget)
                        .await?,
                )
            } else {
                let cached = self.cached(tenant, &leaf, q.tier, q.first, q.n).await?;
                LeafBins::Plain(
                    self.fill(tenant, &leaf, q.tier, q.first, cached, &budget)
                        .await?,
                )
            };
            computed.push(bins);
        }
        let per_leaf: Vec<LeafBins> = index.iter().map(|&j| computed[j].clone()).collect();
        Ok(combine_groups(
            &q.plan,
            &per_leaf,
            q.n,
            q.group.as_ref().and_then(|g| g.top),
            also,
        ))
    }

    /// A grouped leaf's bins: the valid cached ones, the runs missing
    /// computed (and cached unless a put touched them meanwhile). More
    /// groups than `max_groups` over the range is `TooLarge`.
    #[allow(clippy::too_many_arguments)]
    async fn grouped(
        &self,
        tenant: &Tenant,
        leaf: &Arc<LeafPlan>,
        tier: Tier,
        first: i64,
        n: usize,
        max_groups: usize,
        budget: &Budget,
    ) -> Result<GroupedBins, EvalError> {
        let cached = self.cached_grouped(tenant, leaf, tier, first, n).await?;
        let hits = cached.iter().filter(|c| c.is_some()).count();
        let stats = &self.run.evaluator;
        stats.cache_hits.fetch_add(hits as u64, Relaxed);
        stats.cache_misses.fetch_add((n - hits) as u64, Relaxed);
        let runs = missing_runs(cached.iter().map(Option::is_none));
        let mut out: GroupedBins = cached.into_iter().map(Option::unwrap_or_default).collect();
        let step = tier.step();
        for (lo, hi) in runs {
            let bins = self
                .compute_grouped(
                    tenant,
                    leaf,
                    tier,
                    first + lo as i64 * step,
                    hi - lo,
                    max_groups,
                    budget,
                )
                .await?;
            for (slot, bin) in out[lo..hi].iter_mut().zip(bins) {
                *slot = bin;
            }
        }
        let mut groups = std::collections::BTreeSet::new();
        for bin in &out {
            groups.extend(bin.keys());
            if groups.len() > max_groups {
                return Err(too_many_groups(leaf, max_groups));
            }
        }
        Ok(out)
    }

    /// Computes `n` grouped bins and caches them unless a put touched
    /// their range meanwhile (on a store other processes write too, grouped
    /// bins are not cached). Hour and day bins of pyramidal reduces whose
    /// finer bins are all cached (and number at most [`MAX_METRIC_LIMIT`])
    /// are merged from those, group by group; the others are computed from
    /// the events.
    #[allow(clippy::too_many_arguments)]
    async fn compute_grouped(
        &self,
        tenant: &Tenant,
        leaf: &Arc<LeafPlan>,
        tier: Tier,
        first: i64,
        n: usize,
        max_groups: usize,
        budget: &Budget,
    ) -> Result<GroupedBins, EvalError> {
        let generation = self.invalidator.generation(tenant, &leaf.event_type);
        let started = Instant::now();
        let step = tier.step();
        let mut bins: Option<GroupedBins> = None;
        if let Some(finer) = tier.pyramid_source().filter(|_| is_pyramidal(leaf.reduce)) {
            let k = usize::try_from(step / finer.step()).unwrap_or(1);
            if n.saturating_mul(k) <= crate::limits::MAX_METRIC_LIMIT {
                let fine = self
                    .cached_grouped(tenant, leaf, finer, first, n * k)
                    .await?;
                if fine.iter().all(Option::is_some) {
                    let stats = &self.run.evaluator;
                    stats.bins_merged.fetch_add(n as u64, Relaxed);
                    stats.bins_computed.fetch_add(n as u64, Relaxed);
                    bins = Some(
                        fine.chunks(k)
                            .map(|parts| merge_groups(leaf.reduce, parts.iter().flatten()))
                            .collect(),
                    );
                }
            }
        }
        let bins = match bins {
            Some(b) => b,
            None => {
                self.scan_grouped(tenant, leaf, tier, first, n, max_groups, budget)
                    .await?
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        if !self.cache.shares_writes() {
            let cached: Vec<CachedGroups> = bins
                .iter()
                .enumerate()
                .map(|(i, b)| CachedGroups {
                    time: first + i as i64 * step,
                    groups: b.iter().map(|(g, v)| (g.clone(), *v)).collect(),
                })
                .collect();
            let (cache, inv, owned, l, store) = (
                Arc::clone(&self.cache),
                Arc::clone(&self.invalidator),
                tenant.clone(),
                Arc::clone(leaf),
                Arc::clone(&self.store),
            );
            let stop = first + n as i64 * step;
            let done = tokio::task::spawn_blocking(move || {
                if !store.has_type(&owned, &l.event_type)? {
                    return Ok(false);
                }
                inv.cache_unless_dirty(&owned, &l.event_type, generation, first, stop, || {
                    cache.put_grouped(&owned, &l.event_type, &l.source, step, &cached)
                })
            })
            .await
            .map_err(|e| EvalError::Internal(e.to_string()))?;
            if let Err(e) = done {
                tracing::warn!(error = %e, source = %leaf.source, "computed grouped bins not cached");
            }
        }
        let listeners = lock(&self.listeners).clone();
        for l in listeners {
            l(tenant, &leaf.source, ms);
        }
        Ok(bins)
    }

    /// Computes a grouped leaf's bins from the events of the range (their
    /// data decoded here), under a computation permit.
    #[allow(clippy::too_many_arguments)]
    async fn scan_grouped(
        &self,
        tenant: &Tenant,
        leaf: &Arc<LeafPlan>,
        tier: Tier,
        first: i64,
        n: usize,
        max_groups: usize,
        budget: &Budget,
    ) -> Result<GroupedBins, EvalError> {
        let (store, tenant, leaf) = (Arc::clone(&self.store), tenant.clone(), Arc::clone(leaf));
        let budget = budget.clone();
        let stats = Arc::clone(&self.run);
        let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _abandon = Abandon(Arc::clone(&abandoned));
        stats.evaluator.computations_waiting.fetch_add(1, Relaxed);
        let permit = Arc::clone(&self.computations).acquire_owned().await;
        stats.evaluator.computations_waiting.fetch_sub(1, Relaxed);
        let permit = permit.map_err(|e| EvalError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let e = &stats.evaluator;
            let running = e.computations_running.fetch_add(1, Relaxed) + 1;
            e.computations_peak.fetch_max(running, Relaxed);
            let r = scan_grouped_bins(
                &*store, &tenant, &leaf, tier, first, n, max_groups, &budget, &abandoned,
            );
            e.computations_running.fetch_sub(1, Relaxed);
            e.bins_computed.fetch_add(n as u64, Relaxed);
            r
        })
        .await
        .map_err(|e| EvalError::Internal(e.to_string()))?
    }

    async fn evaluate_inner(
        &self,
        tenant: &Tenant,
        q: &MetricQuery,
        emit: &mut (dyn FnMut(usize, BinValue) + Send),
    ) -> Result<(), EvalError> {
        let (distinct, index) = q.plan.distinct_leaves();
        let unique: Vec<Arc<LeafPlan>> =
            distinct.into_iter().map(|l| Arc::new(l.clone())).collect();
        let single_leaf = matches!(q.plan, MetricPlan::Leaf(_));
        let combine = |values: &[Vec<BinValue>], i: usize| -> BinValue {
            if single_leaf {
                return values.first().and_then(|v| v[i]);
            }
            let per_leaf: Vec<Option<f64>> = index.iter().map(|&j| values[j][i]).collect();
            Some(q.plan.combine(&per_leaf))
        };

        let budget = Budget::new(self.query_memory);
        let mut cached = Vec::with_capacity(unique.len());
        for leaf in &unique {
            cached.push(self.cached(tenant, leaf, q.tier, q.first, q.n).await?);
        }
        let hits: usize = cached
            .iter()
            .map(|c| c.iter().filter(|v| v.is_some()).count())
            .sum();
        let stats = &self.run.evaluator;
        stats.cache_hits.fetch_add(hits as u64, Relaxed);
        stats
            .cache_misses
            .fetch_add((cached.len() * q.n - hits) as u64, Relaxed);
        let mut done = vec![false; q.n];
        {
            let known: Vec<Vec<BinValue>> = cached
                .iter()
                .map(|c| c.iter().map(|v| v.flatten()).collect())
                .collect();
            for (i, d) in done.iter_mut().enumerate() {
                if cached.iter().all(|c| c[i].is_some()) {
                    emit(i, combine(&known, i));
                    *d = true;
                }
            }
        }
        if done.iter().all(|d| *d) {
            return Ok(());
        }
        let filled = join_all(
            unique
                .iter()
                .zip(cached)
                .map(|(leaf, c)| self.fill(tenant, leaf, q.tier, q.first, c, &budget)),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        for (i, d) in done.iter().enumerate() {
            if !d {
                emit(i, combine(&filled, i));
            }
        }
        Ok(())
    }

    /// Flushes the type's pending invalidations and reads the valid cached
    /// bins: `Some(value)` where cached (value itself may be undefined);
    /// nothing when the invalidations could not be written.
    async fn cached(
        &self,
        tenant: &Tenant,
        leaf: &LeafPlan,
        tier: Tier,
        first: i64,
        n: usize,
    ) -> Result<Vec<Option<BinValue>>, EvalError> {
        self.cached_with(
            tenant,
            leaf,
            tier,
            first,
            n,
            |cache, t, ty, src, step, lo, hi| {
                Ok(cache
                    .get(t, ty, src, step, lo, hi)?
                    .into_iter()
                    .map(|b| (b.time, b.value))
                    .collect())
            },
        )
        .await
    }

    /// The same for a grouped leaf: each cached bin's groups.
    async fn cached_grouped(
        &self,
        tenant: &Tenant,
        leaf: &LeafPlan,
        tier: Tier,
        first: i64,
        n: usize,
    ) -> Result<Vec<Option<std::collections::BTreeMap<String, BinValue>>>, EvalError> {
        self.cached_with(
            tenant,
            leaf,
            tier,
            first,
            n,
            |cache, t, ty, src, step, lo, hi| {
                Ok(cache
                    .get_grouped(t, ty, src, step, lo, hi)?
                    .into_iter()
                    .map(|b| (b.time, b.groups.into_iter().collect()))
                    .collect())
            },
        )
        .await
    }

    /// Flushes the type's pending invalidations, then reads the valid
    /// cached bins of `[first, first + n * step)` with `get` (as (time,
    /// bin) pairs), each in its slot; all `None` when the invalidations
    /// could not be written (the cache is not trusted then).
    #[allow(clippy::too_many_arguments)]
    async fn cached_with<T: Clone + Send + 'static>(
        &self,
        tenant: &Tenant,
        leaf: &LeafPlan,
        tier: Tier,
        first: i64,
        n: usize,
        get: impl FnOnce(
            &dyn MetricCache,
            &Tenant,
            &str,
            &str,
            i64,
            i64,
            i64,
        ) -> Result<Vec<(i64, T)>, StoreError>
        + Send
        + 'static,
    ) -> Result<Vec<Option<T>>, EvalError> {
        let (inv, cache, tenant) = (
            Arc::clone(&self.invalidator),
            Arc::clone(&self.cache),
            tenant.clone(),
        );
        let (event_type, source) = (leaf.event_type.clone(), leaf.source.clone());
        tokio::task::spawn_blocking(move || {
            // Cached bins are trusted only once the type's invalidations are
            // written; if they cannot be (the store failed a write and is
            // being reopened), everything is computed from the events.
            if let Err(e) = inv.flush_type(&tenant, &event_type) {
                tracing::warn!(error = %e, "invalidations not written; the cache is not read");
                return Ok(vec![None; n]);
            }
            let step = tier.step();
            let stop = first + n as i64 * step;
            let bins = get(&*cache, &tenant, &event_type, &source, step, first, stop)?;
            let mut out = vec![None; n];
            for (time, bin) in bins {
                if let Some(slot) = usize::try_from((time - first) / step)
                    .ok()
                    .and_then(|i| out.get_mut(i))
                {
                    *slot = Some(bin);
                }
            }
            Ok::<_, StoreError>(out)
        })
        .await
        .map_err(|e| EvalError::Internal(e.to_string()))?
        .map_err(EvalError::from)
    }

    /// Fills the bins `cached` lacks, run by run.
    async fn fill(
        &self,
        tenant: &Tenant,
        leaf: &Arc<LeafPlan>,
        tier: Tier,
        first: i64,
        cached: Vec<Option<BinValue>>,
        budget: &Budget,
    ) -> Result<Vec<BinValue>, EvalError> {
        let step = tier.step();
        let mut out: Vec<BinValue> = cached.iter().map(|v| v.flatten()).collect();
        for (lo, hi) in missing_runs(cached.iter().map(Option::is_none)) {
            let values = self
                .run(
                    tenant,
                    leaf,
                    tier,
                    first + lo as i64 * step,
                    hi - lo,
                    budget,
                )
                .await?;
            out[lo..hi].copy_from_slice(&values);
        }
        Ok(out)
    }

    /// Computes one run of missing bins, once for all concurrent askers.
    async fn run(
        &self,
        tenant: &Tenant,
        leaf: &Arc<LeafPlan>,
        tier: Tier,
        first: i64,
        n: usize,
        budget: &Budget,
    ) -> RunResult {
        let key = RunKey {
            tenant: tenant.clone(),
            event_type: leaf.event_type.clone(),
            source: leaf.source.clone(),
            tier,
            first,
            n,
        };
        let cell = {
            let mut map = lock(&self.inflight);
            Arc::clone(
                map.entry(key.clone())
                    .or_insert_with(|| Arc::new(OnceCell::new())),
            )
        };
        // The entry goes when this call ends, also when its request is
        // dropped while waiting (a timeout, a closed socket): otherwise
        // abandoned entries would pile up.
        let _leave = LeaveInflight {
            map: &self.inflight,
            key,
            cell: Arc::clone(&cell),
        };
        cell.get_or_init(|| self.compute(tenant, leaf, tier, first, n, budget))
            .await
            .clone()
    }

    /// Computes `n` bins and caches them unless a put touched their range
    /// meanwhile. Hour and day bins of pyramidal reduces whose finer bins
    /// are all cached are merged from those; every other bin is computed
    /// from events (finer bins are never computed for a coarser answer, so
    /// the work is bounded by the bins asked for).
    async fn compute(
        &self,
        tenant: &Tenant,
        leaf: &Arc<LeafPlan>,
        tier: Tier,
        first: i64,
        n: usize,
        budget: &Budget,
    ) -> RunResult {
        let generation = self.invalidator.generation(tenant, &leaf.event_type);
        // Puts of other processes on a shared store, counted by the store.
        let shared = if self.cache.shares_writes() {
            let (cache, owned, event_type) = (
                Arc::clone(&self.cache),
                tenant.clone(),
                leaf.event_type.clone(),
            );
            tokio::task::spawn_blocking(move || cache.shared_generation(&owned, &event_type))
                .await
                .map_err(|e| EvalError::Internal(e.to_string()))?
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "write count not read; bins are not cached");
                    None
                })
        } else {
            None
        };
        let cache_ok = !self.cache.shares_writes() || shared.is_some();
        let started = Instant::now();
        let step = tier.step();
        let values = match tier.pyramid_source().filter(|_| is_pyramidal(leaf.reduce)) {
            Some(finer) => {
                let k = usize::try_from(step / finer.step()).unwrap_or(1);
                let mut values: Vec<BinValue> = vec![None; n];
                let mut whole = vec![false; n];
                // A chunk of coarse bins at a time: a pyramid never holds
                // more than PYRAMID_CHUNK * k finer bins.
                for lo in (0..n).step_by(PYRAMID_CHUNK) {
                    let len = PYRAMID_CHUNK.min(n - lo);
                    let chunk_first = first + lo as i64 * step;
                    let fine = self
                        .cached(tenant, leaf, finer, chunk_first, len * k)
                        .await?;
                    for (j, parts) in fine.chunks(k).enumerate() {
                        if parts.iter().all(Option::is_some) {
                            values[lo + j] = merge(leaf.reduce, parts.iter().map(|p| p.flatten()));
                            whole[lo + j] = true;
                        }
                    }
                }
                let merged = whole.iter().filter(|w| **w).count();
                self.run
                    .evaluator
                    .bins_merged
                    .fetch_add(merged as u64, Relaxed);
                for (lo, hi) in missing_runs(whole.iter().map(|c| !c)) {
                    let part = self
                        .scan(
                            tenant,
                            leaf,
                            tier,
                            first + lo as i64 * step,
                            hi - lo,
                            budget,
                        )
                        .await?;
                    values[lo..hi].copy_from_slice(&part);
                }
                values
            }
            None => self.scan(tenant, leaf, tier, first, n, budget).await?,
        };
        let ms = started.elapsed().as_millis() as u64;
        self.run
            .evaluator
            .bins_computed
            .fetch_add(n as u64, Relaxed);
        let bins: Vec<CachedBin> = values
            .iter()
            .enumerate()
            .map(|(i, v)| CachedBin {
                time: first + i as i64 * step,
                value: *v,
            })
            .collect();
        let (cache, inv, owned, l, store) = (
            Arc::clone(&self.cache),
            Arc::clone(&self.invalidator),
            tenant.clone(),
            Arc::clone(leaf),
            Arc::clone(&self.store),
        );
        let stop = first + n as i64 * step;
        let cached = tokio::task::spawn_blocking(move || {
            // Bins of a type without events are not cached: there is
            // nothing to summarise, and queries of made-up types must fill
            // neither the cache nor memory.
            if !cache_ok || !store.has_type(&owned, &l.event_type)? {
                return Ok(false);
            }
            inv.cache_unless_dirty(&owned, &l.event_type, generation, first, stop, || {
                cache
                    .put_as_of(&owned, &l.event_type, &l.source, step, &bins, shared)
                    .map(|_| ())
            })
        })
        .await
        .map_err(|e| EvalError::Internal(e.to_string()))?;
        // The values are right whether or not they could be cached (a full
        // disk refuses cache writes): the query is answered either way, and
        // the bins are computed again next time.
        if let Err(e) = cached {
            tracing::warn!(error = %e, source = %leaf.source, "computed bins not cached");
        }
        let listeners = lock(&self.listeners).clone();
        for l in listeners {
            l(tenant, &leaf.source, ms);
        }
        Ok(Arc::new(values))
    }

    /// Computes bins from the events of `[first, first + n * step)`, split
    /// by bins over the machine's cores (bins are independent).
    async fn scan(
        &self,
        tenant: &Tenant,
        leaf: &Arc<LeafPlan>,
        tier: Tier,
        first: i64,
        n: usize,
        budget: &Budget,
    ) -> Result<Vec<BinValue>, EvalError> {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let parts = cores.min(n).max(1);
        let per = n.div_ceil(parts);
        let chunks = (0..parts).map(|p| {
            let lo = p * per;
            let len = per.min(n.saturating_sub(lo));
            let (store, tenant, leaf) = (Arc::clone(&self.store), tenant.clone(), Arc::clone(leaf));
            let chunk_first = first + lo as i64 * tier.step();
            let budget = budget.clone();
            let permits = Arc::clone(&self.computations);
            let stats = Arc::clone(&self.run);
            async move {
                // Dropped with this future, when nobody waits for the
                // chunk any more (a timeout, a closed socket): the blocking
                // scan sees it and stops instead of running to its end.
                let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let _abandon = Abandon(Arc::clone(&abandoned));
                stats.evaluator.computations_waiting.fetch_add(1, Relaxed);
                let permit = permits.acquire_owned().await;
                stats.evaluator.computations_waiting.fetch_sub(1, Relaxed);
                let permit = permit.map_err(|e| EvalError::Internal(e.to_string()))?;
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let e = &stats.evaluator;
                    let running = e.computations_running.fetch_add(1, Relaxed) + 1;
                    e.computations_peak.fetch_max(running, Relaxed);
                    let bins = scan_bins(
                        &*store,
                        &tenant,
                        &leaf,
                        tier,
                        chunk_first,
                        len,
                        &budget,
                        &abandoned,
                    );
                    e.computations_running.fetch_sub(1, Relaxed);
                    bins
                })
                .await
                .map_err(|e| EvalError::Internal(e.to_string()))?
            }
        });
        let mut out = Vec::with_capacity(n);
        for part in join_all(chunks).await {
            out.extend(part?);
        }
        Ok(out)
    }
}

/// The `[lo, hi)` index runs where `missing` is true.
fn missing_runs(missing: impl Iterator<Item = bool>) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, m) in missing.enumerate() {
        match runs.last_mut() {
            Some((_, hi)) if m && *hi == i => *hi = i + 1,
            _ if m => runs.push((i, i + 1)),
            _ => {}
        }
    }
    runs
}

/// The memory one request may still hold for values reduces keep
/// ([`MAX_QUERY_MEMORY_BYTES`]), shared by all of its scans.
#[derive(Clone)]
pub struct Budget(Arc<std::sync::atomic::AtomicUsize>);

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Budget(Arc::new(std::sync::atomic::AtomicUsize::new(bytes)))
    }

    /// Takes `bytes` from the budget; false (taking nothing) if it has not
    /// that much left.
    fn take(&self, bytes: usize) -> bool {
        self.0
            .fetch_update(Relaxed, Relaxed, |left| left.checked_sub(bytes))
            .is_ok()
    }

    /// Gives back bytes taken before.
    fn give(&self, bytes: usize) {
        self.0.fetch_add(bytes, Relaxed);
    }
}

/// Sets its flag when dropped: tells a blocking scan that nobody waits for
/// it any more.
struct Abandon(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// Computes `n` grouped bins of `leaf` from the events they cover
/// (blocking), charging what it holds to `budget`.
#[allow(clippy::too_many_arguments)]
fn scan_grouped_bins(
    store: &dyn EventStore,
    tenant: &Tenant,
    leaf: &LeafPlan,
    tier: Tier,
    first: i64,
    n: usize,
    max_groups: usize,
    budget: &Budget,
    abandoned: &std::sync::atomic::AtomicBool,
) -> Result<crate::metric::group::GroupedBins, EvalError> {
    let mut computer = GroupedBinComputer::new(leaf, tier, first, n, max_groups);
    let (mut charged, mut over_budget, mut gone, mut bad) = (0, false, false, None);
    let stop = first + n as i64 * tier.step();
    store.scan_data(tenant, &leaf.event_type, first, stop, &mut |t, json| {
        match serde_json::from_slice::<serde_json::Value>(json) {
            Ok(data) => computer.add(t, &data),
            Err(e) => {
                bad = Some(e.to_string());
                return ControlFlow::Break(());
            }
        }
        if computer.failed() {
            return ControlFlow::Break(());
        }
        if abandoned.load(Relaxed) {
            gone = true;
            return ControlFlow::Break(());
        }
        let held = computer.held_bytes();
        if held > charged {
            if !budget.take(held - charged) {
                over_budget = true;
                return ControlFlow::Break(());
            }
            charged = held;
        }
        ControlFlow::Continue(())
    })?;
    budget.give(charged);
    if gone {
        return Err(EvalError::Abandoned);
    }
    if let Some(e) = bad {
        return Err(EvalError::Store(format!(
            "stored event data is not JSON: {e}"
        )));
    }
    if over_budget {
        return Err(EvalError::TooLarge(format!(
            "{} would keep more values in memory than one request may (--max-query-memory); ask for a shorter range",
            leaf.source
        )));
    }
    computer.finish().map_err(|e| match e {
        crate::metric::group::GroupError::TooManyGroups { max } => too_many_groups(leaf, max),
    })
}

/// A grouped reduce with more groups over a request's range than allowed.
fn too_many_groups(leaf: &LeafPlan, max: usize) -> EvalError {
    EvalError::TooLarge(format!(
        "{} has more than {max} groups in the range (at most --max-groups a reduce, and {} bins x groups a request); ask for fewer bins, a shorter range or a narrower filter",
        leaf.source, MAX_BINS_PER_REQUEST
    ))
}

/// Computes `n` bins of `leaf` from the events they cover (blocking); stops
/// with [`EvalError::Abandoned`] at the next batch once `abandoned` is set.
#[allow(clippy::too_many_arguments)]
fn scan_bins(
    store: &dyn EventStore,
    tenant: &Tenant,
    leaf: &LeafPlan,
    tier: Tier,
    first: i64,
    n: usize,
    budget: &Budget,
    abandoned: &std::sync::atomic::AtomicBool,
) -> Result<Vec<BinValue>, EvalError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut computer = BinComputer::new(leaf, tier, first, n);
    let mut over_budget = false;
    let mut gone = false;
    let mut charged = 0;
    let stop = first + n as i64 * tier.step();
    let selection = Selection {
        leaf,
        start: first,
        stop,
        step: Some(tier.step()),
    };
    store.select(tenant, &selection, &mut |found| {
        match found {
            // The bins before this are complete, and what they kept goes
            // back to the budget.
            Selected::Before(time) => computer.close_before(time),
            Selected::Numbers(xs) => {
                for &(t, x) in xs {
                    computer.add_value(t, x);
                }
            }
            Selected::Values(vs) => {
                for (t, v) in vs {
                    computer.add_scalar(*t, v);
                }
            }
            Selected::Partials(ps) => {
                for &(t, x) in ps {
                    computer.add_partial(t, x);
                }
            }
        }
        if abandoned.load(Relaxed) {
            gone = true;
            return ControlFlow::Break(());
        }
        // Values held by reduces are charged to the request, batch by batch.
        let held = computer.held_bytes();
        if held > charged {
            if !budget.take(held - charged) {
                over_budget = true;
                return ControlFlow::Break(());
            }
        } else {
            budget.give(charged - held);
        }
        charged = held;
        ControlFlow::Continue(())
    })?;
    if gone {
        budget.give(charged);
        return Err(EvalError::Abandoned);
    }
    if over_budget || !budget.take(computer.held_bytes().saturating_sub(charged)) {
        return Err(EvalError::TooLarge(format!(
            "{} would keep more values in memory than one request may (--max-query-memory); ask for a shorter range",
            leaf.source
        )));
    }
    Ok(computer.finish())
}
