//! The one place where errors become HTTP answers (status + JSON body).
//!
//! Bodies are `{"error": "<Cube's text>"}`, with `"message"` giving details
//! where there are any, and `"errors"` listing bad batch items.

use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue};
use warp::reply::Reply;

use crate::ingest::emetrics::EmetricsError;
use crate::model::{BatchError, EventError, TenantError};
use crate::service::{AuthError, StoreError};
use crate::service::{CollectorError, EvalError, EventQueryError, MetricQueryError, RangeError};

/// An answer that is not a success.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    /// A 401's challenge (`WWW-Authenticate`).
    pub challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str) -> Self {
        ApiError {
            status,
            body: json!({ "error": error }),
            challenge: false,
        }
    }

    pub fn with_message(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "error": error, "message": message.into() }),
            challenge: false,
        }
    }

    pub fn bad_request(error: &str) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::with_message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            format!("the limit is {limit} bytes"),
        )
    }

    /// A body that did not arrive in time (`--body-timeout`).
    pub fn body_timeout(timeout: std::time::Duration) -> Self {
        ApiError::with_message(
            StatusCode::REQUEST_TIMEOUT,
            "request timeout",
            format!(
                "the request body did not arrive within {} ms (--body-timeout)",
                timeout.as_millis()
            ),
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::with_message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            e.to_string(),
        )
    }

    /// The message a WebSocket client gets for this error.
    pub fn ws_body(&self) -> Value {
        self.body.clone()
    }
}

/// A JSON answer with Cube's headers (`Content-Type: application/json`, CORS).
pub fn json_response(status: StatusCode, body: &Value) -> warp::reply::Response {
    // A Value always serialises (its keys are strings).
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    json_bytes_response(status, bytes)
}

/// A JSON answer already written as bytes, with the headers of
/// [`json_response`].
pub fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

impl Reply for ApiError {
    fn into_response(self) -> warp::reply::Response {
        let mut r = json_response(self.status, &self.body);
        // A limit crossed or a store not ready: the client may retry soon.
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            r.headers_mut().insert(
                warp::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
        }
        if self.challenge {
            r.headers_mut().insert(
                warp::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cubed\", Basic realm=\"cubed\""),
            );
        }
        r
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Tenant(t) => t.into(),
            AuthError::Missing | AuthError::Unknown => {
                let error = if matches!(e, AuthError::Missing) {
                    "unauthorized"
                } else {
                    "invalid key"
                };
                ApiError {
                    challenge: true,
                    ..ApiError::with_message(StatusCode::UNAUTHORIZED, error, e.to_string())
                }
            }
            AuthError::OtherService { .. } | AuthError::Role { .. } => {
                ApiError::with_message(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        ApiError::with_message(StatusCode::BAD_REQUEST, "invalid service", e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => ApiError::with_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
                "the server is shutting down; retry against the next instance",
            ),
            StoreError::TooLarge(m) => {
                ApiError::with_message(StatusCode::PAYLOAD_TOO_LARGE, "too large", m)
            }
            e @ StoreError::DiskFull { .. } => {
                tracing::warn!(error = %e, "write refused");
                ApiError::with_message(StatusCode::INSUFFICIENT_STORAGE, "disk full", e.to_string())
            }
            e @ StoreError::TooMany { flag, .. } => ApiError::with_message(
                StatusCode::TOO_MANY_REQUESTS,
                if flag == "--max-services" {
                    "too many services"
                } else {
                    "too many types"
                },
                e.to_string(),
            ),
            e @ StoreError::Failed(_) => {
                tracing::error!(error = %e, "write refused");
                ApiError::with_message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store failed",
                    e.to_string(),
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::NotAnArray => ApiError::with_message(
                StatusCode::BAD_REQUEST,
                "invalid body",
                "expected a JSON array of events",
            ),
            BatchError::Json(m) => {
                ApiError::with_message(StatusCode::BAD_REQUEST, "invalid body", m)
            }
            BatchError::Invalid(bad) => {
                let (error, first) = match bad.first() {
                    Some((i, e)) => (e.error(), format!("event {i}: {}", e.message())),
                    None => ("invalid event", String::new()),
                };
                ApiError::invalid_items(
                    error,
                    format!(
                        "{first} ({} invalid event(s); nothing from this batch was stored)",
                        bad.len()
                    ),
                    bad.iter()
                        .map(|(i, e)| (*i, e.error().to_owned(), Some(e.message()))),
                )
            }
        }
    }
}

impl From<&EventError> for ApiError {
    /// One refused event (a WebSocket put message): `{"error", "message"}`.
    fn from(e: &EventError) -> Self {
        ApiError::with_message(StatusCode::BAD_REQUEST, e.error(), e.message())
    }
}

impl From<EmetricsError> for ApiError {
    fn from(e: EmetricsError) -> Self {
        match e {
            EmetricsError::Json { index, message } => ApiError::invalid_items(
                "invalid body",
                format!("item {index}: {message}; nothing was stored"),
                [(index, message, None)],
            ),
            EmetricsError::Invalid(bad) => ApiError::invalid_items(
                "invalid units",
                format!("{} invalid item(s); nothing was stored", bad.len()),
                bad.into_iter().map(|e| (e.index, e.reason, None)),
            ),
        }
    }
}

impl ApiError {
    /// A refused batch: `400 {"error", "message", "errors": [{"index",
    /// "error", "message"?}]}`.
    fn invalid_items(
        error: &str,
        message: String,
        items: impl IntoIterator<Item = (usize, String, Option<String>)>,
    ) -> Self {
        let errors: Vec<Value> = items
            .into_iter()
            .map(|(index, reason, message)| match message {
                Some(m) => json!({ "index": index, "error": reason, "message": m }),
                None => json!({ "index": index, "error": reason }),
            })
            .collect();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": error, "message": message, "errors": errors }),
            challenge: false,
        }
    }

