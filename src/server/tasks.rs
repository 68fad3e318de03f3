//! The server's background loops: cache invalidations, self events and
//! results documents, until shutdown.

use std::future::Future;
use std::sync::Arc;

use super::{App, admin, common};

/// Writes each module's results document every `results_interval`, and once
/// more at shutdown.
pub async fn write_results(app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(app.options.results_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        seq += 1;
        admin::store_results(&app, seq).await;
    }
    admin::store_results(&app, seq + 1).await;
}

/// The periodic batch of cache invalidations.
pub async fn flush_invalidations(app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(app.options.invalidation_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        store_self_events(&app).await;
        let inv = Arc::clone(&app.invalidator);
        if let Err(e) = common::blocking(move || inv.flush_all()).await {
            tracing::error!(error = %e.body, "flushing cache invalidations failed");
        }
    }
    store_self_events(&app).await;
    let inv = Arc::clone(&app.invalidator);
    let _ = tokio::task::spawn_blocking(move || inv.flush_all()).await;
}

async fn store_self_events(app: &App) {
    for (tenant, events) in app.self_events.take() {
        match app.collector.put(&tenant, events).await {
            Ok(_) => {}
            // A flood of new services: their requests' events are dropped
            // (quietly: a flood must not fill the log either).
            Err(crate::service::CollectorError::Store(crate::service::StoreError::TooMany {
                ..
            })) => {}
            Err(e) => tracing::warn!(error = %e, "storing self-monitoring events failed"),
        }
    }
}

/// Re-reads the keys every second, so that keys created or revoked with
/// `cubed keys` (another process) take effect within a second.
pub async fn reload_keys(app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(
        crate::limits::KEY_RELOAD_INTERVAL_MS,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = app.auth.reload_async().await {
            tracing::error!(error = %e, "reading the keys failed; the keys read before stay in force");
        }
    }
}

/// Deletes events older than their type's retention every
/// `retention_interval` (the first sweep right after start).
pub async fn expire_old_events(app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(app.options.retention_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        // A shutdown does not wait for a sweep: each of its batches is
        // atomic, and the next start sweeps again.
        tokio::select! {
            _ = &mut shutdown => break,
            r = app.retention.sweep() => if let Err(e) = r {
                tracing::error!(error = %e, "retention sweep failed; retrying at the next interval");
            }
        }
    }
}
