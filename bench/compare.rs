//! Side-by-side benchmark (issue 6): Cubed, InfluxDB 1.6 and DuckDB on the
//! same generated events, in one run.
//!
//!     bench/compare.sh [--events N] [--batch N] [--durability process|sync]
//!     cargo bench --bench compare -- [--events N] [--batch N] [--durability D] [--skip-influx] [--skip-duckdb]
//!
//! (compare.sh installs influxdb and duckdb if they are missing.) `--durability`
//! is Cubed's (default `process`); `sync` fdatasyncs before each acknowledgement,
//! as InfluxDB's default WAL setting does.
//!
//! Generates the standard workload (bench/workload.rs, seeded), then for each
//! system: ingests it (Cubed: JSON events over HTTP; InfluxDB: line protocol
//! over HTTP; both in batches of `--batch` events, default 5000, the batch
//! size InfluxDB's documentation recommends, over 4 keep-alive connections;
//! DuckDB: bulk CSV load, in-process in bench/duckdb_side.py), runs the seven
//! standard queries cold and then warm (median of 5 after a warm-up), checks
//! that the systems agree bin by bin, and prints one table with ratios; the
//! same as JSON in target/bench-compare.json. Besides events/s, the table gives
//! the CPU seconds each server process used while ingesting (user + system,
//! from /proc), which varies less from run to run than the rate does.
//!
//! Definitions that make the answers comparable: the median of an even count
//! is the mean of the two middle values in all three; InfluxDB is given
//! unique nanosecond timestamps (same millisecond) so no point overwrites
//! another; empty bins count 0 for counts and sums and are undefined for max
//! and median. A benchmark: it asserts nothing.

#[path = "common.rs"]
mod common;
#[path = "../tests/common/spawn.rs"]
mod spawn;
#[path = "workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_seconds, enc, peak_rss_mib, post_all};
use serde_json::{Value, json};

/// One system's answer to one query.
#[derive(Debug, Clone, Default)]
struct QueryResult {
    cold_ms: f64,
    warm_ms: f64,
    /// bin start -> value (None: undefined)
    bins: BTreeMap<i64, Option<f64>>,
}

#[derive(Debug, Default)]
struct SystemResult {
    name: String,
    ingest_per_s: f64,
    /// CPU seconds the server used while ingesting (NaN: in-process).
    ingest_cpu_s: f64,
    peak_rss_mib: f64,
    queries: Vec<QueryResult>,
}

