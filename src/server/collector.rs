//! The collector listener (Cube's port 1080): event put over HTTP and
//! WebSocket, collectd's write_http JSON.

use std::sync::Arc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use serde_json::value::RawValue;
use warp::http::StatusCode;
use warp::ws::{Message, WebSocket, Ws};
use warp::{Filter, Reply};

use super::App;
use super::common::{preflight, read_body, recover, respond, service, service_header, with_app};
use super::error::{ApiError, json_response};
use crate::model::{NewEvent, Service, parse_event_batch, validate_event};

/// Most WebSocket messages stored in one put.
const WS_BATCH: usize = 1000;

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let log = super::request_log(Arc::clone(&app.self_events));
    // Path before method: an unknown path is 404, a known one with the wrong method 405.
    let put = warp::path!("1.0" / "event" / "put")
        .or(warp::path!("1.0" / "event"))
        .unify()
        .and(warp::post())
        .and(service_header())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_app(Arc::clone(&app)))
        .then(|svc, len, body, app: Arc<App>| async move {
            respond(
                async {
                    let service = service(svc)?;
                    let body = read_body(len, body, app.limits.max_body_bytes).await?;
                    let events = parse_event_batch(&body, app.clock.now_ms())?;
                    app.collector.put(&service, events).await?;
                    Ok(json_response(StatusCode::OK, &json!({})))
                }
                .await,
            )
        });

    let ws_put = warp::path!("1.0" / "event" / "put")
        .and(warp::ws())
        .and(service_header())
        .and(with_app(Arc::clone(&app)))
        .map(
            |ws: Ws, svc: Option<String>, app: Arc<App>| match service(svc) {
                Ok(service) => ws
                    .max_message_size(app.limits.max_ws_message_bytes)
                    .max_frame_size(app.limits.max_ws_message_bytes)
                    .on_upgrade(move |socket| ws_put(socket, app, service))
                    .into_response(),
                Err(e) => e.into_response(),
            },
        );

    let collectd = warp::path!("collectd")
        .and(warp::post())
        .and(service_header())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_app(app))
        .then(|svc, len, body, app: Arc<App>| async move {
            respond(
                async {
                    let service = service(svc)?;
                    let body = read_body(len, body, app.limits.max_body_bytes).await?;
                    app.collector.put_collectd(&service, &body).await?;
                    Ok(json_response(StatusCode::OK, &json!({})))
                }
                .await,
            )
        });

    ws_put
        .or(put)
        .unify()
        .or(collectd)
        .unify()
        .or(preflight())
        .unify()
        .recover(recover)
        .unify()
        .with(log)
}

/// Validates one WebSocket message as an event.
fn ws_event(text: &str, now: i64) -> Result<NewEvent, String> {
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    validate_event(raw, now).map_err(|e| e.to_string())
}

async fn send(
    tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    body: serde_json::Value,
) -> bool {
    tx.send(Message::text(body.to_string())).await.is_ok()
}

/// One event per text message; nothing is sent back on success, an
/// `{"error": …}` message on failure. Messages that arrive together are
/// stored in one put.
async fn ws_put(socket: WebSocket, app: Arc<App>, service: Service) {
    let (mut tx, mut rx) = socket.split();
    let mut open = true;
    while open {
        let Some(first) = rx.next().await else { break };
        let mut messages = vec![first];
        while messages.len() < WS_BATCH {
            match rx.next().now_or_never() {
                Some(Some(m)) => messages.push(m),
                Some(None) => {
                    open = false;
                    break;
                }
                None => break,
            }
        }
        let now = app.clock.now_ms();
        let mut events = Vec::with_capacity(messages.len());
        let mut errors = Vec::new();
        for m in messages {
            match m {
                Ok(m) if m.is_text() => match m.to_str().map(|t| ws_event(t, now)) {
                    Ok(Ok(e)) => events.push(e),
                    Ok(Err(reason)) => errors.push(json!({ "error": reason })),
                    Err(()) => errors.push(json!({ "error": "invalid message" })),
                },
                Ok(m) if m.is_binary() => {
                    errors.push(json!({ "error": "expected a text message" }))
                }
                Ok(m) if m.is_close() => open = false,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "websocket receive failed");
                    errors.push(json!({ "error": e.to_string() }));
                    open = false;
                }
            }
        }
        if let Err(e) = app.collector.put(&service, events).await {
            errors.push(ApiError::from(e).ws_body());
        }
        for e in errors {
            if !send(&mut tx, e).await {
                return;
            }
        }
    }
    let _ = tx.close().await;
}
