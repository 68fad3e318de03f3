//! Transport: warp routes for the collector and evaluator listeners,
//! WebSocket protocols, the UDP collector. Handlers call `service/`; errors
//! become answers only in `error.rs`.

pub mod admin;
pub mod collector;
pub mod common;
pub mod error;
pub mod evaluator;
pub mod evaluator_ws;
pub mod prometheus;
pub mod udp;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::model::Clock;
use crate::service::live::LiveStreams;
use crate::service::monitor::SelfEvents;
use crate::service::opmetrics::OpMetrics;
use crate::service::results::Session;
use crate::service::{Collector, Evaluator, Invalidator};
use crate::storage::{EventStore, MetricCache};

/// Size limits on what clients send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest HTTP request body (413 beyond it).
    pub max_body_bytes: usize,
    /// Largest WebSocket message (the connection is closed with 1009 beyond it).
    pub max_ws_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: crate::limits::DEFAULT_MAX_BODY_BYTES,
            max_ws_message_bytes: crate::limits::DEFAULT_MAX_WS_MESSAGE_BYTES,
        }
    }
}

/// Settings of a running server that are not sockets.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub limits: Limits,
    /// How often pending cache invalidations are flushed in the background
    /// (queries also flush their types' pending invalidations first).
    pub invalidation_interval: std::time::Duration,
    /// How often live event streams poll the store.
    pub live_poll_interval: std::time::Duration,
    /// Store `cube_request` and `cube_compute` events, as Cube did.
    pub self_events: bool,
    /// Gather Orion-style transaction metrics (`/admin/metrics`, `/metrics`).
    pub metrics: bool,
    /// How often each module's results document is written to the store.
    pub results_interval: std::time::Duration,
    /// Most bytes of values one metric request may hold.
    pub max_query_memory: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            invalidation_interval: std::time::Duration::from_secs(1),
            live_poll_interval: std::time::Duration::from_secs(1),
            self_events: true,
            metrics: true,
            results_interval: std::time::Duration::from_secs(10),
            max_query_memory: crate::limits::MAX_QUERY_MEMORY_BYTES,
        }
    }
}

/// Everything the handlers share.
pub struct App {
    pub store: Arc<dyn EventStore>,
    pub cache: Arc<dyn MetricCache>,
    pub clock: Arc<dyn Clock>,
    pub collector: Collector,
    pub invalidator: Arc<Invalidator>,
    pub evaluator: Evaluator,
    pub live: Arc<LiveStreams>,
    pub self_events: Arc<SelfEvents>,
    pub options: Options,
    pub limits: Limits,
    /// This run of the server and its modules' statistics.
    pub session: Arc<Session>,
    /// Transactions per service and subservice.
    pub opmetrics: Arc<OpMetrics>,
}

impl App {
    pub fn new(
        store: Arc<dyn EventStore>,
        cache: Arc<dyn MetricCache>,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Arc<Self> {
        let session = Arc::new(Session::new());
        let collector =
            Collector::new(Arc::clone(&store), Arc::clone(&clock), Arc::clone(&session));
        let invalidator = Arc::new(Invalidator::new(Arc::clone(&cache)));
        let inv = Arc::clone(&invalidator);
        collector.on_put(Arc::new(move |service, outcome| {
            inv.record(service, outcome)
        }));
        let evaluator = Evaluator::new(
            Arc::clone(&store),
            Arc::clone(&cache),
            Arc::clone(&invalidator),
            Arc::clone(&session),
            options.max_query_memory,
        );
        let self_events = Arc::new(SelfEvents::new(options.self_events, Arc::clone(&clock)));
        let monitor = Arc::clone(&self_events);
        evaluator.on_compute(Arc::new(move |service, source, ms| {
            monitor.compute(service, source, ms)
        }));
        let live = LiveStreams::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            options.live_poll_interval,
        );
        Arc::new(App {
            store,
            cache,
            clock,
            collector,
            invalidator,
            evaluator,
            live,
            self_events,
            limits: options.limits,
            opmetrics: Arc::new(OpMetrics::new(options.metrics)),
            session,
            options,
        })
    }
}

/// Already-bound sockets (tests bind port 0).
pub struct Listeners {
    pub collector: TcpListener,
    pub evaluator: TcpListener,
    pub udp: Option<UdpSocket>,
}

