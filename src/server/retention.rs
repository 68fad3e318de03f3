//! Retention and figures over HTTP, on both listeners, for the key's own
//! service (the `admin` role): `GET /admin/retention` (each type's horizon
//! and where it comes from), `PUT /admin/retention` (set or remove an
//! override for a type or the whole service), `GET /admin/stats` (events,
//! bytes and oldest time per type). `cubed retention` and `cubed stats`
//! call these.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use warp::Filter;
use warp::http::StatusCode;

use super::App;
use super::common::{access, read_body, respond, with_app};
use super::error::{ApiError, json_response};
use crate::model::access::Role;
use crate::model::retention::Horizon;
use crate::model::{Tenant, time::format_iso};
use crate::service::Access;

fn bad(error: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::with_message(StatusCode::BAD_REQUEST, error, message)
}

/// `GET /admin/retention`'s body.
async fn shown(app: &App, tenant: &Tenant) -> Result<Value, ApiError> {
    let policy = app.retention.policy();
    let types = app.retention.list(tenant).await?;
    let mut overrides = Map::new();
    for ((service, event_type), h) in &policy.overrides {
        if service == tenant.key() {
            let name = event_type.clone().unwrap_or_else(|| "*".to_owned());
            overrides.insert(name, Value::from(h.to_string()));
        }
    }
    let r = &app.retention;
    use std::sync::atomic::Ordering::Relaxed;
    Ok(json!({
        "service": tenant.display_name(),
        "retention": policy.default.to_string(),
        "self_retention": policy.self_default.to_string(),
        "overrides": overrides,
        "types": types.iter().map(|t| json!({
            "type": t.event_type,
            "retention": t.horizon.to_string(),
            "from": t.source.as_str(),
        })).collect::<Vec<_>>(),
        "sweeps": r.sweeps.load(Relaxed),
        "events_expired": r.events_expired.load(Relaxed),
        "bytes_expired": r.bytes_expired.load(Relaxed),
    }))
}

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let get = warp::path!("admin" / "retention")
        .and(warp::get())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(with_app(Arc::clone(&app)))
        .then(
            |access: Result<Access, ApiError>, app: Arc<App>| async move {
                respond(
                    async {
                        let tenant = access?.tenant;
                        Ok(json_response(StatusCode::OK, &shown(&app, &tenant).await?))
                    }
                    .await,
                )
            },
        );

    let put = warp::path!("admin" / "retention")
        .and(warp::put())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_app(Arc::clone(&app)))
        .then(
            |access: Result<Access, ApiError>, len, body, app: Arc<App>| async move {
                respond(
                    async {
                        let tenant = access?.tenant;
                        let body = read_body(
                            len,
                            body,
                            crate::limits::MAX_KEY_REQUEST_BYTES,
                            app.limits.body_timeout,
                        )
                        .await?;
                        let asked: Value = serde_json::from_slice(&body)
                            .map_err(|e| bad("invalid body", e.to_string()))?;
                        let expected = "expected {\"type\": T (absent: the whole service), \"retention\": \"30d\" | \"forever\" | null (null: remove the override)}";
                        let Some(fields) = asked.as_object() else {
                            return Err(bad("invalid body", expected));
                        };
                        if let Some(k) = fields.keys().find(|k| *k != "type" && *k != "retention") {
                            return Err(bad("invalid body", format!("unknown field {k:?}: {expected}")));
                        }
                        let event_type = match fields.get("type") {
                            None | Some(Value::Null) => None,
                            Some(Value::String(t)) => {
                                crate::model::event::check_type(t).map_err(|e| {
                                    bad(e.error(), e.message())
                                })?;
                                Some(t.clone())
                            }
                            Some(_) => return Err(bad("invalid type", expected)),
                        };
                        let horizon = match fields.get("retention") {
                            Some(Value::Null) => None,
                            Some(Value::String(h)) => Some(
                                Horizon::parse(h).map_err(|e| bad("invalid retention", e))?,
                            ),
                            _ => return Err(bad("invalid retention", expected)),
                        };
                        app.retention.set(&tenant, event_type, horizon).await?;
                        Ok(json_response(StatusCode::OK, &shown(&app, &tenant).await?))
                    }
                    .await,
                )
            },
        );

    let stats = warp::path!("admin" / "stats")
        .and(warp::get())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(with_app(Arc::clone(&app)))
        .then(
            |access: Result<Access, ApiError>, app: Arc<App>| async move {
                respond(
                    async {
                        let tenant = access?.tenant;
                        let policy = app.retention.policy();
                        let stats = app.retention.stats(&tenant).await?;
                        let (events, bytes) = stats
                            .iter()
                            .fold((0u64, 0u64), |(e, b), s| (e + s.events, b + s.bytes));
                        let types: Vec<Value> = stats
                            .iter()
                            .map(|s| {
                                json!({
                                    "type": s.event_type,
                                    "events": s.events,
                                    "bytes": s.bytes,
                                    "oldest": s.oldest.map(format_iso),
                                    "retention": policy.horizon(&tenant, &s.event_type).0.to_string(),
                                })
                            })
                            .collect();
                        Ok(json_response(
                            StatusCode::OK,
                            &json!({
                                "service": tenant.display_name(),
                                "events": events,
                                "bytes": bytes,
                                "types": types,
                            }),
                        ))
                    }
                    .await,
                )
            },
        );

    get.or(put).unify().or(stats).unify()
}
