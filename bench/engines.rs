//! Storage engine comparison for the event workload (why fjall, README "Storage").
//!
//!     cargo bench --bench engines [-- --events 1000000]
//!
//! Writes N request-like events in batches of 1000 with Cubed's key layout,
//! then scans them: once with each engine at the durability that survives
//! `kill -9` of the server (fjall: journal written to the OS; redb: a durable
//! commit, since a non-durable redb commit is rolled back after a crash), and
//! once with both syncing to disk on every batch (power-loss safe).
//! Prints events/s for writes and scans. A benchmark: it asserts nothing.

use std::time::Instant;

use cubed::model::Tenant;
use cubed::storage::embedded::keys;

const BATCH: usize = 1000;

fn events(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let prefix = keys::type_prefix(&Tenant::default_tenant(), "request");
    (0..n)
        .map(|i| {
            let time = 1_700_000_000_000i64 + (i as i64) * 43;
            let data = format!(
                r#"{{"duration_ms":{}.{},"path":"/api/{}","status":200,"user":"u{}"}}"#,
                i % 997,
                i % 10,
                i % 50,
                i % 100_000
            );
            // One key per event: prefix, time, sequence; the value is the data
            // behind a flags byte (the layout Cubed used before blocks).
            let mut key = prefix.clone();
            key.extend_from_slice(&keys::encode_i64(time));
            key.extend_from_slice(&(i as u64).to_be_bytes());
            let mut value = vec![0u8];
            value.extend_from_slice(data.as_bytes());
            (key, value)
        })
        .collect()
}

fn report(name: &str, n: usize, secs: f64) {
    println!(
        "{name:<44} {:>12.0} events/s  ({secs:.2} s)",
        n as f64 / secs
    );
}

fn fjall_run(data: &[(Vec<u8>, Vec<u8>)], mode: fjall::PersistMode, label: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fjall::Database::builder(dir.path()).open().expect("open");
    let ks = db
        .keyspace("events", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let t0 = Instant::now();
    for chunk in data.chunks(BATCH) {
        let mut b = db.batch().durability(Some(mode));
        for (k, v) in chunk {
            b.insert(&ks, k.as_slice(), v.as_slice());
        }
        b.commit().expect("commit");
    }
    report(
        &format!("fjall write, {label}"),
        data.len(),
        t0.elapsed().as_secs_f64(),
    );
    let t0 = Instant::now();
    let n = ks.iter().count();
    report("fjall scan, all, forwards", n, t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let n = ks.iter().rev().take(10_000).count();
    println!(
        "{:<44} {:>12.3} ms",
        "fjall newest 10000 (reverse)",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(n, 10_000.min(data.len()));
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("events");

fn redb_run(data: &[(Vec<u8>, Vec<u8>)], durability: redb::Durability, label: &str) {
    use redb::{ReadableDatabase, ReadableTable};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("db.redb")).expect("create");
    let t0 = Instant::now();
    for chunk in data.chunks(BATCH) {
        let mut tx = db.begin_write().expect("begin");
        tx.set_durability(durability).expect("durability");
        {
            let mut t = tx.open_table(TABLE).expect("table");
            for (k, v) in chunk {
                t.insert(k.as_slice(), v.as_slice()).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    report(
        &format!("redb write, {label}"),
        data.len(),
        t0.elapsed().as_secs_f64(),
    );
    let rx = db.begin_read().expect("read");
    let t = rx.open_table(TABLE).expect("table");
    let t0 = Instant::now();
    let n = t.iter().expect("iter").count();
    report("redb scan, all, forwards", n, t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let n = t.iter().expect("iter").rev().take(10_000).count();
    println!(
        "{:<44} {:>12.3} ms",
        "redb newest 10000 (reverse)",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(n, 10_000.min(data.len()));
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let n = argv
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let data = events(n);
    println!("{n} events, batches of {BATCH}");
    fjall_run(
        &data,
        fjall::PersistMode::Buffer,
        "to OS per batch (survives kill -9)",
    );
    redb_run(
        &data,
        redb::Durability::Immediate,
        "durable commit per batch (survives kill -9)",
    );
    let small = &data[..data.len().min(100_000)];
    fjall_run(small, fjall::PersistMode::SyncData, "fdatasync per batch");
    redb_run(small, redb::Durability::Immediate, "fsync per batch");
}
