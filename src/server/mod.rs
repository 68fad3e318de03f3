//! Transport: warp routes for the collector and evaluator listeners,
//! WebSocket protocols, the UDP collector. Handlers call `service/`; errors
//! become answers only in `error.rs`.

pub mod collector;
pub mod common;
pub mod error;
pub mod evaluator;
pub mod udp;

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::model::Clock;
use crate::service::Collector;
use crate::storage::{EventStore, MetricCache};

/// Size limits on what clients send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest HTTP request body (413 beyond it).
    pub max_body_bytes: usize,
    /// Largest WebSocket message (the connection is closed with 1009 beyond it).
    pub max_ws_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_ws_message_bytes: 1024 * 1024,
        }
    }
}

/// Everything the handlers share.
pub struct App {
    pub store: Arc<dyn EventStore>,
    pub cache: Arc<dyn MetricCache>,
    pub clock: Arc<dyn Clock>,
    pub collector: Collector,
    pub limits: Limits,
}

impl App {
    pub fn new(
        store: Arc<dyn EventStore>,
        cache: Arc<dyn MetricCache>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Arc<Self> {
        let collector = Collector::new(Arc::clone(&store), Arc::clone(&clock));
        Arc::new(App {
            store,
            cache,
            clock,
            collector,
            limits,
        })
    }
}

/// Already-bound sockets (tests bind port 0).
pub struct Listeners {
    pub collector: TcpListener,
    pub evaluator: TcpListener,
    pub udp: Option<UdpSocket>,
}

/// Serves until `shutdown` completes, then stops accepting, lets requests in
/// flight finish, and flushes the store.
pub async fn run(
    listeners: Listeners,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let collector = warp::serve(collector::routes(Arc::clone(&app)))
        .incoming(listeners.collector)
        .graceful(stopped(rx.clone()))
        .run();
    let evaluator = warp::serve(evaluator::routes(Arc::clone(&app)))
        .incoming(listeners.evaluator)
        .graceful(stopped(rx.clone()))
        .run();
    let udp = listeners
        .udp
        .map(|socket| tokio::spawn(udp::serve(socket, Arc::clone(&app), stopped(rx.clone()))));
    let collector = tokio::spawn(collector);
    let evaluator = tokio::spawn(evaluator);
    shutdown.await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    let _ = collector.await;
    let _ = evaluator.await;
    if let Some(udp) = udp {
        let _ = udp.await;
    }
    let store = Arc::clone(&app.store);
    match tokio::task::spawn_blocking(move || store.flush()).await {
        Ok(Ok(())) => tracing::info!("store flushed"),
        Ok(Err(e)) => tracing::error!(error = %e, "flushing the store failed"),
        Err(e) => tracing::error!(error = %e, "flushing the store failed"),
    }
}
