//! Property test: the evaluator (store, cache, pyramids, invalidation) gives
//! the same bins as a naive reference over random events and expressions —
//! when computed, when cached, and after more events arrive.

use std::collections::HashSet;
use std::sync::Arc;

use cubed::expr::Reduce;
use cubed::metric::Tier;
use cubed::model::{NewEvent, SystemClock, Tenant};
use cubed::plan::{MetricPlan, Scalar, compile_metric};
use cubed::server::{App, Options};
use cubed::service::{MetricQuery, Services};
use cubed::storage::embedded::{Durability, EmbeddedStore};
use cubed::storage::{EventStore, MetricCache};
use proptest::prelude::*;
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;
/// The most bins one query of the MongoDB variant asks for.
const MAX_MONGO_BINS: i64 = 360;

#[derive(Debug, Clone)]
struct Ev {
    time: i64,
    data: Value,
}

fn event() -> impl Strategy<Value = Ev> {
    (
        0..2 * DAY,
        prop_oneof![
            4 => (-50i64..50).prop_map(|x| json!(x)),
            1 => (-5.0f64..5.0).prop_map(|x| json!(x)),
            1 => "[a-c]".prop_map(|s| json!(s)),
        ],
        prop::option::of(0i64..10),
        prop::sample::select(vec!["a", "b", "c"]),
    )
        .prop_map(|(time, x, y, tag)| {
            let mut d = json!({"x": x, "tag": tag});
            if let Some(y) = y {
                d["y"] = json!(y);
            }
            Ev { time, data: d }
        })
}

fn expression() -> impl Strategy<Value = String> {
    let reduce = prop::sample::select(Reduce::ALL.to_vec());
    let value = prop::sample::select(vec!["", "(x)", "(y)", "(x * 2 - y)", "(abs(x))", "(tag)"]);
    let filter = prop::sample::select(vec![
        "",
        ".gt(x, 0)",
        ".eq(tag, 'a')",
        ".ne(tag, 'b').le(x, 10)",
        ".in(y, [1, 2, 3])",
        ".exists(y, false)",
        ".re(tag, '^[ab]$')",
    ]);
    (reduce, value, filter, prop::bool::ANY).prop_map(|(r, v, f, compound)| {
        let leaf = format!("{}(t1{v}{f})", r.name());
        if compound {
            format!("{leaf} - sum(t1(y)) / 2")
        } else {
            leaf
        }
    })
}

/// A straightforward reduce over a bin's values.
fn naive_reduce(r: Reduce, values: &[Scalar]) -> Option<f64> {
    let nums: Vec<f64> = values.iter().filter_map(Scalar::as_number).collect();
    let sorted = || {
        let mut s = nums.clone();
        s.sort_by(f64::total_cmp);
        s
    };
    let q = |p: f64| {
        let s = sorted();
        if s.is_empty() {
            return None;
        }
        let h = (s.len() - 1) as f64 * p;
        let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
        Some(s[lo] + (s[hi] - s[lo]) * (h - h.floor()))
    };
    match r {
        Reduce::Sum => Some(nums.iter().sum()),
        Reduce::Min => nums.iter().copied().reduce(f64::min),
        Reduce::Max => nums.iter().copied().reduce(f64::max),
        Reduce::Count => Some(values.len() as f64),
        Reduce::Avg => (!nums.is_empty()).then(|| nums.iter().sum::<f64>() / nums.len() as f64),
        Reduce::Stddev => (nums.len() > 1).then(|| {
            let mean = nums.iter().sum::<f64>() / nums.len() as f64;
            (nums.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nums.len() - 1) as f64).sqrt()
        }),
        Reduce::Distinct => Some(
            values
                .iter()
                .map(cubed::metric::distinct_key)
                .collect::<HashSet<_>>()
                .len() as f64,
        ),
        Reduce::Median | Reduce::P50 => q(0.5),
        Reduce::P75 => q(0.75),
        Reduce::P90 => q(0.9),
        Reduce::P95 => q(0.95),
        Reduce::P99 => q(0.99),
        Reduce::P999 => q(0.999),
    }
}

