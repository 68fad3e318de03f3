//! The storage contract: what the collector and evaluator need from a backend.
//!
//! Calls are synchronous (storage engines are); async callers cross over with
//! `tokio::task::spawn_blocking` in `service/`. Every backend passes the one
//! contract suite in `tests/storage_contract.rs`.

pub mod columns;
pub mod embedded;
pub mod keys;

use std::ops::ControlFlow;

use crate::model::{EventData, NewEvent, Service, StoredEvent};

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
    /// The batch was written (and is visible to reads) but the sync that
    /// `--durability sync` promises failed; `outcome` says what was written,
    /// so that its cached bins are still invalidated. Report as 500.
    #[error("written but not synced to disk: {reason}")]
    NotSynced {
        outcome: Box<PutOutcome>,
        reason: String,
    },
}

impl From<keys::EncodeError> for StoreError {
    fn from(e: keys::EncodeError) -> Self {
        StoreError::TooLarge(e.to_string())
    }
}

/// A durable note, written atomically with a put, that the cached bins
/// around some of its events may be stale. It is removed atomically with
/// the invalidation of those bins ([`MetricCache::invalidate`]); a store
/// that opens with notes left (a crash came between) invalidates their
/// bins before it serves anything. Opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirtyMark(pub Vec<u8>);

/// The positions of a block's events replaced by upserts: a bitmap, so
/// each lookup costs the same however many were replaced.
#[derive(Debug, Default, Clone)]
pub struct Replaced(Vec<u64>);

impl Replaced {
    pub fn insert(&mut self, i: u32) {
        let (word, bit) = (i as usize / 64, i % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

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
    fn put(&self, service: &Service, events: &[NewEvent<'_>]) -> Result<PutOutcome, StoreError>;

    /// Visits the events of one type with `start <= time < stop` in `order`
    /// until `visit` breaks.
    fn scan(
        &self,
        service: &Service,
        event_type: &str,
        start: i64,
        stop: i64,
        order: Order,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// Visits the events of one type with `start <= time < stop` hour by
    /// hour (every event of an hour, [`keys::bucket`], before any of a later
    /// one; in no particular order within an hour), as (time, data JSON
    /// text) — without decoding, for the evaluator, which finishes the bins
    /// of an hour once the scan has moved past it.
    fn scan_data(
        &self,
        service: &Service,
        event_type: &str,
        start: i64,
        stop: i64,
        visit: &mut dyn FnMut(i64, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// Visits the blocks holding events of one type in `[start, stop)` (a
    /// block may also hold events outside it), with the positions of its
    /// replaced events: hour by hour, as `scan_data` (a block holds the
    /// events of one hour). Backends that do not store blocks get this
    /// default: one block per event, built from [`scan_data`](Self::scan_data).
    fn scan_blocks(
        &self,
        service: &Service,
        event_type: &str,
        start: i64,
        stop: i64,
        visit: &mut dyn FnMut(&keys::Block<'_>, &Replaced) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let mut bad = false;
        let none = Replaced::default();
        self.scan_data(service, event_type, start, stop, &mut |t, data| {
            let Ok(text) = std::str::from_utf8(data) else {
                bad = true;
                return ControlFlow::Break(());
            };
            let data = EventData::Json(text.into());
            let Ok(bytes) = keys::encode_block([(t, None, &data)].into_iter()) else {
                bad = true;
                return ControlFlow::Break(());
            };
            match keys::Block::decode(&bytes) {
                Some(block) => visit(&block, &none),
                None => {
                    bad = true;
                    ControlFlow::Break(())
                }
            }
        })?;
        if bad {
            return Err(StoreError::Corrupt("event data is not UTF-8".into()));
        }
        Ok(())
    }

    /// The service's event types, sorted.
    fn types(&self, service: &Service) -> Result<Vec<String>, StoreError>;

    /// Makes everything acknowledged so far durable against power loss, and
    /// stops background work. Called on clean shutdown.
    fn flush(&self) -> Result<(), StoreError>;
}

/// One cached metric bin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachedBin {
    pub time: i64,
    /// `None`: the reduce had no value for this bin (e.g. median of nothing).
    pub value: Option<f64>,
}

/// The metric cache: per service and type, entries keyed by (leaf source,
/// tier, bin time) with a value and a validity flag. Capped in bytes per type;
/// when full, the oldest entries go first. Invalid entries are never returned.
pub trait MetricCache: Send + Sync + 'static {
    /// The valid cached bins of `source` at `tier` with `start <= time < stop`, by time.
    fn get(
        &self,
        service: &Service,
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
        service: &Service,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
    ) -> Result<(), StoreError>;

    /// Drops every cached bin of every service (`cubed serve --reset-cache`).
    fn clear(&self) -> Result<(), StoreError>;

    /// Drops every cached bin of one service (`DELETE /1.0/metric/cache`).
    fn clear_service(&self, service: &Service) -> Result<(), StoreError>;

    /// Marks invalid, for every source, the bins of `tiers` that contain any
    /// of `times`, and removes `marks`, atomically: either both happen or
    /// neither.
    fn invalidate(
        &self,
        service: &Service,
        event_type: &str,
        tiers: &[i64],
        times: &[i64],
        marks: &[DirtyMark],
    ) -> Result<(), StoreError>;
}
