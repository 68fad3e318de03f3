//! Services: what the server does, independent of HTTP. Async at the edges
//! (storage calls cross into blocking threads here), no routing, no wire formats.

pub mod auth;
pub mod collector;
pub mod evaluator;
pub mod events;
pub mod invalidation;
pub mod live;
pub mod live_metrics;
pub mod range;
pub mod retention;
pub mod wiring;

/// The storage contract's types that services hand to transport.
pub use crate::storage::{Order, StoreError};
pub use auth::{Access, Auth, AuthError, AuthMode};
pub use collector::{Collector, CollectorError, SessionLog};
pub use evaluator::{EvalError, Evaluator, MetricQuery, MetricQueryError};
pub use events::{EventQuery, EventQueryError, Events};
pub use invalidation::Invalidator;
pub use range::{RangeAnswer, RangeError, RangeQuery, Series};
pub use retention::Retention;
pub use wiring::{Services, Settings};

/// Runs a storage call on the blocking pool (storage calls are synchronous).
async fn on_store<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| StoreError::Engine(format!("internal error: {e}")))?
}