fn reference(
    plan: &MetricPlan,
    events: &[Ev],
    tier: Tier,
    first: i64,
    n: usize,
) -> Vec<Option<f64>> {
    (0..n)
        .map(|i| {
            let lo = first + i as i64 * tier.step();
            let hi = lo + tier.step();
            let leaf_values: Vec<Option<f64>> = plan
                .leaves()
                .iter()
                .map(|leaf| {
                    let vals: Vec<Scalar> = events
                        .iter()
                        .filter(|e| e.time >= lo && e.time < hi && leaf.filter.matches(&e.data))
                        .filter_map(|e| leaf.value_of(&e.data))
                        .collect();
                    naive_reduce(leaf.reduce, &vals)
                })
                .collect();
            match plan {
                MetricPlan::Leaf(_) => leaf_values[0],
                _ => Some(plan.combine(&leaf_values)),
            }
        })
        .collect()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) if x == y || (x.is_nan() && y.is_nan()) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs())),
        _ => false,
    }
}

/// One case of the reference check on `store`: the bins the evaluator
/// gives (computed, then cached, then after late events) are the naive
/// reference's.
#[allow(clippy::too_many_arguments)]
fn matches_reference<S: EventStore + MetricCache>(
    store: Arc<S>,
    events: &[Ev],
    late: &[Ev],
    expr: &str,
    tier: i64,
    start: i64,
    len: i64,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = Options {
        self_events: false,
        ..Options::default()
    };
    let services = Services::new(
        store.clone(),
        store,
        Arc::new(SystemClock),
        options.services(),
    );
    let app = App::new(services, options);
    let svc = Tenant::default_tenant();
    let to_new = |e: &Ev| NewEvent::owned("t1".into(), e.time, e.data.to_string(), None);
    // The first events arrive as an HTTP put's body does (data objects split
    // into fields by the batch parser), the late ones as server-built events.
    let body: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::json!({"type": "t1", "time": e.time, "data": e.data}))
        .collect();
    let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
    let q = MetricQuery::parse(
        Some(expr),
        Some(&start.to_string()),
        Some(&(start + len).to_string()),
        Some(&tier.to_string()),
        None,
        0,
    )
    .unwrap();
    let plan = compile_metric(expr).unwrap().1;
    rt.block_on(async {
        app.collector.put_json(&svc, body).await.unwrap();
        let mut all = events.to_vec();
        for pass in ["computed", "cached", "after late events"] {
            if pass == "after late events" {
                app.collector
                    .put(&svc, late.iter().map(to_new).collect())
                    .await
                    .unwrap();
                all.extend(late.iter().cloned());
            }
            let mut got = vec![None; q.n];
            let mut seen = vec![false; q.n];
            app.evaluator
                .evaluate(&svc, &q, &mut |i, v| {
                    got[i] = v;
                    seen[i] = true;
                })
                .await
                .unwrap();
            prop_assert!(seen.iter().all(|s| *s), "{pass}: not every bin was emitted");
            let want = reference(&plan, &all, q.tier, q.first, q.n);
            for i in 0..q.n {
                prop_assert!(
                    close(got[i], want[i]),
                    "{} {} step {}: bin {} got {:?} want {:?}",
                    expr,
                    pass,
                    tier,
                    q.time(i),
                    got[i],
                    want[i]
                );
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn evaluator_matches_naive_reference(
        events in prop::collection::vec(event(), 0..300),
        late in prop::collection::vec(event(), 1..40),
        expr in expression(),
        tier in prop::sample::select(vec![60_000i64, 300_000, 3_600_000, 86_400_000]),
        start in 0..DAY,
        len in 1..DAY,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap());
        matches_reference(store, &events, &late, &expr, tier, start, len)?;
    }
}

/// Grouped expressions: a grouped leaf (grouped by a field that is a
/// string, a number of either kind, or sometimes missing), alone, with an
/// ungrouped side, or with a second grouped side; with or without a top.
fn grouped_expression() -> impl Strategy<Value = String> {
    let reduce = prop::sample::select(Reduce::ALL.to_vec());
    let value = prop::sample::select(vec!["", "(x)", "(y)", "(tag)"]);
    let filter = prop::sample::select(vec!["", ".gt(x, 0)", ".ne(tag, 'b')"]);
    let field = prop::sample::select(vec!["tag", "x", "y"]);
    let top = prop::sample::select(vec!["", ", 1", ", 2"]);
    let shape = 0..3u8;
    (reduce, value, filter, field, top, shape).prop_map(|(r, v, f, g, top, shape)| {
        let leaf = format!("{}(t1{v}{f}).group({g}{top})", r.name());
        match shape {
            0 => leaf,
            1 => format!("{leaf} - sum(t1(y)) / 2"),
            _ => format!("{leaf} / count(t1).group({g})"),
        }
    })
}

/// The grouped answer computed naively: rows by group name, the `other`
/// row (if any) last, each with a value per bin.
fn grouped_reference(
    plan: &MetricPlan,
    top: Option<usize>,
    events: &[Ev],
    tier: Tier,
    first: i64,
    n: usize,
) -> Vec<(Option<String>, Vec<Option<f64>>)> {
    let stop = first + n as i64 * tier.step();
    let group_of = |leaf: &cubed::plan::LeafPlan, e: &Ev| -> Option<String> {
        let field = leaf.group.as_ref()?;
        let mut v = e.data.get(&field.head)?;
        for seg in &field.tail {
            if let cubed::expr::Segment::Name(name) = seg {
                v = v.get(name)?;
            }
        }
        Some(cubed::model::js::string(v))
    };
    let leaves = plan.leaves();
    let mut names = std::collections::BTreeSet::new();
    for leaf in leaves.iter().filter(|l| l.group.is_some()) {
        for e in events.iter().filter(|e| e.time >= first && e.time < stop) {
            if leaf.filter.matches(&e.data) && leaf.value_of(&e.data).is_some() {
                names.extend(group_of(leaf, e));
            }
        }
    }
    // The value of the expression at bin i over the events whose group is in `groups`.
    let value = |groups: &dyn Fn(&str) -> bool, i: usize| -> Option<f64> {
        let lo = first + i as i64 * tier.step();
        let hi = lo + tier.step();
        let per_leaf: Vec<Option<f64>> = leaves
            .iter()
            .map(|leaf| {
                let vals: Vec<Scalar> = events
                    .iter()
                    .filter(|e| e.time >= lo && e.time < hi && leaf.filter.matches(&e.data))
                    .filter(|e| {
                        leaf.group.is_none() || group_of(leaf, e).is_some_and(|g| groups(&g))
                    })
                    .filter_map(|e| leaf.value_of(&e.data))
                    .collect();
                naive_reduce(leaf.reduce, &vals)
            })
            .collect();
        match plan {
            MetricPlan::Leaf(_) => per_leaf[0],
            _ => Some(plan.combine(&per_leaf)),
        }
    };
    let mut rows: Vec<(Option<String>, Vec<Option<f64>>)> = names
        .iter()
        .map(|g| {
            (
                Some(g.clone()),
                (0..n).map(|i| value(&|x| x == g, i)).collect(),
            )
        })
        .collect();
    let Some(top) = top.filter(|t| *t < rows.len()) else {
        return rows;
    };
    let total = |vs: &[Option<f64>]| -> f64 { vs.iter().flatten().filter(|x| x.is_finite()).sum() };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        total(&rows[b].1)
            .total_cmp(&total(&rows[a].1))
            .then(a.cmp(&b))
    });
    let kept: HashSet<String> = order[..top]
        .iter()
        .filter_map(|&i| rows[i].0.clone())
        .collect();
    let mergeable = leaves.iter().all(|l| {
        l.group.is_none()
            || matches!(
                l.reduce,
                Reduce::Sum | Reduce::Count | Reduce::Min | Reduce::Max
            )
    });
    rows.retain(|r| r.0.as_ref().is_some_and(|g| kept.contains(g)));
    if mergeable {
        let other: Vec<Option<f64>> = (0..n).map(|i| value(&|x| !kept.contains(x), i)).collect();
        rows.push((None, other));
    }
    rows
}

