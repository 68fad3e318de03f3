//! Browser safety: which web pages may change data or open WebSockets.
//!
//! A browser sends `Origin` with every request that is not a plain GET
//! (and with every WebSocket handshake). Such a request is refused (403
//! `forbidden origin`) unless its origin is listed with `--cors-origin`, or
//! it is the page's own origin (`Origin` names the `Host` the request was
//! sent to) and that cannot be a DNS-rebinding attack on a server bound to
//! loopback: keys are in force, or the `Host` is a loopback name, or the
//! server listens beyond loopback anyway. GETs are read-only and open to
//! any origin, as Cube's `Access-Control-Allow-Origin: *` always was; with
//! keys in force they need a key, which a foreign page does not have. CORS
//! headers and preflights themselves are warp's filter ([`cors`]).

use std::sync::Arc;

use warp::http::{HeaderMap, Method, StatusCode};
use warp::{Filter, Rejection};

use super::App;
use super::error::ApiError;

/// The origins allowed besides a page's own, and whether the server listens
/// beyond loopback.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Exact origins (`https://dash.example.com`), or `*` for any.
    pub allowed: Vec<String>,
    /// Some listener is bound to an address other than loopback.
    pub exposed: bool,
}

/// Whether a `Host` header names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl OriginPolicy {
    /// Whether a request from `origin`, sent to `host`, may change data.
    pub fn allows(&self, origin: &str, host: Option<&str>, keys_in_force: bool) -> bool {
        if self.allowed.iter().any(|o| o == "*" || o == origin) {
            return true;
        }
        let Some(host) = host else { return false };
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
        own && (keys_in_force || self.exposed || loopback_host(host))
    }
}

/// Whether the request changes something or opens a WebSocket.
fn guarded(method: &Method, headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade || !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Answers 403 to a browser request from an origin that may not change
/// data or open a WebSocket; rejects (so that the routes answer) otherwise.
pub fn forbidden_origin(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::header::headers_cloned())
        .and_then(move |method: Method, headers: HeaderMap| {
            let app = Arc::clone(&app);
            async move {
                let origin = headers.get("origin").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let Some(origin) = origin else {
                    return Err(warp::reject::not_found());
                };
                if !guarded(&method, &headers) {
                    return Err(warp::reject::not_found());
                }
                let host = headers.get("host").and_then(|v| v.to_str().ok());
                if app.origins.allows(&origin, host, app.auth.enabled()) {
                    return Err(warp::reject::not_found());
                }
                Ok(warp::reply::Reply::into_response(ApiError::with_message(
                    StatusCode::FORBIDDEN,
                    "forbidden origin",
                    format!(
                        "a page from {origin} may not change data or open a WebSocket here; list it with --cors-origin"
                    ),
                )))
            }
        })
}

/// warp's CORS filter: preflights answered, the origin echoed, for any
/// origin (what a foreign origin may not do is refused by
/// [`forbidden_origin`]); cookies are never allowed cross-origin.
pub fn cors() -> warp::filters::cors::Builder {
    warp::cors()
        .allow_any_origin()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            "content-type",
            "authorization",
            "fiware-service",
            "fiware-servicepath",
        ])
        .max_age(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origins_and_rebinding() {
        let p = OriginPolicy::default();
        assert!(p.allows("http://127.0.0.1:1081", Some("127.0.0.1:1081"), false));
        assert!(p.allows("http://localhost:1081", Some("localhost:1081"), false));
        assert!(p.allows("http://[::1]:1081", Some("[::1]:1081"), false));
        // A rebound name pointing at a loopback-only server: refused unless
        // keys are in force.
        assert!(!p.allows("http://evil.example:1081", Some("evil.example:1081"), false));
        assert!(p.allows("http://evil.example:1081", Some("evil.example:1081"), true));
        assert!(!p.allows("http://evil.example", Some("127.0.0.1:1080"), true));
        assert!(!p.allows("null", Some("127.0.0.1:1080"), false));
        let listed = OriginPolicy {
            allowed: vec!["https://dash.example.com".into()],
            exposed: false,
        };
        assert!(listed.allows("https://dash.example.com", Some("127.0.0.1:1080"), false));
        assert!(!listed.allows("https://other.example.com", Some("127.0.0.1:1080"), false));
    }
}
