//! Command-line interface. Every flag can also be set by an environment
//! variable named `CUBED_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use cubed::storage::embedded::Durability;

#[derive(Debug, Parser)]
#[command(
    name = "cubed",
    version,
    about = "Cube-compatible time-series server: collect events, compute metrics"
)]
pub struct Cli {
    /// Log filter (tracing-subscriber syntax), e.g. `info` or `cubed=debug`.
    #[arg(
        long,
        global = true,
        env = "CUBED_LOG",
        default_value = "info,fjall=warn,lsm_tree=warn"
    )]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: collector (HTTP + WebSocket), UDP collector, evaluator.
    Serve(Box<ServeArgs>),
    /// Print the query plan of an expression as JSON (exit 1 with the error on stderr if it is invalid).
    Explain {
        /// Treat EXPR as an event expression (`type(fields).filters`) instead of a metric expression.
        #[arg(long, env = "CUBED_EXPLAIN_EVENT")]
        event: bool,
        /// The expression (may start with `-`), e.g. `sum(request(duration).eq(path, "/login")) / sum(request)`.
        #[arg(allow_hyphen_values = true)]
        expr: String,
    },
    /// Send a dump file to a running collector, with a progress bar.
    Import(ImportArgs),
    /// Manage API keys (in the data directory's `keys.json`; works while a
    /// server runs, which picks changes up within a second).
    Keys(KeysArgs),
    /// Events, bytes and the oldest event per type of a service, from a
    /// running server (`GET /admin/stats`; an admin key when keys are in force).
    Stats(AdminArgs),
    /// Print a metric from a running evaluator (`/1.0/metric`): a table
    /// with a sparkline per series, CSV or JSON.
    Query(QueryArgs),
    /// Follow the events an event expression matches on a running
    /// evaluator (a live `/1.0/event/get`), one line each, as they arrive.
    Tail(TailArgs),
    /// Show or change how long a service's events are kept, on a running
    /// server (`/admin/retention`; an admin key when keys are in force).
    Retention {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: Option<RetentionCommand>,
    },
}

/// `cubed query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The metric expression (may start with `-`), e.g. `sum(request(duration)).group(path, 5)`.
    #[arg(allow_hyphen_values = true)]
    pub expr: String,
    /// First time: epoch milliseconds or ISO 8601 (default: the last
    /// `--limit` bins up to `--stop`).
    #[arg(long, env = "CUBED_QUERY_START")]
    pub start: Option<String>,
    /// End of the range, exclusive (default: now).
    #[arg(long, env = "CUBED_QUERY_STOP")]
    pub stop: Option<String>,
    /// The step: `10s`, `1m`, `5m`, `1h`, `1d` or milliseconds.
    #[arg(long, env = "CUBED_QUERY_STEP", default_value = "1m")]
    pub step: String,
    /// Most bins (the most recent are kept); without `--start`, how many
    /// bins back from `--stop`.
    #[arg(long, env = "CUBED_QUERY_LIMIT", default_value_t = 60)]
    pub limit: u32,
    /// How to print the bins.
    #[arg(long, env = "CUBED_QUERY_FORMAT", value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// The evaluator's base URL.
    #[arg(long, env = "CUBED_URL", default_value = "http://127.0.0.1:1081")]
    pub url: String,
    /// An API key with the `read` role (sent as `Authorization: Bearer`);
    /// it decides the service.
    #[arg(long, env = "CUBED_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The service, when keys are not in force (`Fiware-Service`).
    #[arg(long, env = "CUBED_SERVICE")]
    pub service: Option<String>,
}