/// Serves until `shutdown` completes, then stops accepting, lets requests in
/// flight finish, and flushes the store.
pub async fn run(
    listeners: Listeners,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let collector = warp::serve(gathered(
        Arc::clone(&app),
        collector::routes(Arc::clone(&app)),
    ))
    .incoming(listeners.collector)
    .graceful(stopped(rx.clone()))
    .run();
    let evaluator = warp::serve(gathered(
        Arc::clone(&app),
        evaluator::routes(Arc::clone(&app)),
    ))
    .incoming(listeners.evaluator)
    .graceful(stopped(rx.clone()))
    .run();
    let udp = listeners
        .udp
        .map(|socket| tokio::spawn(udp::serve(socket, Arc::clone(&app), stopped(rx.clone()))));
    let collector = tokio::spawn(collector);
    let evaluator = tokio::spawn(evaluator);
    let flusher = tokio::spawn(flush_invalidations(Arc::clone(&app), stopped(rx.clone())));
    let results = tokio::spawn(write_results(Arc::clone(&app), stopped(rx.clone())));
    tracing::info!(session_id = %app.session.id, "session started");
    shutdown.await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    let _ = collector.await;
    let _ = evaluator.await;
    if let Some(udp) = udp {
        let _ = udp.await;
    }
    let _ = flusher.await;
    let _ = results.await;
    let store = Arc::clone(&app.store);
    match common::blocking(move || store.flush()).await {
        Ok(()) => tracing::info!("store flushed"),
        Err(e) => tracing::error!(error = %e.body, "flushing the store failed"),
    }
}

/// Counts every HTTP request a listener answers as one transaction of
/// `/admin/metrics` (request size from `Content-Length`, response size from
/// the body; 4xx and 5xx are errors). WebSocket upgrades are not counted:
/// their messages are, one by one, by the socket handlers.
fn gathered<F, R>(
    app: Arc<App>,
    routes: F,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone
where
    F: warp::Filter<Extract = (R,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    R: warp::Reply,
{
    use warp::Filter;
    use warp::http::header::CONTENT_LENGTH;
    warp::header::headers_cloned()
        .and(warp::any().map(std::time::Instant::now))
        .and(routes)
        .map(
            move |headers: warp::http::HeaderMap, started: std::time::Instant, reply: R| {
                let resp = reply.into_response();
                let status = resp.status();
                if app.opmetrics.enabled() && status != warp::http::StatusCode::SWITCHING_PROTOCOLS
                {
                    let text = |name: &str| match headers.get(name) {
                        None => Ok(None),
                        Some(v) => v.to_str().map(|s| Some(s.to_owned())),
                    };
                    // Headers that are not text name no valid service: left out.
                    if let (Ok(service), Ok(path)) =
                        (text("fiware-service"), text("fiware-servicepath"))
                    {
                        let request_bytes = headers
                            .get(CONTENT_LENGTH)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let response_bytes =
                            http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
                        admin::TxHeaders { service, path }.record(
                            &app,
                            request_bytes,
                            response_bytes,
                            status.is_client_error() || status.is_server_error(),
                            started,
                        );
                    }
                }
                resp
            },
        )
}

/// Writes each module's results document every `results_interval`, and once
/// more at shutdown.
async fn write_results(app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(app.options.results_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        seq += 1;
        admin::store_results(&app, seq).await;
    }
    admin::store_results(&app, seq + 1).await;
}

/// The periodic batch of cache invalidations.
async fn flush_invalidations(app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(app.options.invalidation_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        store_self_events(&app).await;
        let inv = Arc::clone(&app.invalidator);
        if let Err(e) = common::blocking(move || inv.flush_all()).await {
            tracing::error!(error = %e.body, "flushing cache invalidations failed");
        }
    }
    store_self_events(&app).await;
    let inv = Arc::clone(&app.invalidator);
    let _ = tokio::task::spawn_blocking(move || inv.flush_all()).await;
}

async fn store_self_events(app: &App) {
    for (service, events) in app.self_events.take() {
        if let Err(e) = app.collector.put(&service, events).await {
            tracing::warn!(error = %e, "storing self-monitoring events failed");
        }
    }
}

/// Records a `cube_request` event for every request a listener answers.
pub fn request_log(
    monitor: Arc<SelfEvents>,
) -> warp::log::Log<impl Fn(warp::log::Info<'_>) + Clone + Send + Sync> {
    warp::log::custom(move |info: warp::log::Info<'_>| {
        if !monitor.enabled() {
            return;
        }
        let service = info
            .request_headers()
            .get("fiware-service")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::model::Service::from_header(Some(v)).ok())
            .unwrap_or_else(crate::model::Service::default_service);
        let ip = info.remote_addr().map(|a| a.ip().to_string());
        monitor.request(&service, ip, info.path(), info.method().as_str());
    })
}
