//! The collector listener (Cube's port 1080): event put over HTTP and
//! WebSocket, collectd's write_http JSON.

use std::sync::Arc;

use super::ws::{Message, WebSocket, Ws};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::App;
use super::admin::TxHeaders;
use super::common::{access, read_body, recover, respond, upgrade_reply, websocket_turn, with_app};
use super::error::{ApiError, json_response};
use crate::ingest::cube_json::MessageError;
use crate::model::Tenant;
use crate::model::access::Role;
use crate::service::Access;
use crate::service::SessionLog;
use crate::service::collector::{Incoming, Refusal};
use crate::telemetry::opmetrics::Transaction;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Most WebSocket messages stored in one put.
const WS_BATCH: usize = 1000;

/// Most bytes of WebSocket messages gathered for one put (the message that
/// crosses it is taken; messages are at most `--max-ws-message-bytes`).
const WS_BATCH_BYTES: usize = 1024 * 1024;

/// What every POST of the collector takes: who the request is (a key with
/// the `write` role when keys are in force), the declared length and the
/// body stream, and the shared state.
fn posted(
    app: Arc<App>,
) -> impl Filter<
    Extract = (
        Result<Access, ApiError>,
        Option<u64>,
        impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>> + Send,
        Arc<App>,
    ),
    Error = warp::Rejection,
> + Clone {
    warp::post()
        .and(access(Arc::clone(&app), Role::Write))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_app(app))
}

/// The tenant and the body of a POST (the body bounded by the limit).
async fn receive<S, B>(
    app: &App,
    access: Result<Access, ApiError>,
    len: Option<u64>,
    body: S,
) -> Result<(Tenant, bytes::Bytes), ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let tenant = access?.tenant;
    let body = read_body(
        len,
        body,
        app.limits.max_body_bytes,
        app.limits.body_timeout,
    )
    .await?;
    Ok((tenant, body))
}

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    // Path before method: an unknown path is 404, a known one with the wrong method 405.
    let put = warp::path!("1.0" / "event" / "put")
        .or(warp::path!("1.0" / "event"))
        .unify()
        .and(posted(Arc::clone(&app)))
        .then(|header, len, body, app: Arc<App>| async move {
            respond(
                async {
                    let (tenant, body) = receive(&app, header, len, body).await?;
                    app.collector.put_json(&tenant, body).await?;
                    Ok(json_response(StatusCode::OK, &json!({})))
                }
                .await,
            )
        });

    let ws_put = warp::path!("1.0" / "event" / "put")
        .and(super::ws::ws())
        .and(access(Arc::clone(&app), Role::Write))
        .and(super::admin::tx_headers())
        .and(with_app(Arc::clone(&app)))
        .map(
            |ws: Ws, access: Result<Access, ApiError>, tx: TxHeaders, app: Arc<App>| match access
                .and_then(|a| websocket_turn(&app).map(|turn| (a, turn)))
            {
                Ok((access, turn)) => {
                    let tx = tx.for_tenant(&access.tenant);
                    let offered = tx.protocols.clone();
                    let max = app.limits.max_ws_message_bytes;
                    let reply = ws.on_upgrade(max, move |socket| async move {
                        ws_put(socket, app, access.tenant, tx, access.key_id).await;
                        drop(turn);
                    });
                    upgrade_reply(reply, offered.as_deref())
                }
                Err(e) => e.into_response(),
            },
        );

    let collectd = warp::path!("collectd").and(posted(Arc::clone(&app))).then(
        |header, len, body, app: Arc<App>| async move {
            respond(
                async {
                    let (tenant, body) = receive(&app, header, len, body).await?;
                    app.collector.put_collectd(&tenant, &body).await?;
                    Ok(json_response(StatusCode::OK, &json!({})))
                }
                .await,
            )
        },
    );

    let sessions = warp::path!("api" / "sessions" / String / String)
        .and(posted(Arc::clone(&app)))
        .then(
            |session: String, kind: String, header, len, body, app: Arc<App>| async move {
                respond(session_api(&app, &session, &kind, header, len, body).await)
            },
        );

    let emetrics = warp::path!("1.0" / "emetrics")
        .and(posted(Arc::clone(&app)))
        .then(|header, len, body, app: Arc<App>| async move {
            respond(
                async {
                    let (tenant, body) = receive(&app, header, len, body).await?;
                    let n = app.collector.put_emetrics(&tenant, &body).await?;
                    Ok(json_response(StatusCode::OK, &json!({ "events": n })))
                }
                .await,
            )
        });

    super::origin::forbidden_origin(Arc::clone(&app))
        .or(ws_put)
        .unify()
        .or(sessions)
        .unify()
        .or(emetrics)
        .unify()
        .or(put)
        .unify()
        .or(collectd)
        .unify()
        .or(super::admin::routes(Arc::clone(&app)))
        .unify()
        .with(super::origin::cors())
        .map(Reply::into_response)
        .recover(recover)
        .unify()
}

/// `POST /api/sessions/{id}/metrics` and `/api/sessions/{id}/events` (the session API):
/// `200 {"success": true}`, or `{"success": false, "error": …}`.
async fn session_api<S, B>(
    app: &App,
    session: &str,
    kind: &str,
    access: Result<Access, ApiError>,
    len: Option<u64>,
    body: S,
) -> Result<warp::reply::Response, ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let log = match kind {
        "metrics" => SessionLog::Metric,
        "events" => SessionLog::Event,
        _ => return Err(ApiError::session_api(StatusCode::NOT_FOUND, "not found")),
    };
    let as_session_error = |e: ApiError| {
        let message = e.body["error"]
            .as_str()
            .unwrap_or("invalid request")
            .to_owned();
        ApiError::session_api(e.status, message)
    };
    let (tenant, body) = receive(app, access, len, body)
        .await
        .map_err(as_session_error)?;
    app.collector
        .put_session(&tenant, session, log, &body)
        .await
        .map_err(|e| as_session_error(e.into()))?;
    Ok(json_response(StatusCode::OK, &json!({ "success": true })))
}

