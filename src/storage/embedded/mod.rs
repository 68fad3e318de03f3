//! The embedded backend, on fjall (an LSM-tree storage engine).
//!
//! Why fjall rather than redb (README "Storage"): an acknowledged put must
//! survive `kill -9`; fjall gets that by writing its journal to the OS, while
//! a redb commit survives a crash only if it is fsynced. Events are stored in
//! blocks, one per put, type and hour ([`keys`], [`blocks`]), with typed
//! columns ([`columns`]) that [`select`] evaluates a leaf's filter and value
//! over without parsing JSON. These formats are this backend's own: nothing
//! outside `storage/embedded/` reads them (ARCHITECTURE.md).
//!
//! Keyspaces: `events` (blocks), `ids` (id → current block and position, for
//! upserts), `deleted` (tombstones of replaced events), `types` (`tenant 0x00
//! type`), `metrics` (the metric cache), `metric_log` (cache insertion order,
//! for the byte cap), `metric_sources` (the sources cached per type, for
//! invalidation), `dirty` (one [`DirtyMark`] per block written and per
//! bucket an upsert left, until its bins are invalidated).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde_json::Value;

pub mod blocks;
mod cache;
pub mod columns;
pub mod credentials;
mod group_sync;
mod housekeeping;
pub mod keys;
pub mod memo;
pub mod reopen;
mod select;

use super::{DirtyMark, EventStore, Order, PutOutcome, Selected, Selection, StoreError};
use crate::limits::MAX_KEY_BYTES;
use crate::metric::TIERS;
use crate::model::{NewEvent, StoredEvent, Tenant};
use crate::sync::lock;
use cache::{decode_bin, invalidated, log_record};

/// When a put is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// Written to the operating system before the acknowledgement: survives
    /// `kill -9` or a crash of Cubed, not a crash of the OS or a power loss.
    #[default]
    Process,
    /// Also `fdatasync`ed before the acknowledgement (concurrent puts share
    /// one sync): survives power loss; slower.
    Sync,
}

/// Default metric cache cap per event type: 10 MiB, like Cube's capped collections.
pub const DEFAULT_CACHE_BYTES_PER_TYPE: u64 = 10 * 1024 * 1024;

impl From<blocks::EncodeError> for StoreError {
    fn from(e: blocks::EncodeError) -> Self {
        StoreError::TooLarge(e.to_string())
    }
}

/// The positions of a block's events replaced by upserts: a bitmap, so
/// each lookup costs the same however many were replaced.
#[derive(Debug, Default, Clone)]
struct Replaced(Vec<u64>);

