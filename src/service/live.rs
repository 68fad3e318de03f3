//! Live event streams: one shared poll per (tenant, expression, delay).
//!
//! A poller wakes every poll interval and broadcasts the matching events of
//! the window `[last, now - delay)`; a stream ([`LiveStreams::follow`]) starts
//! with its own history query and fills any gap between it and the first
//! window it sees.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

use super::events::{EventQuery, EventQueryError, query_events};
use crate::model::{Clock, Tenant};
use crate::plan::EventPlan;
use crate::storage::{EventStore, Order};
use crate::sync::lock;
use crate::telemetry::results::Run;

/// One window of a live stream: events of `[start, stop)`, oldest first.
#[derive(Debug, Clone)]
pub struct Window {
    pub start: i64,
    pub stop: i64,
    pub events: Arc<Vec<Value>>,
}

type Key = (Tenant, String, i64);

pub struct LiveStreams {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    run: Arc<Run>,
    poll: Duration,
    /// Most shared polls at once (`--max-live-streams`).
    max_polls: usize,
    streams: Mutex<HashMap<Key, broadcast::Sender<Window>>>,
}

impl LiveStreams {
    pub fn new(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        run: Arc<Run>,
        poll: Duration,
        max_polls: usize,
    ) -> Arc<Self> {
        Arc::new(LiveStreams {
            store,
            clock,
            run,
            poll,
            max_polls,
            streams: Mutex::default(),
        })
    }

    /// One live event/get request (counted in the evaluator's
    /// `event_requests`): the matching events of `[start, stop)` oldest first
    /// (the history, `stop` being now − `delay`), and the stream of what
    /// follows, shared with every other stream of the same expression and delay.
    pub async fn follow(
        self: &Arc<Self>,
        tenant: &Tenant,
        query: EventQuery,
        delay: i64,
    ) -> Result<(Vec<Value>, LiveStream), EventQueryError> {
        self.run.evaluator.event_requests.fetch_add(1, Relaxed);
        let plan = query.plan.clone();
        let seen = query.stop;
        let windows = self
            .subscribe(tenant, &plan, delay, seen)
            .ok_or(EventQueryError::TooManyStreams(self.max_polls))?;
        let history = query_events(&self.store, tenant, query, Order::Ascending).await?;
        let stream = LiveStream {
            store: Arc::clone(&self.store),
            tenant: tenant.clone(),
            plan,
            seen,
            windows,
        };
        Ok((history, stream))
    }

    /// Subscribes to the shared poll of `plan` with `delay`; starts it if
    /// needed (`None` when as many polls as allowed are running). The first
    /// window starts at `from` or later.
    fn subscribe(
        self: &Arc<Self>,
        tenant: &Tenant,
        plan: &EventPlan,
        delay: i64,
        from: i64,
    ) -> Option<broadcast::Receiver<Window>> {
        let key = (tenant.clone(), plan.canonical.clone(), delay);
        let mut streams = lock(&self.streams);
        if let Some(tx) = streams.get(&key)
            && tx.receiver_count() > 0
        {
            return Some(tx.subscribe());
        }
        // Polls whose last subscriber left end at their next tick.
        streams.retain(|_, tx| tx.receiver_count() > 0);
        if streams.len() >= self.max_polls {
            return None;
        }
        let (tx, rx) = broadcast::channel(64);
        streams.insert(key.clone(), tx.clone());
        let me = Arc::clone(self);
        let plan = plan.clone();
        tokio::spawn(async move { me.poll_loop(key, plan, tx, from).await });
        Some(rx)
    }

    async fn poll_loop(
        self: Arc<Self>,
        key: Key,
        plan: EventPlan,
        tx: broadcast::Sender<Window>,
        from: i64,
    ) {
        let (tenant, _, delay) = key.clone();
        let mut last = from;
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.receiver_count() == 0 {
                break;
            }
            let stop = self.clock.now_ms() - delay;
            if stop <= last {
                continue;
            }
            let q = EventQuery {
                plan: plan.clone(),
                start: last,
                stop,
                limit: usize::MAX,
            };
            match query_events(&self.store, &tenant, q, Order::Ascending).await {
                Ok(events) => {
                    let _ = tx.send(Window {
                        start: last,
                        stop,
                        events: Arc::new(events),
                    });
                    last = stop;
                }
                Err(e) => tracing::warn!(error = %e, "live event poll failed"),
            }
        }
        let mut streams = lock(&self.streams);
        if streams.get(&key).is_some_and(|t| t.same_channel(&tx)) {
            streams.remove(&key);
        }
    }
}

/// What follows a live stream's history.
pub struct LiveStream {
    store: Arc<dyn EventStore>,
    tenant: Tenant,
    plan: EventPlan,
    /// Every event before this time has been given.
    seen: i64,
    windows: broadcast::Receiver<Window>,
}

impl LiveStream {
    /// The stream's next events, oldest first: any gap between what was
    /// given and the next shared window (read from the store), then that
    /// window's events not given yet. `None` once the shared poll has ended.
    pub async fn next(&mut self) -> Option<Vec<Value>> {
        let w = loop {
            match self.windows.recv().await {
                Ok(w) => break w,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        };
        let mut out = Vec::new();
        if w.start > self.seen {
            let gap = EventQuery {
                plan: self.plan.clone(),
                start: self.seen,
                stop: w.start,
                limit: usize::MAX,
            };
            match query_events(&self.store, &self.tenant, gap, Order::Ascending).await {
                Ok(events) => out = events,
                Err(e) => {
                    // Nothing given, nothing marked seen: the next window's
                    // gap query covers this one.
                    tracing::warn!(error = %e, "live event gap query failed");
                    return Some(Vec::new());
                }
            }
        }
        let seen = self.seen;
        out.extend(
            w.events
                .iter()
                .filter(|e| {
                    e.get("time")
                        .and_then(Value::as_str)
                        .and_then(crate::model::time::parse_iso)
                        .is_none_or(|t| t >= seen)
                })
                .cloned(),
        );
        self.seen = seen.max(w.stop);
        Some(out)
    }
}
