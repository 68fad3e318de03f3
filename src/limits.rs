//! Every documented limit, in one place — pure constants.
//!
//! Each limit is checked before anything is written or computed, and a
//! client that crosses one gets a `4xx` naming it (README "Limits"; a test
//! checks that the README states each value given here). Limits that an
//! operator may change are flags of `cubed serve`; their defaults are here.
//!
//! Why these values: types and ids become parts of storage keys (the
//! embedded engine takes keys up to 65,535 bytes; MongoDB namespaces up to
//! 255 bytes), field names become column names in blocks, and none of them
//! is useful at a length a person could not read. Strings and events are
//! bounded so that one event cannot hold a large share of a request's memory.

// ---- Events, on every ingest path (HTTP, WebSocket, UDP, collectd,
// ---- e-metrics, the session API, and the server's own events).

/// Longest event type, in bytes (types match `^[a-z][a-zA-Z0-9_]+$`).
pub const MAX_TYPE_BYTES: usize = 128;
/// Longest id, in bytes of its canonical JSON text (`"abc"` counts 5).
pub const MAX_ID_BYTES: usize = 1024;
/// Longest field name at any depth of an event's data, in bytes of UTF-8
/// text with its escapes decoded (`\u0041` counts 1, `\u00e9` 2), so that
/// a name is measured the same however it was sent.
pub const MAX_FIELD_NAME_BYTES: usize = 1024;
/// Longest string value at any depth of an event's data, measured as names are.
pub const MAX_STRING_BYTES: usize = 65_536;
/// Deepest nesting of arrays and objects in an event's data (the data
/// object itself is level 1).
pub const MAX_DATA_DEPTH: usize = 64;
/// Largest event: its type, id and data JSON text together, in bytes as
/// stored.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Earliest event or query time: 0000-01-01T00:00:00.000Z, in epoch ms.
pub const MIN_TIME_MS: i64 = -62_167_219_200_000;
/// Latest event or query time: 9999-12-31T23:59:59.999Z, in epoch ms.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

// ---- Requests.

/// Default largest HTTP request body (`--max-body`); 413 beyond it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default largest WebSocket message (`--max-ws-message`); the socket is
/// closed with 1009 beyond it.
pub const DEFAULT_MAX_WS_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default longest time one metric request may take, in ms
/// (`--query-timeout-ms`); `503 query timeout` beyond it.
pub const DEFAULT_QUERY_TIMEOUT_MS: u64 = 120_000;
/// Default longest time a request body may take to arrive, in ms
/// (`--body-timeout-ms`); `408 request timeout` beyond it.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Default most bytes of answers queued for one evaluator WebSocket
/// (`--max-ws-queue`); a client that stops reading is disconnected there.
pub const DEFAULT_MAX_WS_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Default most bins of metric requests evaluated at once, server-wide
/// (`--max-bins-in-flight`; a request counts its distinct reduces times
/// its bins): more wait their turn within their deadline.
pub const DEFAULT_MAX_BINS_IN_FLIGHT: usize = 1_000_000;
/// Most rows (service and subservice pairs) `/admin/metrics` gathers: a
/// request naming a new pair beyond it is not counted (rows already there
/// are) until a reset (`DELETE /admin/metrics`, `?reset=true`).
pub const MAX_OPMETRICS_ROWS: usize = 10_000;
/// Default most bytes of answers queued for all evaluator WebSockets
/// together (`--max-ws-queue-total`): past it, a socket with more than
/// its share queued (a 256th of this, at least 1 MiB), or more than 64 KiB
/// while not reading, is disconnected.
pub const DEFAULT_MAX_WS_QUEUE_TOTAL_BYTES: usize = 64 * 1024 * 1024;
/// Default most requests in flight on one evaluator WebSocket
/// (`--max-ws-in-flight`), live event streams included.
pub const DEFAULT_MAX_WS_IN_FLIGHT: usize = 256;
/// Default most live event streams at once, server-wide: distinct
/// (tenant, expression, delay), each one shared poll (`--max-live-streams`).
pub const DEFAULT_MAX_LIVE_STREAMS: usize = 1000;
/// Default free space that puts and metric cache writes leave on the disk
/// (`--min-free-disk`); `507 disk full` when a put would leave less.
pub const DEFAULT_MIN_FREE_DISK_BYTES: usize = 256 * 1024 * 1024;
/// Longest tenant name in `Fiware-Service`.
pub const MAX_TENANT_BYTES: usize = 50;
/// Longest level of a `Fiware-ServicePath` (subservice), and most levels
/// and comma-separated paths in one header.
pub const MAX_SUBSERVICE_LEVEL_BYTES: usize = 50;
pub const MAX_SUBSERVICE_LEVELS: usize = 10;
pub const MAX_SUBSERVICE_PATHS: usize = 10;
/// Longest session id in the session API's paths.
pub const MAX_SESSION_ID_BYTES: usize = 128;
/// Longest delay of a live event stream behind now (a larger one is
/// clamped to it): a day.
pub const MAX_LIVE_DELAY_MS: i64 = 86_400_000;
/// Longest request path kept in a `cube_request` event (longer ones are
/// cut), in characters.
pub const MAX_REQUEST_PATH_CHARS: usize = 1024;

// ---- Expressions (metric and event).

/// The largest `top` of `.group(field, top)`.
pub const MAX_GROUP_TOP: u32 = 1000;
/// Default of the most groups one grouped reduce may have over a
/// request's range (`--max-groups`); a request of n bins may have at most
/// `MAX_BINS_PER_REQUEST / n` of them if that is fewer (the answer has a
/// value per bin and group).
pub const DEFAULT_MAX_GROUPS: usize = 1000;

