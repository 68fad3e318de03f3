//! `cubed serve`: open the store, bind the listeners, run until SIGINT/SIGTERM.

use std::sync::Arc;

use cubed::model::SystemClock;
use cubed::model::retention::Horizon;
use cubed::server::origin::OriginPolicy;
use cubed::server::{self, App, Limits, Listeners, Options};
use cubed::service::{Auth, AuthMode, Services};
use cubed::storage::embedded::EmbeddedStore;
use cubed::storage::embedded::credentials::KeyFile;
use cubed::storage::embedded::reopen::Reopening;
use cubed::storage::mongo::{CacheMode, MongoStore};
use cubed::storage::{EventStore, KeyStore, MetricCache};

use crate::cli::{AuthFlag, MongoCacheFlag, ServeArgs};

pub fn run(args: ServeArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    // Connecting to MongoDB blocks: off the runtime's worker.
    let (events, cache, keys) = tokio::task::block_in_place(|| open_store(&args))?;
    if args.reset_cache {
        tokio::task::block_in_place(|| cache.clear())
            .map_err(|e| format!("resetting the metric cache: {e}"))?;
        tracing::info!("metric cache reset");
    }
    let mode = match args.auth {
        AuthFlag::Auto => AuthMode::Auto,
        AuthFlag::On => AuthMode::On,
        AuthFlag::Off => AuthMode::Off,
    };
    let auth = match mode {
        AuthMode::Off => Auth::off(),
        mode => tokio::task::block_in_place(|| Auth::new(keys, mode))
            .map_err(|e| format!("reading the API keys: {e}"))?,
    };
    let exposed: Vec<String> = [
        Some(args.collector_addr),
        Some(args.evaluator_addr),
        args.udp_addr.0,
    ]
    .into_iter()
    .flatten()
    .filter(|a| !a.ip().is_loopback())
    .map(|a| a.to_string())
    .collect();
    if !exposed.is_empty() {
        match mode {
            AuthMode::Auto if !auth.enabled() => {
                return Err(format!(
                    "refusing to listen on {} without API keys: anyone who can reach it could read, write and delete every service's data. Create a key first (`cubed keys create --data-dir {} --service S --role admin`), or pass --auth off to serve openly on purpose",
                    exposed.join(", "),
                    args.data_dir.display()
                ));
            }
            AuthMode::Off => tracing::warn!(
                addresses = %exposed.join(", "),
                "--auth off: serving without keys on addresses other than loopback"
            ),
            _ => {}
        }
    }
    let udp_addr = if auth.enabled() && !args.udp_keyed && args.udp_addr.0.is_some() {
        tracing::info!(
            "UDP collector off: API keys are in force (--udp-keyed takes datagrams carrying a key)"
        );
        None
    } else {
        args.udp_addr.0
    };
    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("binding {addr}: {e}"))
    };
    let listeners = Listeners {
        collector: bind(args.collector_addr).await?,
        evaluator: bind(args.evaluator_addr).await?,
        udp: match udp_addr {
            Some(addr) => Some(
                tokio::net::UdpSocket::bind(addr)
                    .await
                    .map_err(|e| format!("binding udp {addr}: {e}"))?,
            ),
            None => None,
        },
    };
    let limits = Limits {
        max_body_bytes: args.max_body,
        max_ws_message_bytes: args.max_ws_message,
        body_timeout: std::time::Duration::from_millis(args.body_timeout_ms.max(1)),
        max_ws_queue_bytes: args.max_ws_queue,
        max_ws_queue_total_bytes: args.max_ws_queue_total,
        max_ws_in_flight: args.max_ws_in_flight.max(1),
        max_connections: args.max_connections.max(1),
        max_websockets: args.max_websockets.max(1),
        header_timeout: std::time::Duration::from_millis(args.header_timeout_ms.max(1)),
    };
    let options = Options {
        limits,
        invalidation_interval: std::time::Duration::from_millis(
            args.invalidation_interval_ms.max(1),
        ),
        self_events: args.self_events,
        metrics: !args.disable_metrics,
        results_interval: std::time::Duration::from_millis(args.results_interval_ms.max(100)),
        max_query_memory: args.max_query_memory,
        max_live_streams: args.max_live_streams.max(1),
        query_timeout: std::time::Duration::from_millis(args.query_timeout_ms.max(1)),
        udp_keyed: args.udp_keyed,
        max_computations: args.max_computations.max(1),
        max_groups: args.max_groups.max(1),
        max_bins_in_flight: args.max_bins_in_flight,
        retention: args.retention,
        self_retention: args.self_retention,
        retention_interval: std::time::Duration::from_millis(args.retention_interval_ms.max(100)),
        ..Options::default()
    };
    let mut services = tokio::task::block_in_place(|| {
        Services::new(events, cache, Arc::new(SystemClock), options.services())
    });
    let keys_in_force = auth.enabled();
    services.auth = Arc::new(auth);
    let origins = OriginPolicy {
        allowed: args
            .cors_origin
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        exposed: !exposed.is_empty(),
    };
    let app = App::with_origins(services, options, origins);
    let addr = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string())
    };
    let udp = listeners
        .udp
        .as_ref()
        .and_then(|u| u.local_addr().ok())
        .map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(
        collector = %addr(&listeners.collector),
        evaluator = %addr(&listeners.evaluator),
        udp = %udp,
        store = %store_name(&args),
        durability = ?args.durability,
        auth = ?mode,
        keys_in_force,
        "cubed serving"
    );
    server::run(listeners, app, shutdown_signal()).await;
    Ok(())
}

