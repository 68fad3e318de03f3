//! What the handlers share: the services, the server's options and its
//! self-reporting.

use std::sync::Arc;

use super::origin::OriginPolicy;
use crate::model::Clock;
use crate::service::live::LiveStreams;
use crate::service::{Auth, Collector, Evaluator, Events, Invalidator, Services, Settings};
use crate::telemetry::opmetrics::OpMetrics;
use crate::telemetry::results::Run;
use crate::telemetry::self_events::SelfEvents;

/// Size limits on what clients send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest HTTP request body (413 beyond it).
    pub max_body_bytes: usize,
    /// Largest WebSocket message (the connection is closed with 1009 beyond it).
    pub max_ws_message_bytes: usize,
    /// Longest a request body may take to arrive (408 beyond it).
    pub body_timeout: std::time::Duration,
    /// Most bytes of answers queued for one evaluator WebSocket whose
    /// client does not read them; beyond it the socket is closed.
    pub max_ws_queue_bytes: usize,
    /// Most bytes of answers queued for all evaluator WebSockets together;
    /// beyond it sockets holding more than their share are closed.
    pub max_ws_queue_total_bytes: usize,
    /// Most requests being answered at once on one evaluator WebSocket
    /// (live event streams included); beyond it a request is refused.
    pub max_ws_in_flight: usize,
    /// Most HTTP connections one listener holds open (503 beyond).
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers.
    pub header_timeout: std::time::Duration,
    /// Most WebSockets open at once, server-wide (503 beyond).
    pub max_websockets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: crate::limits::DEFAULT_MAX_BODY_BYTES,
            max_ws_message_bytes: crate::limits::DEFAULT_MAX_WS_MESSAGE_BYTES,
            body_timeout: std::time::Duration::from_millis(crate::limits::DEFAULT_BODY_TIMEOUT_MS),
            max_ws_queue_bytes: crate::limits::DEFAULT_MAX_WS_QUEUE_BYTES,
            max_ws_queue_total_bytes: crate::limits::DEFAULT_MAX_WS_QUEUE_TOTAL_BYTES,
            max_ws_in_flight: crate::limits::DEFAULT_MAX_WS_IN_FLIGHT,
            max_connections: crate::limits::DEFAULT_MAX_CONNECTIONS,
            header_timeout: std::time::Duration::from_millis(
                crate::limits::DEFAULT_HEADER_TIMEOUT_MS,
            ),
            max_websockets: crate::limits::DEFAULT_MAX_WEBSOCKETS,
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
    /// Most live event streams (distinct tenant, expression and delay) at once.
    pub max_live_streams: usize,
    /// Store `cube_request` and `cube_compute` events, as Cube did.
    pub self_events: bool,
    /// Gather Orion-style transaction metrics (`/admin/metrics`, `/metrics`).
    pub metrics: bool,
    /// How often each module's results document is written to the store.
    pub results_interval: std::time::Duration,
    /// Most bytes of values one metric request may hold.
    pub max_query_memory: usize,
    /// Longest one metric request may take (503 `query timeout` beyond).
    pub query_timeout: std::time::Duration,
    /// Most scans of events computing bins at once, server-wide.
    pub max_computations: usize,
    /// Most groups one grouped reduce may have over a request's range.
    pub max_groups: usize,
    /// Most bins of metric requests evaluated at once, server-wide.
    pub max_bins_in_flight: usize,
    /// With keys in force, take UDP datagrams that carry a write key in a
    /// `"key"` field (without it, UDP datagrams are dropped then).
    pub udp_keyed: bool,
    /// How long events are kept (`--retention`; per service and type
    /// overrides in `/admin/retention`).
    pub retention: crate::model::retention::Horizon,
    /// How long Cubed's own events and results documents are kept.
    pub self_retention: crate::model::retention::Horizon,
    /// How often old events are looked for and deleted.
    pub retention_interval: std::time::Duration,
}

