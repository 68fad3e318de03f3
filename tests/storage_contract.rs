//! The storage contract suite: every backend must pass every test here.
//! `contract_suite!(name, factory)` instantiates the suite for one backend;
//! the factory returns a fresh, empty store and a guard that keeps it alive.
//! (The MongoDB backend will run it when CUBED_TEST_MONGO_URL is set.)

use std::ops::ControlFlow;
use std::sync::Arc;

use cubed::model::{NewEvent, Tenant};
use cubed::plan::{LeafPlan, MetricPlan, Scalar, compile_metric};
use cubed::storage::{CachedBin, EventStore, MetricCache, Order, Selected, Selection};

pub struct Fresh<S> {
    pub store: Arc<S>,
    pub _guard: Box<dyn std::any::Any>,
    /// How many events fill one unit of the backend's storage, for the
    /// test that re-sends every id of one: the embedded store's block
    /// holds 400,000; the MongoDB backend stores a document per event, so
    /// a batch of any size is the case (5,000 there: SecantusDB, the
    /// Python server the tests start, takes minutes over 400,000).
    pub full_block: usize,
    /// Whether the backend caches grouped bins (`MetricCache::put_grouped`):
    /// the embedded store does; the MongoDB backend does not (it computes
    /// them on every request).
    pub caches_groups: bool,
}

fn ev(t: &str, time: i64, data: &str, id: Option<&str>) -> NewEvent<'static> {
    NewEvent::owned(t.into(), time, data.into(), id.map(str::to_owned))
}

