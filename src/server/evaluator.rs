//! The evaluator listener (Cube's port 1081): types, event and metric
//! queries over HTTP and WebSocket, the metric cache, and the dashboard.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use warp::Filter;
use warp::http::StatusCode;

use super::App;
use super::common::{access, recover, respond, upgrade_reply, websocket_turn, with_app};
use super::error::{ApiError, json_bytes_response, json_response};
use super::evaluator_ws::{self, Endpoint};
use super::wire::{grouped_metric_json, metric_series_json};
use crate::model::access::Role;
use crate::service::{Access, EventQuery, MetricQuery, Order};
use warp::Reply;
use warp::reply::Response;

/// A WebSocket route on the evaluator listener.
fn ws_route(
    path: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    endpoint: Endpoint,
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    path.and(super::ws::ws())
        .and(access(Arc::clone(&app), Role::Read))
        .and(super::admin::tx_headers())
        .and(with_app(app))
        .map(
            move |ws: super::ws::Ws,
                  access: Result<Access, ApiError>,
                  tx: super::admin::TxHeaders,
                  app: Arc<App>| match access
                .and_then(|a| websocket_turn(&app).map(|turn| (a, turn)))
            {
                Ok((access, turn)) => {
                    let tx = tx.for_tenant(&access.tenant);
                    let offered = tx.protocols.clone();
                    let max = app.limits.max_ws_message_bytes;
                    let reply = ws.on_upgrade(max, move |socket| async move {
                        evaluator_ws::serve(socket, app, access, endpoint, tx).await;
                        drop(turn);
                    });
                    upgrade_reply(reply, offered.as_deref())
                }
                Err(e) => e.into_response(),
            },
        )
}

/// `GET /1.0/types`: the tenant's event types.
async fn types(access: Result<Access, ApiError>, app: Arc<App>) -> Result<Response, ApiError> {
    let tenant = access?.tenant;
    let types = app.events.types(&tenant).await?;
    Ok(json_response(StatusCode::OK, &Value::from(types)))
}

/// `GET /1.0/event`: the newest matching events of a range, oldest first.
async fn events(
    access: Result<Access, ApiError>,
    q: HashMap<String, String>,
    app: Arc<App>,
) -> Result<Response, ApiError> {
    let tenant = access?.tenant;
    let p = |k: &str| q.get(k).map(String::as_str);
    let query = EventQuery::parse(
        p("expression"),
        p("start"),
        p("stop"),
        p("limit"),
        app.clock.now_ms(),
    )?;
    let events = app.events.query(&tenant, query, Order::Ascending).await?;
    Ok(json_response(StatusCode::OK, &Value::Array(events)))
}

/// `GET /1.0/metric`: one value per step of the range, in order.
async fn metric(
    access: Result<Access, ApiError>,
    q: HashMap<String, String>,
    app: Arc<App>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let tenant = access?.tenant;
    let p = |k: &str| q.get(k).map(String::as_str);
    let query = MetricQuery::parse(
        p("expression"),
        p("start"),
        p("stop"),
        p("step"),
        p("limit"),
        app.clock.now_ms(),
    )?;
    if query.group.is_some() {
        let rows = app.evaluator.evaluate_grouped(&tenant, &query).await?;
        let mut out: Vec<Value> = Vec::with_capacity(rows.len() * query.n);
        for i in 0..query.n {
            for row in &rows {
                out.push(grouped_metric_json(
                    query.time(i),
                    row.group.as_deref(),
                    row.values.get(i).copied().flatten(),
                    None,
                ));
            }
        }
        let r = json_response(StatusCode::OK, &Value::Array(out));
        return Ok(with_server_timing(r, started));
    }
    let values = app.evaluator.values(&tenant, &query).await?;
    let body = metric_series_json(
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (query.time(i), v)),
    );
    Ok(with_server_timing(
        json_bytes_response(StatusCode::OK, body),
        started,
    ))
}

/// Adds `Server-Timing: cubed;dur=MS`: the milliseconds from the request's
/// parameters to its answer's bytes (not their sending), as browsers'
/// developer tools and `bench/query.rs` read it.
fn with_server_timing(mut r: Response, started: std::time::Instant) -> Response {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = warp::http::HeaderValue::from_str(&format!("cubed;dur={ms:.3}")) {
        r.headers_mut().insert("server-timing", v);
    }
    r
}

/// `DELETE /1.0/metric/cache`: drops the tenant's cached bins.
async fn clear_cache(
    access: Result<Access, ApiError>,
    app: Arc<App>,
) -> Result<Response, ApiError> {
    let tenant = access?.tenant;
    app.evaluator.clear_cache(&tenant).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
}

/// `GET /1.0/NAME` or `/1.0/NAME/get` (Cube answers both).
fn get_path(name: &'static str) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::get().and(
        warp::path("1.0")
            .and(warp::path(name))
            .and(warp::path::end())
            .or(warp::path("1.0")
                .and(warp::path(name))
                .and(warp::path("get"))
                .and(warp::path::end()))
            .unify(),
    )
}

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let query = || warp::query::<HashMap<String, String>>();
    let types = get_path("types")
        .and(access(Arc::clone(&app), Role::Read))
        .and(with_app(Arc::clone(&app)))
        .then(|header, app| async move { respond(types(header, app).await) });
    let events = get_path("event")
        .and(access(Arc::clone(&app), Role::Read))
        .and(query())
        .and(with_app(Arc::clone(&app)))
        .then(|header, q, app| async move { respond(events(header, q, app).await) });
    let metrics = get_path("metric")
        .and(access(Arc::clone(&app), Role::Read))
        .and(query())
        .and(with_app(Arc::clone(&app)))
        .then(|header, q, app| async move { respond(metric(header, q, app).await) });
    let clear_cache = warp::path!("1.0" / "metric" / "cache")
        .and(warp::delete())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(with_app(Arc::clone(&app)))
        .then(|header, app| async move { respond(clear_cache(header, app).await) });

    let ws = ws_route(
        warp::path!("1.0" / "metric" / "get").boxed(),
        Endpoint::Metric,
        Arc::clone(&app),
    )
    .or(ws_route(
        warp::path!("1.0" / "event" / "get").boxed(),
        Endpoint::Event,
        Arc::clone(&app),
    ))
    .unify()
    .or(ws_route(
        warp::path!("1.0" / "types" / "get").boxed(),
        Endpoint::Types,
        Arc::clone(&app),
    ))
    .unify();

    super::origin::forbidden_origin(Arc::clone(&app))
        .or(ws)
        .unify()
        .or(types)
        .unify()
        .or(events)
        .unify()
        .or(metrics)
        .unify()
        .or(clear_cache)
        .unify()
        .or(super::prometheus::routes(Arc::clone(&app)))
        .unify()
        .or(super::web::routes())
        .unify()
        .or(super::admin::routes(Arc::clone(&app)))
        .unify()
        .with(super::origin::cors())
        .map(Reply::into_response)
        .recover(recover)
        .unify()
}
