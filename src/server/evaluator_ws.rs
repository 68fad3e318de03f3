//! The evaluator's WebSocket endpoints: multiplexed metric/get, event/get
//! (history, or a live stream when no `stop` is given), types/get.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use super::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::App;
use super::admin::TxHeaders;
use super::error::ApiError;
use super::wire::{BinMessages, grouped_metric_json, metric_json};
use crate::limits::{MAX_LIVE_DELAY_MS, MAX_REQUEST_ID_BYTES};
use crate::model::Tenant;
use crate::service::{EventQuery, EventQueryError, MetricQuery, MetricQueryError, Order};

/// Default delay of live event streams behind now.
pub const DEFAULT_LIVE_DELAY_MS: i64 = 5_000;

/// Which endpoint a socket serves.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    Metric,
    Event,
    Types,
}

/// A request parameter given as a JSON string or number.
fn param(msg: &Value, key: &str) -> Option<String> {
    match msg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn with_id(mut body: Value, id: Option<&Value>) -> Value {
    if let (Some(id), Value::Object(m)) = (id, &mut body) {
        m.insert("id".into(), id.clone());
    }
    body
}

/// One answer waiting for its socket's writer. Its bytes count against
/// the socket's queue and the server-wide one until it is written or
/// dropped (a closed socket's queue is dropped with it), whichever
/// happens: so the counts never drift.
struct Queued {
    text: String,
    len: usize,
    socket: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.socket.fetch_sub(self.len, Relaxed);
        self.total.fetch_sub(self.len, Relaxed);
    }
}

/// One socket's queue of answers for its writer, bounded in bytes: when a
/// client stops reading and the queue would pass its cap, the socket is
/// closed (its requests stopped) instead of buffering without end. All
/// sockets' queues together are bounded too (`total_cap`).
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Queued>,
    /// Bytes queued and not yet written to the socket.
    queued: Arc<AtomicUsize>,
    cap: usize,
    /// Bytes queued for every evaluator socket of the server, and their cap.
    total: Arc<AtomicUsize>,
    total_cap: usize,
    /// Set when the cap was crossed: everything stops.
    overflowed: Arc<AtomicBool>,
    overflow: Arc<Notify>,
    /// When the socket opened, and when (ms after that) the writer last sent.
    opened: Instant,
    last_sent_ms: Arc<AtomicU64>,
}

/// What one queued answer costs beyond its text: its place in the channel
/// and its allocation's rounding.
const QUEUED_OVERHEAD: usize = 64;

/// How long a writer with more than the cap queued may go without
/// sending anything before its client counts as not reading.
const STALLED: Duration = Duration::from_secs(2);

impl Outbox {
    /// Queues one answer, counted as its text plus [`QUEUED_OVERHEAD`].
    /// Past the cap the client is disconnected when its writer has sent
    /// nothing for [`STALLED`] (a client that reads, but more slowly than
    /// cached answers are produced, is not), and at four times the cap in
    /// any case. While all sockets together hold more than the server-wide
    /// cap, a socket is disconnected at once if it holds more than its
    /// share (a 256th of that cap, at least 1 MiB), or more than 64 KiB
    /// while its writer has sent nothing for [`STALLED`] (a client that
    /// stopped reading).
    fn push(&self, text: String) -> bool {
        if self.overflowed.load(Relaxed) {
            return false;
        }
        let len = text.len() + QUEUED_OVERHEAD;
        let queued = self.queued.fetch_add(len, Relaxed) + len;
        let total = self.total.fetch_add(len, Relaxed) + len;
        let item = Queued {
            text,
            len,
            socket: Arc::clone(&self.queued),
            total: Arc::clone(&self.total),
        };
        if queued > self.cap || total > self.total_cap {
            let idle = self
                .opened
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last_sent_ms.load(Relaxed)));
            let share = (self.total_cap / 256).max(1 << 20);
            let over_total = total > self.total_cap
                && (queued > share || (queued > 64 * 1024 && idle > STALLED));
            let over_own =
                queued > self.cap && (idle > STALLED || queued > self.cap.saturating_mul(4));
            if over_total || over_own {
                self.overflowed.store(true, Relaxed);
                self.overflow.notify_one();
                return false;
            }
        }
        self.tx.send(item).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.overflowed.load(Relaxed) || self.tx.is_closed()
    }
}

/// Where one request's answers go: the socket's outbox, counting the bytes
/// (and whether an error was among them) for the request's transaction,
/// which is recorded by `finish` (or on drop).
pub struct Answers {
    out: Outbox,
    bytes: u64,
    error: bool,
    on_done: Option<Box<dyn FnOnce(u64, bool) + Send>>,
}

