//! WebSocket upgrades, done here rather than by warp's `ws` filter: warp
//! hides tungstenite's buffer sizes, and its default read buffer is 128 KiB
//! allocated up front for every socket (a thousand dashboards held 125 MiB
//! of them, and each reconnect allocated another). Here each socket starts
//! with `READ_BUFFER` bytes and the write buffer flushes at `WRITE_BUFFER`.
//!
//! The accept loop (`listen.rs`) moves hyper's `OnUpgrade` into an
//! [`Upgrade`] request extension, which [`ws`] extracts; [`Ws::on_upgrade`]
//! answers `101 Switching Protocols` and runs the handler on the upgraded
//! connection.

use std::future::Future;
use std::sync::{Arc, Mutex};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;

pub use tokio_tungstenite::tungstenite::Error;
pub use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// An upgraded connection speaking WebSocket (server side).
pub type WebSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Bytes each socket's read buffer starts with (it grows for a longer
/// frame, up to `--max-ws-message`).
pub const READ_BUFFER: usize = 4 * 1024;

/// Bytes of frames a socket gathers before it writes them (a flush writes
/// whatever is gathered).
pub const WRITE_BUFFER: usize = 8 * 1024;

/// A request's upgrade, taken from hyper's request extensions by the accept
/// loop (warp keeps its own extraction of it private). Cloned by warp's
/// filters; the first to finish an upgrade takes it.
#[derive(Clone)]
pub struct Upgrade(Arc<Mutex<Option<OnUpgrade>>>);

impl Upgrade {
    /// Moves the request's `OnUpgrade` (if hyper gave it one) into an
    /// `Upgrade` extension.
    pub fn lift<B>(req: &mut hyper::Request<B>) {
        if let Some(on) = req.extensions_mut().remove::<OnUpgrade>() {
            req.extensions_mut()
                .insert(Upgrade(Arc::new(Mutex::new(Some(on)))));
        }
    }

    fn take(&self) -> Option<OnUpgrade> {
        match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// A valid WebSocket handshake, extracted by [`ws`] (a request that is not
/// one is rejected with [`NotUpgrade`]: `400` if no other route takes it).
pub struct Ws {
    accept: String,
    upgrade: Option<Upgrade>,
}

/// The rejection of a request to a WebSocket endpoint that is not a
/// WebSocket handshake.
#[derive(Debug)]
pub struct NotUpgrade(pub &'static str);

impl warp::reject::Reject for NotUpgrade {}

/// Whether a comma-separated header lists `token` (any case).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The handshake of RFC 6455 (version 13) on a GET.
pub fn ws() -> impl Filter<Extract = (Ws,), Error = warp::Rejection> + Clone {
    warp::get()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Upgrade>())
        .and_then(|headers: HeaderMap, upgrade: Option<Upgrade>| async move {
            if !lists(&headers, header::CONNECTION, "upgrade") {
                return Err(warp::reject::custom(NotUpgrade(
                    "a WebSocket endpoint: the request's Connection header does not include upgrade",
                )));
            }
            if !lists(&headers, header::UPGRADE, "websocket") {
                return Err(warp::reject::custom(NotUpgrade(
                    "a WebSocket endpoint: the request's Upgrade header is not websocket",
                )));
            }
            if headers
                .get(header::SEC_WEBSOCKET_VERSION)
                .is_none_or(|v| v.as_bytes() != b"13")
            {
                return Err(warp::reject::custom(NotUpgrade(
                    "a WebSocket endpoint: Sec-WebSocket-Version must be 13",
                )));
            }
            let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
                return Err(warp::reject::custom(NotUpgrade(
                    "a WebSocket endpoint: the request has no Sec-WebSocket-Key",
                )));
            };
            Ok(Ws {
                accept: derive_accept_key(key.as_bytes()),
                upgrade,
            })
        })
}

impl Ws {
    /// `101 Switching Protocols`, and `handle` run on the socket once the
    /// client has it; messages (and frames) over `max_message` bytes end the
    /// socket's stream with an error.
    pub fn on_upgrade<F, U>(self, max_message: usize, handle: F) -> Response
    where
        F: FnOnce(WebSocket) -> U + Send + 'static,
        U: Future<Output = ()> + Send + 'static,
    {
        match self.upgrade.as_ref().and_then(Upgrade::take) {
            Some(on) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER)
                    .write_buffer_size(WRITE_BUFFER)
                    .max_message_size(Some(max_message))
                    .max_frame_size(Some(max_message));
                tokio::spawn(async move {
                    match on.await {
                        Ok(upgraded) => {
                            let socket = WebSocketStream::from_raw_socket(
                                TokioIo::new(upgraded),
                                Role::Server,
                                Some(config),
                            )
                            .await;
                            handle(socket).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                    }
                });
            }
            None => tracing::debug!("a websocket handshake without an upgradable connection"),
        }
        let mut r = Response::default();
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&self.accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }
}

/// A close frame with `code` and `reason` (cut to the 123 bytes a close
/// frame holds).
pub fn close_frame(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_owned().into(),
    }))
}

/// Whether a receive failed for a message or frame over the size limit.
pub fn too_big(e: &Error) -> bool {
    matches!(e, Error::Capacity(_))
}