fn arg(argv: &[String], name: &str) -> Option<String> {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .cloned()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn timed_get(agent: &ureq::Agent, url: &str) -> (f64, Value) {
    let t0 = Instant::now();
    let mut r = agent.get(url).call().expect("get");
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .expect("body");
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    (ms, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn cubed(events: &[workload::Event], batch: usize, durability: &str) -> SystemResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spawn::spawn(
        &spawn::cubed_bin(),
        dir.path(),
        &["--self-events", "false", "--durability", durability],
    );
    let bodies: Vec<String> = events
        .chunks(batch)
        .map(|c| {
            format!(
                "[{}]",
                c.iter()
                    .map(workload::Event::to_json)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    let cpu0 = cpu_seconds(s.child.id());
    let secs = post_all(
        &format!("http://{}/1.0/event/put", s.collector),
        &bodies,
        4,
        "application/json",
    );
    let ingest_cpu_s = cpu_seconds(s.child.id()) - cpu0;
    let agent = ureq::Agent::new_with_defaults();
    let mut queries = Vec::new();
    for (_, expr, step) in workload::queries() {
        let url = format!(
            "http://{}/1.0/metric?expression={}&start={}&stop={}&step={step}",
            s.evaluator,
            enc(&expr),
            workload::DAY_START,
            workload::DAY_START + workload::DAY_MS
        );
        let r = agent
            .delete(&format!("http://{}/1.0/metric/cache", s.evaluator))
            .call()
            .expect("clear");
        assert_eq!(r.status().as_u16(), 200);
        let (cold_ms, v) = timed_get(&agent, &url);
        let _ = timed_get(&agent, &url);
        let warm_ms = median((0..5).map(|_| timed_get(&agent, &url).0).collect());
        let bins = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| {
                        let t = chrono::DateTime::parse_from_rfc3339(b["time"].as_str()?)
                            .ok()?
                            .timestamp_millis();
                        Some((t, b.get("value").and_then(Value::as_f64)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        queries.push(QueryResult {
            cold_ms,
            warm_ms,
            bins,
        });
    }
    let peak = peak_rss_mib(s.child.id());
    let _ = s.terminate();
    SystemResult {
        name: "Cubed".into(),
        ingest_per_s: events.len() as f64 / secs,
        ingest_cpu_s,
        peak_rss_mib: peak,
        queries,
    }
}

struct Influx {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

fn start_influx() -> Option<Influx> {
    let dir = tempfile::tempdir().ok()?;
    let d = dir.path().display();
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:18088\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:18086\"\n  log-enabled = false\n  max-body-size = 0\n"
    );
    let conf = dir.path().join("influxdb.conf");
    std::fs::write(&conf, config).ok()?;
    let child = Command::new("influxd")
        .arg("-config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let url = "http://127.0.0.1:18086".to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ureq::get(&format!("{url}/ping")).call().is_ok() {
            return Some(Influx {
                child,
                _dir: dir,
                url,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// InfluxQL for each standard query; Q6 is two queries divided here.
fn influx_queries(start: i64, stop: i64) -> Vec<(Vec<String>, bool)> {
    let r = format!("time >= {start}ms AND time < {stop}ms");
    let p = workload::most_common_path();
    vec![
        (
            vec![format!(
                "SELECT count(duration_ms) FROM request WHERE {r} GROUP BY time(1m) fill(0)"
            )],
            false,
        ),
        (
            vec![format!(
                "SELECT sum(duration_ms) FROM request WHERE path = '{p}' AND {r} GROUP BY time(5m) fill(0)"
            )],
            false,
        ),
        (
            vec![format!(
                "SELECT max(duration_ms) FROM request WHERE {r} GROUP BY time(1h)"
            )],
            false,
        ),
        (
            vec![format!(
                "SELECT median(duration_ms) FROM request WHERE {r} GROUP BY time(5m)"
            )],
            false,
        ),
        (
            vec![format!(
                "SELECT count(distinct(\"user\")) FROM request WHERE {r} GROUP BY time(1h) fill(0)"
            )],
            false,
        ),
        (
            vec![
                format!(
                    "SELECT count(duration_ms) FROM request WHERE status >= 500 AND {r} GROUP BY time(1m) fill(0)"
                ),
                format!(
                    "SELECT count(duration_ms) FROM request WHERE {r} GROUP BY time(1m) fill(0)"
                ),
            ],
            true,
        ),
        (
            vec![format!(
                "SELECT count(duration_ms) FROM request WHERE {r} GROUP BY time(10s) fill(0)"
            )],
            false,
        ),
    ]
}

fn influx_bins(v: &Value) -> BTreeMap<i64, Option<f64>> {
    v["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| Some((r[0].as_i64()?, r[1].as_f64())))
                .collect()
        })
        .unwrap_or_default()
}

fn influx(events: &[workload::Event], batch: usize) -> Option<SystemResult> {
    let mut db = start_influx()?;
    let agent = ureq::Agent::new_with_defaults();
    let q = |agent: &ureq::Agent, sql: &str| {
        timed_get(
            agent,
            &format!("{}/query?db=bench&epoch=ms&q={}", db.url, enc(sql)),
        )
    };
    let _ = agent
        .post(&format!(
            "{}/query?q={}",
            db.url,
            enc("CREATE DATABASE bench")
        ))
        .send("");
    let bodies: Vec<String> = events
        .chunks(batch)
        .enumerate()
        .map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    // unique nanoseconds within the event's millisecond
                    let ns = e.time as i128 * 1_000_000 + ((c * batch + i) % 1_000_000) as i128;
                    format!(
                        "request,path={} duration_ms={},status={}i,user=\"u{}\" {ns}\n",
                        workload::path_name(e.path),
                        e.duration_ms,
                        e.status,
                        e.user
                    )
                })
                .collect()
        })
        .collect();
    let cpu0 = cpu_seconds(db.child.id());
    let secs = post_all(
        &format!("{}/write?db=bench&precision=ns", db.url),
        &bodies,
        4,
        "text/plain",
    );
    let ingest_cpu_s = cpu_seconds(db.child.id()) - cpu0;
    let mut queries = Vec::new();
    for (sqls, ratio) in influx_queries(workload::DAY_START, workload::DAY_START + workload::DAY_MS)
    {
        let run = |agent: &ureq::Agent| -> (f64, BTreeMap<i64, Option<f64>>) {
            let results: Vec<(f64, Value)> = sqls.iter().map(|s| q(agent, s)).collect();
            let ms = results.iter().map(|r| r.0).sum();
            let mut bins = influx_bins(&results[0].1);
            if ratio {
                let total = influx_bins(&results[1].1);
                for (t, v) in bins.iter_mut() {
                    *v = match (*v, total.get(t).copied().flatten()) {
                        (Some(a), Some(b)) => Some(a / b),
                        _ => None,
                    };
                }
            }
            (ms, bins)
        };
        let (cold_ms, bins) = run(&agent);
        let _ = run(&agent);
        let warm_ms = median((0..5).map(|_| run(&agent).0).collect());
        queries.push(QueryResult {
            cold_ms,
            warm_ms,
            bins,
        });
    }
    let peak = peak_rss_mib(db.child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &db.child.id().to_string()])
        .status();
    let _ = db.child.wait();
    Some(SystemResult {
        name: "InfluxDB 1.6".into(),
        ingest_per_s: events.len() as f64 / secs,
        ingest_cpu_s,
        peak_rss_mib: peak,
        queries,
    })
}

fn duckdb(events: &[workload::Event]) -> Option<SystemResult> {
    let dir = tempfile::tempdir().ok()?;
    let csv = dir.path().join("events.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).ok()?);
    writeln!(f, "t,duration_ms,path,status,user").ok()?;
    for e in events {
        writeln!(
            f,
            "{},{},{},{},u{}",
            e.time,
            e.duration_ms,
            workload::path_name(e.path),
            e.status,
            e.user
        )
        .ok()?;
    }
    f.flush().ok()?;
    drop(f);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/duckdb_side.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&csv)
        .arg(workload::DAY_START.to_string())
        .arg(workload::most_common_path())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "duckdb side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let queries = v["queries"]
        .as_array()?
        .iter()
        .map(|q| QueryResult {
            cold_ms: q["cold_ms"].as_f64().unwrap_or(f64::NAN),
            warm_ms: q["warm_ms"].as_f64().unwrap_or(f64::NAN),
            bins: q["bins"]
                .as_array()
                .map(|b| {
                    b.iter()
                        .filter_map(|r| Some((r[0].as_i64()?, r[1].as_f64())))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Some(SystemResult {
        name: "DuckDB".into(),
        ingest_per_s: events.len() as f64 / v["ingest_s"].as_f64().unwrap_or(f64::NAN),
        ingest_cpu_s: f64::NAN,
        peak_rss_mib: v["peak_rss_mib"].as_f64().unwrap_or(0.0),
        queries,
    })
}

/// Compares a peer's bins with Cubed's (missing bins of a peer: 0 for counts and sums).
fn disagreements(name: &str, q: usize, cubed: &QueryResult, peer: &QueryResult) -> Vec<String> {
    let zero_fill = matches!(q, 0 | 1 | 4 | 6);
    let mut out = Vec::new();
    for (t, v) in &cubed.bins {
        let p = match peer.bins.get(t) {
            Some(p) => *p,
            None if zero_fill => Some(0.0),
            None => None,
        };
        let same = match (v, p) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs())) || (a.is_nan() && b.is_nan())
            }
            // an undefined ratio (no events) is null in Cubed's answer
            _ => false,
        };
        if !same {
            out.push(format!(
                "{name} Q{}: bin {} Cubed {v:?} vs {p:?}",
                q + 1,
                workload_time(*t)
            ));
        }
    }
    out
}

fn workload_time(t: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let n: usize = arg(&argv, "--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let batch: usize = arg(&argv, "--batch")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let events = workload::generate(n, 42);
    println!("{n} events over {}", workload_time(workload::DAY_START));
    let durability = arg(&argv, "--durability").unwrap_or_else(|| "process".to_owned());
    let mut systems = vec![cubed(&events, batch, &durability)];
    if !argv.iter().any(|a| a == "--skip-influx") {
        match influx(&events, batch) {
            Some(r) => systems.push(r),
            None => {
                println!("InfluxDB: not run (is `influxd` installed? bench/compare.sh installs it)")
            }
        }
    }
    if !argv.iter().any(|a| a == "--skip-duckdb") {
        match duckdb(&events) {
            Some(r) => systems.push(r),
            None => println!(
                "DuckDB: not run (is the duckdb Python package installed? bench/compare.sh installs it)"
            ),
        }
    }
    let names: Vec<String> = workload::queries().iter().map(|q| q.0.to_owned()).collect();
    // the table
    print!(
        "{:<14} {:>12} {:>9} {:>9}",
        "system", "ingest ev/s", "CPU s", "RSS MiB"
    );
    for q in &names {
        print!(" {:>17}", format!("{q} cold/warm ms"));
    }
    println!();
    for s in &systems {
        print!(
            "{:<14} {:>12.0} {:>9.2} {:>9.0}",
            s.name, s.ingest_per_s, s.ingest_cpu_s, s.peak_rss_mib
        );
        for q in &s.queries {
            print!(" {:>17}", format!("{:.1}/{:.2}", q.cold_ms, q.warm_ms));
        }
        println!();
    }
    let cubed = &systems[0];
    let mut ratios = Vec::new();
    for peer in &systems[1..] {
        print!(
            "{:<14} {:>12.2} {:>9.2} {:>9}",
            format!("Cubed/{}", peer.name.split(' ').next().unwrap_or("")),
            cubed.ingest_per_s / peer.ingest_per_s,
            peer.ingest_cpu_s / cubed.ingest_cpu_s,
            ""
        );
        let mut qs = Vec::new();
        for (c, p) in cubed.queries.iter().zip(&peer.queries) {
            // speed-up: peer time / Cubed time (above 1: Cubed is faster)
            let (cold, warm) = (p.cold_ms / c.cold_ms, p.warm_ms / c.warm_ms);
            print!(" {:>17}", format!("x{cold:.1}/x{warm:.1}"));
            qs.push(json!({"cold_speedup": cold, "warm_speedup": warm}));
        }
        println!();
        ratios.push(json!({"peer": peer.name, "ingest_ratio": cubed.ingest_per_s / peer.ingest_per_s, "ingest_cpu_ratio": peer.ingest_cpu_s / cubed.ingest_cpu_s, "queries": qs}));
    }
    println!(
        "(ratios: peer time / Cubed time; ingest: Cubed rate / peer rate; CPU s: the server's CPU seconds while ingesting, ratio peer / Cubed)"
    );
    let mut all_disagreements = Vec::new();
    for peer in &systems[1..] {
        for (i, (c, p)) in cubed.queries.iter().zip(&peer.queries).enumerate() {
            all_disagreements.extend(disagreements(&peer.name, i, c, p));
        }
    }
    if all_disagreements.is_empty() {
        println!("agreement: every bin of every query agrees");
    } else {
        println!(
            "agreement: {} bins disagree; first ones:",
            all_disagreements.len()
        );
        for d in all_disagreements.iter().take(20) {
            println!("  {d}");
        }
    }
    let report = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "events": n,
        "batch": batch,
        "cubed_durability": durability,
        "cores": std::thread::available_parallelism().map(|c| c.get()).unwrap_or(0),
        "systems": systems.iter().map(|s| json!({
            "name": s.name,
            "ingest_events_per_s": s.ingest_per_s,
            "ingest_cpu_s": if s.ingest_cpu_s.is_nan() { Value::Null } else { json!(s.ingest_cpu_s) },
            "peak_rss_mib": s.peak_rss_mib,
            "queries": s.queries.iter().zip(&names).map(|(q, n)| json!({"query": n, "cold_ms": q.cold_ms, "warm_ms": q.warm_ms})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "ratios": ratios,
        "disagreements": all_disagreements.len(),
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-compare.json");
    let _ = std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
}
