//! The storage contract: what the collector and evaluator need from a backend.
//!
//! Calls are synchronous (storage engines are); async callers cross over with
//! `tokio::task::spawn_blocking` in `service/`. Every backend passes the one
//! contract suite in `tests/storage_contract.rs`. The types here belong to
//! the contract; a backend's own formats stay inside its module (the
//! embedded backend's blocks and columns in `embedded/`).

pub mod embedded;
pub mod mongo;
pub mod rows;

use std::ops::ControlFlow;

use crate::model::{NewEvent, StoredEvent, Tenant};
use crate::plan::{LeafPlan, Scalar};

/// Why a storage call failed. What the caller should do is in each variant's doc.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine failed (disk full, IO error, corruption). Report as 500 and
    /// alert an operator; retrying the same call may succeed after they act.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored record could not be decoded: the data directory was written by
    /// something else or is damaged.
    #[error("corrupt record in store: {0}")]
    Corrupt(String),
    /// The store is shutting down; the call was not carried out.
    #[error("store is closed")]
    Closed,
    /// What was to be written does not fit a width of the stored layout (a
    /// key over the engine's limit, a block over 4 GiB). Nothing was
    /// written. The limits on events keep every client's put below these;
    /// report as a client error naming the limit.
    #[error("too large to store: {0}")]
    TooLarge(String),
    /// The disk holding the store has less free space than the reserve
    /// (`--min-free-disk`) would leave after this write: nothing was
    /// written. Writes succeed again once space is freed (no restart).
    /// Report as 507.
    #[error(
        "the disk is full: {available} bytes free, the reserve is {reserve} bytes (--min-free-disk); nothing was written"
    )]
    DiskFull { available: u64, reserve: u64 },
    /// The engine failed a write (the disk filled up past the reserve, an
    /// IO error) and refuses writes from then on so as not to lose what it
    /// acknowledged. This call was not acknowledged; like a write in flight
    /// at a crash, it may or may not be found later. Reads still work. The
    /// embedded store reopens itself once the disk has room
    /// (`embedded::reopen`), so a later write succeeds. Report as 503.
    #[error(
        "the store failed a write ({0}); it is reopened once the disk has room: retry (with ids, a retry stores an event once)"
    )]
    Failed(String),
    /// The batch was written (and is visible to reads) but the sync that
    /// `--durability sync` promises failed; `outcome` says what was written,
    /// so that its cached bins are still invalidated. Report as 500.
    #[error("written but not synced to disk: {reason}")]
    NotSynced {
        outcome: Box<PutOutcome>,
        reason: String,
    },
    /// The put would create a service or an event type beyond the
    /// store's cap (`what` names it, e.g. "event types in this service",
    /// with the flag); nothing was written. Report as 429: a retry
    /// succeeds once retention has removed a type or an operator raised
    /// the cap.
    #[error("too many {what} (the limit is {limit}, {flag}); nothing was written")]
    TooMany {
        what: &'static str,
        limit: usize,
        flag: &'static str,
    },
}

/// A durable note, written atomically with a put, that the cached bins
/// around some of its events may be stale. It is removed atomically with
/// the invalidation of those bins ([`MetricCache::invalidate`]); a store
/// that opens with notes left (a crash came between) invalidates their
/// bins before it serves anything. Opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirtyMark(pub Vec<u8>);

/// What a put did, for cache invalidation: the times written per type, for
/// each upsert that replaced an earlier event that event's (type, old
/// time), and the dirty marks the put wrote per type (to be cleared when
/// those times are invalidated).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PutOutcome {
    pub written: std::collections::BTreeMap<String, Vec<i64>>,
    pub replaced: Vec<(String, i64)>,
    pub marks: Vec<(String, DirtyMark)>,
}

/// Scan direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Ascending,
    /// Newest first.
    Descending,
}

