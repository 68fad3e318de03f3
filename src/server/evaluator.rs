//! The evaluator listener (Cube's port 1081): types and event queries now;
//! metrics, WebSocket streams and the dashboard come with the evaluator issue.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use warp::Filter;
use warp::http::StatusCode;

use super::App;
use super::common::{preflight, recover, respond, service, service_header, with_app};
use super::error::json_response;
use crate::service::{EventQuery, query_events};
use crate::storage::Order;

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let types = warp::get()
        .and(
            warp::path!("1.0" / "types")
                .or(warp::path!("1.0" / "types" / "get"))
                .unify(),
        )
        .and(service_header())
        .and(with_app(Arc::clone(&app)))
        .then(|svc, app: Arc<App>| async move {
            respond(
                async {
                    let service = service(svc)?;
                    let store = Arc::clone(&app.store);
                    let types = tokio::task::spawn_blocking(move || store.types(&service))
                        .await
                        .map_err(super::error::ApiError::internal)??;
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
        .and(service_header())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .then(
            |svc, q: HashMap<String, String>, app: Arc<App>| async move {
                respond(
                    async {
                        let service = service(svc)?;
                        let query = EventQuery::parse(
                            q.get("expression").map(String::as_str),
                            q.get("start").map(String::as_str),
                            q.get("stop").map(String::as_str),
                            q.get("limit").map(String::as_str),
                            app.clock.now_ms(),
                        )?;
                        let events =
                            query_events(&app.store, &service, query, Order::Ascending).await?;
                        Ok(json_response(StatusCode::OK, &Value::Array(events)))
                    }
                    .await,
                )
            },
        );

    types
        .or(events)
        .unify()
        .or(preflight())
        .unify()
        .recover(recover)
        .unify()
}
