//! The evaluator listener (Cube's port 1081): types, event and metric
//! queries over HTTP and WebSocket, the metric cache, and the dashboard.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use warp::Filter;
use warp::http::StatusCode;

use super::App;
use super::common::{preflight, recover, respond, tenant, tenant_header, with_app};
use super::error::json_response;
use super::evaluator_ws::{self, Endpoint};
use super::wire::metric_json;
use crate::service::{EventQuery, MetricQuery, Order};
use warp::Reply;

/// A WebSocket route on the evaluator listener.
fn ws_route(
    path: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    endpoint: Endpoint,
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    path.and(warp::ws())
        .and(super::admin::tx_headers())
        .and(with_app(app))
        .map(
            move |ws: warp::ws::Ws, tx: super::admin::TxHeaders, app: Arc<App>| match tenant(
                tx.tenant.clone(),
            ) {
                Ok(tenant) => {
                    let live = Arc::clone(&app.live);
                    ws.max_message_size(app.limits.max_ws_message_bytes)
                        .max_frame_size(app.limits.max_ws_message_bytes)
                        .on_upgrade(move |socket| {
                            evaluator_ws::serve(socket, app, tenant, endpoint, live, tx)
                        })
                        .into_response()
                }
                Err(e) => e.into_response(),
            },
        )
}

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let log = super::request_log(Arc::clone(&app.self_events));
    let types = warp::get()
        .and(
            warp::path!("1.0" / "types")
                .or(warp::path!("1.0" / "types" / "get"))
                .unify(),
        )
        .and(tenant_header())
        .and(with_app(Arc::clone(&app)))
        .then(|svc, app: Arc<App>| async move {
            respond(
                async {
                    let tenant = tenant(svc)?;
                    let types = app.events.types(&tenant).await?;
                    Ok(json_response(StatusCode::OK, &Value::from(types)))
                }
                .await,
            )
        });

    let events = warp::get()
        .and(
            warp::path!("1.0" / "event")
                .or(warp::path!("1.0" / "event" / "get"))
                .unify(),
        )
        .and(tenant_header())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(Arc::clone(&app)))
        .then(
            |svc, q: HashMap<String, String>, app: Arc<App>| async move {
                respond(
                    async {
                        let tenant = tenant(svc)?;
                        let query = EventQuery::parse(
                            q.get("expression").map(String::as_str),
                            q.get("start").map(String::as_str),
                            q.get("stop").map(String::as_str),
                            q.get("limit").map(String::as_str),
                            app.clock.now_ms(),
                        )?;
                        app.run
                            .evaluator
                            .event_requests
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let events = app.events.query(&tenant, query, Order::Ascending).await?;
                        Ok(json_response(StatusCode::OK, &Value::Array(events)))
                    }
                    .await,
                )
            },
        );

    let metrics = warp::get()
        .and(
            warp::path!("1.0" / "metric")
                .or(warp::path!("1.0" / "metric" / "get"))
                .unify(),
        )
        .and(tenant_header())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(Arc::clone(&app)))
        .then(
            |svc, q: HashMap<String, String>, app: Arc<App>| async move {
                respond(
                    async {
                        let tenant = tenant(svc)?;
                        let p = |k: &str| q.get(k).map(String::as_str);
                        let query = MetricQuery::parse(
                            p("expression"),
                            p("start"),
                            p("stop"),
                            p("step"),
                            p("limit"),
                            app.clock.now_ms(),
                        )?;
                        let mut values: Vec<Option<f64>> = vec![None; query.n];
                        app.evaluator
                            .evaluate(&tenant, &query, &mut |i, v| values[i] = v)
                            .await?;
                        let out: Vec<Value> = values
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| metric_json(query.time(i), v, None))
                            .collect();
                        Ok(json_response(StatusCode::OK, &Value::Array(out)))
                    }
                    .await,
                )
            },
        );

    let clear_cache = warp::path!("1.0" / "metric" / "cache")
        .and(warp::delete())
        .and(tenant_header())
        .and(with_app(Arc::clone(&app)))
        .then(|svc, app: Arc<App>| async move {
            respond(
                async {
                    let tenant = tenant(svc)?;
                    app.evaluator.clear_cache(&tenant).await?;
                    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
                }
                .await,
            )
        });

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

    ws.or(types)
        .unify()
        .or(events)
        .unify()
        .or(metrics)
        .unify()
        .or(clear_cache)
        .unify()
        .or(super::web::routes())
        .unify()
        .or(super::admin::routes(Arc::clone(&app)))
        .unify()
        .or(preflight())
        .unify()
        .recover(recover)
        .unify()
        .with(log)
}
