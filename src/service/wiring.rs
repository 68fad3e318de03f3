//! The services of one server wired together over one store and metric
//! cache: what transport is handed (it never holds the store itself).

use std::sync::Arc;
use std::time::Duration;

use super::live::LiveStreams;
use super::live_metrics::LiveMetrics;
use super::{Auth, Collector, Evaluator, Events, Invalidator, Retention};
use crate::model::Clock;
use crate::model::retention::Horizon;
use crate::storage::{EventStore, MetricCache};
use crate::telemetry::results::Run;

/// Settings of the services that are not transport's.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most bytes of values one metric request may hold.
    pub max_query_memory: usize,
    /// Longest one metric request may take.
    pub query_timeout: Duration,
    /// How often live event streams poll the store (and live metrics look
    /// for closed and changed bins).
    pub live_poll_interval: Duration,
    /// Most live event streams (distinct tenant, expression and delay) at
    /// once, and as many live metric polls.
    pub max_live_streams: usize,
    /// Most scans of events computing bins at once, server-wide.
    pub max_computations: usize,
    /// Most groups one grouped reduce may have over a request's range.
    pub max_groups: usize,
    /// Most bins of metric requests evaluated at once, server-wide.
    pub max_bins_in_flight: usize,
    /// How long events are kept (`--retention`).
    pub retention: Horizon,
    /// How long Cubed's own events are kept (`--self-retention`).
    pub self_retention: Horizon,
}

pub struct Services {
    pub clock: Arc<dyn Clock>,
    /// This run of the server and its modules' statistics.
    pub run: Arc<Run>,
    pub collector: Collector,
    pub invalidator: Arc<Invalidator>,
    pub evaluator: Arc<Evaluator>,
    /// event/get and the list of types.
    pub events: Events,
    pub live: Arc<LiveStreams>,
    /// Live metric requests (metric/get without `stop`), sharing polls.
    pub live_metrics: Arc<LiveMetrics>,
    /// Keys and roles ([`Auth::off`] unless set: the server is open).
    pub auth: Arc<Auth>,
    /// What is deleted when, and the figures of what is kept.
    pub retention: Arc<Retention>,
}

impl Services {
    /// Wires the services: every put the collector acknowledges is recorded
    /// for cache invalidation before the acknowledgement.
    pub fn new(
        store: Arc<dyn EventStore>,
        cache: Arc<dyn MetricCache>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        let run = Arc::new(Run::new());
        let invalidator = Arc::new(Invalidator::new(Arc::clone(&cache)));
        let retention = Arc::new(Retention::new(
            Arc::clone(&store),
            Arc::clone(&invalidator),
            Arc::clone(&clock),
            settings.retention,
            settings.self_retention,
        ));
        let collector = Collector::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&run),
            Arc::clone(&retention),
        );
        let inv = Arc::clone(&invalidator);
        collector.on_put(Arc::new(move |tenant, outcome| inv.record(tenant, outcome)));
        let evaluator = Arc::new(
            Evaluator::new(
                Arc::clone(&store),
                cache,
                Arc::clone(&invalidator),
                Arc::clone(&run),
                settings.max_query_memory,
                settings.query_timeout,
                settings.max_computations,
            )
            .with_max_bins_in_flight(settings.max_bins_in_flight)
            .with_max_groups(settings.max_groups),
        );
        let live_metrics = LiveMetrics::new(
            Arc::clone(&evaluator),
            Arc::clone(&invalidator),
            Arc::clone(&clock),
            settings.live_poll_interval,
            settings.max_live_streams,
        );
        let live = LiveStreams::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&run),
            settings.live_poll_interval,
            settings.max_live_streams,
        );
        Services {
            events: Events::new(store, Arc::clone(&run)),
            clock,
            run,
            collector,
            invalidator,
            evaluator,
            live,
            live_metrics,
            auth: Arc::new(Auth::off()),
            retention,
        }
    }
}