impl Replaced {
    fn insert(&mut self, i: u32) {
        let (word, bit) = (i as usize / 64, i % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// An engine error as the contract's: a full disk (`ENOSPC`) and the
/// engine's refusal after a failed write (fjall's `Poisoned`) are
/// [`StoreError::Failed`], since fjall refuses every write after either;
/// anything else is [`StoreError::Engine`].
fn engine(e: impl std::error::Error + 'static) -> StoreError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        let full = c
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull);
        let poisoned = matches!(
            c.downcast_ref::<fjall::Error>(),
            Some(fjall::Error::Poisoned)
        );
        if full || poisoned {
            return StoreError::Failed(e.to_string());
        }
        cause = c.source();
    }
    StoreError::Engine(e.to_string())
}

/// Bytes free for unprivileged writers on the filesystem holding `dir`.
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes used and insertion counter of one type's metric cache.
#[derive(Debug, Default, Clone, Copy)]
struct CacheUsage {
    bytes: u64,
    next_seq: u64,
    /// No live `metric_log` record of the type is older than this: eviction
    /// starts here, so it never walks again over the records it removed
    /// (an LSM keeps their tombstones until a compaction, and walking them
    /// made every put of a full type slower than the last).
    first_seq: u64,
}

pub struct EmbeddedStore {
    db: Database,
    events: Keyspace,
    ids: Keyspace,
    types: Keyspace,
    metrics: Keyspace,
    metric_log: Keyspace,
    metric_sources: Keyspace,
    /// Tombstones of events replaced by an upsert: `block key index(4)`.
    deleted: Keyspace,
    /// Dirty marks: `tenant 0x00 type 0x00 bucket(8) run(8) seq(8)`.
    dirty: Keyspace,
    /// Type prefixes that have tombstones (scans of other types skip the lookup).
    tombstoned: DashMap<Vec<u8>, ()>,
    durability: Durability,
    /// Serialises puts: id upserts read then write. Holds the next sequence number.
    writer: Mutex<u64>,
    run: u64,
    known_types: DashMap<String, BTreeSet<String>>,
    cache_cap: u64,
    /// Per type prefix: cache usage. Also serialises cache writes of a type.
    cache_usage: Mutex<HashMap<Vec<u8>, CacheUsage>>,
    sources: DashMap<Vec<u8>, HashSet<String>>,
    /// The data directory (its filesystem's free space is checked before writes).
    dir: std::path::PathBuf,
    /// Bytes that puts and cache writes leave free on the disk (`--min-free-disk`).
    min_free_disk: AtomicU64,
    /// Retention overrides: `tenant 0x00 type` (type empty: the whole tenant) → horizon text.
    retention: Keyspace,
    /// Bytes of events expired since the last compaction of `events`.
    expired_bytes: AtomicU64,
    /// Most tenants with events (`--max-services`; the system tenant not counted).
    max_services: AtomicUsize,
    /// Most event types per tenant (`--max-types`; Cubed's own types not counted).
    max_types: AtomicUsize,
    /// Bytes charged to the metric cache across all types (changed under `cache_usage`).
    cache_total: AtomicU64,
    /// Most bytes of metric cache across all types (`--cache-budget`).
    cache_budget: AtomicU64,
    /// Sources (cached expressions) per tenant (changed under `cache_usage`).
    tenant_sources: DashMap<String, usize>,
    /// Most sources cached per tenant (`--max-cached-expressions`).
    max_sources: AtomicUsize,
    /// Recent cache reads' answers (see [`memo`]); bumped after every
    /// committed write to `metrics`.
    memo: Mutex<memo::ReadMemo>,
    /// `--durability sync`: concurrent puts share one sync (group commit).
    group_sync: group_sync::GroupSync,
}

/// The engine's block cache unless configured (fjall's own default is 32 MiB).
pub const DEFAULT_BLOCK_CACHE: u64 = 256 * 1024 * 1024;

impl EmbeddedStore {
    /// Sets the bytes that puts and metric cache writes leave free on the
    /// disk holding the store (`--min-free-disk`; 0, the default, checks
    /// nothing). A write that would leave less is refused with
    /// [`StoreError::DiskFull`] before anything is written, so the engine
    /// itself never runs out of space (fjall refuses all writes after a
    /// failed one) and writes resume as soon as space is freed.
    pub fn set_min_free_disk(&self, bytes: u64) {
        self.min_free_disk.store(bytes, Ordering::Relaxed);
    }

    /// Caps the tenants that have events (`--max-services`) and the event
    /// types of each (`--max-types`): a put that would create one more is
    /// refused with [`StoreError::TooMany`], writing nothing. Cubed's own
    /// types and tenant (`model::retention::is_self_type`) are not counted
    /// nor refused. Unlimited unless set.
    pub fn set_type_limits(&self, max_services: usize, max_types: usize) {
        self.max_services.store(max_services, Ordering::Relaxed);
        self.max_types.store(max_types, Ordering::Relaxed);
    }

    /// Bounds the metric cache beyond its cap per type: `budget` bytes
    /// across all types (`--cache-budget`; a type grows only while the
    /// total is under it, and can always reuse its own bytes) and
    /// `max_sources` expressions cached per tenant
    /// (`--max-cached-expressions`; more are computed, not cached).
    /// Unlimited unless set.
    pub fn set_cache_limits(&self, budget: u64, max_sources: usize) {
        self.cache_budget.store(budget, Ordering::Relaxed);
        self.max_sources.store(max_sources, Ordering::Relaxed);
    }

