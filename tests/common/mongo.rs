//! A MongoDB server for tests: the one `CUBED_TEST_MONGO_URL` names (a real
//! `mongod` replica set, e.g. `mongodb://127.0.0.1:27017/?replicaSet=rs0`),
//! else SecantusDB (a single-node server speaking MongoDB's wire protocol
//! over WiredTiger, from PyPI) started once per test binary on a free port,
//! in memory, from the virtual environment `.ci/run` makes
//! (`.venv-secantus`; `CUBED_TEST_SECANTUS_PYTHON` names another Python).
//! It stops when the test binary exits (it watches its stdin). Each test
//! gets databases of its own ([`fresh_database`]), dropped afterwards.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How a test reaches the server: `mongodb://host:port` and the query
/// string to put after a database name.
#[derive(Clone, Debug)]
pub struct MongoServer {
    pub hosts: String,
    pub query: String,
}

impl MongoServer {
    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}{}", self.hosts, self.query)
    }
}

/// The python that runs secantus.
pub fn python() -> String {
    if let Ok(p) = std::env::var("CUBED_TEST_SECANTUS_PYTHON") {
        return p;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-secantus/bin/python");
    if std::path::Path::new(venv).exists() {
        return venv.to_owned();
    }
    panic!(
        "no MongoDB for the tests: set CUBED_TEST_MONGO_URL to a mongod, or make the virtual environment .ci/run makes: python3 -m venv .venv-secantus && .venv-secantus/bin/pip install secantusdb==0.7.0b3"
    );
}

/// Runs secantus under a small supervisor that stops it when our pipe to
/// its stdin closes, i.e. when this test process exits, however it exits.
const SUPERVISOR: &str = r#"
import subprocess, sys
p = subprocess.Popen([sys.executable, "-m", "secantus", "--host", "127.0.0.1",
                      "--port", sys.argv[1], "--storage-path", sys.argv[2],
                      "--log-level", "WARNING"])
try:
    sys.stdin.read()
finally:
    p.terminate()
    try:
        p.wait(10)
    except Exception:
        p.kill()
"#;

struct Secantus {
    _child: Mutex<Child>,
    _stdin: Mutex<std::process::ChildStdin>,
}

static SERVER: OnceLock<MongoServer> = OnceLock::new();
static SECANTUS: OnceLock<Secantus> = OnceLock::new();

/// The server, started on first use.
pub fn server() -> MongoServer {
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("CUBED_TEST_MONGO_URL") {
                let (hosts, query) = split_url(&url);
                return MongoServer { hosts, query };
            }
            let port = free_port();
            // Kept for the whole test process: its supervisor stops it when
            // the process exits and the pipe closes.
            let (child, stdin) = OwnSecantus::start(port, ":memory:").into_parts();
            let _ = SECANTUS.set(Secantus {
                _child: Mutex::new(child),
                _stdin: Mutex::new(stdin),
            });
            MongoServer {
                hosts: format!("mongodb://127.0.0.1:{port}"),
                query: String::new(),
            }
        })
        .clone()
}

/// A SecantusDB of a test's own (always SecantusDB, whatever
/// `CUBED_TEST_MONGO_URL` says: the test stops and restarts it), on
/// `port`, keeping its files in `storage` (or `:memory:`). Dropping it (or
/// [`stop`](Self::stop)) shuts it down cleanly.
pub struct OwnSecantus {
    child: Option<Child>,
    stdin: Option<std::process::ChildStdin>,
}

impl OwnSecantus {
    pub fn start(port: u16, storage: &str) -> Self {
        let mut child = Command::new(python())
            .args(["-c", SUPERVISOR, &port.to_string(), storage])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start secantus");
        let stdin = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("secantus exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "secantus did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        OwnSecantus {
            child: Some(child),
            stdin,
        }
    }

    /// The process and its stdin, to hold for as long as the server is needed.
    fn into_parts(mut self) -> (Child, std::process::ChildStdin) {
        let child = self.child.take().expect("child");
        let stdin = self.stdin.take().expect("stdin");
        (child, stdin)
    }

    /// Shuts the server down (SIGTERM) and waits until it has exited.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        // Closing its stdin tells the supervisor to terminate it and wait.
        self.stdin.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for OwnSecantus {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `mongodb://h:p/db?q` → (`mongodb://h:p`, `?q`).
fn split_url(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("mongodb", url));
    let (hosts, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail
        .find('?')
        .map_or(String::new(), |i| tail[i..].to_owned());
    (format!("{scheme}://{hosts}"), query)
}

/// A database name no other test uses (short: a service's database is
/// `<name>-<service>`, at most 63 characters).
pub fn fresh_database() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("t{}x{n}", std::process::id() % 100_000)
}

/// Drops a test's databases (the name and every `<name>-<service>`) when dropped.
pub struct DropDatabases {
    pub server: MongoServer,
    pub name: String,
}

impl Drop for DropDatabases {
    fn drop(&mut self) {
        let Ok(client) = mongodb::sync::Client::with_uri_str(self.server.url(&self.name)) else {
            return;
        };
        let Ok(names) = client.list_database_names().run() else {
            return;
        };
        for n in names {
            if n == self.name || n.starts_with(&format!("{}-", self.name)) {
                let _ = client.database(&n).drop().run();
            }
        }
        let _ = std::io::stderr().flush();
    }
}
