//! Transport: warp routes for the collector and evaluator listeners,
//! WebSocket protocols, the UDP collector. Handlers call `service/`; errors
//! become answers only in `error.rs`.

pub mod admin;
pub mod app;
pub mod collector;
pub mod common;
pub mod error;
pub mod evaluator;
pub mod evaluator_ws;
pub mod keys;
pub mod listen;
pub mod origin;
pub mod prometheus;
pub mod retention;
pub mod tasks;
pub mod udp;
pub mod web;
pub mod wire;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

pub use app::{App, Limits, Options};

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
    let connections = listen::ConnectionLimits {
        max_connections: app.limits.max_connections,
        header_timeout: app.limits.header_timeout,
    };
    let collector = listen::serve(
        listeners.collector,
        gathered(Arc::clone(&app), collector::routes(Arc::clone(&app))),
        connections,
        stopped(rx.clone()),
    );
    let evaluator = listen::serve(
        listeners.evaluator,
        gathered(Arc::clone(&app), evaluator::routes(Arc::clone(&app))),
        connections,
        stopped(rx.clone()),
    );
    let udp = listeners
        .udp
        .map(|socket| tokio::spawn(udp::serve(socket, Arc::clone(&app), stopped(rx.clone()))));
    let collector = tokio::spawn(collector);
    let evaluator = tokio::spawn(evaluator);
    let flusher = tokio::spawn(tasks::flush_invalidations(
        Arc::clone(&app),
        stopped(rx.clone()),
    ));
    let results = tokio::spawn(tasks::write_results(Arc::clone(&app), stopped(rx.clone())));
    let keys = tokio::spawn(tasks::reload_keys(Arc::clone(&app), stopped(rx.clone())));
    let retention = tokio::spawn(tasks::expire_old_events(
        Arc::clone(&app),
        stopped(rx.clone()),
    ));
    tracing::info!(session_id = %app.run.id, "session started");
    shutdown.await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    let _ = collector.await;
    let _ = evaluator.await;
    if let Some(udp) = udp {
        let _ = udp.await;
    }
    let _ = flusher.await;
    let _ = results.await;
    let _ = keys.await;
    let _ = retention.await;
    match app.collector.flush().await {
        Ok(()) => tracing::info!("store flushed"),
        Err(e) => tracing::error!(error = %e, "flushing the store failed"),
    }
}

/// Counts every HTTP request a listener answers as one transaction of
/// `/admin/metrics` (request size from `Content-Length`, response size from
/// the body; 4xx and 5xx are errors). WebSocket upgrades are not counted:
/// their messages are, one by one, by the socket handlers.
fn gathered<F, R>(
    app: Arc<App>,
    routes: F,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone
where
    F: warp::Filter<Extract = (R,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    R: warp::Reply,
{
    use warp::Filter;
    use warp::http::header::CONTENT_LENGTH;
    warp::method()
        .and(warp::header::headers_cloned())
        .and(warp::path::full())
        .and(warp::ext::optional::<listen::ClientAddr>())
        .and(warp::any().map(std::time::Instant::now))
        .and(routes)
        .map(
            move |method: warp::http::Method,
                  headers: warp::http::HeaderMap,
                  path: warp::path::FullPath,
                  client: Option<listen::ClientAddr>,
                  started: std::time::Instant,
                  reply: R| {
                let resp = reply.into_response();
                let status = resp.status();
                record_request(&app, &method, &headers, path.as_str(), client);
                if app.opmetrics.enabled() && status != warp::http::StatusCode::SWITCHING_PROTOCOLS
                {
                    // Headers that are not text name no valid tenant: left out.
                    if let (Ok((tenant, _)), Ok(path)) = (
                        counted_tenant(&app, &method, &headers),
                        headers
                            .get("fiware-servicepath")
                            .map(|v| v.to_str().map(str::to_owned))
                            .transpose(),
                    ) {
                        let request_bytes = headers
                            .get(CONTENT_LENGTH)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let response_bytes =
                            http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
                        admin::TxHeaders {
                            tenant,
                            path,
                            protocols: None,
                        }
                        .record(
                            &app,
                            request_bytes,
                            response_bytes,
                            status.is_client_error() || status.is_server_error(),
                            started,
                        );
                    }
                }
                resp
            },
        )
}

/// The `Fiware-Service` a request is counted under, and whether it
/// presented a valid key. With keys in force: its key's service (whatever
/// header it sent); without a valid key, its header's service only if some
/// key is for that service (else the default service), so that requests
/// without a key cannot make up services. Without keys: its header (`Err`
/// if the header is not text).
fn counted_tenant(
    app: &App,
    method: &warp::http::Method,
    headers: &warp::http::HeaderMap,
) -> Result<(Option<String>, bool), warp::http::header::ToStrError> {
    let header = headers
        .get("fiware-service")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()?;
    if !app.auth.enabled() {
        return Ok((header, true));
    }
    if let Some(record) = common::presented_key(method, headers).and_then(|k| app.auth.record(&k)) {
        return Ok(((!record.service.is_empty()).then_some(record.service), true));
    }
    let known = crate::model::Tenant::from_header(header.as_deref())
        .is_ok_and(|t| app.auth.knows_tenant(&t));
    Ok((header.filter(|_| known), false))
}

/// Records a `cube_request` event for a request a listener answered,
/// under the tenant it is counted under (see `counted_tenant`); none for a
/// request without a valid key while keys are in force.
fn record_request(
    app: &App,
    method: &warp::http::Method,
    headers: &warp::http::HeaderMap,
    path: &str,
    client: Option<listen::ClientAddr>,
) {
    if !app.self_events.enabled() {
        return;
    }
    // A request without a valid key while keys are in force writes
    // nothing into any service.
    let tenant = match counted_tenant(app, method, headers) {
        Ok((_, false)) => return,
        Ok((t, true)) => crate::model::Tenant::from_header(t.as_deref())
            .unwrap_or_else(|_| crate::model::Tenant::default_tenant()),
        Err(_) if app.auth.enabled() => return,
        Err(_) => crate::model::Tenant::default_tenant(),
    };
    let ip = client.map(|a| a.0.ip().to_string());
    app.self_events.request(&tenant, ip, path, method.as_str());
}
