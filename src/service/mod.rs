//! Services: what the server does, independent of HTTP. Async at the edges
//! (storage calls cross into blocking threads here), no routing, no wire formats.

pub mod collectd;
pub mod collector;
pub mod evaluator;
pub mod events;
pub mod invalidation;
pub mod live;
pub mod monitor;
pub mod opmetrics;
pub mod results;

pub use collector::{Collector, CollectorError};
pub use evaluator::{EvalError, Evaluator, MetricQuery, MetricQueryError};
pub use events::{EventQuery, EventQueryError, query_events};
pub use invalidation::Invalidator;