/// `cubed tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The event expression, e.g. `request(path, duration).eq(status, 500)`
    /// (only the fields it names are shown, as Cube answers).
    pub expr: String,
    /// Show events from this time on (epoch milliseconds or ISO 8601);
    /// default: from now less `--delay`.
    #[arg(long, env = "CUBED_TAIL_START")]
    pub start: Option<String>,
    /// How far behind now the stream runs, in milliseconds (late events
    /// within it are still shown; the server's default is 5000).
    #[arg(long, env = "CUBED_TAIL_DELAY")]
    pub delay: Option<u64>,
    /// Stop after this many events (default: follow until interrupted).
    #[arg(long, env = "CUBED_TAIL_COUNT")]
    pub count: Option<u64>,
    /// How to print each event.
    #[arg(long, env = "CUBED_TAIL_FORMAT", value_enum, default_value_t = TailFormat::Text)]
    pub format: TailFormat,
    /// The evaluator's base URL.
    #[arg(long, env = "CUBED_URL", default_value = "http://127.0.0.1:1081")]
    pub url: String,
    /// An API key with the `read` role (sent as `Authorization: Bearer`
    /// on the WebSocket handshake); it decides the service.
    #[arg(long, env = "CUBED_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The service, when keys are not in force (`Fiware-Service`).
    #[arg(long, env = "CUBED_SERVICE")]
    pub service: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TailFormat {
    /// `TIME  DATA`, the data as JSON.
    Text,
    /// Each event as the server sent it, one JSON object a line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// A table of the bins (a column per group), then a sparkline per series.
    Table,
    /// `time,value` (grouped: `time,group,value`), one line per bin (and group).
    Csv,
    /// The server's JSON answer as it is.
    Json,
}

/// How the admin commands reach a running server.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The server's base URL (either listener).
    #[arg(
        long,
        env = "CUBED_URL",
        default_value = "http://127.0.0.1:1081",
        global = true
    )]
    pub url: String,
    /// An API key with the `admin` role (sent as `Authorization: Bearer`);
    /// it decides the service.
    #[arg(long, env = "CUBED_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// The service, when keys are not in force (`Fiware-Service`); default: the default service.
    #[arg(long, env = "CUBED_SERVICE", global = true)]
    pub service: Option<String>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Each type's retention and where it comes from (the default).
    Show,
    /// Keep the events of a type (or, without --type, of the whole service)
    /// for HORIZON: `30d`, `12h`, `2w`, `90m` or `forever`.
    Set {
        #[arg(long = "type")]
        event_type: Option<String>,
        horizon: String,
    },
    /// Remove the override of a type (or of the whole service): the
    /// server's defaults apply again.
    Unset {
        #[arg(long = "type")]
        event_type: Option<String>,
    },
}

/// How the MongoDB metric cache is kept (`--mongo-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MongoCacheFlag {
    /// A capped collection per type, as Cube made them.
    Capped,
    /// Regular collections with a TTL index (shardable).
    Ttl,
}

/// When the server requires keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthFlag {
    /// Once any key exists (`cubed keys create`); a server on an address
    /// other than loopback refuses to start without one.
    Auto,
    /// Always (with no key yet, every request is refused until one is made).
    On,
    /// Never: anyone who can reach the ports may read, write and delete.
    Off,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The data directory whose keys to manage (before or after the subcommand).
    #[arg(long, env = "CUBED_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Manage the keys of a MongoDB store instead (as `cubed serve --store`).
    #[arg(long, env = "CUBED_STORE", hide_env_values = true, global = true)]
    pub store: Option<String>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key; prints the key (shown only this once) on stdout, its
    /// record on stderr.
    Create {
        /// The service (tenant) the key is for; `default-service` for the
        /// default one (requests without `Fiware-Service`).
        #[arg(long)]
        service: String,
        /// `read` (metrics, events, types, status), `write` (puts) or
        /// `admin` (everything, including cache clearing, resets, results
        /// and keys).
        #[arg(long)]
        role: String,
    },
    /// List keys (never the keys themselves): id, service, role, created, revoked.
    List {
        /// Only this service's keys.
        #[arg(long)]
        service: Option<String>,
    },
    /// Revoke a key by its id (it stays listed, as revoked).
    Revoke {
        /// The key's id (the 16 hex digits after `cubed_`).
        id: String,
    },
}

/// What `cubed import` reads.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ImportFormat {
    /// e-metrics units and alarm-wrapped bundles: newline-delimited JSON or a JSON array.
    Emetrics,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The dump's format.
    #[arg(long, env = "CUBED_IMPORT_FORMAT", value_enum)]
    pub format: ImportFormat,
    /// The collector's base URL.
    #[arg(
        long,
        env = "CUBED_IMPORT_COLLECTOR",
        default_value = "http://127.0.0.1:1080"
    )]
    pub collector: String,
    /// The tenant (`Fiware-Service`) to import into; default: the default tenant.
    #[arg(long, env = "CUBED_IMPORT_SERVICE")]
    pub service: Option<String>,
    /// An API key with the `write` role (sent as `Authorization: Bearer`).
    #[arg(long, env = "CUBED_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Items (units or bundles) per request.
    #[arg(long, env = "CUBED_IMPORT_BATCH", default_value_t = 1000)]
    pub batch: usize,
    /// The dump file.
    pub file: PathBuf,
}