fn all<S: EventStore>(s: &S, svc: &Tenant, t: &str, order: Order) -> Vec<(i64, serde_json::Value)> {
    let mut out = Vec::new();
    s.scan(svc, t, i64::MIN, i64::MAX, order, &mut |e| {
        out.push((e.time, e.data));
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

fn leaf(source: &str) -> LeafPlan {
    match compile_metric(source).expect("expression").1 {
        MetricPlan::Leaf(l) => l,
        other => panic!("not one leaf: {other:?}"),
    }
}

/// What `select` gives for a leaf over `[start, stop)`, sorted, and every
/// `Before` it gave checked against what came after it.
fn selected<S: EventStore>(
    s: &S,
    svc: &Tenant,
    leaf: &LeafPlan,
    start: i64,
    stop: i64,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut before = i64::MIN;
    let selection = Selection {
        leaf,
        start,
        stop,
        step: None,
    };
    s.select(svc, &selection, &mut |found| {
        let mut add = |t: i64, v: String| {
            assert!(t >= before, "{t} given after Before({before})");
            assert!(t >= start && t < stop, "{t} outside [{start}, {stop})");
            out.push((t, v));
        };
        match found {
            Selected::Before(t) => before = before.max(t),
            Selected::Numbers(xs) => {
                for &(t, x) in xs {
                    assert!(!x.is_nan());
                    add(t, format!("{:?}", Scalar::Number(x)));
                }
            }
            Selected::Values(vs) => {
                for (t, v) in vs {
                    assert!(v.as_number().is_none(), "a number among Values: {v:?}");
                    add(*t, format!("{v:?}"));
                }
            }
            Selected::Partials(_) => panic!("Partials for a selection without a step"),
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    out.sort();
    out
}

/// `select` gives exactly the events the filter passes on their whole
/// data, with the value the leaf computes from it, however the backend
/// holds them (uniform fields, mixed kinds, nested values, non-object data,
/// replaced events), at any range.
pub fn select_gives_what_filter_and_value_give<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    // One put of uniform fields (a backend may hold them as columns), one of
    // mixed kinds, nested values and data that is not an object.
    let uniform: Vec<NewEvent<'static>> = (0..200)
        .map(|i| {
            ev(
                "sel",
                i * 7_000,
                &format!(
                    r#"{{"n":{},"p":"/p{}","s":{}}}"#,
                    i % 13,
                    i % 4,
                    200 + 100 * (i % 3)
                ),
                (i % 10 == 0).then(|| i.to_string()).as_deref(),
            )
        })
        .collect();
    s.put(&svc, &uniform).unwrap();
    let mixed = [
        r#"{"n":"7","p":"/p1","s":200}"#,
        r#"{"n":[1,5],"p":["/p1","/p2"],"s":500}"#,
        r#"{"n":{"k":2},"p":null}"#,
        r#"{"p":"/p3","s":"500"}"#,
        r#"{"n":2.5,"p":"/p0","s":404,"x":{"y":[{"z":1}]}}"#,
        r#"[1,2,3]"#,
        r#""text""#,
        r#"{}"#,
    ];
    let mixed: Vec<NewEvent<'static>> = (0..80)
        .map(|i| {
            ev(
                "sel",
                3_000_000 + i * 11_000,
                mixed[i as usize % mixed.len()],
                None,
            )
        })
        .collect();
    s.put(&svc, &mixed).unwrap();
    // Replacing some ids: only the newest of each is selected.
    let resent: Vec<NewEvent<'static>> = (0..5)
        .map(|i| {
            ev(
                "sel",
                5_000_000 + i,
                r#"{"n":100,"p":"/new","s":200}"#,
                Some(&(i * 10).to_string()),
            )
        })
        .collect();
    s.put(&svc, &resent).unwrap();
    let events = all(s, &svc, "sel", Order::Ascending);
    assert_eq!(events.len(), 280);
    for source in [
        "sum(sel)",
        "sum(sel(n))",
        "sum(sel(n).eq(p, \"/p1\"))",
        "max(sel(n * 2 + s))",
        "count(sel.gt(s, 250).lt(n, 10))",
        "distinct(sel(p))",
        "distinct(sel(n))",
        "sum(sel(n).in(p, [\"/p2\", \"/p3\"]))",
        "sum(sel.re(p, \"^/p[12]\"))",
        "sum(sel.exists(n, false))",
        "sum(sel.ne(p, null))",
        "sum(sel.eq(n, 5))",
        "sum(sel(x.y.z))",
        "median(sel(s).ge(n, 3))",
        "count(sel(p))",
    ] {
        let leaf = leaf(source);
        for (start, stop) in [
            (i64::MIN, i64::MAX),
            (7_000, 3_500_000),
            (3_600_000, 3_600_001),
        ] {
            let mut want: Vec<(i64, String)> = events
                .iter()
                .filter(|(t, d)| *t >= start && *t < stop && leaf.filter.matches(d))
                .filter_map(|(t, d)| Some((*t, format!("{:?}", leaf.value_of(d)?))))
                .collect();
            want.sort();
            let got = selected(s, &svc, &leaf, start, stop);
            assert_eq!(got, want, "{source} over [{start}, {stop})");
        }
    }
}

pub fn puts_and_scans_in_time_order<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    s.put(
        &svc,
        &[
            ev("test", 30, r#"{"i":3}"#, None),
            ev("test", 10, r#"{"i":1}"#, None),
            ev("test", 20, r#"{"i":2}"#, None),
        ],
    )
    .unwrap();
    let out = s
        .put(
            &svc,
            &[
                ev("other", 15, "{}", None),
                ev("test", -5, r#"{"i":0}"#, None),
                ev("other", 16, "{}", None),
            ],
        )
        .unwrap();
    assert_eq!(
        out.written,
        [
            ("other".to_owned(), vec![15, 16]),
            ("test".to_owned(), vec![-5])
        ]
        .into_iter()
        .collect()
    );
    let asc: Vec<i64> = all(s, &svc, "test", Order::Ascending)
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(asc, [-5, 10, 20, 30]);
    assert_eq!(all(s, &svc, "other", Order::Ascending).len(), 2);
    let desc: Vec<i64> = all(s, &svc, "test", Order::Descending)
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(desc, [30, 20, 10, -5]);
    assert_eq!(
        all(s, &svc, "test", Order::Ascending)[1].1,
        serde_json::json!({"i": 1})
    );
    // [start, stop)
    let mut got = Vec::new();
    s.scan(&svc, "test", 10, 30, Order::Ascending, &mut |e| {
        got.push(e.time);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(got, [10, 20]);
    // a visitor can stop early
    let mut got = Vec::new();
    s.scan(
        &svc,
        "test",
        i64::MIN,
        i64::MAX,
        Order::Descending,
        &mut |e| {
            got.push(e.time);
            if got.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert_eq!(got, [30, 20]);
    // an empty or inverted range is empty
    let mut n = 0;
    s.scan(&svc, "test", 30, 10, Order::Ascending, &mut |_| {
        n += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(n, 0);
    assert_eq!(s.types(&svc).unwrap(), ["other", "test"]);
}

pub fn scan_data_gives_raw_data_of_the_range<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    s.put(
        &svc,
        &[
            ev("test", 20, r#"{"b":2}"#, Some("\"x\"")),
            ev("test", 10, r#"{"a":1}"#, None),
            ev("test", 30, "{}", None),
        ],
    )
    .unwrap();
    let mut got = Vec::new();
    s.scan_data(&svc, "test", 10, 30, &mut |t, d| {
        got.push((t, serde_json::from_slice::<serde_json::Value>(d).unwrap()));
        ControlFlow::Continue(())
    })
    .unwrap();
    // in no particular order
    got.sort_by_key(|e| e.0);
    assert_eq!(
        got,
        [
            (10, serde_json::json!({"a": 1})),
            (20, serde_json::json!({"b": 2}))
        ]
    );
}

/// Events as the HTTP put parses them (data objects split into fields,
/// borrowing from the body) read back as the data that was sent.
pub fn batch_parsed_events_read_back_as_sent<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    let body = br#"[{"type":"test","time":30,"data":{ "ms" : 5.5, "path":"/a\"b", "n\u0041":[1, {"x":null}] }},
                    {"type":"test","time":10,"id":"k","data":{"ms":7,"path":"/c"}},
                    {"type":"test","time":20}]"#;
    let events = cubed::ingest::parse_event_batch(body, 0).unwrap();
    assert!(matches!(events[0].data, cubed::model::EventData::Fields(_)));
    s.put(&svc, &events).unwrap();
    assert_eq!(
        all(s, &svc, "test", Order::Ascending),
        [
            (10, serde_json::json!({"ms": 7, "path": "/c"})),
            (20, serde_json::json!({})),
            (
                30,
                serde_json::json!({"ms": 5.5, "path": "/a\"b", "nA": [1, {"x": null}]})
            ),
        ]
    );
    let mut ids = Vec::new();
    s.scan(&svc, "test", 0, 100, Order::Ascending, &mut |e| {
        ids.push(e.id);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(ids, [Some(serde_json::json!("k")), None, None]);
}

pub fn same_time_events_are_all_kept<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    let batch: Vec<NewEvent> = (0..100)
        .map(|i| ev("test", 1000, &format!(r#"{{"i":{i}}}"#), None))
        .collect();
    s.put(&svc, &batch).unwrap();
    s.put(&svc, &batch).unwrap();
    assert_eq!(all(s, &svc, "test", Order::Ascending).len(), 200);
}

pub fn ids_upsert_and_report_the_old_time<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    let out = s
        .put(&svc, &[ev("test", 100, r#"{"v":1}"#, Some("\"a\""))])
        .unwrap();
    assert!(out.replaced.is_empty());
    assert_eq!(
        out.written,
        [("test".to_owned(), vec![100])].into_iter().collect()
    );
    let out = s
        .put(&svc, &[ev("test", 200, r#"{"v":2}"#, Some("\"a\""))])
        .unwrap();
    assert_eq!(out.replaced, [("test".to_owned(), 100)]);
    assert_eq!(
        all(s, &svc, "test", Order::Ascending),
        [(200, serde_json::json!({"v": 2}))]
    );
    // the same id twice in one batch: the later one wins
    let out = s
        .put(
            &svc,
            &[
                ev("test", 300, r#"{"v":3}"#, Some("\"a\"")),
                ev("test", 400, r#"{"v":4}"#, Some("\"a\"")),
            ],
        )
        .unwrap();
    assert_eq!(
        out.replaced,
        [("test".to_owned(), 200), ("test".to_owned(), 300)]
    );
    assert_eq!(
        all(s, &svc, "test", Order::Ascending),
        [(400, serde_json::json!({"v": 4}))]
    );
    // ids are per type, and "1" (string) differs from 1 (number)
    s.put(
        &svc,
        &[
            ev("other", 1, "{}", Some("\"a\"")),
            ev("test", 5, "{}", Some("1")),
            ev("test", 6, "{}", Some("\"1\"")),
        ],
    )
    .unwrap();
    assert_eq!(all(s, &svc, "test", Order::Ascending).len(), 3);
    assert_eq!(all(s, &svc, "other", Order::Ascending).len(), 1);
    let mut ids = Vec::new();
    s.scan(
        &svc,
        "test",
        i64::MIN,
        i64::MAX,
        Order::Ascending,
        &mut |e| {
            ids.push(e.id);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(
        ids,
        [
            Some(serde_json::json!(1)),
            Some(serde_json::json!("1")),
            Some(serde_json::json!("a"))
        ]
    );
}

pub fn services_are_isolated<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let a = Tenant::from_header(Some("acme")).unwrap();
    let b = Tenant::from_header(Some("globex")).unwrap();
    let d = Tenant::default_tenant();
    s.put(&a, &[ev("secret", 1, "{}", Some("\"x\""))]).unwrap();
    s.put(&b, &[ev("public", 2, "{}", Some("\"x\""))]).unwrap();
    assert_eq!(s.types(&a).unwrap(), ["secret"]);
    assert_eq!(s.types(&b).unwrap(), ["public"]);
    assert!(s.types(&d).unwrap().is_empty());
    assert!(all(s, &b, "secret", Order::Ascending).is_empty());
    assert!(all(s, &d, "secret", Order::Ascending).is_empty());
    assert_eq!(all(s, &a, "secret", Order::Ascending).len(), 1);
}

pub fn cache_round_trips_and_invalidates<S: MetricCache>(f: Fresh<S>) {
    let c = &*f.store;
    let svc = Tenant::default_tenant();
    let bins = [
        CachedBin {
            time: 0,
            value: Some(1.0),
        },
        CachedBin {
            time: 60_000,
            value: Some(0.0),
        },
        CachedBin {
            time: 120_000,
            value: None,
        },
    ];
    c.put(&svc, "test", "sum(test)", 60_000, &bins).unwrap();
    c.put(
        &svc,
        "test",
        "max(test(x))",
        60_000,
        &[CachedBin {
            time: 60_000,
            value: Some(9.0),
        }],
    )
    .unwrap();
    assert_eq!(
        c.get(&svc, "test", "sum(test)", 60_000, 0, 180_000)
            .unwrap(),
        bins
    );
    assert_eq!(
        c.get(&svc, "test", "sum(test)", 60_000, 60_000, 120_000)
            .unwrap(),
        &bins[1..2]
    );
    assert!(
        c.get(&svc, "test", "sum(test)", 10_000, 0, 180_000)
            .unwrap()
            .is_empty()
    );
    assert!(
        c.get(&svc, "other", "sum(test)", 60_000, 0, 180_000)
            .unwrap()
            .is_empty()
    );
    assert!(
        c.get(
            &Tenant::from_key("acme"),
            "test",
            "sum(test)",
            60_000,
            0,
            180_000
        )
        .unwrap()
        .is_empty()
    );
    // an event at 61s invalidates the 1-minute bin at 60s for every source
    c.invalidate(&svc, "test", &[10_000, 60_000], &[61_000], &[])
        .unwrap();
    let left: Vec<i64> = c
        .get(&svc, "test", "sum(test)", 60_000, 0, 180_000)
        .unwrap()
        .iter()
        .map(|b| b.time)
        .collect();
    assert_eq!(left, [0, 120_000]);
    assert!(
        c.get(&svc, "test", "max(test(x))", 60_000, 0, 180_000)
            .unwrap()
            .is_empty()
    );
    // clearing one tenant leaves the others
    let acme = Tenant::from_key("acme");
    c.put(&acme, "test", "sum(test)", 60_000, &bins).unwrap();
    c.clear_tenant(&svc).unwrap();
    assert!(
        c.get(&svc, "test", "sum(test)", 60_000, 0, 180_000)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.get(&acme, "test", "sum(test)", 60_000, 0, 180_000)
            .unwrap()
            .len(),
        3
    );
    c.put(&svc, "test", "sum(test)", 60_000, &bins).unwrap();
    // clearing drops everything
    c.clear().unwrap();
    assert!(
        c.get(&acme, "test", "sum(test)", 60_000, 0, 180_000)
            .unwrap()
            .is_empty()
    );
    assert!(
        c.get(&svc, "test", "sum(test)", 60_000, 0, 180_000)
            .unwrap()
            .is_empty()
    );
    c.put(&svc, "test", "sum(test)", 60_000, &bins).unwrap();
    c.invalidate(&svc, "test", &[60_000], &[61_000], &[])
        .unwrap();
    // recomputing makes it valid again
    c.put(
        &svc,
        "test",
        "sum(test)",
        60_000,
        &[CachedBin {
            time: 60_000,
            value: Some(5.0),
        }],
    )
    .unwrap();
    assert_eq!(
        c.get(&svc, "test", "sum(test)", 60_000, 60_000, 120_000)
            .unwrap(),
        [CachedBin {
            time: 60_000,
            value: Some(5.0)
        }]
    );
}

/// Grouped bins: stored and read back whole (groups, undefined values, an
/// empty bin), kept apart from other reduces and tiers, invalidated by the
/// same puts as every bin, charged to the same cap (a backend that does not
/// cache them stores none).
pub fn grouped_cache_round_trips_and_invalidates<S: MetricCache>(f: Fresh<S>) {
    use cubed::storage::CachedGroups;
    let c = &*f.store;
    let svc = Tenant::default_tenant();
    let source = "sum(test(x)).group(path)";
    let bins = vec![
        CachedGroups {
            time: 0,
            groups: vec![
                ("/a".into(), Some(3.0)),
                ("".into(), Some(-1.5)),
                ("é\"x".into(), None),
            ],
        },
        CachedGroups {
            time: 60_000,
            groups: vec![],
        },
        CachedGroups {
            time: 120_000,
            groups: vec![("/b".into(), Some(f64::MAX))],
        },
    ];
    c.put_grouped(&svc, "test", source, 60_000, &bins).unwrap();
    c.put(
        &svc,
        "test",
        "sum(test(x))",
        60_000,
        &[CachedBin {
            time: 0,
            value: Some(1.0),
        }],
    )
    .unwrap();
    let got = c
        .get_grouped(&svc, "test", source, 60_000, 0, 180_000)
        .unwrap();
    if !f.caches_groups {
        assert!(got.is_empty(), "{got:?}");
        return;
    }
    assert_eq!(got, bins);
    assert!(
        c.get_grouped(&svc, "test", source, 10_000, 0, 180_000)
            .unwrap()
            .is_empty()
    );
    assert!(
        c.get_grouped(&svc, "test", "sum(test(x)).group(y)", 60_000, 0, 180_000)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.get(&svc, "test", "sum(test(x))", 60_000, 0, 180_000)
            .unwrap(),
        [CachedBin {
            time: 0,
            value: Some(1.0)
        }]
    );
    // A write at 61 s invalidates the grouped bin of its minute too.
    c.invalidate(&svc, "test", &[60_000], &[61_000], &[])
        .unwrap();
    assert_eq!(
        c.get_grouped(&svc, "test", source, 60_000, 0, 180_000)
            .unwrap(),
        [bins[0].clone(), bins[2].clone()]
    );
    // Overwritten as valid.
    c.put_grouped(&svc, "test", source, 60_000, &bins[1..2])
        .unwrap();
    assert_eq!(
        c.get_grouped(&svc, "test", source, 60_000, 0, 180_000)
            .unwrap(),
        bins
    );
    // Grouped bins fill the same cap as the others: many of them evict the
    // oldest, and the cache still answers.
    let many: Vec<CachedGroups> = (0..2_000)
        .map(|i| CachedGroups {
            time: 1_000_000 + i * 60_000,
            groups: (0..20)
                .map(|g| (format!("group-{g}"), Some(g as f64)))
                .collect(),
        })
        .collect();
    c.put_grouped(&svc, "test", source, 60_000, &many).unwrap();
    let kept = c
        .get_grouped(
            &svc,
            "test",
            source,
            60_000,
            1_000_000,
            1_000_000 + 2_000 * 60_000,
        )
        .unwrap();
    assert!(
        !kept.is_empty() && kept.len() < many.len(),
        "{} kept",
        kept.len()
    );
    assert_eq!(kept.last(), many.last(), "the newest are kept");
    let early = c
        .get_grouped(&svc, "test", source, 60_000, 0, 180_000)
        .unwrap();
    assert!(
        !early.iter().any(|b| b.time == 0),
        "the oldest went first: {early:?}"
    );
}

pub fn cache_is_capped_oldest_first<S: MetricCache>(f: Fresh<S>) {
    let c = &*f.store;
    let svc = Tenant::default_tenant();
    for i in 0..2000 {
        c.put(
            &svc,
            "test",
            "sum(test)",
            10_000,
            &[CachedBin {
                time: i * 10_000,
                value: Some(i as f64),
            }],
        )
        .unwrap();
    }
    let kept = c
        .get(&svc, "test", "sum(test)", 10_000, 0, i64::MAX)
        .unwrap();
    assert!(!kept.is_empty() && kept.len() < 2000, "kept {}", kept.len());
    // the newest survive, the oldest went first
    assert_eq!(kept.last().map(|b| b.time), Some(1999 * 10_000));
    let first = kept[0].time / 10_000;
    let expected: Vec<i64> = (first..2000).map(|i| i * 10_000).collect();
    assert_eq!(kept.iter().map(|b| b.time).collect::<Vec<_>>(), expected);
    // another type has its own cap
    c.put(
        &svc,
        "other",
        "sum(other)",
        10_000,
        &[CachedBin {
            time: 0,
            value: Some(1.0),
        }],
    )
    .unwrap();
    assert_eq!(
        c.get(&svc, "other", "sum(other)", 10_000, 0, 1)
            .unwrap()
            .len(),
        1
    );
}

/// One put never fills a type's cache past its cap (16 KiB in this suite's
/// factories): only the newest bins that fit are kept. Every entry stores
/// at least its source and a tier and time (16 bytes) and a value (8).
pub fn cache_put_never_overfills_the_cap<S: MetricCache>(f: Fresh<S>) {
    let c = &*f.store;
    let svc = Tenant::default_tenant();
    let source = "sum(test.eq(path, \"/a/long/enough/path\"))";
    let bins: Vec<CachedBin> = (0..5000)
        .map(|i| CachedBin {
            time: i * 10_000,
            value: Some(i as f64),
        })
        .collect();
    c.put(&svc, "test", source, 10_000, &bins).unwrap();
    let kept = c.get(&svc, "test", source, 10_000, 0, i64::MAX).unwrap();
    assert!(!kept.is_empty());
    assert!(
        kept.len() * (source.len() + 24) <= 16 * 1024,
        "{} entries of a 16 KiB cap",
        kept.len()
    );
    assert_eq!(kept.last().map(|b| b.time), Some(4999 * 10_000));
}

/// Re-sending every id of a full block: each event is there once, in its
/// latest version, and a scan stays linear (replaced positions are looked
/// up in constant time; 400,000 of them in one block).
pub fn resent_ids_of_a_full_block_leave_each_event_once<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    let n = f.full_block;
    let batch = |version: u32| -> Vec<NewEvent<'static>> {
        (0..n)
            .map(|i| {
                ev(
                    "resent",
                    (i % 3_600_000) as i64,
                    &format!(r#"{{"v":{version}}}"#),
                    Some(&i.to_string()),
                )
            })
            .collect()
    };
    s.put(&svc, &batch(1)).unwrap();
    let out = s.put(&svc, &batch(2)).unwrap();
    assert_eq!(out.replaced.len(), n);
    let mut seen = 0usize;
    let mut latest = 0usize;
    s.scan(&svc, "resent", 0, 3_600_000, Order::Ascending, &mut |e| {
        seen += 1;
        latest += usize::from(e.data["v"] == 2);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((seen, latest), (n, n));
    let (mut live, mut latest) = (0usize, 0usize);
    let leaf = leaf("sum(resent(v))");
    let selection = Selection {
        leaf: &leaf,
        start: 0,
        stop: 3_600_000,
        step: None,
    };
    s.select(&svc, &selection, &mut |found| {
        if let Selected::Numbers(xs) = found {
            live += xs.len();
            latest += xs.iter().filter(|(_, v)| *v == 2.0).count();
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((live, latest), (n, n));
}

/// Scans go hour by hour, whatever order the puts came in: the evaluator
/// finishes an hour's bins once a scan has moved past it.
pub fn scans_go_hour_by_hour<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    let hour = 3_600_000;
    for h in [5, 1, 3, 0, 4, 1, 2, 5, 0] {
        let batch: Vec<NewEvent<'static>> = (0..3)
            .map(|i| ev("hours", h * hour + 1000 * (3 - i), "{}", None))
            .collect();
        s.put(&svc, &batch).unwrap();
    }
    let leaf = leaf("sum(hours)");
    let selection = Selection {
        leaf: &leaf,
        start: 0,
        stop: 6 * hour,
        step: None,
    };
    let (mut hours, mut before, mut n) = (Vec::new(), i64::MIN, 0);
    s.select(&svc, &selection, &mut |found| {
        match found {
            Selected::Before(t) => {
                assert!(t >= before, "Before goes forward");
                before = t;
            }
            Selected::Numbers(xs) => {
                for &(t, x) in xs {
                    assert!(t >= before, "{t} came after Before({before})");
                    assert_eq!(x, 1.0);
                    hours.push(t.div_euclid(hour));
                    n += 1;
                }
            }
            Selected::Values(vs) => panic!("{vs:?}"),
            Selected::Partials(ps) => panic!("Partials without a step: {ps:?}"),
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(hours.is_sorted(), "{hours:?}");
    assert_eq!(n, 27);
    let mut times = Vec::new();
    s.scan_data(&svc, "hours", 0, 6 * hour, &mut |t, _| {
        times.push(t.div_euclid(hour));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(times.is_sorted(), "{times:?}");
    assert_eq!(times.len(), 27);
}

const HOUR: i64 = 3_600_000;

/// `expire` deletes whole hours before `before` (never an event at or
/// after it), reports what it deleted, and forgets ids, so an id put
/// again is new; the type stays while it has events, and goes with its
/// last one.
pub fn expire_deletes_old_hours_and_their_ids<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::from_header(Some("shop")).unwrap();
    let other = Tenant::default_tenant();
    let mut events = Vec::new();
    for h in 0..10 {
        for i in 0..3 {
            let id = format!("\"h{h}i{i}\"");
            events.push(ev("request", h * HOUR + i * 1000, r#"{"x":1}"#, Some(&id)));
        }
    }
    s.put(&svc, &events).unwrap();
    s.put(&svc, &[ev("keep", 0, "{}", None)]).unwrap();
    s.put(&other, &[ev("request", 0, "{}", None)]).unwrap();
    // an upsert leaves a replaced event in hour 1
    s.put(
        &svc,
        &[ev("request", 8 * HOUR, r#"{"x":2}"#, Some("\"h1i0\""))],
    )
    .unwrap();
    let before_stats = s.stats(&svc).unwrap();
    let req = before_stats
        .iter()
        .find(|t| t.event_type == "request")
        .unwrap();
    assert_eq!(req.events, 30);
    assert_eq!(req.oldest, Some(0));
    assert!(req.bytes > 0);

    // Before 4h + 30 min: hours 0..4 go (11 live events: hour 1 lost one
    // to the upsert), hour 4 stays (it has events after the cutoff's hour start).
    let ex = s.expire(&svc, "request", 4 * HOUR + 1_800_000).unwrap();
    assert!(
        ex.cutoff <= 4 * HOUR + 1_800_000 && ex.cutoff > 3 * HOUR,
        "{ex:?}"
    );
    assert_eq!(ex.events, 11);
    assert!(ex.bytes > 0);
    assert!(!ex.type_removed);
    let left = all(s, &svc, "request", Order::Ascending);
    assert_eq!(left.len(), 19);
    assert!(left.iter().all(|(t, _)| *t >= ex.cutoff));
    assert!(left.iter().any(|(t, _)| *t == 4 * HOUR));
    // other types and services untouched
    assert_eq!(all(s, &svc, "keep", Order::Ascending).len(), 1);
    assert_eq!(all(s, &other, "request", Order::Ascending).len(), 1);
    // an expired id put again is a new event (nothing replaced)
    let out = s
        .put(&svc, &[ev("request", 9 * HOUR + 5, "{}", Some("\"h0i0\""))])
        .unwrap();
    assert!(out.replaced.is_empty(), "{:?}", out.replaced);
    // the moved id's new home was not expired: re-putting it replaces it
    let out = s
        .put(&svc, &[ev("request", 9 * HOUR + 6, "{}", Some("\"h1i0\""))])
        .unwrap();
    assert_eq!(out.replaced, [("request".to_owned(), 8 * HOUR)]);
    let stats = s.stats(&svc).unwrap();
    let req = stats.iter().find(|t| t.event_type == "request").unwrap();
    assert_eq!(req.events, 20);
    assert_eq!(req.oldest, Some(4 * HOUR));
    // expiring again deletes nothing
    let ex = s.expire(&svc, "request", 4 * HOUR + 1_800_000).unwrap();
    assert_eq!((ex.events, ex.bytes), (0, 0));
    // everything: the type is forgotten
    let ex = s.expire(&svc, "request", i64::MAX).unwrap();
    assert_eq!(ex.events, 20);
    assert!(ex.type_removed);
    assert_eq!(s.types(&svc).unwrap(), ["keep"]);
    assert!(all(s, &svc, "request", Order::Ascending).is_empty());
    assert_eq!(s.tenants().unwrap(), [other.clone(), svc.clone()]);
    s.expire(&svc, "keep", i64::MAX).unwrap();
    assert_eq!(s.tenants().unwrap(), [other]);
    // and comes back with a put
    s.put(&svc, &[ev("request", 5, "{}", Some("\"h0i0\""))])
        .unwrap();
    assert_eq!(s.types(&svc).unwrap(), ["request"]);
    assert_eq!(all(s, &svc, "request", Order::Ascending).len(), 1);
}

/// Retention overrides round-trip, per type and per service.
pub fn retention_overrides_round_trip<S: EventStore>(f: Fresh<S>) {
    let s = &*f.store;
    let svc = Tenant::from_header(Some("shop")).unwrap();
    assert!(s.retention_overrides().unwrap().is_empty());
    s.set_retention_override(&svc, Some("request"), Some("30d"))
        .unwrap();
    s.set_retention_override(&svc, None, Some("forever"))
        .unwrap();
    s.set_retention_override(&Tenant::default_tenant(), Some("x"), Some("1h"))
        .unwrap();
    let mut got: Vec<(String, Option<String>, String)> = s
        .retention_overrides()
        .unwrap()
        .into_iter()
        .map(|o| (o.tenant.key().to_owned(), o.event_type, o.horizon))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("".to_owned(), Some("x".to_owned()), "1h".to_owned()),
            ("shop".to_owned(), None, "forever".to_owned()),
            (
                "shop".to_owned(),
                Some("request".to_owned()),
                "30d".to_owned()
            ),
        ]
    );
    s.set_retention_override(&svc, Some("request"), Some("7d"))
        .unwrap();
    s.set_retention_override(&svc, None, None).unwrap();
    let got: Vec<String> = s
        .retention_overrides()
        .unwrap()
        .into_iter()
        .filter(|o| o.tenant == svc)
        .map(|o| o.horizon)
        .collect();
    assert_eq!(got, ["7d"]);
}

/// `expire_bins` drops the type's cached bins before the time, at every
/// tier and for every source, and nothing else.
pub fn expire_bins_drops_old_cached_bins<S: MetricCache>(f: Fresh<S>) {
    let c = &*f.store;
    let svc = Tenant::default_tenant();
    let bins = |times: &[i64]| -> Vec<CachedBin> {
        times
            .iter()
            .map(|&time| CachedBin {
                time,
                value: Some(1.0),
            })
            .collect()
    };
    let five = 300_000;
    c.put(
        &svc,
        "request",
        "sum(request)",
        five,
        &bins(&[0, five, 2 * five]),
    )
    .unwrap();
    c.put(&svc, "request", "count(request)", HOUR, &bins(&[0, HOUR]))
        .unwrap();
    c.put(&svc, "other", "sum(other)", five, &bins(&[0]))
        .unwrap();
    let n = c.expire_bins(&svc, "request", five).unwrap();
    assert_eq!(n, 2);
    let got = |src: &str, tier: i64, t: &str| -> Vec<i64> {
        c.get(&svc, t, src, tier, i64::MIN, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|b| b.time)
            .collect()
    };
    assert_eq!(got("sum(request)", five, "request"), [five, 2 * five]);
    assert_eq!(got("count(request)", HOUR, "request"), [HOUR]);
    assert_eq!(got("sum(other)", five, "other"), [0]);
}

/// `select` with a step (what the evaluator asks) gives bins that agree
/// with the events themselves, whether the backend hands over events or
/// computes per-bin partials itself (the MongoDB backend's `$group`):
/// mixed types, missing fields, filters that pass events without the
/// value's field, and a filter the server cannot run (`re`).
pub fn select_with_a_step_agrees_with_the_events<S: EventStore>(f: Fresh<S>) {
    use cubed::metric::{BinComputer, Tier, compute_bins};
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    let data = [
        r#"{"x":1,"y":2,"s":"a"}"#,
        r#"{"x":2.5,"y":0,"s":"ab"}"#,
        r#"{"x":-4,"y":3,"s":"b"}"#,
        r#"{"x":"7","y":5,"s":"a"}"#,
        r#"{"x":null,"y":9}"#,
        r#"{"x":true,"s":"a"}"#,
        r#"{"y":4,"s":"a"}"#,
        r#"{"x":[1,2],"y":7}"#,
        r#"{"x":5,"y":"9"}"#,
        r#"{"x":1e300,"y":1}"#,
    ];
    let step = 60_000;
    let events: Vec<(i64, serde_json::Value)> = (0..120)
        .map(|i| {
            (
                i * 7_919 % (6 * step),
                serde_json::from_str(data[i as usize % data.len()]).unwrap(),
            )
        })
        .collect();
    let batch: Vec<NewEvent> = events
        .iter()
        .map(|(t, d)| ev("test", *t, &d.to_string(), None))
        .collect();
    s.put(&svc, &batch).unwrap();
    let tier = Tier::from_step(step).unwrap();
    for source in [
        "sum(test)",
        "count(test)",
        "sum(test(x))",
        "count(test(x))",
        "min(test(x))",
        "max(test(x))",
        "max(test(x).gt(y, 1))",
        "count(test(x).ne(x, 5))",
        "sum(test(x).eq(s, \"a\"))",
        "min(test(x).in(s, [\"a\", \"b\"]))",
        "max(test(x).re(s, \"^a\"))",
        "sum(test(y).exists(x, false))",
        "median(test(x))",
    ] {
        let leaf = leaf(source);
        // From one minute in, for 4 minutes: events outside are left out.
        let (first, n) = (step, 4);
        let want = compute_bins(&leaf, tier, first, n, events.iter().map(|(t, d)| (*t, d)));
        let mut computer = BinComputer::new(&leaf, tier, first, n);
        let selection = Selection {
            leaf: &leaf,
            start: first,
            stop: first + n as i64 * step,
            step: Some(step),
        };
        s.select(&svc, &selection, &mut |found| {
            match found {
                Selected::Before(t) => computer.close_before(t),
                Selected::Numbers(xs) => xs.iter().for_each(|&(t, x)| computer.add_value(t, x)),
                Selected::Values(vs) => vs.iter().for_each(|(t, v)| computer.add_scalar(*t, v)),
                Selected::Partials(ps) => {
                    assert!(
                        cubed::metric::reduce::is_pyramidal(leaf.reduce),
                        "partials of {source}"
                    );
                    ps.iter().for_each(|&(t, x)| computer.add_partial(t, x))
                }
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(computer.finish(), want, "{source}");
    }
}

#[macro_export]
macro_rules! contract_suite {
    ($backend:ident, $factory:expr) => {
        mod $backend {
            use super::*;
            #[test]
            fn puts_and_scans_in_time_order() {
                super::puts_and_scans_in_time_order($factory())
            }
            #[test]
            fn scan_data_gives_raw_data_of_the_range() {
                super::scan_data_gives_raw_data_of_the_range($factory())
            }
            #[test]
            fn batch_parsed_events_read_back_as_sent() {
                super::batch_parsed_events_read_back_as_sent($factory())
            }
            #[test]
            fn same_time_events_are_all_kept() {
                super::same_time_events_are_all_kept($factory())
            }
            #[test]
            fn ids_upsert_and_report_the_old_time() {
                super::ids_upsert_and_report_the_old_time($factory())
            }
            #[test]
            fn services_are_isolated() {
                super::services_are_isolated($factory())
            }
            #[test]
            fn cache_round_trips_and_invalidates() {
                super::cache_round_trips_and_invalidates($factory())
            }
            #[test]
            fn grouped_cache_round_trips_and_invalidates() {
                super::grouped_cache_round_trips_and_invalidates($factory())
            }
            #[test]
            fn cache_is_capped_oldest_first() {
                super::cache_is_capped_oldest_first($factory())
            }
            #[test]
            fn select_gives_what_filter_and_value_give() {
                super::select_gives_what_filter_and_value_give($factory())
            }
            #[test]
            fn select_with_a_step_agrees_with_the_events() {
                super::select_with_a_step_agrees_with_the_events($factory())
            }
            #[test]
            fn scans_go_hour_by_hour() {
                super::scans_go_hour_by_hour($factory())
            }
            #[test]
            fn cache_put_never_overfills_the_cap() {
                super::cache_put_never_overfills_the_cap($factory())
            }
            #[test]
            fn resent_ids_of_a_full_block_leave_each_event_once() {
                super::resent_ids_of_a_full_block_leave_each_event_once($factory())
            }
            #[test]
            fn expire_deletes_old_hours_and_their_ids() {
                super::expire_deletes_old_hours_and_their_ids($factory())
            }
            #[test]
            fn retention_overrides_round_trip() {
                super::retention_overrides_round_trip($factory())
            }
            #[test]
            fn expire_bins_drops_old_cached_bins() {
                super::expire_bins_drops_old_cached_bins($factory())
            }
        }
    };
}

mod embedded_backend {
    use super::Fresh;
    use cubed::storage::embedded::{Durability, EmbeddedStore};
    use std::sync::Arc;

    /// A fresh embedded store in a temporary directory, with a small cache cap
    /// (16 KiB per type) so the cap test is quick.
    pub fn fresh() -> Fresh<EmbeddedStore> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), Durability::Process, 16 * 1024).expect("open");
        Fresh {
            store: Arc::new(store),
            _guard: Box::new(dir),
            full_block: 400_000,
            caches_groups: true,
        }
    }

    /// The same, behind `Reopening` (as `cubed serve` opens it).
    pub fn fresh_reopening() -> Fresh<cubed::storage::embedded::reopen::Reopening> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let store = cubed::storage::embedded::reopen::Reopening::new(Box::new(move || {
            EmbeddedStore::open(&path, Durability::Process, 16 * 1024)
        }))
        .expect("open");
        Fresh {
            store: Arc::new(store),
            _guard: Box::new(dir),
            full_block: 400_000,
            caches_groups: true,
        }
    }

    /// The total cache budget and the cap on cached expressions per
    /// service: beyond them bins are not cached (the put still succeeds),
    /// and a type can always reuse its own space.
    #[test]
    fn cache_budget_and_expressions_are_capped() {
        use cubed::model::Tenant;
        use cubed::storage::{CachedBin, MetricCache};
        let f = fresh();
        let s = &*f.store;
        // 16 KiB per type (fresh's cap), 20 KiB in all, 3 sources per service.
        s.set_cache_limits(20 * 1024, 3);
        let t = Tenant::default_tenant();
        let bins = |n: i64| -> Vec<CachedBin> {
            (0..n)
                .map(|i| CachedBin {
                    time: i * 60_000,
                    value: Some(i as f64),
                })
                .collect()
        };
        let count = |ty: &str, src: &str| {
            s.get(&t, ty, src, 60_000, i64::MIN, i64::MAX)
                .unwrap()
                .len()
        };
        s.put(&t, "a", "sum(a)", 60_000, &bins(1000)).unwrap();
        let a = count("a", "sum(a)");
        assert!(a > 100 && a < 1000, "{a}: the type's cap keeps the newest");
        s.put(&t, "b", "sum(b)", 60_000, &bins(1000)).unwrap();
        let b = count("b", "sum(b)");
        assert!(b < a, "b gets only what the budget leaves: {b} vs {a}");
        // a reuses its own space: new bins replace its oldest
        s.put(&t, "a", "sum(a)", 60_000, &bins(1010)).unwrap();
        assert_eq!(count("a", "sum(a)"), a);
        // a third source in the service, then a fourth is not cached
        s.put(&t, "a", "max(a)", 60_000, &bins(1)).unwrap();
        s.put(&t, "a", "min(a)", 60_000, &bins(1)).unwrap();
        assert_eq!(count("a", "min(a)"), 0, "beyond 3 sources");
        let other = Tenant::from_header(Some("other")).unwrap();
        s.clear_tenant(&t).unwrap();
        s.put(&other, "a", "min(a)", 60_000, &bins(1)).unwrap();
        assert_eq!(
            s.get(&other, "a", "min(a)", 60_000, i64::MIN, i64::MAX)
                .unwrap()
                .len(),
            1
        );
        s.put(&t, "a", "min(a)", 60_000, &bins(1)).unwrap();
        assert_eq!(
            count("a", "min(a)"),
            1,
            "clearing the service freed its sources"
        );
    }

    /// Beyond `--max-types` or `--max-services`, a put that would add one
    /// is refused whole (nothing written), and Cubed's own types are not
    /// counted nor refused; a type that expired frees its place.
    #[test]
    fn types_and_services_are_capped() {
        use cubed::model::{NewEvent, Tenant};
        use cubed::storage::{EventStore, StoreError};
        let f = fresh();
        let s = &*f.store;
        s.set_type_limits(2, 2);
        let ev = |t: &str| NewEvent::owned(t.into(), 1, "{}".into(), None);
        let a = Tenant::from_header(Some("a")).unwrap();
        s.put(&a, &[ev("one"), ev("cube_request")]).unwrap();
        let err = s.put(&a, &[ev("one"), ev("two"), ev("three")]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooMany {
                    flag: "--max-types",
                    limit: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(s.types(&a).unwrap(), ["cube_request", "one"]);
        s.put(&a, &[ev("two"), ev("cube_compute")]).unwrap();
        assert!(s.put(&a, &[ev("three")]).is_err());
        s.put(&Tenant::default_tenant(), &[ev("x")]).unwrap();
        let c = Tenant::from_header(Some("c")).unwrap();
        let err = s.put(&c, &[ev("x")]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooMany {
                    flag: "--max-services",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(s.types(&c).unwrap().is_empty());
        // the system service is not counted
        let system = Tenant::from_key(cubed::model::retention::SYSTEM_SERVICE);
        s.put(&system, &[ev("results")]).unwrap();
        // a type that expires frees its place
        s.expire(&a, "two", i64::MAX).unwrap();
        s.put(&a, &[ev("three")]).unwrap();
        s.expire(&Tenant::default_tenant(), "x", i64::MAX).unwrap();
        s.put(&c, &[ev("x")]).unwrap();
    }

    #[test]
    fn events_survive_reopening() {
        use cubed::model::{NewEvent, Tenant};
        use cubed::storage::{EventStore, Order};
        let dir = tempfile::tempdir().unwrap();
        let svc = Tenant::from_key("acme");
        {
            let s = EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap();
            s.put(
                &svc,
                &[NewEvent {
                    event_type: "test".into(),
                    time: 7,
                    data: "{\"a\":1}".into(),
                    id: Some("\"k\"".into()),
                }],
            )
            .unwrap();
        }
        let s = EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap();
        assert_eq!(s.types(&svc).unwrap(), ["test"]);
        let out = s
            .put(
                &svc,
                &[NewEvent {
                    event_type: "test".into(),
                    time: 8,
                    data: "{}".into(),
                    id: Some("\"k\"".into()),
                }],
            )
            .unwrap();
        assert_eq!(out.replaced, [("test".to_owned(), 7)]);
        let mut n = 0;
        s.scan(&svc, "test", 0, 100, Order::Ascending, &mut |_| {
            n += 1;
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    /// Dirty marks are written with each put and cleared with the
    /// invalidation of its bins; a store opened with marks left (a crash
    /// came between the put and the flush) invalidates their bins first.
    #[test]
    fn dirty_marks_left_by_a_crash_invalidate_their_bins_on_open() {
        use cubed::model::{NewEvent, Tenant};
        use cubed::storage::{CachedBin, EventStore, MetricCache};
        let dir = tempfile::tempdir().unwrap();
        let svc = Tenant::default_tenant();
        let hour = 3_600_000;
        let bin = |time: i64| CachedBin {
            time,
            value: Some(1.0),
        };
        let valid = |s: &EmbeddedStore, tier: i64| {
            s.get(&svc, "test", "sum(test)", tier, 0, 10 * hour)
                .unwrap()
                .iter()
                .map(|b| b.time)
                .collect::<Vec<_>>()
        };
        {
            let s = EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap();
            let put = |time: i64| {
                EventStore::put(
                    &s,
                    &svc,
                    &[NewEvent::owned("test".into(), time, "{}".into(), None)],
                )
                .unwrap()
            };
            // flushed: its mark is cleared with the invalidation
            let flushed = put(5 * hour + 1);
            let marks: Vec<_> = flushed.marks.iter().map(|(_, m)| m.clone()).collect();
            assert_eq!(marks.len(), 1);
            s.invalidate(&svc, "test", &[10_000, hour], &[5 * hour + 1], &marks)
                .unwrap();
            // not flushed: the process "dies" with its mark left
            let pending = put(2 * hour + 1);
            assert_eq!(pending.marks.len(), 1);
            for tier in [10_000, hour] {
                let bins: Vec<CachedBin> = [0, 2 * hour, 5 * hour].into_iter().map(bin).collect();
                MetricCache::put(&s, &svc, "test", "sum(test)", tier, &bins).unwrap();
            }
            assert_eq!(valid(&s, hour), [0, 2 * hour, 5 * hour]);
        }
        let s = EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap();
        assert_eq!(
            valid(&s, hour),
            [0, 5 * hour],
            "the hour of the unflushed put"
        );
        assert_eq!(valid(&s, 10_000), [0, 5 * hour]);
        drop(s);
        // the marks are gone: opening again invalidates nothing more
        let s = EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap();
        MetricCache::put(&s, &svc, "test", "sum(test)", hour, &[bin(2 * hour)]).unwrap();
        drop(s);
        let s = EmbeddedStore::open(dir.path(), Durability::Process, 1 << 20).unwrap();
        assert_eq!(valid(&s, hour), [0, 2 * hour, 5 * hour]);
    }
}

contract_suite!(embedded, embedded_backend::fresh);
// What `cubed serve` runs: the embedded store behind its reopening wrapper.
contract_suite!(embedded_reopening, embedded_backend::fresh_reopening);

/// The key store contract (`KeyStore`): run against each backend's key
/// store, given a factory that opens the same store again.
mod key_store {
    use std::sync::Arc;

    use cubed::model::access::KeyRecord;
    use cubed::storage::KeyStore;

    fn record(id: &str, service: &str) -> KeyRecord {
        KeyRecord {
            id: id.to_owned(),
            service: service.to_owned(),
            role: "read".to_owned(),
            sha256: format!("{id:0>64}"),
            created_ms: 1,
            revoked_ms: None,
        }
    }

    pub fn suite(open: impl Fn() -> Arc<dyn KeyStore>) {
        let store = open();
        assert!(store.keys().unwrap().is_empty(), "a new store has no keys");
        store.add_key(record("a1", "acme")).unwrap();
        store.add_key(record("b2", "other")).unwrap();
        assert!(
            store.add_key(record("a1", "other")).is_err(),
            "ids are unique"
        );
        let ids: Vec<String> = store.keys().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a1", "b2"], "in creation order");
        assert!(store.revoke_key("a1", 7).unwrap());
        assert!(!store.revoke_key("a1", 8).unwrap(), "revoked once");
        assert!(!store.revoke_key("zz", 8).unwrap(), "no such key");
        // Durable: what another opening (another process) reads.
        let again = open();
        let keys = again.keys().unwrap();
        assert_eq!(keys[0].revoked_ms, Some(7), "revoked keys stay listed");
        assert_eq!(keys[1], record("b2", "other"));
        // Writers racing (the server and `cubed keys`) lose nothing.
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = open();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        s.add_key(record(&format!("t{t}k{i}"), "acme")).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(open().keys().unwrap().len(), 2 + 8 * 20);
    }
}

#[test]
fn embedded_key_store() {
    use cubed::storage::embedded::credentials::KeyFile;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    key_store::suite(move || Arc::new(KeyFile::in_dir(&path)));
    // The file holds hashes only, readable by its owner alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("keys.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A damaged file is an error, never an empty (open) key set.
    std::fs::write(dir.path().join("keys.json"), b"{not json").unwrap();
    assert!(cubed::storage::KeyStore::keys(&KeyFile::in_dir(dir.path())).is_err());
}

#[path = "common/mongo.rs"]
mod mongo_server;

/// The MongoDB backend, against `CUBED_TEST_MONGO_URL` or a SecantusDB
/// this test binary starts (tests/common/mongo.rs): each test in databases
/// of its own.
mod mongo_backend {
    use super::Fresh;
    use super::mongo_server::{DropDatabases, fresh_database, server};
    use cubed::storage::mongo::{CacheMode, MongoStore};
    use std::sync::Arc;

    /// A fresh store whose capped metric collections hold 16 KiB (so the
    /// cap tests are quick, as for the embedded store).
    pub fn fresh() -> Fresh<MongoStore> {
        let (server, name) = (server(), fresh_database());
        let store =
            MongoStore::connect(&server.url(&name), 16 * 1024, CacheMode::Capped).expect("connect");
        Fresh {
            store: Arc::new(store),
            _guard: Box::new(DropDatabases { server, name }),
            full_block: 5_000,
            caches_groups: false,
        }
    }
}

contract_suite!(mongo, mongo_backend::fresh);

#[test]
fn mongo_key_store() {
    use cubed::storage::mongo::{CacheMode, MongoStore};
    let (server, name) = (mongo_server::server(), mongo_server::fresh_database());
    let url = server.url(&name);
    let _guard = mongo_server::DropDatabases { server, name };
    key_store::suite(move || {
        Arc::new(MongoStore::connect(&url, 0, CacheMode::Capped).expect("connect"))
    });
}

/// Two stores on one database stand for two processes: one's put moves
/// the shared write count, and bins the other computed before that put
/// are not served once written (`put_as_of` marks them invalid again);
/// bins computed after it are.
#[test]
fn mongo_bins_computed_across_another_process_put_are_not_served() {
    use cubed::storage::mongo::{CacheMode, MongoStore};
    let (server, name) = (mongo_server::server(), mongo_server::fresh_database());
    let url = server.url(&name);
    let _guard = mongo_server::DropDatabases { server, name };
    let a = MongoStore::connect(&url, 1 << 20, CacheMode::Capped).unwrap();
    let b = MongoStore::connect(&url, 1 << 20, CacheMode::Capped).unwrap();
    assert!(a.shares_writes());
    let svc = Tenant::default_tenant();
    EventStore::put(&a, &svc, &[ev("test", 0, "{}", None)]).unwrap();
    let g = b.shared_generation(&svc, "test").unwrap();
    assert!(g.is_some());
    // B computes from what it read at `g`; meanwhile A puts.
    EventStore::put(&a, &svc, &[ev("test", 1, "{}", None)]).unwrap();
    let bins = [CachedBin {
        time: 0,
        value: Some(1.0),
    }];
    assert!(
        !b.put_as_of(&svc, "test", "sum(test)", 60_000, &bins, g)
            .unwrap()
    );
    assert!(
        b.get(&svc, "test", "sum(test)", 60_000, 0, 60_000)
            .unwrap()
            .is_empty()
    );
    let g = b.shared_generation(&svc, "test").unwrap();
    let bins = [CachedBin {
        time: 0,
        value: Some(2.0),
    }];
    assert!(
        b.put_as_of(&svc, "test", "sum(test)", 60_000, &bins, g)
            .unwrap()
    );
    assert_eq!(
        a.get(&svc, "test", "sum(test)", 60_000, 0, 60_000).unwrap(),
        bins
    );
}

/// `--mongo-cache ttl`: the cache is a regular collection (shardable)
/// whose bins expire by a TTL index, and it keeps the cache's contract
/// but for the cap.
#[test]
fn mongo_ttl_cache_round_trips_and_expires_by_index() {
    use cubed::storage::mongo::{CacheMode, MongoStore};
    use mongodb::bson::{Document, doc};
    let (server, name) = (mongo_server::server(), mongo_server::fresh_database());
    let url = server.url(&name);
    let _drop = mongo_server::DropDatabases {
        server,
        name: name.clone(),
    };
    let store =
        Arc::new(MongoStore::connect(&url, 16 * 1024, CacheMode::Ttl { ttl_secs: 3600 }).unwrap());
    cache_round_trips_and_invalidates(Fresh {
        store,
        _guard: Box::new(()),
        full_block: 0,
        caches_groups: false,
    });
    let db = mongodb::sync::Client::with_uri_str(&url)
        .unwrap()
        .database(&name);
    let options = db
        .run_command(doc! {"listCollections": 1, "filter": {"name": "test_metrics"}})
        .run()
        .unwrap();
    let batch = options
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .unwrap();
    let capped = batch[0]
        .as_document()
        .and_then(|d| d.get_document("options").ok())
        .and_then(|o| o.get_bool("capped").ok())
        .unwrap_or(false);
    assert!(!capped, "a regular collection: {batch:?}");
    let indexes: Vec<Document> = db
        .collection::<Document>("test_metrics")
        .list_indexes()
        .run()
        .unwrap()
        .map(|i| mongodb::bson::to_document(&i.unwrap()).unwrap())
        .collect();
    assert!(
        indexes
            .iter()
            .any(|i| i.get_document("key").is_ok_and(|k| k.contains_key("w"))
                && i.get("expireAfterSeconds")
                    .and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)))
                    == Some(3600)),
        "{indexes:?}"
    );
}

/// The MongoDB backend computes the bins of `sum`, `min`, `max` and
/// `count` itself (per-bin `$group`): the evaluator gets partials, not
/// events; with `re` in the filter it gets the events.
#[test]
fn mongo_pyramidal_bins_are_computed_by_the_server() {
    let f = mongo_backend::fresh();
    let s = &*f.store;
    let svc = Tenant::default_tenant();
    let batch: Vec<NewEvent> = (0..50)
        .map(|i| ev("test", i * 10_000, &format!(r#"{{"x":{i},"s":"a"}}"#), None))
        .collect();
    EventStore::put(s, &svc, &batch).unwrap();
    for (source, by_server) in [
        ("sum(test(x))", true),
        ("count(test.eq(s, \"a\"))", true),
        ("max(test(x).re(s, \"a\"))", false),
        ("median(test(x))", false),
    ] {
        let leaf = leaf(source);
        let (mut partials, mut events) = (0, 0);
        let selection = Selection {
            leaf: &leaf,
            start: 0,
            stop: 600_000,
            step: Some(60_000),
        };
        s.select(&svc, &selection, &mut |found| {
            match found {
                Selected::Partials(ps) => partials += ps.len(),
                Selected::Numbers(xs) => events += xs.len(),
                _ => {}
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        if by_server {
            assert_eq!((partials, events), (9, 0), "{source}");
        } else {
            assert_eq!((partials, events), (0, 50), "{source}");
        }
    }
}
