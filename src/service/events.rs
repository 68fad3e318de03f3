//! event/get: the newest matching events of a range, in chronological order.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{Map, Value};

use crate::model::{Tenant, time};
use crate::plan::{EventPlan, PlanError, compile_event};
use crate::storage::{EventStore, Order, StoreError};
use crate::telemetry::results::Run;

/// The largest (and default) number of events one request returns.
pub use crate::limits::MAX_EVENT_LIMIT;

/// A parsed event/get request.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub plan: EventPlan,
    pub start: i64,
    pub stop: i64,
    pub limit: usize,
}

/// Why an event request was refused. `Display` is Cube's error text.
#[derive(Debug, thiserror::Error)]
pub enum EventQueryError {
    #[error("invalid expression")]
    Expression(PlanError),
    #[error("invalid start")]
    Start,
    #[error("invalid stop")]
    Stop,
    #[error("invalid limit")]
    Limit,
    /// As many live streams as allowed are running (`--max-live-streams`).
    #[error("too many live streams")]
    TooManyStreams(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EventQueryError {
    /// The details a client is told with a refused parameter.
    pub fn message(&self) -> Option<String> {
        match self {
            EventQueryError::Start => Some(time::refused_time("start")),
            EventQueryError::Stop => Some(time::refused_time("stop")),
            EventQueryError::Limit => Some(time::refused_limit("events", MAX_EVENT_LIMIT)),
            _ => None,
        }
    }
}

impl EventQuery {
    /// Parses the request parameters: `expression`, `start` (default 0),
    /// `stop` (default now), `limit` (default and maximum 10000).
    pub fn parse(
        expression: Option<&str>,
        start: Option<&str>,
        stop: Option<&str>,
        limit: Option<&str>,
        now: i64,
    ) -> Result<Self, EventQueryError> {
        let plan =
            compile_event(expression.unwrap_or_default()).map_err(EventQueryError::Expression)?;
        let start = match start {
            None => 0,
            Some(s) => time::parse_param(s).ok_or(EventQueryError::Start)?,
        };
        let stop = match stop {
            None => now,
            Some(s) => time::parse_stop(s).ok_or(EventQueryError::Stop)?,
        };
        let limit = match limit {
            None => MAX_EVENT_LIMIT,
            Some(s) => {
                let n: f64 = s.trim().parse().map_err(|_| EventQueryError::Limit)?;
                if n.is_nan() || n < 0.0 {
                    return Err(EventQueryError::Limit);
                }
                (n as usize).min(MAX_EVENT_LIMIT)
            }
        };
        Ok(EventQuery {
            plan,
            start,
            stop,
            limit,
        })
    }
}

/// One event as the API returns it: `{time, data?, id?}`.
pub fn event_json(plan: &EventPlan, time: i64, data: &Value, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), Value::String(time::format_iso(time)));
    if let Some(projected) = plan.project(data) {
        m.insert("data".into(), projected);
    }
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

/// What transport reads of the event store: event/get queries and the
/// list of types.
#[derive(Clone)]
pub struct Events {
    store: Arc<dyn EventStore>,
    run: Arc<Run>,
}

impl Events {
    pub fn new(store: Arc<dyn EventStore>, run: Arc<Run>) -> Self {
        Events { store, run }
    }

    /// One event/get request: the newest `limit` matching events in
    /// `[start, stop)`, in `order` (counted in the evaluator's `event_requests`).
    pub async fn query(
        &self,
        tenant: &Tenant,
        q: EventQuery,
        order: Order,
    ) -> Result<Vec<Value>, EventQueryError> {
        self.run.evaluator.event_requests.fetch_add(1, Relaxed);
        query_events(&self.store, tenant, q, order).await
    }

    /// The tenant's event types, sorted.
    pub async fn types(&self, tenant: &Tenant) -> Result<Vec<String>, StoreError> {
        let store = Arc::clone(&self.store);
        let tenant = tenant.clone();
        super::on_store(move || store.types(&tenant)).await
    }
}

/// The newest `limit` matching events in `[start, stop)`, oldest first.
pub async fn query_events(
    store: &Arc<dyn EventStore>,
    tenant: &Tenant,
    q: EventQuery,
    order: Order,
) -> Result<Vec<Value>, EventQueryError> {
    let store = Arc::clone(store);
    let tenant = tenant.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        store.scan(
            &tenant,
            &q.plan.event_type,
            q.start,
            q.stop,
            Order::Descending,
            &mut |e| {
                if q.plan.filter.matches(&e.data) {
                    out.push(event_json(&q.plan, e.time, &e.data, e.id));
                    if out.len() >= q.limit {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            },
        )?;
        if order == Order::Ascending {
            out.reverse();
        }
        Ok(out)
    })
    .await
    .map_err(|e| EventQueryError::Internal(e.to_string()))?
}
