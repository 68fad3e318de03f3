//! `kill -9` at random instants under mixed load (issue 12), against the
//! real binary: puts of new events (many late, into bins already cached),
//! upserts that move events between bins, and queries that fill the cache,
//! until the process is killed; then a restart, and:
//! - every answer, served from the cache where it can be, equals the
//!   reduces computed by the test from the events the store returns (the
//!   cache is never dropped, so a stale bin from any earlier crash shows);
//! - every acknowledged event is there, in its acknowledged version or a
//!   later one that was in flight at the kill, and nothing else is.

#[path = "common/spawn.rs"]
mod spawn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// The data's first hour: 2012-04-16T16:00:00Z.
const T0: i64 = 1_334_592_000_000;
const HOURS: i64 = 3;
const ITERATIONS: usize = 15;

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the test sent for one id: its versions in order, each (time, v),
/// and how many of them were acknowledged (the rest were in flight).
#[derive(Default, Clone)]
struct Sent {
    versions: Vec<(i64, i64)>,
    acknowledged: usize,
}

type Ledger = Arc<Mutex<HashMap<String, Sent>>>;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get_json(agent: &ureq::Agent, url: &str) -> Result<(u16, Value), ureq::Error> {
    let mut r = agent.get(url).call()?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const EXPRESSIONS: [&str; 5] = [
    "sum(crash(v))",
    "sum(crash)",
    "max(crash(v))",
    "median(crash(v))",
    "distinct(crash(v))",
];
const STEPS: [i64; 4] = [10_000, 60_000, 300_000, 3_600_000];

fn metric_url(evaluator: &str, expr: &str, step: i64) -> String {
    format!(
        "http://{evaluator}/1.0/metric?expression={}&start={T0}&stop={}&step={step}",
        enc(expr),
        T0 + HOURS * 3_600_000
    )
}

/// Puts, upserts and queries until the server stops answering.
fn load(collector: String, evaluator: String, ledger: Ledger, seed: u64, first_id: &mut u64) {
    let agent = agent();
    let mut rng = Rng(seed);
    loop {
        let mut batch = Vec::new();
        {
            let mut l = ledger.lock().unwrap();
            for _ in 0..1 + rng.below(20) {
                let existing: Option<String> = (rng.below(3) == 0 && !l.is_empty())
                    .then(|| l.keys().nth(rng.below(l.len() as u64) as usize).cloned())
                    .flatten();
                let id = existing.unwrap_or_else(|| {
                    *first_id += 1;
                    format!("e{first_id}")
                });
                let time = T0 + rng.below((HOURS * 3_600_000) as u64) as i64;
                let v = rng.below(1000) as i64;
                let sent = l.entry(id.clone()).or_default();
                sent.versions.push((time, v));
                let ver = sent.versions.len();
                batch.push(json!({"type": "crash", "time": time, "id": id,
                    "data": {"v": v, "ver": ver}}));
            }
        }
        let ids: Vec<String> = batch
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        let r = agent
            .post(format!("http://{collector}/1.0/event/put"))
            .header("content-type", "application/json")
            .send(Value::from(batch).to_string());
        match r {
            Ok(resp) if resp.status().as_u16() == 200 => {
                let mut l = ledger.lock().unwrap();
                for id in ids {
                    // Versions of one id in one batch: the later one wins.
                    if let Some(s) = l.get_mut(&id) {
                        s.acknowledged = s.versions.len();
                    }
                }
            }
            Ok(resp) => panic!("put answered {}", resp.status()),
            Err(_) => return, // killed
        }
        // Queries fill the cache, so later (and late) puts must invalidate it.
        let expr = EXPRESSIONS[rng.below(EXPRESSIONS.len() as u64) as usize];
        let step = STEPS[rng.below(STEPS.len() as u64) as usize];
        if get_json(&agent, &metric_url(&evaluator, expr, step)).is_err() {
            return;
        }
    }
}

/// After a restart: every acknowledged event is there (or a later version
/// of it that was in flight), nothing else is, and every cached bin equals
/// a recomputation, which equals the sums of the stored events.
fn verify(evaluator: &str, ledger: &Ledger, iteration: usize) {
    let agent = agent();
    let mut stored: HashMap<String, (i64, i64, usize)> = HashMap::new();
    for h in 0..HOURS {
        let start = T0 + h * 3_600_000;
        let url = format!(
            "http://{evaluator}/1.0/event?expression={}&start={start}&stop={}&limit=10000",
            enc("crash(v, ver)"),
            start + 3_600_000
        );
        let (status, events) = get_json(&agent, &url).expect("event/get");
        assert_eq!(status, 200, "{events}");
        let events = events.as_array().cloned().unwrap_or_default();
        assert!(
            events.len() < 10_000,
            "the test keeps hours under the limit"
        );
        for e in events {
            let id = e["id"].as_str().expect("every event has an id").to_owned();
            let t = e["time"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.timestamp_millis())
                .expect("time");
            let v = e["data"]["v"].as_i64().expect("v");
            let ver = e["data"]["ver"].as_u64().expect("ver") as usize;
            let before = stored.insert(id.clone(), (t, v, ver));
            assert!(before.is_none(), "iteration {iteration}: {id} twice");
        }
    }
    let ledger = ledger.lock().unwrap();
    for (id, sent) in ledger.iter() {
        match stored.get(id) {
            None => assert_eq!(
                sent.acknowledged, 0,
                "iteration {iteration}: acknowledged {id} lost"
            ),
            Some(&(t, v, ver)) => {
                assert!(
                    ver >= sent.acknowledged.max(1) && ver <= sent.versions.len(),
                    "iteration {iteration}: {id} is version {ver}, acknowledged {}, sent {}",
                    sent.acknowledged,
                    sent.versions.len()
                );
                assert_eq!(
                    sent.versions[ver - 1],
                    (t, v),
                    "iteration {iteration}: {id} version {ver}"
                );
            }
        }
    }
    assert!(stored.keys().all(|id| ledger.contains_key(id)));
    drop(ledger);

    // Every answer (served from the cache where it can be) equals the
    // reduces computed here from the events the store returned.
    for expr in EXPRESSIONS {
        for step in STEPS {
            let (status, answer) =
                get_json(&agent, &metric_url(evaluator, expr, step)).expect("metric");
            assert_eq!(status, 200, "{answer}");
            let got: Vec<Value> = answer
                .as_array()
                .expect("bins")
                .iter()
                .map(|b| b.get("value").cloned().unwrap_or(Value::Null))
                .collect();
            let expected = reference(expr, step, &stored);
            let wrong: Vec<String> = got
                .iter()
                .zip(&expected)
                .enumerate()
                .filter(|(_, (g, e))| g != e)
                .map(|(i, (g, e))| format!("bin {}: {g} instead of {e}", T0 + i as i64 * step))
                .take(10)
                .collect();
            assert!(
                wrong.is_empty() && got.len() == expected.len(),
                "iteration {iteration}: {expr} at step {step} differs from the events: {wrong:?}"
            );
        }
    }
}

/// Each bin's value of `expr` over the stored events, as Cube defines it.
fn reference(expr: &str, step: i64, stored: &HashMap<String, (i64, i64, usize)>) -> Vec<Value> {
    let mut bins = vec![Vec::new(); (HOURS * 3_600_000 / step) as usize];
    for &(t, v, _) in stored.values() {
        bins[((t - T0) / step) as usize].push(v);
    }
    bins.into_iter()
        .map(|mut vs| {
            vs.sort_unstable();
            let n = vs.len();
            match expr {
                "sum(crash(v))" => json!(vs.iter().sum::<i64>()),
                "sum(crash)" => json!(n),
                "max(crash(v))" => vs.last().map_or(Value::Null, |m| json!(m)),
                "median(crash(v))" if n == 0 => Value::Null,
                "median(crash(v))" if n % 2 == 1 => json!(vs[n / 2]),
                "median(crash(v))" => {
                    let m = (vs[n / 2 - 1] + vs[n / 2]) as f64 / 2.0;
                    if m.fract() == 0.0 {
                        json!(m as i64)
                    } else {
                        json!(m)
                    }
                }
                "distinct(crash(v))" => {
                    vs.dedup();
                    json!(vs.len())
                }
                other => panic!("no reference for {other}"),
            }
        })
        .collect()
}

#[test]
fn kill_9_at_random_instants_loses_nothing_and_caches_nothing_stale() {
    let dir = tempfile::tempdir().unwrap();
    let ledger: Ledger = Arc::default();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut next_id = 0u64;
    for iteration in 0..ITERATIONS {
        // Some runs flush invalidations often, some never before the kill.
        let interval = ["50", "1000", "600000"][iteration % 3];
        let mut s = spawn::spawn(
            &spawn::cubed_bin(),
            dir.path(),
            &["--invalidation-interval-ms", interval],
        );
        verify(&s.evaluator, &ledger, iteration);
        let (collector, evaluator, l) = (s.collector.clone(), s.evaluator.clone(), ledger.clone());
        let seed = rng.next();
        let mut ids = next_id;
        let worker = std::thread::spawn(move || {
            load(collector, evaluator, l, seed, &mut ids);
            ids
        });
        std::thread::sleep(Duration::from_millis(30 + rng.below(600)));
        s.child.kill().expect("kill -9");
        s.child.wait().expect("wait");
        next_id = worker.join().expect("load thread");
    }
    let mut s = spawn::spawn(&spawn::cubed_bin(), dir.path(), &[]);
    verify(&s.evaluator, &ledger, ITERATIONS);
    let acknowledged = ledger
        .lock()
        .unwrap()
        .values()
        .filter(|s| s.acknowledged > 0)
        .count();
    assert!(acknowledged > 100, "the load did work: {acknowledged}");
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}