/// The grouped reference check on `store`: computed, again, and after late events.
fn matches_grouped_reference<S: EventStore + MetricCache>(
    store: Arc<S>,
    events: &[Ev],
    late: &[Ev],
    expr: &str,
    tier: i64,
    start: i64,
    len: i64,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = Options {
        self_events: false,
        ..Options::default()
    };
    let services = Services::new(
        store.clone(),
        store,
        Arc::new(SystemClock),
        options.services(),
    );
    let app = App::new(services, options);
    let svc = Tenant::default_tenant();
    let to_new = |e: &Ev| NewEvent::owned("t1".into(), e.time, e.data.to_string(), None);
    let q = MetricQuery::parse(
        Some(expr),
        Some(&start.to_string()),
        Some(&(start + len).to_string()),
        Some(&tier.to_string()),
        None,
        0,
    )
    .unwrap();
    let top = q.group.as_ref().and_then(|g| g.top).map(|t| t as usize);
    rt.block_on(async {
        app.collector
            .put(&svc, events.iter().map(to_new).collect())
            .await
            .unwrap();
        let mut all = events.to_vec();
        // Hour and day bins: their finer bins cached first (half the
        // cases), so that the coarse bins come from the pyramid.
        let finer = match tier {
            3_600_000 => Some(300_000i64),
            86_400_000 => Some(3_600_000),
            _ => None,
        };
        let fine = finer.filter(|_| start % 2 == 0).map(|f| {
            MetricQuery::parse(
                Some(expr),
                Some(&q.first.to_string()),
                Some(&(q.first + q.n as i64 * tier).to_string()),
                Some(&f.to_string()),
                None,
                0,
            )
            .unwrap()
        });
        for pass in ["computed", "again", "after late events"] {
            if pass == "after late events" {
                app.collector
                    .put(&svc, late.iter().map(to_new).collect())
                    .await
                    .unwrap();
                all.extend(late.iter().cloned());
            }
            if let Some(fine) = &fine
                && pass != "again"
            {
                let rows = app.evaluator.evaluate_grouped(&svc, fine).await.unwrap();
                let want = grouped_reference(&fine.plan, top, &all, fine.tier, fine.first, fine.n);
                prop_assert_eq!(rows.len(), want.len(), "{} {} (finer bins)", expr, pass);
            }
            let rows = app.evaluator.evaluate_grouped(&svc, &q).await.unwrap();
            let want = grouped_reference(&q.plan, top, &all, q.tier, q.first, q.n);
            let got_groups: Vec<_> = rows.iter().map(|r| r.group.clone()).collect();
            let want_groups: Vec<_> = want.iter().map(|r| r.0.clone()).collect();
            prop_assert_eq!(&got_groups, &want_groups, "{} {}: groups", expr, pass);
            for (row, (_, values)) in rows.iter().zip(&want) {
                prop_assert_eq!(row.values.len(), q.n, "{} {}: bins", expr, pass);
                for (i, (got, want)) in row.values.iter().zip(values).enumerate() {
                    prop_assert!(
                        close(*got, *want),
                        "{} {} step {}: group {:?} bin {} got {:?} want {:?}",
                        expr,
                        pass,
                        tier,
                        row.group,
                        q.time(i),
                        got,
                        want
                    );
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn grouped_evaluation_matches_naive_reference(
        events in prop::collection::vec(event(), 0..300),
        late in prop::collection::vec(event(), 1..40),
        expr in grouped_expression(),
        tier in prop::sample::select(vec![60_000i64, 300_000, 3_600_000, 86_400_000]),
        start in 0..DAY,
        len in 1..DAY / 8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap());
        matches_grouped_reference(store, &events, &late, &expr, tier, start, len)?;
    }
}

#[path = "common/mongo.rs"]
mod mongo_server;

proptest! {
    // Fewer cases, and at most 360 bins a query: the MongoDB the tests
    // start is SecantusDB, a Python server whose upserts scan the whole
    // collection, so a day of 1-minute bins (1,440 upserts, each a scan)
    // took minutes a case there. A real mongod finds them by `_id`.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The same check on the MongoDB backend.
    #[test]
    fn evaluator_on_mongodb_matches_naive_reference(
        events in prop::collection::vec(event(), 0..300),
        late in prop::collection::vec(event(), 1..40),
        expr in expression(),
        (tier, len) in prop::sample::select(vec![60_000i64, 300_000, 3_600_000, 86_400_000])
            .prop_flat_map(|tier| (Just(tier), 1..DAY.min(MAX_MONGO_BINS * tier))),
        start in 0..DAY,
    ) {
        use cubed::storage::mongo::{CacheMode, MongoStore};
        let (server, name) = (mongo_server::server(), mongo_server::fresh_database());
        let store = Arc::new(MongoStore::connect(&server.url(&name), 1 << 20, CacheMode::Capped).unwrap());
        let _drop = mongo_server::DropDatabases { server, name };
        matches_reference(store, &events, &late, &expr, tier, start, len)?;
    }
}

/// The embedded store, with a gate in its scans: the first batch a scan
/// hands the evaluator waits until the test opens the gate; every batch
/// handed on is counted, and each finished scan is reported.
struct Gated {
    inner: Arc<EmbeddedStore>,
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    finished: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    batches: std::sync::atomic::AtomicUsize,
}

mod gated {
    use super::Gated;
    use cubed::model::{NewEvent, StoredEvent, Tenant};
    use cubed::storage::{
        EventStore, Expired, Order, PutOutcome, RetentionOverride, Selected, Selection, StoreError,
        TypeStats,
    };
    use std::ops::ControlFlow;
    use std::sync::atomic::Ordering::SeqCst;

    impl EventStore for Gated {
        fn put(&self, t: &Tenant, e: &[NewEvent<'_>]) -> Result<PutOutcome, StoreError> {
            self.inner.put(t, e)
        }
        fn scan(
            &self,
            t: &Tenant,
            ty: &str,
            start: i64,
            stop: i64,
            order: Order,
            visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
        ) -> Result<(), StoreError> {
            self.inner.scan(t, ty, start, stop, order, visit)
        }
        fn scan_data(
            &self,
            t: &Tenant,
            ty: &str,
            start: i64,
            stop: i64,
            visit: &mut dyn FnMut(i64, &[u8]) -> ControlFlow<()>,
        ) -> Result<(), StoreError> {
            self.inner.scan_data(t, ty, start, stop, visit)
        }
        fn select(
            &self,
            t: &Tenant,
            selection: &Selection<'_>,
            visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
        ) -> Result<(), StoreError> {
            let r = self.inner.select(t, selection, &mut |found| {
                if self.batches.fetch_add(1, SeqCst) == 0 {
                    let _ = self.entered.lock().unwrap().send(());
                    let _ = self.gate.lock().unwrap().recv();
                }
                visit(found)
            });
            let _ = self.finished.lock().unwrap().send(());
            r
        }
        fn types(&self, t: &Tenant) -> Result<Vec<String>, StoreError> {
            self.inner.types(t)
        }
        fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
            self.inner.tenants()
        }
        fn expire(&self, t: &Tenant, ty: &str, before: i64) -> Result<Expired, StoreError> {
            self.inner.expire(t, ty, before)
        }
        fn stats(&self, t: &Tenant) -> Result<Vec<TypeStats>, StoreError> {
            self.inner.stats(t)
        }
        fn retention_overrides(&self) -> Result<Vec<RetentionOverride>, StoreError> {
            self.inner.retention_overrides()
        }
        fn set_retention_override(
            &self,
            t: &Tenant,
            ty: Option<&str>,
            horizon: Option<&str>,
        ) -> Result<(), StoreError> {
            self.inner.set_retention_override(t, ty, horizon)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.inner.flush()
        }
    }
}

/// A query that times out stops its scan: the scan ends at the next batch
/// instead of reading the rest of its range for nobody.
#[test]
fn a_timed_out_query_stops_its_scan() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::mpsc::channel;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap());
    let svc = Tenant::default_tenant();
    // One event an hour for 200 hours: the scan hands on at least one batch
    // per hour.
    let hour = 3_600_000i64;
    let events: Vec<NewEvent> = (0..200)
        .map(|h| NewEvent::owned("t1".into(), h * hour, r#"{"x":1}"#.into(), None))
        .collect();
    cubed::storage::EventStore::put(&*inner, &svc, &events).unwrap();
    let (entered_tx, entered) = channel();
    let (open, gate) = channel();
    let (finished_tx, finished) = channel();
    let store = Arc::new(Gated {
        inner: Arc::clone(&inner),
        entered: std::sync::Mutex::new(entered_tx),
        gate: std::sync::Mutex::new(gate),
        finished: std::sync::Mutex::new(finished_tx),
        batches: Default::default(),
    });
    let options = Options {
        self_events: false,
        query_timeout: Duration::from_millis(300),
        max_computations: 1,
        ..Options::default()
    };
    let services = Services::new(
        store.clone(),
        inner,
        Arc::new(SystemClock),
        options.services(),
    );
    let app = App::new(services, options);
    let stop = 200 * hour;
    let q = MetricQuery::parse(
        Some("sum(t1)"),
        Some("0"),
        Some(&stop.to_string()),
        Some(&hour.to_string()),
        None,
        0,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        let mut ignore = |_: usize, _: Option<f64>| {};
        let asked = app.evaluator.evaluate(&svc, &q, &mut ignore);
        let waited = tokio::task::spawn_blocking(move || {
            entered.recv_timeout(Duration::from_secs(60)).is_ok()
        });
        let (r, waited) = tokio::join!(asked, waited);
        assert!(waited.unwrap(), "the scan never reached its first batch");
        r
    });
    assert!(
        matches!(r, Err(cubed::service::EvalError::Timeout(_))),
        "{r:?}"
    );
    // The request is gone; now let the scan go on.
    open.send(()).unwrap();
    finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the scan ended");
    assert_eq!(
        store.batches.load(SeqCst),
        1,
        "the scan went on reading after its request timed out"
    );
}

proptest! {
    // Few cases: SecantusDB is slow (see above); grouped reduces read the
    // events through the contract's `scan_data`, the same on every backend.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// The grouped check on the MongoDB backend.
    #[test]
    fn grouped_evaluation_on_mongodb_matches_naive_reference(
        events in prop::collection::vec(event(), 0..200),
        late in prop::collection::vec(event(), 1..20),
        expr in grouped_expression(),
        tier in prop::sample::select(vec![300_000i64, 3_600_000]),
        start in 0..DAY,
        len in 1..DAY / 8,
    ) {
        use cubed::storage::mongo::{CacheMode, MongoStore};
        let (server, name) = (mongo_server::server(), mongo_server::fresh_database());
        let store = Arc::new(MongoStore::connect(&server.url(&name), 1 << 20, CacheMode::Capped).unwrap());
        let _drop = mongo_server::DropDatabases { server, name };
        matches_grouped_reference(store, &events, &late, &expr, tier, start, len)?;
    }
}
