//! Self-monitoring events, as Cube stored them: `cube_request` `{ip, path,
//! method}` per HTTP request or WebSocket connection, and `cube_compute`
//! `{expression, ms}` per computed leaf. They are buffered and stored in
//! batches (see `server::run`), in the tenant of the request that caused them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::model::{Clock, NewEvent, Tenant};
use crate::sync::lock;

/// Most buffered events; beyond it new ones are dropped (and counted).
const MAX_PENDING: usize = 100_000;
use crate::limits::MAX_REQUEST_PATH_CHARS as MAX_PATH_CHARS;

pub struct SelfEvents {
    enabled: bool,
    clock: Arc<dyn Clock>,
    pending: Mutex<HashMap<Tenant, Vec<NewEvent<'static>>>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl SelfEvents {
    pub fn new(enabled: bool, clock: Arc<dyn Clock>) -> Self {
        SelfEvents {
            enabled,
            clock,
            pending: Mutex::default(),
            dropped: Default::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn push(&self, tenant: &Tenant, event_type: &str, data: serde_json::Value) {
        if !self.enabled {
            return;
        }
        let mut pending = lock(&self.pending);
        let total: usize = pending.values().map(Vec::len).sum();
        if total >= MAX_PENDING {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let event = NewEvent::owned(
            event_type.to_owned(),
            self.clock.now_ms(),
            data.to_string(),
            None,
        );
        // An event over a limit is dropped alone, never with its batch.
        match event.checked() {
            Ok(e) => pending.entry(tenant.clone()).or_default().push(e),
            Err(_) => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// A request's event; a path longer than [`MAX_PATH_CHARS`] is cut there.
    pub fn request(&self, tenant: &Tenant, ip: Option<String>, path: &str, method: &str) {
        let path = match path.char_indices().nth(MAX_PATH_CHARS) {
            Some((cut, _)) => &path[..cut],
            None => path,
        };
        self.push(
            tenant,
            "cube_request",
            json!({ "ip": ip, "path": path, "method": method }),
        );
    }

    pub fn compute(&self, tenant: &Tenant, expression: &str, ms: u64) {
        self.push(
            tenant,
            "cube_compute",
            json!({ "expression": expression, "ms": ms }),
        );
    }

    /// Everything buffered so far, by tenant.
    pub fn take(&self) -> Vec<(Tenant, Vec<NewEvent<'static>>)> {
        lock(&self.pending).drain().collect()
    }

    /// Events dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}