impl Answers {
    /// Queues one message; false once the socket is gone (or was closed
    /// because its client stopped reading).
    pub fn send(&mut self, v: Value) -> bool {
        if v.get("error").is_some() {
            self.error = true;
        }
        let text = v.to_string();
        self.bytes += text.len() as u64;
        self.out.push(text)
    }

    /// Queues one message already written to text (not an error).
    pub fn send_text(&mut self, text: String) -> bool {
        self.bytes += text.len() as u64;
        self.out.push(text)
    }

    pub fn is_closed(&self) -> bool {
        self.out.is_closed()
    }

    /// The request is answered: count its transaction.
    pub fn finish(&mut self) {
        if let Some(done) = self.on_done.take() {
            done(self.bytes, self.error);
        }
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Serves one socket: requests are read in order, each answered by its own
/// task, answers written in the order they are produced. Each request
/// message is one transaction of `/admin/metrics`.
pub async fn serve(
    socket: WebSocket,
    app: Arc<App>,
    access: crate::service::Access,
    endpoint: Endpoint,
    tx_headers: TxHeaders,
) {
    let tenant: Tenant = access.tenant;
    // Closed (1008) once its key no longer authorizes it.
    let auth = Arc::clone(&app.auth);
    let mut revoked = std::pin::pin!(auth.revoked(access.key_id));
    let _open = app.run.websocket.open();
    let (mut sink, mut stream) = socket.split();
    let (tx, mut out_rx) = mpsc::unbounded_channel::<Queued>();
    let out = Outbox {
        tx,
        queued: Arc::default(),
        cap: app.limits.max_ws_queue_bytes,
        total: Arc::clone(&app.ws_queued),
        total_cap: app.limits.max_ws_queue_total_bytes,
        overflowed: Arc::default(),
        overflow: Arc::default(),
        opened: Instant::now(),
        last_sent_ms: Arc::default(),
    };
    let writer_app = Arc::clone(&app);
    let (opened, last_sent_ms) = (out.opened, Arc::clone(&out.last_sent_ms));
    // The close frame after a failed receive, sent after the answers.
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<Message>();
    let mut close_tx = Some(close_tx);
    let writer = tokio::spawn(async move {
        while let Some(mut item) = out_rx.recv().await {
            let text = std::mem::take(&mut item.text);
            // Into the socket's write buffer (8 KiB, written out whenever it
            // fills: a client that stops reading stops this here), flushed
            // once nothing more is queued: one write for many small answers
            // instead of one each.
            if sink.feed(Message::text(text)).await.is_err() {
                break;
            }
            // Written: no longer queued.
            drop(item);
            let sent_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
            last_sent_ms.store(sent_ms, Relaxed);
            writer_app.run.websocket.messages_sent.fetch_add(1, Relaxed);
            if out_rx.is_empty() && sink.flush().await.is_err() {
                break;
            }
        }
        if let Ok(frame) = close_rx.await {
            let _ = sink.send(frame).await;
        }
        let _ = sink.close().await;
    });
    let max_in_flight = app.limits.max_ws_in_flight;
    // Each request's task, with its id (for `{"cancel": id}`).
    let mut tasks: Vec<(Option<Value>, JoinHandle<()>)> = Vec::new();
    loop {
        let msg = tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => msg,
                None => break,
            },
            _ = out.overflow.notified() => break,
            _ = &mut revoked => {
                if let Some(close) = close_tx.take() {
                    let _ = close.send(super::common::close_unauthorized());
                }
                break;
            }
        };
        let started = Instant::now();
        let msg = match msg {
            Ok(m) if m.is_close() => break,
            Ok(m) if m.is_text() => m,
            Ok(_) => continue,
            Err(e) => {
                let _ = out.push(json!({ "error": e.to_string() }).to_string());
                if let Some(close) = close_tx.take() {
                    let _ = close.send(super::common::close_after(&e));
                }
                break;
            }
        };
        app.run.websocket.messages_received.fetch_add(1, Relaxed);
        let request_bytes = msg.len() as u64;
        let on_done = {
            let (app, tx_headers) = (Arc::clone(&app), tx_headers.clone());
            Box::new(move |bytes: u64, error: bool| {
                tx_headers.record(&app, request_bytes, bytes, error, started);
            })
        };
        let mut answers = Answers {
            out: out.clone(),
            bytes: 0,
            error: false,
            on_done: Some(on_done),
        };
        let request: Value = match msg.to_text().map(serde_json::from_str::<Value>) {
            Ok(Ok(v)) if v.is_object() => v,
            parsed => {
                app.run.websocket.messages_rejected.fetch_add(1, Relaxed);
                let message = match parsed {
                    Ok(Ok(_)) => {
                        "a request is a JSON object: {\"expression\", \"start\", \"stop\", \"step\", \"limit\", \"id\"}"
                    }
                    Ok(Err(_)) => "not JSON text",
                    Err(_) => "not a text message",
                };
                answers.send(json!({ "error": "invalid request", "message": message }));
                continue;
            }
        };
        tasks.retain(|(_, t)| !t.is_finished());
        if let Some(id) = request.get("cancel") {
            // Stops the requests with this id (a live one, say); no answer.
            for (_, t) in tasks.iter().filter(|(i, _)| i.as_ref() == Some(id)) {
                t.abort();
            }
            answers.finish();
            continue;
        }
        if tasks.len() >= max_in_flight {
            app.run.websocket.messages_rejected.fetch_add(1, Relaxed);
            let id = request_id(&request).ok().flatten();
            let refused = json!({
                "error": "too many requests",
                "message": format!("at most {max_in_flight} requests in flight on one socket (--max-ws-in-flight); wait for answers"),
            });
            answers.send(with_id(refused, id));
            continue;
        }
        let (app, tenant) = (Arc::clone(&app), tenant.clone());
        let id = request.get("id").cloned();
        tasks.push((
            id,
            tokio::spawn(async move {
                let out = &mut answers;
                match endpoint {
                    Endpoint::Metric => metric_request(&app, &tenant, &request, out).await,
                    Endpoint::Event => event_request(&app, &tenant, &request, out).await,
                    Endpoint::Types => types_request(&app, &tenant, out).await,
                }
            }),
        ));
    }
    if out.overflowed.load(Relaxed) {
        // The client stopped reading: drop what is queued and the socket
        // (the writer may be waiting on it forever).
        tracing::info!(
            cap = out.cap,
            "websocket closed: its client stopped reading answers"
        );
        writer.abort();
    }
    for (_, t) in tasks {
        t.abort();
    }
    drop(out);
    drop(close_tx);
    // What is queued goes out, unless the client has stopped reading.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// A request's `id`, echoed in each of its answers: absent, or a string or
/// number whose JSON text is at most [`MAX_REQUEST_ID_BYTES`] (so that no request
/// can multiply a large id into every bin of its answer).
pub fn request_id(req: &Value) -> Result<Option<&Value>, ApiError> {
    match req.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(id @ (Value::String(_) | Value::Number(_)))
            if id.to_string().len() <= MAX_REQUEST_ID_BYTES =>
        {
            Ok(Some(id))
        }
        Some(_) => Err(ApiError::with_message(
            warp::http::StatusCode::BAD_REQUEST,
            "invalid id",
            format!("a request id is a string or a number of at most {MAX_REQUEST_ID_BYTES} bytes"),
        )),
    }
}

