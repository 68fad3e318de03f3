//! The UDP collector (Cube's port 1180): one JSON event per datagram, no
//! reply. With keys in force, only with `--udp-keyed`: each datagram then
//! carries a write key in a `"key"` field (its service is the key's).

use std::future::Future;
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::net::UdpSocket;

use super::App;
use crate::ingest::validate_event;
use crate::model::Tenant;
use crate::model::access::Role;
use std::collections::BTreeMap;

/// Most datagrams stored in one put.
const UDP_BATCH: usize = 1000;

pub async fn serve(socket: UdpSocket, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut buf = vec![0u8; 65_536];
    loop {
        let first = tokio::select! {
            _ = &mut shutdown => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let mut events: BTreeMap<Tenant, Vec<_>> = BTreeMap::new();
        let now = app.clock.now_ms();
        let keys_needed = app.auth.enabled();
        let keyed = app.options.udp_keyed;
        let mut take = |n: usize, buf: &[u8]| match serde_json::from_slice::<&RawValue>(&buf[..n]) {
            Ok(raw) => {
                let tenant = if keys_needed {
                    match datagram_tenant(&app, raw, keyed) {
                        Some(t) => t,
                        None => return,
                    }
                } else {
                    Tenant::default_tenant()
                };
                match validate_event(raw, now) {
                    Ok(e) => events.entry(tenant).or_default().push(e.into_owned()),
                    Err(e) => tracing::debug!(error = %e, "udp event refused"),
                }
            }
            Err(e) => tracing::debug!(error = %e, "udp datagram is not JSON"),
        };
        match first {
            Ok((n, _)) => take(n, &buf),
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        }
        for _ in 1..UDP_BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((n, _)) => take(n, &buf),
                Err(_) => break,
            }
        }
        for (tenant, events) in events {
            if let Err(e) = app.collector.put(&tenant, events).await {
                tracing::error!(error = %e, "storing udp events failed");
            }
        }
    }
}

/// With keys in force, a datagram is taken only with `--udp-keyed` and a
/// `"key"` field holding a key with the `write` role; its tenant is the
/// key's. `None`: dropped.
fn datagram_tenant(app: &App, raw: &RawValue, keyed: bool) -> Option<Tenant> {
    #[derive(serde::Deserialize)]
    struct Keyed<'a> {
        #[serde(borrow)]
        key: Option<std::borrow::Cow<'a, str>>,
    }
    if !keyed {
        tracing::debug!("udp datagram dropped: keys are in force and --udp-keyed is not set");
        return None;
    }
    let key = serde_json::from_str::<Keyed<'_>>(raw.get()).ok()?.key;
    match app.auth.check(key.as_deref(), None, Role::Write) {
        Ok(access) => Some(access.tenant),
        Err(e) => {
            tracing::debug!(error = %e, "udp datagram refused");
            None
        }
    }
}