/// The event store.
pub trait EventStore: Send + Sync + 'static {
    /// Stores a batch atomically: all of it or none, with a [`DirtyMark`]
    /// for the bins it touches. Returns once the batch is durable as
    /// configured (by default: it survives `kill -9`). An event whose `id`
    /// (canonical text, see `model::event::canonical_id`) was seen before for
    /// its type replaces that event. Refuses with [`StoreError::TooLarge`],
    /// writing nothing, what its layout cannot hold.
    fn put(&self, tenant: &Tenant, events: &[NewEvent<'_>]) -> Result<PutOutcome, StoreError>;

    /// Visits the events of one type with `start <= time < stop` in `order`
    /// until `visit` breaks.
    fn scan(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        order: Order,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// Visits the events of one type with `start <= time < stop` hour by
    /// hour (every event of an hour before any of a later one; in no
    /// particular order within an hour), as (time, data JSON text), without
    /// decoding: what [`select`](Self::select) reads by default.
    fn scan_data(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        visit: &mut dyn FnMut(i64, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// What the evaluator reads: the events of the selection's type with
    /// `start <= time < stop` that pass its leaf's filter, each with the
    /// leaf's value, in batches, hour by hour (every event of an hour
    /// before any of a later one), with a [`Selected::Before`] at least
    /// at the start of each hour that has events, until `visit` breaks.
    /// The filter's semantics are `plan::filter`'s (MongoDB's). A backend
    /// that can evaluate filters itself (columns, a database query)
    /// overrides this; the default reads [`scan_data`](Self::scan_data)
    /// and evaluates each event with [`rows::RowSelector`].
    fn select(
        &self,
        tenant: &Tenant,
        selection: &Selection<'_>,
        visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let leaf = selection.leaf;
        rows::select_rows(leaf, visit, |each| {
            self.scan_data(
                tenant,
                &leaf.event_type,
                selection.start,
                selection.stop,
                each,
            )
        })
    }

    /// The tenant's event types, sorted.
    fn types(&self, tenant: &Tenant) -> Result<Vec<String>, StoreError>;

    /// Whether the tenant has events of this type (it is in [`types`](Self::types)).
    fn has_type(&self, tenant: &Tenant, event_type: &str) -> Result<bool, StoreError> {
        Ok(self.types(tenant)?.iter().any(|t| t == event_type))
    }

    /// Every tenant that has at least one event type.
    fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;

    /// Deletes the events of one type older than `before`, in the
    /// backend's granularity ([`Expired::cutoff`]: the embedded store
    /// deletes whole hours, so an event goes within an hour after `before`
    /// passes it), with what indexes them (ids, so that an id seen again
    /// is stored as new). A type left without events is forgotten (it
    /// leaves [`types`](Self::types)). Does not touch the metric cache: the
    /// caller expires its bins with [`MetricCache::expire_bins`].
    fn expire(&self, tenant: &Tenant, event_type: &str, before: i64)
    -> Result<Expired, StoreError>;

    /// Gives the disk space of expired events back to the filesystem when
    /// enough has expired to be worth it (the embedded store compacts once
    /// what expired since the last compaction is a quarter of what it
    /// holds). Called after each retention sweep.
    fn reclaim(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Per type of the tenant: live events, bytes stored and the oldest
    /// event's time. Reads every stored event's block: as costly as a
    /// full scan.
    fn stats(&self, tenant: &Tenant) -> Result<Vec<TypeStats>, StoreError>;

    /// The retention overrides set with
    /// [`set_retention_override`](Self::set_retention_override).
    fn retention_overrides(&self) -> Result<Vec<RetentionOverride>, StoreError>;

    /// Sets (`Some`) or removes (`None`) the retention of one type of a
    /// tenant, or of the whole tenant (`event_type: None`), as text
    /// (`model::retention::Horizon`'s). Durable when it returns.
    fn set_retention_override(
        &self,
        tenant: &Tenant,
        event_type: Option<&str>,
        horizon: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Makes everything acknowledged so far durable against power loss, and
    /// stops background work. Called on clean shutdown.
    fn flush(&self) -> Result<(), StoreError>;

    /// What the engine holds in this process's memory now (zeros for a
    /// backend that holds nothing of its own).
    fn memory(&self) -> StoreMemory {
        StoreMemory::default()
    }
}

/// Memory the storage engine holds, as [`EventStore::memory`] reports it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreMemory {
    /// Bytes of writes in in-memory tables (active and awaiting flush).
    pub memtable_bytes: u64,
    /// Bytes of blocks kept in the engine's block cache.
    pub block_cache_bytes: u64,
}

/// What [`EventStore::expire`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// No event of the type older than this is left (at most the `before`
    /// asked for).
    pub cutoff: i64,
    /// Events deleted (replaced ones not counted).
    pub events: u64,
    /// Bytes of stored events deleted (keys and values).
    pub bytes: u64,
    /// The type had no events left and was forgotten.
    pub type_removed: bool,
}

/// One type's figures ([`EventStore::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeStats {
    pub event_type: String,
    /// Live events (replaced ones not counted).
    pub events: u64,
    /// Bytes of its stored blocks (keys and values, before the engine's
    /// compression).
    pub bytes: u64,
    /// The oldest live event's time.
    pub oldest: Option<i64>,
}

/// One retention override as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionOverride {
    pub tenant: Tenant,
    /// `None`: the whole tenant.
    pub event_type: Option<String>,
    /// `model::retention::Horizon` text.
    pub horizon: String,
}

/// What the evaluator asks of one type's events ([`EventStore::select`]):
/// those of `leaf.event_type` with `start <= time < stop` that pass
/// `leaf.filter`, with `leaf`'s value. A database backend can push both
/// down: [`EventFilter::query_document`](crate::plan::EventFilter::query_document) is the
/// filter as Cube's MongoDB query, [`LeafPlan::projection`] the fields
/// the value reads.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    pub leaf: &'a LeafPlan,
    pub start: i64,
    pub stop: i64,
    /// The width of the bins the caller reduces into (bins start at
    /// `start` plus multiples of it), if it bins: a backend may then give
    /// [`Selected::Partials`] for a pyramidal reduce.
    pub step: Option<i64>,
}

/// One batch of what [`EventStore::select`] found.
#[derive(Debug)]
pub enum Selected<'a> {
    /// Every selected event with a time before this one has been given:
    /// the bins that end by then are complete.
    Before(i64),
    /// Selected events whose value is a number other than NaN (1 for a
    /// leaf without a value): (time, value).
    Numbers(&'a [(i64, f64)]),
    /// Selected events whose value is anything else (a string, a bool,
    /// NaN from arithmetic on one): (time, value). Of the reduces, only
    /// `count` and `distinct` take these into account.
    Values(&'a [(i64, Scalar)]),
    /// Only for a selection with a `step` and a leaf whose reduce is
    /// pyramidal (`sum`, `min`, `max`, `count`: `metric::reduce::is_pyramidal`),
    /// and only if the backend computed them itself (a database's
    /// aggregation): (bin start, the reduce over some of that bin's
    /// selected events — for `count`, how many). Every selected event is
    /// given once, as an event or inside one partial; a bin without
    /// events need not appear. No [`Before`](Selected::Before) is owed
    /// for them.
    Partials(&'a [(i64, f64)]),
}

/// One cached metric bin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachedBin {
    pub time: i64,
    /// `None`: the reduce had no value for this bin (e.g. median of nothing).
    pub value: Option<f64>,
}

/// One cached bin of a grouped reduce: the value of each group with events
/// in the bin, by group name (`None`: the reduce had no value).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedGroups {
    pub time: i64,
    pub groups: Vec<(String, Option<f64>)>,
}

/// The metric cache: per tenant and type, entries keyed by (leaf source,
/// tier, bin time) with a value and a validity flag. Capped in bytes per type;
/// when full, the oldest entries go first. Invalid entries are never returned.
pub trait MetricCache: Send + Sync + 'static {
    /// The valid cached bins of `source` at `tier` with `start <= time < stop`, by time.
    fn get(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
    ) -> Result<Vec<CachedBin>, StoreError>;

    /// Stores (or overwrites, as valid) computed bins, as many of the newest
    /// as fit the type's cap (a put never holds more than the cap); the
    /// oldest entries go to make room. Refuses a key too long to store.
    fn put(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
    ) -> Result<(), StoreError>;

    /// The valid cached bins of a grouped reduce (`source` is its canonical
    /// text, `.group(…)` included), as [`get`](Self::get) for the others.
    /// A backend that does not cache grouped bins has none (the default).
    fn get_grouped(
        &self,
        _tenant: &Tenant,
        _event_type: &str,
        _source: &str,
        _tier: i64,
        _start: i64,
        _stop: i64,
    ) -> Result<Vec<CachedGroups>, StoreError> {
        Ok(Vec::new())
    }

    /// Stores grouped bins as [`put`](Self::put) stores bins, within the
    /// same caps, invalidated by the same puts. The default stores nothing
    /// (such a backend computes grouped bins on every request).
    fn put_grouped(
        &self,
        _tenant: &Tenant,
        _event_type: &str,
        _source: &str,
        _tier: i64,
        _bins: &[CachedGroups],
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Drops every cached bin of every tenant (`cubed serve --reset-cache`).
    fn clear(&self) -> Result<(), StoreError>;

    /// Drops every cached bin of one tenant (`DELETE /1.0/metric/cache`).
    fn clear_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;

    /// Drops the cached bins of one type, at every tier and for every
    /// source, whose time is before `before` (retention: they summarise
    /// expired events). The number dropped.
    fn expire_bins(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<u64, StoreError>;

    /// Marks invalid, for every source, the bins of `tiers` that contain any
    /// of `times`, and removes `marks`, atomically: either both happen or
    /// neither.
    fn invalidate(
        &self,
        tenant: &Tenant,
        event_type: &str,
        tiers: &[i64],
        times: &[i64],
        marks: &[DirtyMark],
    ) -> Result<(), StoreError>;

    /// Whether other processes write events and cached bins to the same
    /// store (a shared database): then the evaluator reads
    /// [`shared_generation`](Self::shared_generation) before it computes
    /// bins and writes them with [`put_as_of`](Self::put_as_of). The
    /// in-process guard (`service::invalidation`) covers a store only this
    /// process writes.
    fn shares_writes(&self) -> bool {
        false
    }

    /// How many puts of events of the type every process has made so far,
    /// as the store counts them (in the put's own atomic batch); `None` for
    /// a store that does not count.
    fn shared_generation(
        &self,
        _tenant: &Tenant,
        _event_type: &str,
    ) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// [`put`](Self::put) of bins computed from the events as they were
    /// at `generation` (from [`shared_generation`](Self::shared_generation),
    /// read before the events were): if a put of the type came since, in
    /// any process, the bins written are marked invalid again and the
    /// answer is `false`.
    fn put_as_of(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
        _generation: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.put(tenant, event_type, source, tier, bins)?;
        Ok(true)
    }
}

/// Where API keys are kept (their hashes, never the keys). Part of the
/// contract so that every backend keeps keys where its processes all see
/// them: the embedded backend in a file beside its data
/// ([`embedded::credentials::KeyFile`], so that `cubed keys` works while a
/// server runs), a database backend in a collection.
pub trait KeyStore: Send + Sync + 'static {
    /// Every record, revoked ones included, in creation order.
    fn keys(&self) -> Result<Vec<crate::model::access::KeyRecord>, StoreError>;
    /// Adds a record (its id must be new: `TooLarge` is not the answer for
    /// a taken id, `Engine` is). Durable when it returns.
    fn add_key(&self, record: crate::model::access::KeyRecord) -> Result<(), StoreError>;
    /// Marks the record with this id revoked at `now_ms`; `false` if there
    /// is no such record (or it was revoked already). Durable when it
    /// returns.
    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
}
