//! A full disk, on a small tmpfs this test mounts (it needs root, as
//! `.ci/run` has): puts are refused with `507 disk full` before anything is
//! written, reads and metric queries keep working (a refused cache write
//! does not fail a query), and once space is freed puts are accepted again
//! without a restart. Every acknowledged event is counted before and after,
//! and after a restart. Runs the real `cubed` binary.

#[path = "common/spawn.rs"]
mod spawn;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;
/// The reserve the server is started with.
const RESERVE: u64 = 8 * MIB;
/// Events of one put, and the padding that makes each about 1 KiB.
const BATCH: usize = 200;

/// A tmpfs mounted for the test; unmounted on drop (also after a failure).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size_mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {size_mib} MiB tmpfs on {} failed: this test needs root \
             (CAP_SYS_ADMIN), as .ci/run has",
            dir.display()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A running server that is killed on drop (a failed assertion included).
struct Server(Option<spawn::Spawned>);

impl Server {
    fn start(data: &Path) -> Server {
        Server::start_with_reserve(data, RESERVE)
    }

    fn start_with_reserve(data: &Path, reserve: u64) -> Server {
        let reserve = reserve.to_string();
        Server(Some(spawn::spawn(
            &spawn::cubed_bin(),
            data,
            &["--min-free-disk", &reserve, "--self-events", "false"],
        )))
    }

    fn spawned(&self) -> &spawn::Spawned {
        self.0.as_ref().expect("running")
    }

    fn stop(mut self) {
        let status = self.0.take().expect("running").terminate();
        assert!(status.success(), "clean shutdown: {status}");
    }

    fn put(&self, first: usize) -> (u16, Value) {
        let pad = "x".repeat(1000);
        let events: Vec<Value> = (first..first + BATCH)
            .map(|i| json!({"type": "fill", "time": 1_700_000_000_000_i64 + i as i64, "data": {"i": i, "pad": pad}}))
            .collect();
        let url = format!("http://{}/1.0/event/put", self.spawned().collector);
        answer(
            agent()
                .post(&url)
                .header("content-type", "application/json")
                .send(Value::from(events).to_string()),
        )
    }

    /// The stored `fill` events, counted by a metric query (one bin).
    fn count(&self, expression: &str) -> u64 {
        let url = format!(
            "http://{}/1.0/metric?expression={expression}&start=2023-11-14T00:00:00Z&stop=2023-11-15T00:00:00Z&step=864e5",
            self.spawned().evaluator
        );
        let (status, body) = answer(agent().get(&url).call());
        assert_eq!(status, 200, "metric query: {body}");
        body[0]["value"].as_f64().expect("a value") as u64
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut s) = self.0.take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(e) => panic!("request failed: {e}"),
    }
}

/// An HTTP agent that does not turn 4xx/5xx into errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn available(dir: &Path) -> u64 {
    let st = rustix::fs::statvfs(dir).expect("statvfs");
    st.f_bavail * st.f_frsize
}