impl Options {
    /// The settings the services take.
    pub fn services(&self) -> Settings {
        Settings {
            max_query_memory: self.max_query_memory,
            query_timeout: self.query_timeout,
            live_poll_interval: self.live_poll_interval,
            max_live_streams: self.max_live_streams,
            max_computations: self.max_computations,
            max_groups: self.max_groups,
            max_bins_in_flight: self.max_bins_in_flight,
            retention: self.retention,
            self_retention: self.self_retention,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            invalidation_interval: std::time::Duration::from_secs(1),
            live_poll_interval: std::time::Duration::from_secs(1),
            max_live_streams: crate::limits::DEFAULT_MAX_LIVE_STREAMS,
            self_events: true,
            metrics: true,
            results_interval: std::time::Duration::from_secs(10),
            max_query_memory: crate::limits::MAX_QUERY_MEMORY_BYTES,
            query_timeout: std::time::Duration::from_millis(
                crate::limits::DEFAULT_QUERY_TIMEOUT_MS,
            ),
            udp_keyed: false,
            max_computations: crate::limits::DEFAULT_MAX_COMPUTATIONS,
            max_groups: crate::limits::DEFAULT_MAX_GROUPS,
            max_bins_in_flight: crate::limits::DEFAULT_MAX_BINS_IN_FLIGHT,
            retention: crate::model::retention::Horizon::Forever,
            self_retention: crate::model::retention::Horizon::Ms(
                crate::limits::DEFAULT_SELF_RETENTION_MS,
            ),
            retention_interval: std::time::Duration::from_millis(
                crate::limits::DEFAULT_RETENTION_INTERVAL_MS,
            ),
        }
    }
}

/// Everything the handlers share.
pub struct App {
    pub clock: Arc<dyn Clock>,
    pub collector: Collector,
    /// event/get and the list of types.
    pub events: Events,
    pub invalidator: Arc<Invalidator>,
    pub evaluator: Arc<Evaluator>,
    pub live: Arc<LiveStreams>,
    /// Live metric requests (metric/get without `stop`).
    pub live_metrics: Arc<crate::service::live_metrics::LiveMetrics>,
    /// Keys and roles.
    pub auth: Arc<Auth>,
    pub self_events: Arc<SelfEvents>,
    pub options: Options,
    pub limits: Limits,
    /// This run of the server and its modules' statistics.
    pub run: Arc<Run>,
    /// Transactions per tenant and subservice.
    pub opmetrics: Arc<OpMetrics>,
    /// Which browser origins may change data or open WebSockets.
    pub origins: OriginPolicy,
    /// Turns to hold a WebSocket open (`Limits::max_websockets`).
    pub websockets: Arc<tokio::sync::Semaphore>,
    /// Bytes of answers queued for all evaluator WebSockets
    /// (`Limits::max_ws_queue_total_bytes`).
    pub ws_queued: Arc<std::sync::atomic::AtomicUsize>,
    /// What is deleted when (`/admin/retention`, `/admin/stats`).
    pub retention: Arc<crate::service::Retention>,
}

impl App {
    /// Puts this moment's gauges (memory held by the store's engine, bins in
    /// flight, WebSocket queues) into the run's results, before they are
    /// shown or stored.
    pub fn sample_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.evaluator.sample_gauges();
        let queued = self.ws_queued.load(Relaxed) as u64;
        self.run.websocket.queued_bytes.store(queued, Relaxed);
    }

    /// Allowing browsers only their own origins (see [`OriginPolicy`]).
    pub fn new(services: Services, options: Options) -> Arc<Self> {
        App::with_origins(services, options, OriginPolicy::default())
    }

    pub fn with_origins(services: Services, options: Options, origins: OriginPolicy) -> Arc<Self> {
        let Services {
            clock,
            run,
            collector,
            invalidator,
            evaluator,
            events,
            live,
            live_metrics,
            auth,
            retention,
        } = services;
        let self_events = Arc::new(SelfEvents::new(options.self_events, Arc::clone(&clock)));
        let monitor = Arc::clone(&self_events);
        evaluator.on_compute(Arc::new(move |tenant, source, ms| {
            monitor.compute(tenant, source, ms)
        }));
        Arc::new(App {
            events,
            clock,
            collector,
            invalidator,
            evaluator,
            live,
            live_metrics,
            auth,
            retention,
            self_events,
            limits: options.limits,
            opmetrics: Arc::new(OpMetrics::new(options.metrics)),
            run,
            websockets: Arc::new(tokio::sync::Semaphore::new(
                options.limits.max_websockets.max(1),
            )),
            ws_queued: Arc::default(),
            options,
            origins,
        })
    }
}
