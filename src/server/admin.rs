//! Routes on both listeners that report on the server itself:
//! Orion-style `/admin/metrics`, Prometheus `/metrics`, the session's module
//! results (`/1.0/status`, `/1.0/results`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use warp::http::StatusCode;
use warp::http::header::{CONTENT_TYPE, HeaderValue};
use warp::{Filter, Reply};

use super::App;
use super::common::{access, respond, upgrade_reply, websocket_turn, with_app};
use super::error::{ApiError, json_response};
use crate::model::access::Role;
use crate::service::{Access, AuthError, EventQuery, Order};
use crate::telemetry::opmetrics::{self, Transaction};
use crate::telemetry::results::{self, RESULTS_TYPE, system_tenant, valid_name};

/// The headers a transaction is counted under.
#[derive(Debug, Clone, Default)]
pub struct TxHeaders {
    pub tenant: Option<String>,
    pub path: Option<String>,
    /// The WebSocket subprotocols the client offered.
    pub protocols: Option<String>,
}

impl TxHeaders {
    /// Counted under `tenant` (a key's service) whatever the header said.
    pub fn for_tenant(self, tenant: &crate::model::Tenant) -> Self {
        TxHeaders {
            tenant: (!tenant.key().is_empty()).then(|| tenant.key().to_owned()),
            ..self
        }
    }

    /// Counts one transaction of this request or socket.
    pub fn record(
        &self,
        app: &App,
        request_bytes: u64,
        response_bytes: u64,
        error: bool,
        started: Instant,
    ) {
        app.opmetrics.incoming(
            self.tenant.as_deref(),
            self.path.as_deref(),
            Transaction {
                request_bytes,
                response_bytes,
                error,
                seconds: started.elapsed().as_secs_f64(),
            },
        );
    }
}

/// `Fiware-Service` and `Fiware-ServicePath` of a request.
pub fn tx_headers() -> impl Filter<Extract = (TxHeaders,), Error = std::convert::Infallible> + Copy
{
    // Both from one copy of the headers.
    warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| TxHeaders {
        tenant: super::common::text_of(&headers, "fiware-service"),
        path: super::common::text_of(&headers, "fiware-servicepath"),
        protocols: super::common::text_of(&headers, "sec-websocket-protocol"),
    })
}

/// The `/admin/metrics` tree key of the service a restricted request may
/// see, or `None` when it may see every service (keys not in force).
fn visible_service(access: &Access) -> Option<String> {
    if !access.restricted() {
        return None;
    }
    let header = (!access.tenant.key().is_empty()).then(|| access.tenant.key());
    opmetrics::service_key(header)
}

/// Refuses what is server-wide (every module's figures) to all but the
/// operator (see `Access::operator`).
fn operator(access: Access) -> Result<Access, ApiError> {
    if access.operator() {
        Ok(access)
    } else {
        Err(ApiError::with_message(
            StatusCode::FORBIDDEN,
            "forbidden",
            "server-wide figures are for admin keys of the default service (the operator's)",
        ))
    }
}

/// Refuses a request whose key may not do what needs `needed`.
fn require(access: &Access, needed: Role) -> Result<(), ApiError> {
    match access.role {
        Some(role) if !role.allows(needed) => Err(ApiError::from(AuthError::Role { role, needed })),
        _ => Ok(()),
    }
}

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let admin_get = warp::path!("admin" / "metrics")
        .and(warp::get())
        .and(access(Arc::clone(&app), Role::Read))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(Arc::clone(&app)))
        .map(
            |access: Result<Access, ApiError>, q: HashMap<String, String>, app: Arc<App>| {
                respond((|| {
                    let access = access?;
                    let reset = match q.get("reset").map(String::as_str) {
                        None | Some("false") => false,
                        Some("true") => true,
                        Some(_) => {
                            return Err(ApiError::with_message(
                                StatusCode::BAD_REQUEST,
                                "invalid reset",
                                "reset is true or false",
                            ));
                        }
                    };
                    if reset {
                        require(&access, Role::Admin)?;
                        if access.from_cookie {
                            // A GET that changes something: not on a cookie.
                            return Err(ApiError::from(AuthError::Missing));
                        }
                    }
                    let table = match visible_service(&access) {
                        Some(service) => app.opmetrics.read_service(&service, reset),
                        None => app.opmetrics.read(reset),
                    };
                    Ok(json_response(StatusCode::OK, &opmetrics::tree(&table)))
                })())
            },
        );

    let admin_delete = warp::path!("admin" / "metrics")
        .and(warp::delete())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(with_app(Arc::clone(&app)))
        .map(|access: Result<Access, ApiError>, app: Arc<App>| {
            respond(access.map(|access| {
                match visible_service(&access) {
                    Some(service) => {
                        app.opmetrics.read_service(&service, true);
                    }
                    None => app.opmetrics.reset(),
                }
                warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
            }))
        });

    let prometheus = warp::path!("metrics")
        .and(warp::get())
        .and(access(Arc::clone(&app), Role::Read))
        .and(with_app(Arc::clone(&app)))
        .map(|access: Result<Access, ApiError>, app: Arc<App>| {
            respond(access.and_then(|access| {
                let only = visible_service(&access);
                if access.operator() {
                    app.sample_gauges();
                }
                match crate::telemetry::prometheus::exposition(
                    &app.opmetrics,
                    &app.run,
                    only.as_deref(),
                    access.operator(),
                ) {
                    Ok(text) => {
                        let mut r = text.into_response();
                        r.headers_mut().insert(
                            CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        );
                        Ok(r)
                    }
                    Err(e) => Err(ApiError::internal(e)),
                }
            }))
        });

    let status_ws = warp::path!("1.0" / "status")
        .and(super::ws::ws())
        .and(access(Arc::clone(&app), Role::Read))
        .and(tx_headers())
        .and(with_app(Arc::clone(&app)))
        .map(
            |ws: super::ws::Ws, access: Result<Access, ApiError>, tx: TxHeaders, app: Arc<App>| {
                match access
                    .and_then(operator)
                    .and_then(|a| websocket_turn(&app).map(|turn| (a, turn)))
                {
                    Ok((access, turn)) => {
                        let tx = tx.for_tenant(&access.tenant);
                        let offered = tx.protocols.clone();
                        let max = app.limits.max_ws_message_bytes;
                        let reply = ws.on_upgrade(max, move |socket| async move {
                            status_socket(socket, app, tx, access.key_id).await;
                            drop(turn);
                        });
                        upgrade_reply(reply, offered.as_deref())
                    }
                    Err(e) => e.into_response(),
                }
            },
        );

    let status = warp::path!("1.0" / "status")
        .and(warp::get())
        .and(access(Arc::clone(&app), Role::Read))
        .and(with_app(Arc::clone(&app)))
        .map(|access: Result<Access, ApiError>, app: Arc<App>| {
            respond(access.and_then(operator).map(|_| {
                app.sample_gauges();
                json_response(StatusCode::OK, &app.run.status(app.clock.now_ms()))
            }))
        });

    let results = warp::path!("1.0" / "results")
        .and(warp::get())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(Arc::clone(&app)))
        .then(
            |access: Result<Access, ApiError>, q: HashMap<String, String>, app: Arc<App>| async move {
                respond(match access.and_then(operator) {
                    Ok(_) => results_query(&app, &q).await,
                    Err(e) => Err(e),
                })
            },
        );

    admin_get
        .or(admin_delete)
        .unify()
        .or(prometheus)
        .unify()
        .or(status_ws)
        .unify()
        .or(status)
        .unify()
        .or(results)
        .unify()
        .or(super::keys::routes(Arc::clone(&app)))
        .unify()
        .or(super::retention::routes(app))
        .unify()
}

