//! A real Cubed server on port 0 for tests: its own runtime on a background
//! thread, a fresh data directory, stopped (and flushed) on drop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use cubed::model::{Clock, SystemClock};
use cubed::server::{self, App, Limits, Listeners, Options};
use cubed::service::Services;
use cubed::storage::embedded::{Durability, EmbeddedStore};
use cubed::storage::mongo::{CacheMode, MongoStore};
use cubed::storage::{EventStore, MetricCache};

pub mod mongo;
pub mod spawn;

pub struct TestServer {
    pub collector: SocketAddr,
    pub evaluator: SocketAddr,
    pub udp: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    pub dir: tempfile::TempDir,
    /// The MongoDB databases of a server on that backend, dropped last.
    drop_databases: Option<mongo::DropDatabases>,
}

impl TestServer {
    /// A server without self-monitoring events (so tests see only their own
    /// types); tests of self-monitoring use `start_with_options`.
    pub fn start() -> Self {
        Self::start_with(Arc::new(SystemClock), Limits::default())
    }

    pub fn start_with(clock: Arc<dyn Clock>, limits: Limits) -> Self {
        Self::start_with_options(
            clock,
            Options {
                limits,
                self_events: false,
                ..Options::default()
            },
        )
    }

    pub fn start_with_options(clock: Arc<dyn Clock>, options: Options) -> Self {
        Self::start_inner(clock, options, None)
    }

    /// A server requiring the keys in `keys_dir`'s key file (`--auth auto`).
    pub fn start_with_keys(keys_dir: &std::path::Path) -> Self {
        Self::start_inner(
            Arc::new(cubed::model::SystemClock),
            Options::default(),
            Some(keys_dir.to_owned()),
        )
    }

    /// A server (without self-monitoring events) on the MongoDB backend:
    /// databases of its own on the tests' MongoDB (`mongo.rs`), dropped
    /// with the server.
    pub fn start_on_mongodb() -> Self {
        let (server, name) = (mongo::server(), mongo::fresh_database());
        let url = server.url(&name);
        let mut s = Self::start_full(
            Arc::new(SystemClock),
            Options {
                self_events: false,
                ..Options::default()
            },
            None,
            Some(url),
        );
        s.drop_databases = Some(mongo::DropDatabases { server, name });
        s
    }

    fn start_inner(
        clock: Arc<dyn Clock>,
        options: Options,
        keys: Option<std::path::PathBuf>,
    ) -> Self {
        Self::start_full(clock, options, keys, None)
    }

    fn start_full(
        clock: Arc<dyn Clock>,
        options: Options,
        keys: Option<std::path::PathBuf>,
        mongodb: Option<String>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (events, cache): (Arc<dyn EventStore>, Arc<dyn MetricCache>) = match mongodb {
                    Some(url) => {
                        let store = tokio::task::block_in_place(|| {
                            MongoStore::connect(&url, 1 << 20, CacheMode::Capped)
                        })
                        .expect("mongodb");
                        let store = Arc::new(store);
                        (store.clone(), store)
                    }
                    None => {
                        let store = Arc::new(
                            EmbeddedStore::open(&path, Durability::Process, 1 << 20)
                                .expect("store"),
                        );
                        (store.clone(), store)
                    }
                };
                let listeners = Listeners {
                    collector: tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind"),
                    evaluator: tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind"),
                    udp: Some(
                        tokio::net::UdpSocket::bind("127.0.0.1:0")
                            .await
                            .expect("bind udp"),
                    ),
                };
                let addrs = (
                    listeners.collector.local_addr().expect("addr"),
                    listeners.evaluator.local_addr().expect("addr"),
                    listeners
                        .udp
                        .as_ref()
                        .expect("udp")
                        .local_addr()
                        .expect("addr"),
                );
                addr_tx.send(addrs).expect("send addrs");
                let mut services = tokio::task::block_in_place(|| {
                    Services::new(events, cache, clock, options.services())
                });
                if let Some(keys) = keys {
                    let file = cubed::storage::embedded::credentials::KeyFile::in_dir(&keys);
                    services.auth = Arc::new(
                        cubed::service::Auth::new(Arc::new(file), cubed::service::AuthMode::Auto)
                            .expect("keys"),
                    );
                }
                let app = App::new(services, options);
                server::run(listeners, app, async {
                    let _ = stop_rx.await;
                })
                .await;
            });
        });
        let (collector, evaluator, udp) = addr_rx.recv().expect("server started");
        TestServer {
            collector,
            evaluator,
            udp,
            stop: Some(stop_tx),
            thread: Some(thread),
            dir,
            drop_databases: None,
        }
    }

    pub fn collector_url(&self, path: &str) -> String {
        format!("http://{}{}", self.collector, path)
    }

    pub fn evaluator_url(&self, path: &str) -> String {
        format!("http://{}{}", self.evaluator, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP agent that does not turn 4xx/5xx into errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, JSON body)
pub fn post(url: &str, body: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = agent().post(url).header("content-type", "application/json");
    if let Some(s) = tenant {
        req = req.header("fiware-service", s);
    }
    let mut resp = req.send(body).expect("request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

pub fn get(url: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = agent().get(url);
    if let Some(s) = tenant {
        req = req.header("fiware-service", s);
    }
    let mut resp = req.call().expect("request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

impl TestServer {
    /// Puts events (a JSON array) through the collector; fails the test unless it answers 200.
    pub fn put(&self, events: &serde_json::Value) {
        let (status, body) = post(
            &self.collector_url("/1.0/event/put"),
            &events.to_string(),
            None,
        );
        assert_eq!(status, 200, "{body}");
    }
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The status and `error` of an answer, which must also say in `message`
/// what was expected.
pub fn error_of((status, body): (u16, serde_json::Value)) -> (u16, String) {
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.len() > 10, "no message: {body}");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// One figure of a module in the server's `/1.0/status` (e.g. the
/// evaluator's `bins_computed`); fails the test if it is not there.
pub fn status_figure(server: &TestServer, module: &str, name: &str) -> f64 {
    let (status, modules) = get(&server.evaluator_url("/1.0/status"), None);
    assert_eq!(status, 200, "{modules}");
    spawn::status_figure_in(&modules, module, name)
        .unwrap_or_else(|| panic!("no figure {name} of {module} in /1.0/status"))
}