    /// The session API's errors: `{"success": false, "error": …}`.
    pub fn session_api(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "success": false, "error": error.into() }),
            challenge: false,
        }
    }
}

impl From<CollectorError> for ApiError {
    fn from(e: CollectorError) -> Self {
        match e {
            CollectorError::Store(s) => s.into(),
            CollectorError::Batch(b) => b.into(),
            CollectorError::Collectd(list) => ApiError::invalid_items(
                "invalid collectd body",
                "nothing from this body was stored".to_owned(),
                list.into_iter().map(|e| (e.index, e.reason, None)),
            ),
            CollectorError::Emetrics(e) => e.into(),
            CollectorError::Session(m) => ApiError::session_api(StatusCode::BAD_REQUEST, m),
            CollectorError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<EventQueryError> for ApiError {
    fn from(e: EventQueryError) -> Self {
        match e {
            EventQueryError::Expression(p) => {
                ApiError::with_message(StatusCode::BAD_REQUEST, "invalid expression", p.to_string())
            }
            EventQueryError::Start | EventQueryError::Stop | EventQueryError::Limit => {
                let message = e.message().unwrap_or_default();
                ApiError::with_message(StatusCode::BAD_REQUEST, &e.to_string(), message)
            }
            EventQueryError::TooManyStreams(max) => ApiError::with_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many live streams",
                format!(
                    "at most {max} live event streams at once (--max-live-streams); retry later or share an expression"
                ),
            ),
            EventQueryError::Store(s) => s.into(),
            EventQueryError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<MetricQueryError> for ApiError {
    fn from(e: MetricQueryError) -> Self {
        match e {
            MetricQueryError::Expression(p) => {
                ApiError::with_message(StatusCode::BAD_REQUEST, "invalid expression", p.to_string())
            }
            other => {
                let message = other.message().unwrap_or_default();
                ApiError::with_message(StatusCode::BAD_REQUEST, &other.to_string(), message)
            }
        }
    }
}

impl From<EvalError> for ApiError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::TooLarge(m) => {
                ApiError::with_message(StatusCode::UNPROCESSABLE_ENTITY, "query too large", m)
            }
            EvalError::StoreFailed(m) => {
                ApiError::with_message(StatusCode::SERVICE_UNAVAILABLE, "store failed", m)
            }
            EvalError::Timeout(t) => ApiError::with_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "query timeout",
                format!(
                    "the query did not finish within {} ms (--query-timeout-ms); ask for fewer bins or a coarser step",
                    t.as_millis()
                ),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<RangeError> for ApiError {
    fn from(e: RangeError) -> Self {
        match e {
            RangeError::Query(q) => q.into(),
            RangeError::Eval(e) => e.into(),
            e @ (RangeError::EndBeforeStart | RangeError::TooManyPoints { .. }) => {
                ApiError::with_message(StatusCode::BAD_REQUEST, "invalid range", e.to_string())
            }
            e @ RangeError::TooManyBins { .. } => ApiError::with_message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "query too large",
                e.to_string(),
            ),
        }
    }
}

impl ApiError {
    /// The same refusal in the Prometheus HTTP API's shape:
    /// `{"status": "error", "errorType", "error"}`, with the same status
    /// (Prometheus's `bad_data` 400, `execution` 422, `timeout` and
    /// `unavailable` 503, `internal` 500; `unauthorized` 401 and
    /// `forbidden` 403, which Prometheus itself never answers).
    pub fn prometheus(self) -> warp::reply::Response {
        let text = |k: &str| self.body.get(k).and_then(Value::as_str).unwrap_or_default();
        let (error, message) = (text("error"), text("message"));
        let error_type = match self.status.as_u16() {
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            422 => "execution",
            503 if error == "query timeout" => "timeout",
            503 | 429 => "unavailable",
            s if s < 500 => "bad_data",
            _ => "internal",
        };
        let text = if message.is_empty() {
            error.to_owned()
        } else {
            format!("{error}: {message}")
        };
        ApiError {
            body: json!({ "status": "error", "errorType": error_type, "error": text }),
            ..self
        }
        .into_response()
    }
}

impl From<crate::service::live_metrics::LiveMetricError> for ApiError {
    fn from(e: crate::service::live_metrics::LiveMetricError) -> Self {
        use crate::service::live_metrics::LiveMetricError;
        match e {
            LiveMetricError::TooMany(_) => ApiError::with_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many live metrics",
                e.to_string(),
            ),
            LiveMetricError::Top => {
                ApiError::with_message(StatusCode::BAD_REQUEST, "invalid request", e.to_string())
            }
        }
    }
}