type Opened = (Arc<dyn EventStore>, Arc<dyn MetricCache>, Arc<dyn KeyStore>);

/// The embedded store in `--data-dir`, or MongoDB with `--store`.
fn open_store(args: &ServeArgs) -> Result<Opened, String> {
    let (cache_cap, block_cache) = (args.cache_per_type as u64, args.block_cache as u64);
    let (max_services, max_types) = (args.max_services.max(1), args.max_types.max(1));
    if let Some(url) = &args.store {
        let mode = match args.mongo_cache {
            MongoCacheFlag::Capped => CacheMode::Capped,
            MongoCacheFlag::Ttl => CacheMode::Ttl {
                ttl_secs: match args.mongo_cache_ttl {
                    Horizon::Ms(ms) => (ms / 1000).max(1) as u64,
                    Horizon::Forever => {
                        return Err("--mongo-cache-ttl: a duration, not forever".into());
                    }
                },
            },
        };
        let store = MongoStore::connect(url, cache_cap, mode)
            .map_err(|e| format!("connecting to MongoDB: {e}"))?;
        store.set_type_limits(max_services, max_types);
        let store = Arc::new(store);
        return Ok((store.clone(), store.clone(), store));
    }
    let (dir, durability) = (args.data_dir.clone(), args.durability);
    let min_free_disk = args.min_free_disk as u64;
    let (cache_budget, max_sources) = (args.cache_budget as u64, args.max_cached_expressions);
    // Reopened in place if the engine fails (see storage::embedded::reopen).
    let store = Reopening::new(Box::new(move || {
        let store = EmbeddedStore::open_with_block_cache(&dir, durability, cache_cap, block_cache)?;
        store.set_min_free_disk(min_free_disk);
        store.set_type_limits(max_services, max_types);
        store.set_cache_limits(cache_budget, max_sources);
        Ok(store)
    }))
    .map_err(|e| format!("opening the store in {}: {e}", args.data_dir.display()))?;
    let store = Arc::new(store);
    Ok((
        store.clone(),
        store,
        Arc::new(KeyFile::in_dir(&args.data_dir)),
    ))
}

/// Where the data is, for the log: never the URL's password.
fn store_name(args: &ServeArgs) -> String {
    match &args.store {
        Some(url) => match url.rsplit_once('@') {
            Some((_, host)) => format!("mongodb://…@{host}"),
            None => url.clone(),
        },
        None => args.data_dir.display().to_string(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