/// `GET /1.0/results?session_id=…[&module_name=…][&limit=…]`: the session's
/// stored results documents, oldest first.
async fn results_query(
    app: &App,
    q: &HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    let session = q
        .get("session_id")
        .filter(|s| valid_name(s))
        .ok_or_else(|| {
            ApiError::with_message(
                StatusCode::BAD_REQUEST,
                "invalid session_id",
                "session_id is required: 1-64 letters, digits, - and _",
            )
        })?;
    let mut expression = format!(
        "{RESULTS_TYPE}(id, session_id, module_name, createdAt, metrics).eq(session_id, \"{session}\")"
    );
    if let Some(module) = q.get("module_name") {
        if !valid_name(module) {
            return Err(ApiError::with_message(
                StatusCode::BAD_REQUEST,
                "invalid module_name",
                format!("module names are {}", results::MODULES.join(", ")),
            ));
        }
        expression.push_str(&format!(".eq(module_name, \"{module}\")"));
    }
    let query = EventQuery::parse(
        Some(&expression),
        None,
        Some(&(app.clock.now_ms() + 86_400_000).to_string()),
        q.get("limit").map(String::as_str),
        app.clock.now_ms(),
    )?;
    let events = app
        .events
        .query(&system_tenant(), query, Order::Ascending)
        .await?;
    let docs: Vec<Value> = events
        .into_iter()
        .filter_map(|mut e| e.get_mut("data").map(Value::take))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(docs)))
}

/// WebSocket `/1.0/status`: one answer (the status) per request message;
/// closed (1008) once its key no longer authorizes it.
async fn status_socket(
    socket: WebSocket,
    app: Arc<App>,
    tx_headers: TxHeaders,
    key_id: Option<String>,
) {
    let ws = &app.run.websocket;
    let _open = ws.open();
    let (mut tx, mut rx) = socket.split();
    let auth = Arc::clone(&app.auth);
    let mut revoked = std::pin::pin!(auth.revoked(key_id));
    loop {
        let msg = tokio::select! {
            msg = rx.next() => match msg {
                Some(msg) => msg,
                None => break,
            },
            _ = &mut revoked => {
                let _ = tx.send(super::common::close_unauthorized()).await;
                break;
            }
        };
        let started = Instant::now();
        let msg = match msg {
            Ok(m) if m.is_close() => break,
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send(super::common::close_after(&e)).await;
                break;
            }
        };
        if !(msg.is_text() || msg.is_binary()) {
            continue;
        }
        ws.messages_received.fetch_add(1, Relaxed);
        app.sample_gauges();
        let answer = app.run.status(app.clock.now_ms()).to_string();
        let n = answer.len() as u64;
        if tx.send(Message::text(answer)).await.is_err() {
            break;
        }
        ws.messages_sent.fetch_add(1, Relaxed);
        tx_headers.record(&app, msg.len() as u64, n, false, started);
    }
    let _ = tx.close().await;
}

/// The results documents of this moment, written to the store (by the
/// server's background task, every `--results-interval-ms`).
pub async fn store_results(app: &App, seq: u64) {
    app.sample_gauges();
    let docs: Vec<_> = app
        .run
        .documents(app.clock.now_ms(), seq)
        .into_iter()
        .filter_map(|d| d.checked().ok())
        .collect();
    // Like any put, its bins are invalidated (and its dirty marks cleared).
    if let Err(e) = app.collector.put_own(&system_tenant(), docs).await {
        tracing::warn!(error = %e, "storing results documents failed");
    }
}