/// Longest expression, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 16 * 1024;
/// Deepest nesting of parentheses, unary minus, calls and array literals.
pub const MAX_DEPTH: usize = 64;
/// Deepest tree an expression may build: every binary operator, unary
/// minus, value function and reduce adds a level (parentheses add none),
/// so a flat chain `a + b + c + …` of n terms is n - 1 levels deep.
/// Everything that walks an expression recurses at most this deep.
pub const MAX_TREE_DEPTH: usize = 256;
/// Most segments in one field path (`a.b[0].c` has 4); data nests at most
/// [`MAX_DATA_DEPTH`] deep, so longer paths could never match.
pub const MAX_FIELD_SEGMENTS: usize = 64;
/// Largest compiled regular expression of an `re` filter, in bytes.
pub const MAX_REGEX_BYTES: usize = 256 * 1024;
/// Longest canonical text of one reduce (the metric cache key); numbers
/// are spelled out in full there, so it can be longer than the input.
pub const MAX_SOURCE_BYTES: usize = 32 * 1024;

// ---- Queries.

/// Most (and default) bins one metric request returns.
pub const MAX_METRIC_LIMIT: usize = 10_000;
/// Largest form body of a Prometheus API request (`POST /api/v1/…`), in bytes.
pub const MAX_PROMETHEUS_FORM_BYTES: usize = 64 * 1024;
/// Longest series selector (`match[]`) of the Prometheus API, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 4096;
/// Most `match[]` selectors one Prometheus API request may give.
pub const MAX_SELECTORS: usize = 64;
/// Most (and default) events one event request returns.
pub const MAX_EVENT_LIMIT: usize = 10_000;
/// Longest id of a WebSocket request (echoed in each of its answers), in
/// bytes of its JSON text; the same bound as an event's id.
pub const MAX_REQUEST_ID_BYTES: usize = MAX_ID_BYTES;
/// Most bins one metric request may compute: distinct reduces times bins
/// returned. (Hour and day bins of pyramidal reduces also read the cached
/// finer bins under them, 12 or 24 per bin, a chunk at a time.)
pub const MAX_BINS_PER_REQUEST: usize = 200_000;
/// Default of the most scans of events computing metric bins at once,
/// server-wide (`--max-computations`); more wait for a turn within their
/// request's deadline (`--query-timeout-ms`).
pub const DEFAULT_MAX_COMPUTATIONS: usize = 16;
/// Default of the most memory one metric request may hold for values that
/// reduces keep until a bin is complete (`median`, percentiles,
/// `distinct`), in bytes (`--max-query-memory`); checked block by block.
pub const MAX_QUERY_MEMORY_BYTES: usize = 256 * 1024 * 1024;

// ---- Storage widths (the encoders refuse what does not fit).

/// Longest key the embedded engine (fjall) stores.
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;
/// Largest encoded block: offsets inside a block are `u32`.
pub const MAX_BLOCK_BYTES: usize = u32::MAX as usize;

// ---- Keys.

/// How often a server re-reads its keys, in ms (a key made or revoked with
/// `cubed keys` takes effect within this).
pub const KEY_RELOAD_INTERVAL_MS: u64 = 1000;
/// Largest key file (`keys.json`, about 30,000 keys); a larger one is
/// refused as corrupt rather than read into memory.
pub const MAX_KEY_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Default of the most HTTP connections one listener holds open at once
/// (`--max-connections`); beyond it a new connection gets `503 too many
/// connections` and is closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of the most WebSockets open at once, server-wide, on both
/// listeners together (`--max-websockets`); beyond it an upgrade gets `503
/// too many websockets`. (An upgraded connection leaves the count of
/// `--max-connections`.)
pub const DEFAULT_MAX_WEBSOCKETS: usize = 4096;
/// Default of the longest a client may take to send a request's headers, in
/// ms (`--header-timeout-ms`); beyond it the connection is closed.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Largest body of `POST /admin/keys`, in bytes.
pub const MAX_KEY_REQUEST_BYTES: usize = 4096;
/// Default of how long Cubed's own events (`cube_request`,
/// `cube_compute`) and results documents are kept (`--self-retention`): 7 days.
pub const DEFAULT_SELF_RETENTION_MS: i64 = 7 * 86_400_000;
/// Default of how often old events are looked for and deleted
/// (`--retention-interval-ms`): 5 minutes.
pub const DEFAULT_RETENTION_INTERVAL_MS: u64 = 300_000;
/// Default of the most services (tenants) with events (`--max-services`);
/// a put that would add one more gets 429 `too many services`.
pub const DEFAULT_MAX_SERVICES: usize = 1000;
/// Default of the most event types of one service (`--max-types`); a put
/// that would add one more gets 429 `too many types`.
pub const DEFAULT_MAX_TYPES: usize = 1000;
/// Most retention overrides one service may set (`PUT /admin/retention`
/// beyond it: 429).
pub const MAX_RETENTION_OVERRIDES: usize = 1024;
/// Default of the most distinct expressions (leaf sources) cached per
/// service (`--max-cached-expressions`); more are computed, not cached.
pub const DEFAULT_MAX_CACHED_EXPRESSIONS: usize = 10_000;
/// Bytes of decoded cached bins the embedded store keeps in memory to
/// answer repeated cache reads without a range scan (see
/// `storage::embedded::memo`); the least recently read go first.
pub const CACHE_READ_MEMO_BYTES: usize = 48 * 1024 * 1024;
