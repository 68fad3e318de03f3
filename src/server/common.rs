//! Filters and helpers shared by both listeners.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use warp::http::StatusCode;
use warp::http::header::HeaderValue;
use warp::{Filter, Rejection, Reply};

use super::App;
use super::error::{ApiError, json_response};
use crate::model::Tenant;
use crate::model::access::Role;
use crate::service::Access;

/// Extracts the shared state.
pub fn with_app(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&app))
}

/// The request's tenant from `Fiware-Service` (validated in the handler, so
/// that a bad name gets our 400 body).
pub fn tenant_header() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Copy {
    header_text("fiware-service")
}

/// An optional header as text, whatever its bytes: a value that is not
/// visible ASCII comes through (with U+FFFD for bytes that are not UTF-8)
/// for the handler's validation to refuse with a 400 naming it, where
/// `warp::header::optional` would reject the request and let another
/// route's rejection (a 405) answer.
pub fn header_text(
    name: &'static str,
) -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Copy {
    warp::header::headers_cloned()
        .map(move |headers: warp::http::HeaderMap| text_of(&headers, name))
}

/// A header as text, whatever its bytes (see [`header_text`]).
pub fn text_of(headers: &warp::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

pub fn tenant(header: Option<String>) -> Result<Tenant, ApiError> {
    Ok(Tenant::from_header(header.as_deref())?)
}

/// The key a request presents: `Authorization` (Bearer, or Basic with the
/// key as the password), else a `cubed-key.KEY` WebSocket subprotocol,
/// else, for GET requests (WebSocket upgrades are GETs), the sign-in
/// cookie (`access` takes the cookie only where the `read` role is needed:
/// it never authorizes a request that changes anything, so a page elsewhere
/// cannot make a browser change data with it). The flag: from the cookie.
pub fn presented_key(
    method: &warp::http::Method,
    headers: &warp::http::HeaderMap,
) -> Option<String> {
    presented(method, headers).map(|(key, _)| key)
}

fn presented(
    method: &warp::http::Method,
    headers: &warp::http::HeaderMap,
) -> Option<(String, bool)> {
    use crate::model::access;
    if let Some(v) = text_of(headers, "authorization") {
        // A malformed header presents an unusable key (401), not none.
        return Some((
            access::key_from_authorization(&v).unwrap_or_default(),
            false,
        ));
    }
    if let Some(key) =
        text_of(headers, "sec-websocket-protocol").and_then(|v| access::key_from_subprotocols(&v))
    {
        return Some((key, false));
    }
    if method == warp::http::Method::GET {
        return headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(access::key_from_cookie)
            .map(|key| (key, true));
    }
    None
}

/// A turn to hold a WebSocket open (`--max-websockets`, server-wide), kept
/// by its handler until the socket ends; `503 too many websockets` when
/// none is free.
pub fn websocket_turn(app: &App) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    Arc::clone(&app.websockets)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::with_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many websockets",
                format!(
                    "at most {} WebSockets are open at once (--max-websockets); retry later",
                    app.limits.max_websockets
                ),
            )
        })
}

/// A WebSocket upgrade's answer, selecting the subprotocol `cubed` when the
/// client offered it (a browser that offers a key as `cubed-key.KEY` offers
/// `cubed` too: the key itself is never echoed back).
pub fn upgrade_reply(reply: impl Reply, offered: Option<&str>) -> warp::reply::Response {
    use crate::model::access::SUBPROTOCOL;
    let mut r = reply.into_response();
    if offered.is_some_and(|o| o.split(',').any(|p| p.trim() == SUBPROTOCOL)) {
        r.headers_mut().insert(
            warp::http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    r
}

/// Who the request is, for what needs `needed`: its tenant (from the key
/// when keys are in force, from `Fiware-Service` when not), or the answer
/// refusing it (401, 403, or 400 for an invalid `Fiware-Service`).
pub fn access(
    app: Arc<App>,
    needed: Role,
) -> impl Filter<Extract = (Result<Access, ApiError>,), Error = Infallible> + Clone {
    warp::method().and(warp::header::headers_cloned()).map(
        move |method: warp::http::Method, headers: warp::http::HeaderMap| {
            let (key, from_cookie) = match presented(&method, &headers) {
                // The cookie only where reading is all that is needed.
                Some((_, true)) if needed != Role::Read => (None, false),
                Some((key, cookie)) => (Some(key), cookie),
                None => (None, false),
            };
            let header = text_of(&headers, "fiware-service");
            app.auth
                .check(key.as_deref(), header.as_deref(), needed)
                .map(|access| Access {
                    from_cookie,
                    ..access
                })
                .map_err(ApiError::from)
        },
    )
}

/// Reads a request body, refusing (413) more than `limit` bytes — by its
/// Content-Length before reading, or while reading a chunked body.
pub async fn read_body<S, B>(
    content_length: Option<u64>,
    body: S,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if content_length.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let read = async {
        let mut buf = BytesMut::with_capacity(content_length.map_or(8192, |n| n as usize));
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| {
                ApiError::with_message(StatusCode::BAD_REQUEST, "invalid body", e.to_string())
            })?;
            if buf.len() + chunk.remaining() > limit {
                return Err(ApiError::payload_too_large(limit));
            }
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                let n = piece.len();
                buf.extend_from_slice(piece);
                chunk.advance(n);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err(ApiError::body_timeout(timeout)))
}

/// Runs a synchronous storage call on a blocking thread; its error, or a
/// panicked task (an internal error), comes back as an answer.
pub async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(Into::into)
}

/// Turns a handler result into a response.
pub fn respond(result: Result<warp::reply::Response, ApiError>) -> warp::reply::Response {
    result.unwrap_or_else(Reply::into_response)
}

/// Unmatched requests: JSON 404 / 405 / 400 instead of warp's plain text.
pub async fn recover(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    // Before 405: a GET to a WebSocket endpoint that other methods' routes
    // share (event/put) is answered as the handshake it was meant to be.
    if let Some(super::ws::NotUpgrade(message)) = err.find() {
        return Ok(ApiError::with_message(
            StatusCode::BAD_REQUEST,
            "not a websocket handshake",
            *message,
        )
        .into_response());
    }
    let (status, error) = if err.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_owned())
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_owned(),
        )
    } else if let Some(e) = err.find::<warp::reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else if err.find::<warp::reject::InvalidQuery>().is_some() {
        (StatusCode::BAD_REQUEST, "invalid query string".to_owned())
    } else if let Some(e) = err.find::<warp::filters::cors::CorsForbidden>() {
        return Ok(
            ApiError::with_message(StatusCode::FORBIDDEN, "cors forbidden", e.to_string())
                .into_response(),
        );
    } else {
        (StatusCode::BAD_REQUEST, format!("{err:?}"))
    };
    Ok(json_response(status, &json!({ "error": error })))
}

/// The close frame of a socket whose key no longer authorizes it (revoked,
/// or keys came into force after it opened): 1008, policy violation.
pub fn close_unauthorized() -> super::ws::Message {
    super::ws::close_frame(1008, "the key was revoked or keys are now required")
}

/// The close frame after a failed WebSocket receive: 1009 (message too big)
/// for a message over `--max-ws-message`, 1002 (protocol error) otherwise,
/// with the error as the reason (at most the 123 bytes a close frame holds).
/// (`websocket_messages_over_the_limit_close_the_socket` pins it.)
pub fn close_after(e: &super::ws::Error) -> super::ws::Message {
    let code = if super::ws::too_big(e) { 1009 } else { 1002 };
    super::ws::close_frame(code, &e.to_string())
}