/// Size strings like `16MiB`, `1 MiB`, `512KiB`, `1000`.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "invalid size unit {other:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

/// A size, or `0`.
fn parse_size_or_zero(s: &str) -> Result<usize, String> {
    if s.trim() == "0" {
        Ok(0)
    } else {
        parse_size(s)
    }
}

/// A listener address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(OptionalAddr(None));
    }
    s.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|e| format!("invalid address {s:?}: {e}"))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the embedded store keeps its files.
    #[arg(long, env = "CUBED_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Keep everything in MongoDB instead (`mongodb://HOST:PORT/DB` or
    /// `mongodb+srv://…`; a replica set or sharded cluster), in Cube's own
    /// layout (README "MongoDB"). `--data-dir` is then unused.
    #[arg(long, env = "CUBED_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// The MongoDB metric cache: `capped` (Cube's capped collection per
    /// type, `--cache-per-type` bytes each) or `ttl` (regular collections,
    /// which can be sharded, whose bins expire `--mongo-cache-ttl` after
    /// they were written).
    #[arg(long, env = "CUBED_MONGO_CACHE", value_enum, default_value = "capped")]
    pub mongo_cache: MongoCacheFlag,
    /// With `--mongo-cache ttl`: how long a cached bin is kept, e.g. `7d`.
    #[arg(long, env = "CUBED_MONGO_CACHE_TTL", default_value = "7d", value_parser = parse_horizon)]
    pub mongo_cache_ttl: cubed::model::retention::Horizon,
    /// Collector listener (HTTP and WebSocket event put, collectd).
    #[arg(long, env = "CUBED_COLLECTOR_ADDR", default_value = "127.0.0.1:1080")]
    pub collector_addr: SocketAddr,
    /// Evaluator listener (types, events, metrics, dashboard).
    #[arg(long, env = "CUBED_EVALUATOR_ADDR", default_value = "127.0.0.1:1081")]
    pub evaluator_addr: SocketAddr,
    /// UDP collector (one JSON event per datagram), or `off`.
    #[arg(long, env = "CUBED_UDP_ADDR", default_value = "127.0.0.1:1180", value_parser = parse_optional_addr)]
    pub udp_addr: OptionalAddr,
    /// When a put is acknowledged: `process` (survives kill -9 of Cubed) or
    /// `sync` (also fdatasync'ed: survives power loss, slower).
    #[arg(long, env = "CUBED_DURABILITY", value_enum, default_value_t = Durability::Process)]
    pub durability: Durability,
    /// Largest HTTP request body.
    #[arg(long, env = "CUBED_MAX_BODY", default_value = "16MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// Largest WebSocket message.
    #[arg(long, env = "CUBED_MAX_WS_MESSAGE", default_value = "1MiB", value_parser = parse_size)]
    pub max_ws_message: usize,
    /// How often pending metric cache invalidations are flushed, in ms
    /// (a query also flushes those of the types it reads first).
    #[arg(long, env = "CUBED_INVALIDATION_INTERVAL_MS", default_value_t = 1000)]
    pub invalidation_interval_ms: u64,
    /// Store `cube_request` and `cube_compute` self-monitoring events, as Cube did (`true` or `false`).
    #[arg(long, env = "CUBED_SELF_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub self_events: bool,
    /// Turn off the gathering of transaction metrics (`/admin/metrics` and the
    /// transaction part of `/metrics` stay empty), as Orion's `-disableMetrics`.
    #[arg(long, env = "CUBED_DISABLE_METRICS")]
    pub disable_metrics: bool,
    /// How often each module's results document is written to the store, in ms.
    #[arg(long, env = "CUBED_RESULTS_INTERVAL_MS", default_value_t = 10_000)]
    pub results_interval_ms: u64,
    /// Drop the whole metric cache at start-up (everything is recomputed on demand).
    #[arg(long, env = "CUBED_RESET_CACHE")]
    pub reset_cache: bool,
    /// Metric cache cap per event type.
    #[arg(long, env = "CUBED_CACHE_PER_TYPE", default_value = "10MiB", value_parser = parse_size)]
    pub cache_per_type: usize,
    /// Metric cache cap across all types and services: a type's cache
    /// grows only while the total is under it (it can always reuse its own
    /// space).
    #[arg(long, env = "CUBED_CACHE_BUDGET", default_value = "1GiB", value_parser = parse_size)]
    pub cache_budget: usize,
    /// Most distinct expressions (leaf sources) cached per service; the
    /// bins of more are computed but not cached.
    #[arg(long, env = "CUBED_MAX_CACHED_EXPRESSIONS", default_value_t = cubed::limits::DEFAULT_MAX_CACHED_EXPRESSIONS)]
    pub max_cached_expressions: usize,
    /// Most memory one metric request may hold for the values `median`,
    /// percentiles and `distinct` keep until a bin is complete (beyond it:
    /// `422 query too large`).
    #[arg(long, env = "CUBED_MAX_QUERY_MEMORY", default_value = "256MiB", value_parser = parse_size)]
    pub max_query_memory: usize,
    /// Memory for the storage engine's block cache (decompressed blocks of
    /// events and cached metrics), e.g. `256MiB`.
    #[arg(long, env = "CUBED_BLOCK_CACHE", default_value = "256MiB", value_parser = parse_size)]
    pub block_cache: usize,
    /// Longest one metric request may take, in ms (`503 query timeout`
    /// beyond it, over HTTP and WebSocket alike).
    #[arg(long, env = "CUBED_QUERY_TIMEOUT_MS", default_value_t = cubed::limits::DEFAULT_QUERY_TIMEOUT_MS)]
    pub query_timeout_ms: u64,
    /// Longest a request body may take to arrive, in ms (`408 request
    /// timeout` beyond it): a client that sends a body slowly or stops
    /// holds a connection no longer.
    #[arg(long, env = "CUBED_BODY_TIMEOUT_MS", default_value_t = cubed::limits::DEFAULT_BODY_TIMEOUT_MS)]
    pub body_timeout_ms: u64,
    /// Most bytes of answers queued for one evaluator WebSocket: a client
    /// that stops reading is disconnected once its answers pass this.
    #[arg(long, env = "CUBED_MAX_WS_QUEUE", default_value = "16MiB", value_parser = parse_size)]
    pub max_ws_queue: usize,
    /// Most bytes of answers queued for all evaluator WebSockets together:
    /// past it, a socket with more than a 256th of this (at least 1 MiB)
    /// queued, or more than 64 KiB while it is not reading, is disconnected.
    #[arg(long, env = "CUBED_MAX_WS_QUEUE_TOTAL", default_value = "64MiB", value_parser = parse_size)]
    pub max_ws_queue_total: usize,
    /// Most requests being answered at once on one evaluator WebSocket
    /// (live event streams included); beyond it a request gets
    /// `{"error": "too many requests"}`.
    #[arg(long, env = "CUBED_MAX_WS_IN_FLIGHT", default_value_t = cubed::limits::DEFAULT_MAX_WS_IN_FLIGHT)]
    pub max_ws_in_flight: usize,
    /// Most live event streams at once, server-wide (distinct tenant,
    /// expression and delay; subscribers to the same one share its poll).
    #[arg(long, env = "CUBED_MAX_LIVE_STREAMS", default_value_t = cubed::limits::DEFAULT_MAX_LIVE_STREAMS)]
    pub max_live_streams: usize,
    /// Free space that puts and metric cache writes leave on the disk of the
    /// data directory: a put that would leave less is refused with `507 disk
    /// full` (nothing stored) and accepted again as soon as space is freed;
    /// `0` turns the check off.
    #[arg(long, env = "CUBED_MIN_FREE_DISK", default_value = "256MiB", value_parser = parse_size_or_zero)]
    pub min_free_disk: usize,
    /// When API keys are required: `auto` (once any key exists; on an
    /// address other than loopback the server will not start without one),
    /// `on`, or `off` (open to anyone who can reach the ports).
    #[arg(long, env = "CUBED_AUTH", value_enum, default_value_t = AuthFlag::Auto)]
    pub auth: AuthFlag,
    /// Most groups one grouped reduce may have over a request's range (a
    /// request of n bins: at most 200,000 / n, if that is fewer); more is
    /// `422 query too large`.
    #[arg(long, env = "CUBED_MAX_GROUPS", default_value_t = cubed::limits::DEFAULT_MAX_GROUPS)]
    pub max_groups: usize,
    /// Most scans of events computing metric bins at once, server-wide
    /// (more wait for a turn within their request's deadline).
    #[arg(long, env = "CUBED_MAX_COMPUTATIONS", default_value_t = cubed::limits::DEFAULT_MAX_COMPUTATIONS)]
    pub max_computations: usize,
    /// Most bins of metric requests evaluated at once, server-wide (a
    /// request counts its distinct reduces times its bins; at least
    /// 200,000): more wait their turn within their deadline.
    #[arg(long, env = "CUBED_MAX_BINS_IN_FLIGHT", default_value_t = cubed::limits::DEFAULT_MAX_BINS_IN_FLIGHT)]
    pub max_bins_in_flight: usize,
    /// How long events are kept: `30d`, `12h`, `2w`, `90m` or `forever`
    /// (the default, as Cube). Older events are deleted in the background,
    /// hour by hour, with their cached bins; a put of an event already older
    /// is refused. Overridable per service and type (`cubed retention`).
    #[arg(long, env = "CUBED_RETENTION", default_value = "forever", value_parser = parse_horizon)]
    pub retention: cubed::model::retention::Horizon,
    /// How long Cubed's own events (`cube_request`, `cube_compute`) and
    /// results documents are kept.
    #[arg(long, env = "CUBED_SELF_RETENTION", default_value = "7d", value_parser = parse_horizon)]
    pub self_retention: cubed::model::retention::Horizon,
    /// How often old events are looked for and deleted, in ms.
    #[arg(long, env = "CUBED_RETENTION_INTERVAL_MS", default_value_t = cubed::limits::DEFAULT_RETENTION_INTERVAL_MS)]
    pub retention_interval_ms: u64,
    /// Most services (tenants) with events; a put that would add one more
    /// gets `429 too many services`.
    #[arg(long, env = "CUBED_MAX_SERVICES", default_value_t = cubed::limits::DEFAULT_MAX_SERVICES)]
    pub max_services: usize,
    /// Most event types per service (Cubed's own not counted); a put that
    /// would add one more gets `429 too many types`.
    #[arg(long, env = "CUBED_MAX_TYPES", default_value_t = cubed::limits::DEFAULT_MAX_TYPES)]
    pub max_types: usize,
    /// Most HTTP connections each listener holds open at once (a new one
    /// beyond it gets `503 too many connections` and is closed).
    #[arg(long, env = "CUBED_MAX_CONNECTIONS", default_value_t = cubed::limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most WebSockets open at once, server-wide (an upgrade beyond it gets
    /// `503 too many websockets`).
    #[arg(long, env = "CUBED_MAX_WEBSOCKETS", default_value_t = cubed::limits::DEFAULT_MAX_WEBSOCKETS)]
    pub max_websockets: usize,
    /// Longest a client may take to send a request's headers, in ms (the
    /// connection is closed beyond it).
    #[arg(long, env = "CUBED_HEADER_TIMEOUT_MS", default_value_t = cubed::limits::DEFAULT_HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: u64,
    /// Browser origins (comma-separated, e.g. `https://dash.example.com`; `*`
    /// for any) allowed to change data and open WebSockets besides a page's
    /// own origin; other origins may only GET.
    #[arg(long, env = "CUBED_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// With keys in force, accept UDP datagrams that carry a write key in a
    /// `"key"` field (without this flag they are dropped then).
    #[arg(long, env = "CUBED_UDP_KEYED")]
    pub udp_keyed: bool,
}

fn parse_horizon(text: &str) -> Result<cubed::model::retention::Horizon, String> {
    cubed::model::retention::Horizon::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn size_defaults_are_the_documented_limits() {
        let cli = Cli::try_parse_from(["cubed", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.max_body, cubed::limits::DEFAULT_MAX_BODY_BYTES);
        assert_eq!(
            args.max_ws_message,
            cubed::limits::DEFAULT_MAX_WS_MESSAGE_BYTES
        );
        assert_eq!(args.max_ws_queue, cubed::limits::DEFAULT_MAX_WS_QUEUE_BYTES);
        assert_eq!(
            args.min_free_disk,
            cubed::limits::DEFAULT_MIN_FREE_DISK_BYTES
        );
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        assert!(parse_size("0").is_err());
    }
}