/// A metric/get request message as a query (pure).
pub fn metric_query(req: &Value, now: i64) -> Result<MetricQuery, MetricQueryError> {
    MetricQuery::parse(
        req.get("expression").and_then(Value::as_str),
        param(req, "start").as_deref(),
        param(req, "stop").as_deref(),
        param(req, "step").as_deref(),
        param(req, "limit").as_deref(),
        now,
    )
}

/// An event/get request message (pure): the query, and for a live stream
/// (no `stop`) its delay behind now.
pub fn event_query(req: &Value, now: i64) -> Result<(EventQuery, Option<i64>), EventQueryError> {
    let delay = req
        .get("delay")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_LIVE_DELAY_MS)
        .clamp(0, MAX_LIVE_DELAY_MS);
    let has_stop = req.get("stop").is_some_and(|s| !s.is_null());
    let live_stop = (now - delay).to_string();
    let start = param(req, "start").or_else(|| (!has_stop).then(|| live_stop.clone()));
    let stop = if has_stop {
        param(req, "stop")
    } else {
        Some(live_stop)
    };
    let query = EventQuery::parse(
        req.get("expression").and_then(Value::as_str),
        start.as_deref(),
        stop.as_deref(),
        param(req, "limit").as_deref(),
        now,
    )?;
    Ok((query, (!has_stop).then_some(delay)))
}

async fn metric_request(app: &App, tenant: &Tenant, req: &Value, out: &mut Answers) {
    let id = match request_id(req) {
        Ok(id) => id,
        Err(e) => {
            let _ = out.send(e.ws_body());
            return;
        }
    };
    if req.get("stop").is_none_or(Value::is_null) {
        return live_metric_request(app, tenant, req, id, out).await;
    }
    let query = match metric_query(req, app.clock.now_ms()) {
        Ok(q) => q,
        Err(e) => {
            let _ = out.send(with_id(ApiError::from(e).ws_body(), id));
            return;
        }
    };
    match send_bins(app, tenant, &query, id, out).await {
        Ok(()) => {
            let end = json!({ "time": crate::model::time::format_iso(query.end) });
            let _ = out.send(with_id(end, id));
        }
        Err(e) => {
            let _ = out.send(with_id(ApiError::from(e).ws_body(), id));
        }
    }
}