    /// Refuses a new type of `tenant` beyond the caps, `adding` being the
    /// new types the same put added before it. Called under the writer lock.
    fn check_new_type(
        &self,
        tenant: &Tenant,
        event_type: &str,
        adding: &[String],
    ) -> Result<(), StoreError> {
        use crate::model::retention::{SYSTEM_SERVICE, is_self_type};
        if tenant.key() == SYSTEM_SERVICE {
            return Ok(());
        }
        if is_self_type(tenant, event_type) {
            // Cubed's own events do not make a service count, but neither
            // may they make services without end (a `cube_request` for
            // each request naming a new service, refused or not): a new
            // service holding only those is refused once there are as many
            // services of any kind as the cap.
            if self.known_types.contains_key(tenant.key()) {
                return Ok(());
            }
            let max_services = self.max_services.load(Ordering::Relaxed);
            let all = self
                .known_types
                .iter()
                .filter(|e| e.key() != SYSTEM_SERVICE)
                .count();
            if all >= max_services {
                return Err(StoreError::TooMany {
                    what: "services with events",
                    limit: max_services,
                    flag: "--max-services",
                });
            }
            return Ok(());
        }
        // Cubed's own types are neither counted nor refused: a service
        // holding only those does not count as one.
        let own = |t: &String| is_self_type(tenant, t);
        let existing = self
            .known_types
            .get(tenant.key())
            .map_or(0, |set| set.iter().filter(|t| !own(t)).count());
        let max_types = self.max_types.load(Ordering::Relaxed);
        let added = adding.iter().filter(|t| !own(t)).count();
        if existing + added >= max_types {
            return Err(StoreError::TooMany {
                what: "event types in this service",
                limit: max_types,
                flag: "--max-types",
            });
        }
        if existing == 0 && added == 0 {
            let services = self
                .known_types
                .iter()
                .filter(|e| {
                    let t = Tenant::from_key(e.key());
                    e.key() != SYSTEM_SERVICE && e.value().iter().any(|x| !is_self_type(&t, x))
                })
                .count();
            let max_services = self.max_services.load(Ordering::Relaxed);
            if services >= max_services {
                return Err(StoreError::TooMany {
                    what: "services with events",
                    limit: max_services,
                    flag: "--max-services",
                });
            }
        }
        Ok(())
    }

    /// Whether the disk has room to reopen the store after a failure: the
    /// reserve, and at least 64 MiB (opening writes a journal and recovers).
    pub(crate) fn has_room_to_reopen(&self) -> bool {
        let need = self.min_free_disk.load(Ordering::Relaxed).max(64 << 20);
        available_bytes(&self.dir).is_ok_and(|a| a >= need)
    }

    /// Refuses a write of about `writing` bytes that would leave less than
    /// the reserve free.
    fn check_space(&self, writing: u64) -> Result<(), StoreError> {
        let reserve = self.min_free_disk.load(Ordering::Relaxed);
        if reserve == 0 {
            return Ok(());
        }
        let available = available_bytes(&self.dir).map_err(engine)?;
        if available < reserve.saturating_add(writing) {
            return Err(StoreError::DiskFull { available, reserve });
        }
        Ok(())
    }

    /// Opens (or creates) the store in `dir`, with the default block cache.
    pub fn open(dir: &Path, durability: Durability, cache_cap: u64) -> Result<Self, StoreError> {
        Self::open_with_block_cache(dir, durability, cache_cap, DEFAULT_BLOCK_CACHE)
    }

