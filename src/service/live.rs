//! Live event streams: one shared poll per (tenant, expression, delay).
//!
//! A poller wakes every poll interval and broadcasts the matching events of
//! the window `[last, now - delay)`; subscribers started with their own
//! history query and fill any gap between it and the first window they see.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

use super::events::{EventQuery, query_events};
use crate::model::{Clock, Tenant};
use crate::plan::EventPlan;
use crate::storage::{EventStore, Order};
use crate::sync::lock;

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
    poll: Duration,
    streams: Mutex<HashMap<Key, broadcast::Sender<Window>>>,
}

impl LiveStreams {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>, poll: Duration) -> Arc<Self> {
        Arc::new(LiveStreams {
            store,
            clock,
            poll,
            streams: Mutex::default(),
        })
    }

    /// Subscribes to the shared poll of `plan` with `delay`; starts it if needed.
    /// The first window starts at `from` or later.
    pub fn subscribe(
        self: &Arc<Self>,
        tenant: &Tenant,
        plan: &EventPlan,
        delay: i64,
        from: i64,
    ) -> broadcast::Receiver<Window> {
        let key = (tenant.clone(), plan.canonical.clone(), delay);
        let mut streams = lock(&self.streams);
        if let Some(tx) = streams.get(&key)
            && tx.receiver_count() > 0
        {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(64);
        streams.insert(key.clone(), tx.clone());
        let me = Arc::clone(self);
        let plan = plan.clone();
        tokio::spawn(async move { me.poll_loop(key, plan, tx, from).await });
        rx
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

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}