/// The answer to a refused WebSocket put message.
fn refusal_answer(refusal: Refusal) -> serde_json::Value {
    match refusal {
        Refusal::NotText => json!({ "error": "expected a text message" }),
        Refusal::NotUtf8 => json!({ "error": "invalid message" }),
        Refusal::Receive(e) => json!({ "error": e }),
        Refusal::Invalid(MessageError::Json(m)) => json!({ "error": format!("invalid JSON: {m}") }),
        Refusal::Invalid(MessageError::Event(e)) => ApiError::from(&e).ws_body(),
    }
}

async fn send(
    tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    body: serde_json::Value,
) -> bool {
    tx.send(Message::text(body.to_string())).await.is_ok()
}

/// One event per text message; nothing is sent back on success, an
/// `{"error": …}` message on failure. Messages that arrive together (at most
/// [`WS_BATCH`] of them and [`WS_BATCH_BYTES`], the message crossing it taken
/// whole) are stored in one put, and answered, before the next are read.
/// (Reading the next batch while one is stored was tried: a client's close
/// read ahead of an earlier batch's answers means those answers can no
/// longer be sent, and Cube answered every message before its close.) Each
/// message is one transaction of `/admin/metrics`.
async fn ws_put(
    socket: WebSocket,
    app: Arc<App>,
    tenant: Tenant,
    tx_headers: TxHeaders,
    key_id: Option<String>,
) {
    let ws_stats = &app.run.websocket;
    let _open = ws_stats.open();
    let (mut tx, mut rx) = socket.split();
    let mut revoked = std::pin::pin!(app.auth.revoked(key_id));
    let mut close = None;
    let mut open = true;
    while open {
        let first = tokio::select! {
            biased;
            _ = &mut revoked => {
                close = Some(super::common::close_unauthorized());
                break;
            }
            first = rx.next() => first,
        };
        let Some(mut next) = first else { break };
        let started = Instant::now();
        let mut incoming: Vec<Incoming> = Vec::new();
        let mut bytes = 0;
        // Each data message, in order, as the collector takes it.
        loop {
            match next {
                Ok(m) if m.is_text() => {
                    bytes += m.len();
                    incoming.push(Incoming::Text(m.into_data()));
                }
                Ok(m) if m.is_binary() => {
                    bytes += m.len();
                    incoming.push(Incoming::Refused(m.len() as u64, Refusal::NotText));
                }
                Ok(m) if m.is_close() => open = false,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "websocket receive failed");
                    incoming.push(Incoming::Refused(0, Refusal::Receive(e.to_string())));
                    close = Some(super::common::close_after(&e));
                    open = false;
                }
            }
            if !open || incoming.len() >= WS_BATCH || bytes >= WS_BATCH_BYTES {
                break;
            }
            match rx.next().now_or_never() {
                Some(Some(m)) => next = m,
                Some(None) => {
                    open = false;
                    break;
                }
                None => break,
            }
        }
        if !incoming.is_empty()
            && !store_batch(&app, &tenant, &tx_headers, &mut tx, started, incoming).await
        {
            return;
        }
    }
    if let Some(frame) = close {
        let _ = tx.send(frame).await;
    }
    let _ = tx.close().await;
}

/// Stores one batch of a put socket's messages and sends its refusals;
/// false once the client cannot be sent to.
async fn store_batch(
    app: &App,
    tenant: &Tenant,
    tx_headers: &TxHeaders,
    tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    started: Instant,
    incoming: Vec<Incoming>,
) -> bool {
    let ws_stats = &app.run.websocket;
    let (received, stored) = app.collector.put_messages(tenant, incoming).await;
    let received: Vec<(u64, Option<serde_json::Value>)> = received
        .into_iter()
        .map(|(len, refusal)| (len, refusal.map(refusal_answer)))
        .collect();
    let rejected = received.iter().filter(|r| r.1.is_some()).count() as u64;
    ws_stats
        .messages_received
        .fetch_add(received.len() as u64, Relaxed);
    ws_stats.messages_rejected.fetch_add(rejected, Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let transactions: Vec<Transaction> = received
        .iter()
        .map(|(len, error)| {
            let (response_bytes, error) = match (error, &stored) {
                (Some(e), _) => (e.to_string().len() as u64, true),
                (None, Err(_)) => (0, true),
                (None, Ok(_)) => (0, false),
            };
            Transaction {
                request_bytes: *len,
                response_bytes,
                error,
                seconds,
            }
        })
        .collect();
    app.opmetrics.incoming_all(
        tx_headers.tenant.as_deref(),
        tx_headers.path.as_deref(),
        &transactions,
    );
    let mut answers: Vec<serde_json::Value> = received.into_iter().filter_map(|r| r.1).collect();
    if let Err(e) = stored {
        answers.push(ApiError::from(e).ws_body());
    }
    for a in answers {
        if !send(tx, a).await {
            return false;
        }
        ws_stats.messages_sent.fetch_add(1, Relaxed);
    }
    true
}
