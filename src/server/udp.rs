//! The UDP collector (Cube's port 1180): one JSON event per datagram, no reply.

use std::future::Future;
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::net::UdpSocket;

use super::App;
use crate::ingest::validate_event;
use crate::model::Tenant;

/// Most datagrams stored in one put.
const UDP_BATCH: usize = 1000;

pub async fn serve(socket: UdpSocket, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut buf = vec![0u8; 65_536];
    let tenant = Tenant::default_tenant();
    loop {
        let first = tokio::select! {
            _ = &mut shutdown => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let mut events = Vec::new();
        let now = app.clock.now_ms();
        let mut take = |n: usize, buf: &[u8]| match serde_json::from_slice::<&RawValue>(&buf[..n]) {
            Ok(raw) => match validate_event(raw, now) {
                Ok(e) => events.push(e.into_owned()),
                Err(e) => tracing::debug!(error = %e, "udp event refused"),
            },
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
        if let Err(e) = app.collector.put(&tenant, events).await {
            tracing::error!(error = %e, "storing udp events failed");
        }
    }
}