/// Evaluates `query` and sends its bins (cached ones first when ungrouped).
async fn send_bins(
    app: &App,
    tenant: &Tenant,
    query: &MetricQuery,
    id: Option<&Value>,
    out: &mut Answers,
) -> Result<(), crate::service::EvalError> {
    if query.group.is_some() {
        let rows = app.evaluator.evaluate_grouped(tenant, query).await?;
        for i in 0..query.n {
            for row in &rows {
                let v = row.values.get(i).copied().flatten();
                let _ = out.send(grouped_metric_json(
                    query.time(i),
                    row.group.as_deref(),
                    v,
                    id,
                ));
            }
        }
        Ok(())
    } else {
        let mut messages = BinMessages::new(id);
        let mut emit = |i: usize, v: Option<f64>| {
            let _ = out.send_text(messages.text(query.time(i), v));
        };
        app.evaluator.evaluate(tenant, query, &mut emit).await
    }
}

/// A metric/get request without `stop`: the bins from `start` to the last
/// closed one (`now - delay`), then each bin as it closes and each bin sent
/// that a put changed, until the socket closes (README "Live metrics").
async fn live_metric_request(
    app: &App,
    tenant: &Tenant,
    req: &Value,
    id: Option<&Value>,
    out: &mut Answers,
) {
    let delay = req
        .get("delay")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_LIVE_DELAY_MS)
        .clamp(0, MAX_LIVE_DELAY_MS);
    let now = app.clock.now_ms();
    let mut bounded = req.clone();
    let with_stop = |r: &mut Value, stop: i64| {
        if let Value::Object(m) = r {
            m.insert("stop".into(), Value::from(stop));
        }
    };
    with_stop(&mut bounded, now - delay);
    let refuse = |out: &mut Answers, e: ApiError| {
        let _ = out.send(with_id(e.ws_body(), id));
    };
    let query = match metric_query(&bounded, now) {
        Ok(q) => q,
        Err(e) => return refuse(out, e.into()),
    };
    let (closed, mut stream) = match app.live_metrics.follow(tenant, &query, delay) {
        Ok(x) => x,
        Err(e) => return refuse(out, e.into()),
    };
    with_stop(&mut bounded, closed);
    let history = match metric_query(&bounded, now) {
        Ok(q) => q,
        Err(e) => return refuse(out, e.into()),
    };
    let grouped = query.group.is_some();
    let message = |u: &crate::service::live_metrics::Update| {
        if grouped {
            grouped_metric_json(u.time, u.group.as_deref(), u.value, id)
        } else {
            metric_json(u.time, u.value, id)
        }
    };
    match stream.history(&app.evaluator, tenant, &history).await {
        Ok(bins) => {
            for u in &bins {
                let _ = out.send(message(u));
            }
        }
        Err(e) => return refuse(out, e.into()),
    }
    // The history is complete: `{time: where the stream starts, live: true}`.
    let marker = json!({ "time": crate::model::time::format_iso(closed), "live": true });
    let _ = out.send(with_id(marker, id));
    // The history is the request's answer; what follows is the stream.
    out.finish();
    while let Some(updates) = stream.next().await {
        for u in &updates {
            if !out.send(message(u)) {
                return;
            }
        }
        if out.is_closed() {
            return;
        }
    }
}

async fn event_request(app: &App, tenant: &Tenant, req: &Value, out: &mut Answers) {
    let id = match request_id(req) {
        Ok(id) => id,
        Err(e) => {
            let _ = out.send(e.ws_body());
            return;
        }
    };
    let query = event_query(req, app.clock.now_ms());
    let (history, stream) = match query {
        // History: newest first, ended by a null.
        Ok((query, None)) => match app.events.query(tenant, query, Order::Descending).await {
            Ok(events) => (events.into_iter().chain([Value::Null]).collect(), None),
            Err(e) => (vec![with_id(ApiError::from(e).ws_body(), id)], None),
        },
        // Live: the history up to now − delay, then the stream.
        Ok((query, Some(delay))) => match app.live.follow(tenant, query, delay).await {
            Ok((events, stream)) => (events, Some(stream)),
            Err(e) => (vec![with_id(ApiError::from(e).ws_body(), id)], None),
        },
        Err(e) => (vec![with_id(ApiError::from(e).ws_body(), id)], None),
    };
    for e in history {
        let _ = out.send(e);
    }
    let Some(mut stream) = stream else { return };
    // The history is the request's answer; what follows is the stream.
    out.finish();
    while let Some(events) = stream.next().await {
        for e in events {
            if !out.send(e) {
                return;
            }
        }
        if out.is_closed() {
            return;
        }
    }
}

async fn types_request(app: &App, tenant: &Tenant, out: &mut Answers) {
    let _ = match app.events.types(tenant).await {
        Ok(t) => out.send(Value::from(t)),
        Err(e) => out.send(ApiError::from(e).ws_body()),
    };
}