#[test]
fn a_full_disk_refuses_puts_cleanly_and_writes_resume_when_space_is_freed() {
    let fs = Tmpfs::mount(96);
    let data = fs.0.join("data");
    let server = Server::start(&data);

    // Leave 3 MiB above the reserve, taken by a file the test removes later.
    let filler = fs.0.join("filler");
    let fill = available(&fs.0) - RESERVE - 3 * MIB;
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("write the filler");

    // Puts until the disk is full: each answered 200 (stored) or 507
    // (nothing stored); nothing else.
    let mut acknowledged = 0;
    let refused = loop {
        assert!(
            acknowledged < 100_000,
            "never refused: the reserve is not enforced"
        );
        match server.put(acknowledged) {
            (200, _) => acknowledged += BATCH,
            (507, body) => break body,
            (status, body) => panic!("a put on a full disk answered {status} {body}"),
        }
    };
    assert!(acknowledged > 0, "the first put was refused already");
    assert_eq!(refused["error"], "disk full", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("--min-free-disk")),
        "the error names the flag: {refused}"
    );
    assert!(
        available(&fs.0) >= RESERVE,
        "the reserve was kept: {} bytes free",
        available(&fs.0)
    );
    // Still refused, not failed: the engine never ran out of space.
    assert_eq!(server.put(acknowledged).0, 507);

    // Reads work on the full disk: every acknowledged event, none of the
    // refused ones.
    assert_eq!(server.count("sum(fill)"), acknowledged as u64);
    // Something else takes the disk below the reserve: no write at all
    // passes now, yet new expressions are computed and answered (their
    // bins cannot be cached), and puts are still refused cleanly.
    let below = fs.0.join("below");
    let take = available(&fs.0) - RESERVE + MIB;
    std::fs::write(&below, vec![0u8; take as usize]).expect("write below the reserve");
    assert!(available(&fs.0) < RESERVE);
    assert_eq!(
        server.count("sum(fill(i))"),
        (0..acknowledged as u64).sum::<u64>()
    );
    assert_eq!(server.count("max(fill(i))"), acknowledged as u64 - 1);
    assert_eq!(server.put(acknowledged).0, 507);

    // Space comes back: puts are accepted again, without a restart.
    std::fs::remove_file(&below).expect("remove");
    std::fs::remove_file(&filler).expect("remove the filler");
    assert_eq!(server.put(acknowledged).0, 200, "a put once space is freed");
    acknowledged += BATCH;
    assert_eq!(server.count("sum(fill)"), acknowledged as u64);
    assert_eq!(
        server.count("sum(fill(i))"),
        (0..acknowledged as u64).sum::<u64>()
    );

    // And all of it survives a restart.
    server.stop();
    let server = Server::start(&data);
    assert_eq!(server.count("sum(fill)"), acknowledged as u64);
    assert_eq!(
        server.count("sum(fill(i))"),
        (0..acknowledged as u64).sum::<u64>()
    );
    server.stop();
}

/// Without the reserve the engine itself runs out of space, fails the write
/// and refuses writes from then on; the store reopens itself, so writes
/// resume once space is freed, still without a restart of Cubed.
#[test]
fn without_the_reserve_the_engine_fails_and_the_store_reopens_itself() {
    let fs = Tmpfs::mount(96);
    let data = fs.0.join("data");
    let server = Server::start_with_reserve(&data, 0);
    let filler = fs.0.join("filler");
    let fill = available(&fs.0) - 3 * MIB;
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("write the filler");

    let mut acknowledged = 0;
    let failed = loop {
        assert!(acknowledged < 100_000, "the disk never filled");
        match server.put(acknowledged) {
            (200, _) => acknowledged += BATCH,
            (503, body) => break body,
            (status, body) => panic!("a put on a full disk answered {status} {body}"),
        }
    };
    assert_eq!(failed["error"], "store failed", "{failed}");
    // The events the failed put carried: not acknowledged, so they may or
    // may not be found later (as after a crash in the middle of a put).
    let failed_first = acknowledged;
    // Reads go on while the disk is still full.
    assert_eq!(server.count("sum(fill)"), acknowledged as u64);
    let acked_sum: u64 = (0..acknowledged as u64).sum();

    // Space comes back: within a few attempts (a reopen is tried at most
    // once a second) puts are accepted again.
    std::fs::remove_file(&filler).expect("remove the filler");
    let retry_first = failed_first + BATCH;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match server.put(retry_first) {
            (200, _) => break,
            (503, _) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200))
            }
            (status, body) => panic!("after space was freed a put answered {status} {body}"),
        }
    }
    let retry_sum: u64 = (retry_first as u64..(retry_first + BATCH) as u64).sum();
    let failed_sum: u64 = (failed_first as u64..retry_first as u64).sum();
    // Every acknowledged event; the failed put's all or nothing.
    let check = |server: &Server| {
        let count = server.count("sum(fill)");
        let sum = server.count("sum(fill(i))");
        let without = (acknowledged as u64 + BATCH as u64, acked_sum + retry_sum);
        let with = (without.0 + BATCH as u64, without.1 + failed_sum);
        assert!(
            (count, sum) == without || (count, sum) == with,
            "count {count} and sum {sum}: expected {without:?} (or {with:?} with the failed put)"
        );
        (count, sum)
    };
    let before = check(&server);
    server.stop();
    let server = Server::start(&data);
    assert_eq!(check(&server), before, "the same after a restart");
    server.stop();
}
