//! Key management over HTTP (`/admin/keys`, the `admin` role, its own
//! service only) and the dashboard's sign-in (`/1.0/auth`), on both
//! listeners. The first key is made with `cubed keys create`.

use std::sync::Arc;

use serde_json::{Value, json};
use warp::Filter;
use warp::http::StatusCode;
use warp::http::header::{HeaderValue, SET_COOKIE};

use super::App;
use super::common::{access, presented_key, read_body, respond, with_app};
use super::error::{ApiError, json_response};
use crate::model::access::{COOKIE, KeyRecord, Role};
use crate::service::{Access, AuthError};

/// A record as the API shows it (never the hash).
fn shown(r: &KeyRecord) -> Value {
    let mut v = json!({
        "id": r.id,
        "service": r.tenant().display_name(),
        "role": r.role,
        "created": crate::model::time::format_iso(r.created_ms),
    });
    if let Some(t) = r.revoked_ms {
        v["revoked"] = Value::from(crate::model::time::format_iso(t));
    }
    v
}

/// Keys may be managed over HTTP only while they are in force (an open
/// server would hand its first admin key to whoever asks first).
fn in_force(app: &App) -> Result<(), ApiError> {
    if app.auth.enabled() {
        Ok(())
    } else {
        Err(ApiError::with_message(
            StatusCode::CONFLICT,
            "keys are not in force",
            "create the first key with `cubed keys create --service S --role admin`",
        ))
    }
}

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let list = warp::path!("admin" / "keys")
        .and(warp::get())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(with_app(Arc::clone(&app)))
        .then(
            |access: Result<Access, ApiError>, app: Arc<App>| async move {
                respond(
                    async {
                        in_force(&app)?;
                        let records = app.auth.list(access?.tenant).await?;
                        let shown: Vec<Value> = records.iter().map(shown).collect();
                        Ok(json_response(StatusCode::OK, &Value::Array(shown)))
                    }
                    .await,
                )
            },
        );

    let create = warp::path!("admin" / "keys")
        .and(warp::post())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_app(Arc::clone(&app)))
        .then(
            |access: Result<Access, ApiError>, len, body, app: Arc<App>| async move {
                respond(
                    async {
                        in_force(&app)?;
                        let tenant = access?.tenant;
                        let body = read_body(
                            len,
                            body,
                            crate::limits::MAX_KEY_REQUEST_BYTES,
                            app.limits.body_timeout,
                        )
                        .await?;
                        let asked: Value = serde_json::from_slice(&body).map_err(|e| {
                            ApiError::with_message(
                                StatusCode::BAD_REQUEST,
                                "invalid body",
                                e.to_string(),
                            )
                        })?;
                        let role = asked
                            .get("role")
                            .and_then(Value::as_str)
                            .and_then(Role::parse)
                            .ok_or_else(|| {
                                ApiError::with_message(
                                    StatusCode::BAD_REQUEST,
                                    "invalid role",
                                    "expected {\"role\": \"read\" | \"write\" | \"admin\"}",
                                )
                            })?;
                        let (record, key) =
                            app.auth.create(tenant, role, app.clock.now_ms()).await?;
                        let mut body = shown(&record);
                        body["key"] = Value::from(key);
                        Ok(json_response(StatusCode::CREATED, &body))
                    }
                    .await,
                )
            },
        );

    let revoke = warp::path!("admin" / "keys" / String)
        .and(warp::delete())
        .and(access(Arc::clone(&app), Role::Admin))
        .and(with_app(Arc::clone(&app)))
        .then(
            |id: String, access: Result<Access, ApiError>, app: Arc<App>| async move {
                respond(
                    async {
                        in_force(&app)?;
                        let tenant = access?.tenant;
                        if app.auth.revoke(tenant, id, app.clock.now_ms()).await? {
                            Ok(json_response(StatusCode::OK, &json!({})))
                        } else {
                            Err(ApiError::with_message(
                                StatusCode::NOT_FOUND,
                                "not found",
                                "this service has no unrevoked key with that id",
                            ))
                        }
                    }
                    .await,
                )
            },
        );

    // Who the presented key is: `{"auth": false}` when keys are not in force.
    let whoami = warp::path!("1.0" / "auth")
        .and(warp::get())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(with_app(Arc::clone(&app)))
        .map(
            |method: warp::http::Method, headers: warp::http::HeaderMap, app: Arc<App>| {
                respond(
                    signed_in(&app, presented_key(&method, &headers))
                        .map(|who| json_response(StatusCode::OK, &who)),
                )
            },
        );

    // Sign-in: the key in `Authorization` becomes an HttpOnly, SameSite=Strict
    // cookie that authorizes the browser's GETs and WebSockets (not writes).
    let sign_in = warp::path!("1.0" / "auth")
        .and(warp::post())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(with_app(Arc::clone(&app)))
        .map(
            |method: warp::http::Method, headers: warp::http::HeaderMap, app: Arc<App>| {
                let key = presented_key(&method, &headers);
                respond(signed_in(&app, key.clone()).and_then(|who| {
                    let mut r = json_response(StatusCode::OK, &who);
                    if let Some(key) = key.filter(|_| app.auth.enabled()) {
                        let cookie = format!("{COOKIE}={key}; Path=/; HttpOnly; SameSite=Strict");
                        let value = HeaderValue::from_str(&cookie)
                            .map_err(|_| ApiError::from(AuthError::Unknown))?;
                        r.headers_mut().insert(SET_COOKIE, value);
                    }
                    Ok(r)
                }))
            },
        );

    let sign_out = warp::path!("1.0" / "auth").and(warp::delete()).map(|| {
        let mut r = json_response(StatusCode::OK, &json!({}));
        r.headers_mut().insert(
            SET_COOKIE,
            HeaderValue::from_static("cubed_key=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        );
        r
    });

    list.or(create)
        .unify()
        .or(revoke)
        .unify()
        .or(whoami)
        .unify()
        .or(sign_in)
        .unify()
        .or(sign_out)
        .unify()
}

/// `{"auth": true, "service", "role", "id"}` for a valid key, `{"auth":
/// false}` when keys are not in force, 401 otherwise.
fn signed_in(app: &App, key: Option<String>) -> Result<Value, ApiError> {
    if !app.auth.enabled() {
        return Ok(json!({ "auth": false }));
    }
    let key = key.ok_or(AuthError::Missing)?;
    let record = app.auth.record(&key).ok_or(AuthError::Unknown)?;
    Ok(json!({
        "auth": true,
        "id": record.id,
        "service": record.tenant().display_name(),
        "role": record.role,
    }))
}