    /// Opens (or creates) the store in `dir`; `block_cache` bytes of the
    /// engine's blocks are kept decompressed in memory (reads of cached blocks
    /// skip the copy from the OS, the checksum and the decompression).
    pub fn open_with_block_cache(
        dir: &Path,
        durability: Durability,
        cache_cap: u64,
        block_cache: u64,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(engine)?;
        let db = Database::builder(dir)
            .cache_size(block_cache)
            // Blocks are written to the journal as they are: compressing
            // them there (fjall's default) cost a tenth of ingest's CPU, and
            // they are compressed anyway when memtables are flushed.
            .journal_compression(fjall::CompressionType::None)
            // fjall's default worker threads (min(cores, 4)). With more than
            // one, worker 0 re-queues compaction requests in a loop while
            // another worker is busy, which costs CPU during heavy ingest; a
            // single worker could deadlock on its own full queue under write
            // load (fjall-rs/fjall#323), so we keep the default.
            .open()
            .map_err(engine)?;
        // The keyspaces written little get small memtables: fjall's default
        // (64 MiB each) would let each grow until the journal's cap forces
        // a flush, which for a slowly written one takes many minutes. The
        // events keep the default, for ingest.
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(16 * 1024 * 1024)
            })
            .map_err(engine)
        };
        let retention = ks("retention")?;
        let store = EmbeddedStore {
            events: db
                .keyspace("events", KeyspaceCreateOptions::default)
                .map_err(engine)?,
            ids: ks("ids")?,
            types: ks("types")?,
            metrics: ks("metrics")?,
            metric_log: ks("metric_log")?,
            metric_sources: ks("metric_sources")?,
            deleted: ks("deleted")?,
            dirty: ks("dirty")?,
            tombstoned: DashMap::new(),
            db,
            durability,
            writer: Mutex::new(0),
            run: run_id(),
            known_types: DashMap::new(),
            cache_cap,
            cache_usage: Mutex::new(HashMap::new()),
            sources: DashMap::new(),
            dir: dir.to_path_buf(),
            min_free_disk: AtomicU64::new(0),
            retention,
            expired_bytes: AtomicU64::new(0),
            max_services: AtomicUsize::new(usize::MAX),
            max_types: AtomicUsize::new(usize::MAX),
            cache_total: AtomicU64::new(0),
            cache_budget: AtomicU64::new(u64::MAX),
            tenant_sources: DashMap::new(),
            max_sources: AtomicUsize::new(usize::MAX),
            memo: Mutex::new(memo::ReadMemo::new(memo::CACHE_READ_MEMO_BYTES)),
            group_sync: group_sync::GroupSync::default(),
        };
        store.load_indexes()?;
        store.recover_dirty()?;
        Ok(store)
    }

    /// Invalidates, for every tier and source, the cached bins of each
    /// bucket a dirty mark left by an earlier run names (their puts were
    /// stored but the process stopped before it invalidated their bins),
    /// and removes the marks, atomically.
    fn recover_dirty(&self) -> Result<(), StoreError> {
        let mut buckets: BTreeSet<(Vec<u8>, i64)> = BTreeSet::new();
        let mut marks = Vec::new();
        for item in self.dirty.iter() {
            let key = item.key().map_err(engine)?;
            let (prefix, rest) = split_prefix_bytes(&key)?;
            let bucket = keys::decode_i64(rest).ok_or_else(|| corrupt("dirty mark"))?;
            buckets.insert((prefix.to_vec(), bucket));
            marks.push(key.to_vec());
        }
        if marks.is_empty() {
            return Ok(());
        }
        let _guard = lock(&self.cache_usage);
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (prefix, bucket) in &buckets {
            for tier in TIERS {
                let first = bucket - bucket.rem_euclid(tier);
                let lo = keys::metric_bin_prefix(prefix, tier, first);
                let hi = keys::metric_bin_prefix(prefix, tier, bucket + keys::BUCKET_MS);
                for item in self.metrics.range(lo..hi) {
                    let (k, v) = item.into_inner().map_err(engine)?;
                    if let Some((true, _, _)) = decode_bin(&v) {
                        batch.insert(&self.metrics, k, invalidated(&v));
                    }
                }
            }
        }
        for m in marks.iter() {
            batch.remove(&self.dirty, m.clone());
        }
        batch.commit().map_err(engine)?;
        tracing::info!(
            marks = marks.len(),
            buckets = buckets.len(),
            "invalidated cached bins of puts an earlier run did not flush"
        );
        Ok(())
    }

    fn load_indexes(&self) -> Result<(), StoreError> {
        for item in self.types.iter() {
            let key = item.key().map_err(engine)?;
            let (tenant, t) = split_type_key(&key)?;
            self.known_types.entry(tenant).or_default().insert(t);
        }
        for item in self.deleted.iter() {
            let key = item.key().map_err(engine)?;
            let (prefix, _) = split_prefix_bytes(&key)?;
            self.tombstoned.insert(prefix.to_vec(), ());
        }
        for item in self.metric_sources.iter() {
            let key = item.key().map_err(engine)?;
            let (prefix, source) = split_prefixed(&key)?;
            if let Some(end) = prefix.iter().position(|b| *b == 0) {
                let tenant = String::from_utf8_lossy(&prefix[..end]).into_owned();
                *self.tenant_sources.entry(tenant).or_default() += 1;
            }
            self.sources.entry(prefix).or_default().insert(source);
        }
        let mut usage = lock(&self.cache_usage);
        for item in self.metric_log.iter() {
            let (key, value) = item.into_inner().map_err(engine)?;
            let plen = key
                .len()
                .checked_sub(8)
                .ok_or_else(|| corrupt("metric log key"))?;
            let seq = u64::from_be_bytes(key[plen..].try_into().map_err(|_| corrupt("seq"))?);
            let u = usage.entry(key[..plen].to_vec()).or_insert(CacheUsage {
                bytes: 0,
                next_seq: 0,
                first_seq: seq,
            });
            u.bytes += log_record(plen, &value).1;
            u.next_seq = u.next_seq.max(seq + 1);
            u.first_seq = u.first_seq.min(seq);
        }
        self.cache_total
            .store(usage.values().map(|u| u.bytes).sum(), Ordering::Relaxed);
        Ok(())
    }

    /// Visits the live events of one bucket's blocks with `start <= time <
    /// stop`, sorted by time (ties in the order they were stored).
    fn emit_bucket(
        &self,
        prefix: &[u8],
        blocks: &[(fjall::Slice, fjall::Slice)],
        start: i64,
        stop: i64,
        order: Order,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StoreError> {
        let mut decoded = Vec::with_capacity(blocks.len());
        for (k, v) in blocks {
            let block = blocks::Block::decode(v).ok_or_else(|| corrupt("event block"))?;
            decoded.push((block, self.tombstones(prefix, k)?));
        }
        // Within a bucket, blocks come in key order (ascending) or reversed.
        if order == Order::Descending {
            decoded.reverse();
        }
        let mut refs: Vec<(i64, usize, usize)> = Vec::new();
        for (b, (block, dead)) in decoded.iter().enumerate() {
            for i in 0..block.len() {
                let t = block.time(i);
                if t >= start && t < stop && !dead.contains(i) {
                    refs.push((t, b, i));
                }
            }
        }
        refs.sort_unstable();
        if order == Order::Descending {
            refs.reverse();
        }
        for (t, b, i) in refs {
            let block = &decoded[b].0;
            let id = block.id(i).ok_or_else(|| corrupt("event block"))?;
            let data = block.data(i).ok_or_else(|| corrupt("event block"))?;
            if visit(self.decode(id, data, t)?).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn persist_mode(&self) -> PersistMode {
        PersistMode::Buffer
    }

    fn decode(&self, id: &[u8], data: &[u8], time: i64) -> Result<StoredEvent, StoreError> {
        let data: Value =
            serde_json::from_slice(data).map_err(|e| corrupt(&format!("event data: {e}")))?;
        let id = if id.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(id).map_err(|e| corrupt(&format!("event id: {e}")))?)
        };
        Ok(StoredEvent { time, data, id })
    }

    /// Indices of a block's events replaced by upserts.
    fn tombstones(&self, prefix: &[u8], block_key: &[u8]) -> Result<Replaced, StoreError> {
        let mut out = Replaced::default();
        if !self.tombstoned.contains_key(prefix) {
            return Ok(out);
        }
        for item in self.deleted.prefix(block_key) {
            let k = item.key().map_err(engine)?;
            let tail: [u8; 4] = k[block_key.len()..]
                .try_into()
                .map_err(|_| corrupt("tombstone"))?;
            out.insert(u32::from_be_bytes(tail));
        }
        Ok(out)
    }

    /// Visits the blocks holding events of one type in `[start, stop)` (a
    /// block may also hold events outside it), with the positions of its
    /// replaced events, hour by hour (a block holds the events of one hour).
    fn scan_blocks(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        visit: &mut dyn FnMut(&blocks::Block<'_>, &Replaced) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        if start >= stop {
            return Ok(());
        }
        let prefix = keys::type_prefix(tenant, event_type);
        let (lo, hi) = Self::block_range(&prefix, start, stop);
        for item in self.events.range(lo..hi) {
            let (k, v) = item.into_inner().map_err(engine)?;
            let block = blocks::Block::decode(&v).ok_or_else(|| corrupt("event block"))?;
            let dead = self.tombstones(&prefix, &k)?;
            if visit(&block, &dead).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The block key range holding `[start, stop)` of one type.
    fn block_range(prefix: &[u8], start: i64, stop: i64) -> (Vec<u8>, Vec<u8>) {
        (
            keys::time_bound(prefix, keys::bucket(start)),
            keys::time_bound(prefix, stop),
        )
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// Refuses a key of `len` bytes that the engine could not store.
fn fits(len: usize, what: &str) -> Result<(), StoreError> {
    if len > MAX_KEY_BYTES {
        return Err(StoreError::TooLarge(format!(
            "a key of {len} bytes (its {what} is too long; the engine stores keys up to {MAX_KEY_BYTES} bytes)"
        )));
    }
    Ok(())
}

/// Unique per server run: nanoseconds since the epoch at start-up.
fn run_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `tenant 0x00 type` → (tenant, type)
fn split_type_key(key: &[u8]) -> Result<(String, String), StoreError> {
    let text = std::str::from_utf8(key).map_err(|_| corrupt("type key"))?;
    let (tenant, t) = text.split_once('\0').ok_or_else(|| corrupt("type key"))?;
    Ok((tenant.to_owned(), t.to_owned()))
}

/// `tenant 0x00 type 0x00 rest` → (prefix, rest bytes)
fn split_prefix_bytes(key: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let first = key
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| corrupt("key"))?;
    let second = key[first + 1..]
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| corrupt("key"))?
        + first
        + 1;
    Ok((&key[..=second], &key[second + 1..]))
}

/// `tenant 0x00 type 0x00 rest` → (prefix, rest)
fn split_prefixed(key: &[u8]) -> Result<(Vec<u8>, String), StoreError> {
    let (prefix, rest) = split_prefix_bytes(key)?;
    let rest = std::str::from_utf8(rest).map_err(|_| corrupt("key"))?;
    Ok((prefix.to_vec(), rest.to_owned()))
}

fn type_key(tenant: &Tenant, event_type: &str) -> Vec<u8> {
    let mut k = tenant.key().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(event_type.as_bytes());
    k
}

impl EventStore for EmbeddedStore {
    fn put(&self, tenant: &Tenant, events: &[NewEvent<'_>]) -> Result<PutOutcome, StoreError> {
        let mut outcome = PutOutcome::default();
        if events.is_empty() {
            return Ok(outcome);
        }
        // One block per (type, hour), events in time order within it.
        let mut groups: Vec<((&str, i64), Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<(&str, i64), usize> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            let k = (e.event_type.as_ref(), keys::bucket(e.time));
            match groups.last_mut() {
                Some((last, idxs)) if *last == k => idxs.push(i),
                _ => match group_of.get(&k) {
                    Some(&g) => groups[g].1.push(i),
                    None => {
                        group_of.insert(k, groups.len());
                        groups.push((k, vec![i]));
                    }
                },
            }
        }
        // Blocks are encoded before the writer lock is taken: concurrent
        // puts encode in parallel and only take turns to commit. Every key
        // is checked before anything is written.
        let mut location = vec![(0usize, 0u32); events.len()];
        let mut blocks: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(groups.len());
        for (g, ((event_type, _), idxs)) in groups.iter_mut().enumerate() {
            if !idxs.is_sorted_by_key(|&i| events[i].time) {
                idxs.sort_by_key(|&i| events[i].time);
            }
            for (j, &i) in idxs.iter().enumerate() {
                location[i] = (g, j as u32);
            }
            let value = blocks::encode_block(idxs.iter().map(|&i| {
                let e = &events[i];
                (e.time, e.id.as_deref(), &e.data)
            }))?;
            let prefix = keys::type_prefix(tenant, event_type);
            fits(prefix.len() + keys::EVENT_SUFFIX_LEN + 4, "event type")?;
            for &i in idxs.iter() {
                if let Some(id) = &events[i].id {
                    fits(prefix.len() + id.len(), "event id")?;
                }
            }
            blocks.push((prefix, value));
            let times = outcome.written.entry((*event_type).to_owned()).or_default();
            times.extend(idxs.iter().map(|&i| events[i].time));
        }
        // Written twice (the journal, then a table when the memtable is
        // flushed), plus the id index and the dirty marks.
        let writing: usize = blocks
            .iter()
            .map(|(p, v)| 2 * (p.len() + v.len() + 64))
            .sum();
        self.check_space(writing as u64)?;
        let mut new_types: Vec<String> = Vec::new();
        {
            let mut seq = lock(&self.writer);
            let mut batch = self.db.batch().durability(Some(self.persist_mode()));
            // (type prefix, block key) of each block, for the id index.
            let mut block_keys: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(blocks.len());
            for (((event_type, bucket), _), (prefix, value)) in groups.iter().zip(blocks) {
                let key = keys::block_key(&prefix, *bucket, self.run, *seq);
                *seq += 1;
                batch.insert(&self.events, key.clone(), value);
                // The bins of this block's events are dirty until invalidated.
                batch.insert(&self.dirty, key.clone(), Vec::<u8>::new());
                outcome
                    .marks
                    .push(((*event_type).to_owned(), DirtyMark(key.clone())));
                let known = self
                    .known_types
                    .get(tenant.key())
                    .is_some_and(|set| set.contains(*event_type));
                if !known && !new_types.iter().any(|t| t == event_type) {
                    self.check_new_type(tenant, event_type, &new_types)?;
                    batch.insert(&self.types, type_key(tenant, event_type), Vec::<u8>::new());
                    new_types.push((*event_type).to_owned());
                }
                block_keys.push((prefix, key));
            }
            // Upserts, in the order the client sent them: the later event wins.
            let mut pending: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            // Buckets left by replaced events, marked dirty once each.
            let mut left: BTreeSet<(usize, i64)> = BTreeSet::new();
            for (i, e) in events.iter().enumerate() {
                let Some(id) = &e.id else { continue };
                let (g, j) = location[i];
                let (prefix, key) = &block_keys[g];
                let ik = keys::id_key(prefix, id);
                let old = match pending.get(&ik) {
                    Some(v) => Some(v.clone()),
                    None => self.ids.get(&ik).map_err(engine)?.map(|v| v.to_vec()),
                };
                if let Some(old) = old {
                    let (old_time, old_index, old_block) =
                        keys::decode_id_location(&old).ok_or_else(|| corrupt("id index"))?;
                    // Flag the type before the tombstone exists: a scan may
                    // look for tombstones in vain, never miss one.
                    self.tombstoned.insert(prefix.clone(), ());
                    batch.insert(
                        &self.deleted,
                        keys::tombstone_key(old_block, old_index),
                        Vec::<u8>::new(),
                    );
                    outcome
                        .replaced
                        .push((e.event_type.clone().into_owned(), old_time));
                    left.insert((g, keys::bucket(old_time)));
                }
                let loc = keys::encode_id_location(e.time, j, key);
                batch.insert(&self.ids, ik.clone(), loc.clone());
                pending.insert(ik, loc);
            }
            for (g, bucket) in left {
                let ((event_type, _), _) = &groups[g];
                let key = keys::block_key(&block_keys[g].0, bucket, self.run, *seq);
                *seq += 1;
                batch.insert(&self.dirty, key.clone(), Vec::<u8>::new());
                outcome
                    .marks
                    .push(((*event_type).to_owned(), DirtyMark(key)));
            }
            batch.commit().map_err(engine)?;
            // Before the writer lock goes: the caps count what is known.
            if !new_types.is_empty() {
                let mut set = self.known_types.entry(tenant.key().to_owned()).or_default();
                set.extend(new_types);
            }
        }
        if self.durability == Durability::Sync
            && let Err(reason) = self.group_sync.after_commit(|| {
                self.db
                    .persist(PersistMode::SyncData)
                    .map_err(|e| e.to_string())
            })
        {
            return Err(StoreError::NotSynced {
                outcome: Box::new(outcome),
                reason,
            });
        }
        Ok(outcome)
    }

    fn scan(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        order: Order,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        if start >= stop {
            return Ok(());
        }
        let prefix = keys::type_prefix(tenant, event_type);
        let (lo, hi) = Self::block_range(&prefix, start, stop);
        let range = self.events.range(lo..hi);
        let items: Box<dyn Iterator<Item = fjall::Guard>> = match order {
            Order::Ascending => Box::new(range),
            Order::Descending => Box::new(range.rev()),
        };
        // Blocks of one bucket overlap in time: gather a bucket, sort, emit.
        // Only blocks with an event in the range are kept (a live stream's
        // window is a second of an hour's bucket).
        let mut bucket: Vec<(fjall::Slice, fjall::Slice)> = Vec::new();
        let mut current: Option<i64> = None;
        for item in items {
            let (k, v) = item.into_inner().map_err(engine)?;
            if !blocks::any_time_in(&v, start, stop).ok_or_else(|| corrupt("event block"))? {
                continue;
            }
            let b = keys::block_bucket(&k, prefix.len()).ok_or_else(|| corrupt("block key"))?;
            if current.is_some_and(|c| c != b) {
                if self
                    .emit_bucket(&prefix, &bucket, start, stop, order, visit)?
                    .is_break()
                {
                    return Ok(());
                }
                bucket.clear();
            }
            current = Some(b);
            bucket.push((k, v));
        }
        let _ = self.emit_bucket(&prefix, &bucket, start, stop, order, visit)?;
        Ok(())
    }

    fn scan_data(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        visit: &mut dyn FnMut(i64, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        if start >= stop {
            return Ok(());
        }
        let mut missing = false;
        self.scan_blocks(tenant, event_type, start, stop, &mut |block, dead| {
            for i in 0..block.len() {
                let t = block.time(i);
                if t < start || t >= stop || dead.contains(i) {
                    continue;
                }
                let Some(data) = block.data(i) else {
                    missing = true;
                    return ControlFlow::Break(());
                };
                if visit(t, data).is_break() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if missing {
            return Err(corrupt("event block"));
        }
        Ok(())
    }

    fn select(
        &self,
        tenant: &Tenant,
        selection: &Selection<'_>,
        visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        select::select(self, tenant, selection, visit)
    }

    fn types(&self, tenant: &Tenant) -> Result<Vec<String>, StoreError> {
        Ok(self
            .known_types
            .get(tenant.key())
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn has_type(&self, tenant: &Tenant, event_type: &str) -> Result<bool, StoreError> {
        Ok(self
            .known_types
            .get(tenant.key())
            .is_some_and(|set| set.contains(event_type)))
    }

    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut out: Vec<Tenant> = self
            .known_types
            .iter()
            .filter(|e| !e.value().is_empty())
            .map(|e| Tenant::from_key(e.key()))
            .collect();
        out.sort();
        Ok(out)
    }

    fn expire(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<super::Expired, StoreError> {
        self.expire_type(tenant, event_type, before)
    }

    fn reclaim(&self) -> Result<(), StoreError> {
        self.reclaim_space()
    }

    fn stats(&self, tenant: &Tenant) -> Result<Vec<super::TypeStats>, StoreError> {
        self.type_stats(tenant)
    }

    fn retention_overrides(&self) -> Result<Vec<super::RetentionOverride>, StoreError> {
        self.read_retention()
    }

    fn set_retention_override(
        &self,
        tenant: &Tenant,
        event_type: Option<&str>,
        horizon: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write_retention(tenant, event_type, horizon)
    }

    fn memory(&self) -> crate::storage::StoreMemory {
        crate::storage::StoreMemory {
            memtable_bytes: self.db.write_buffer_size(),
            block_cache_bytes: self.db.cache_size(),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll).map_err(engine)?;
        // Write the in-memory tables out, so the next start has no journal to
        // replay (and its first queries do not compete with that work).
        for ks in [
            &self.events,
            &self.ids,
            &self.deleted,
            &self.types,
            &self.metrics,
            &self.metric_log,
            &self.metric_sources,
            &self.dirty,
            &self.retention,
        ] {
            ks.rotate_memtable_and_wait().map_err(engine)?;
        }
        Ok(())
    }
}
