//! The MongoDB backend (`cubed serve --store mongodb://HOST/DB`), in Cube's
//! own database layout, through the official driver's synchronous API
//! (the storage contract is synchronous; the driver runs its own runtime).
//!
//! Layout (see docs/mongodb-layout.md for how Cube did it):
//! - **One database per service.** The default service is the URL's
//!   database (`cube` when the URL names none); service `S` is database
//!   `<db>-S` (service names are `[a-z0-9_]`, so the `-` tells them apart).
//! - `<type>_events`: `{_id, t: Date, d}`, indexed on `t`; a client's id is
//!   the `_id` (a string, or a number typed as the Node driver typed it),
//!   otherwise an ObjectId.
//! - `<type>_metrics`: the metric cache, a capped collection
//!   (`--cache-per-type` bytes; Cube's was 10 MB) of
//!   `{_id: {e: source, l: tier ms, t: bin Date}, i: invalid, v: Double}`,
//!   Cube's document, with Cube's two indexes. A bin without a value
//!   (the median of nothing) has `v: NaN`, so that every document of one
//!   source keeps one size whatever it holds, as capped collections before
//!   MongoDB 5.3 require (and a NaN bin reads as no value, which is what
//!   an answer shows for either). Cube never cached such bins, nor zeros;
//!   Cubed caches both.
//! - `cubed_dirty` (marks of puts not yet invalidated: `{_id: ObjectId, y:
//!   type, times}`), `cubed_writes` (`{_id: type, g}`: how many puts each
//!   type has had, shared by every process), and in the URL's database
//!   `cubed_keys` and `cubed_retention`. None ends in `_events`, so Cube's
//!   rule for listing types still holds.
//!
//! A put is one multi-document transaction (events, the write count and
//! the dirty mark: all or none), so the deployment must be a replica set
//! (a single-node one will do) or a sharded cluster; writes are journaled
//! and acknowledged by a majority. Capped collections cannot be written in
//! a transaction, so invalidation writes the bins first and removes the
//! marks second: a crash between them only repeats an idempotent
//! invalidation.
//!
//! Several processes on one deployment stay consistent: a cache read first
//! applies every process's pending marks for the type (so it never serves a
//! bin a put acknowledged anywhere has made stale), and bins computed while
//! any process put events of the type are marked invalid again after they
//! are written ([`MetricCache::put_as_of`]).

pub mod convert;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use mongodb::IndexModel;
use mongodb::bson::{self, Bson, DateTime, Document, doc, oid::ObjectId};
use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::options::{Acknowledgment, WriteConcern};
use mongodb::sync::{Client, ClientSession, Collection, Database};

use crate::model::event::canonical_id;
use crate::model::{NewEvent, StoredEvent, Tenant};
use crate::plan::LeafPlan;
use crate::storage::{
    CachedBin, DirtyMark, EventStore, Expired, KeyStore, MetricCache, Order, PutOutcome,
    RetentionOverride, Selected, Selection, StoreError, TypeStats, rows,
};
use crate::sync::lock;

/// Cube's default database name.
pub const DEFAULT_DATABASE: &str = "cube";
/// The longest database name MongoDB accepts.
const MAX_DB_NAME: usize = 63;
/// The longest `db.collection` namespace (MongoDB 4.4+).
const MAX_NAMESPACE: usize = 255;
/// Bins written per `update` command.
const CACHE_WRITE_BATCH: usize = 1000;
/// Cursor batch size (Cube's).
const BATCH: u32 = 1000;
/// How many times a transaction is retried on a transient error.
const TRANSACTION_ATTEMPTS: usize = 5;
/// Smallest capped collection size accepted.
const MIN_CAP: u64 = 4096;

/// How the metric cache collections are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Cube's: one capped collection per type (not shardable).
    Capped,
    /// A regular collection per type whose documents expire `ttl_secs`
    /// after they were written (a TTL index on `w`): shardable.
    Ttl { ttl_secs: u64 },
}

/// The MongoDB store: events, metric cache, keys and retention overrides.
pub struct MongoStore {
    client: Client,
    /// The URL's database: the default service's, and the home of keys
    /// and retention overrides.
    base: String,
    cache_bytes: u64,
    cache_mode: CacheMode,
    /// (database, type) whose collections this process has made sure of.
    known: Mutex<HashSet<(String, String)>>,
    max_services: AtomicUsize,
    max_types: AtomicUsize,
}

fn engine(e: mongodb::error::Error) -> StoreError {
    if let ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) = e.kind.as_ref()
        && w.code == 10334
    {
        return StoreError::TooLarge(format!("a document over MongoDB's 16 MiB: {}", w.message));
    }
    StoreError::Engine(format!("mongodb: {e}"))
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("mongodb: {what}"))
}

/// The first and last instants of years 1 to 9999: the bounds of a range
/// query are clamped to them (events are within years 0 to 9999, and some
/// servers' drivers, SecantusDB's Python among them, cannot hold dates
/// outside years 1 to 9999 even as query bounds).
const FIRST_MS: i64 = -62_135_596_800_000;
const LAST_MS: i64 = 253_402_300_799_999;

fn date(ms: i64) -> Bson {
    Bson::DateTime(DateTime::from_millis(ms))
}

/// A range bound as a date, clamped to [`FIRST_MS`]..=[`LAST_MS`] + 1.
fn bound(ms: i64) -> Bson {
    date(ms.clamp(FIRST_MS, LAST_MS))
}

/// `{$gte: start, $lt: stop}` with the bounds clamped; a stop past the
/// last instant is `$lte` the last instant.
fn range_of(start: i64, stop: i64) -> Document {
    if stop > LAST_MS {
        doc! {"$gte": bound(start), "$lte": bound(stop)}
    } else {
        doc! {"$gte": bound(start), "$lt": bound(stop)}
    }
}

fn range_filter(start: i64, stop: i64) -> Document {
    doc! {"t": range_of(start, stop)}
}

/// The `$group` accumulator of a leaf whose bins MongoDB can compute
/// exactly as Cubed would, if it can: a pyramidal reduce (`sum`, `min`,
/// `max`, `count`) of no value or of one top-level field, with a filter on
/// top-level fields only and no `re` (MongoDB would run PCRE). Numbers
/// only for `sum`, `min` and `max` (`$isNumber`, MongoDB 4.4+), as
/// Cubed's reduces consider numbers only.
fn group_accumulator(leaf: &LeafPlan) -> Option<Document> {
    use crate::expr::{Reduce, ValueExpr};
    let field = match &leaf.value {
        None => None,
        Some(ValueExpr::Field(f)) if f.tail.is_empty() && !f.head.contains(['.', '$']) => {
            Some(format!("$d.{}", f.head))
        }
        Some(_) => return None,
    };
    for (key, value) in leaf.filter.query_document() {
        let top_level = key.matches('.').count() == 1 && !key.contains('$');
        if !top_level || is_regex(&value) {
            return None;
        }
    }
    let number = |f: &str| doc! {"$cond": [{"$isNumber": f}, f, Bson::Null]};
    Some(match (leaf.reduce, field) {
        (Reduce::Count, _) | (Reduce::Sum, None) => doc! {"$sum": 1},
        (Reduce::Sum, Some(f)) => doc! {"$sum": number(&f)},
        (Reduce::Min, None) => doc! {"$min": {"$literal": 1}},
        (Reduce::Max, None) => doc! {"$max": {"$literal": 1}},
        (Reduce::Min, Some(f)) => doc! {"$min": number(&f)},
        (Reduce::Max, Some(f)) => doc! {"$max": number(&f)},
        _ => return None,
    })
}

/// Whether a filter document's condition holds `re` (`$regex`), which
/// MongoDB would run as PCRE rather than as Cubed's regular expressions.
fn is_regex(condition: &serde_json::Value) -> bool {
    condition
        .as_object()
        .is_some_and(|o| o.contains_key("$regex"))
}

/// `d.a` of a filter or projection key `d.a.b.0`: what a projection may
/// name without colliding with another path.
fn top_field(key: &str) -> String {
    let mut parts = key.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(d), Some(head)) => format!("{d}.{head}"),
        _ => key.to_owned(),
    }
}

fn events_name(event_type: &str) -> String {
    format!("{event_type}_events")
}

fn metrics_name(event_type: &str) -> String {
    format!("{event_type}_metrics")
}

/// A canonical id (`model::event::canonical_id`) as the `_id` Cube's
/// driver would have stored.
fn id_bson(canonical: &str) -> Result<Bson, StoreError> {
    if canonical.starts_with('"') {
        let s: String = serde_json::from_str(canonical).map_err(corrupt)?;
        return Ok(Bson::String(s));
    }
    let x: f64 = canonical
        .parse()
        .map_err(|_| corrupt(format!("id {canonical}")))?;
    Ok(convert::number_bson(x))
}

/// Gives each event of `cursor` as (time, data JSON text) until `visit`
/// breaks.
fn visit_data(
    cursor: mongodb::sync::Cursor<Document>,
    visit: &mut dyn FnMut(i64, &[u8]) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let mut text = String::new();
    for d in cursor {
        let d = d.map_err(engine)?;
        text.clear();
        data_json(&d, &mut text);
        if visit(time_of(&d)?, text.as_bytes()).is_break() {
            break;
        }
    }
    Ok(())
}

/// A BSON number (`Int32`, `Int64` or `Double`) as a double.
fn number_of(v: Option<&Bson>) -> Option<f64> {
    match v? {
        Bson::Double(x) => Some(*x),
        Bson::Int32(x) => Some(f64::from(*x)),
        Bson::Int64(x) => Some(*x as f64),
        _ => None,
    }
}

/// A BSON number as an integer (a double truncated), exact for `Int64`.
fn integer_of(v: Option<&Bson>) -> Option<i64> {
    match v? {
        Bson::Int64(x) => Some(*x),
        Bson::Int32(x) => Some(i64::from(*x)),
        Bson::Double(x) => Some(*x as i64),
        _ => None,
    }
}

/// The time of a stored event.
fn time_of(doc: &Document) -> Result<i64, StoreError> {
    match doc.get("t") {
        Some(Bson::DateTime(d)) => Ok(d.timestamp_millis()),
        other => Err(corrupt(format!(
            "an event whose t is not a date: {other:?}"
        ))),
    }
}

fn data_json(doc: &Document, out: &mut String) {
    match doc.get("d") {
        Some(d @ Bson::Document(_)) => convert::bson_to_json(d, out),
        // Cube stored whatever `data` was; a bare type has none.
        None | Some(Bson::Null) | Some(Bson::Undefined) => out.push_str("{}"),
        Some(other) => convert::bson_to_json(other, out),
    }
}

fn is_transient(e: &mongodb::error::Error) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR)
}

fn majority() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

/// One type's part of a put, built before the transaction.
struct TypeBatch {
    docs: Vec<Document>,
    /// The ids of this batch (canonical text → `_id`).
    ids: Vec<Bson>,
    /// Per event in order: its canonical id, if any, and time.
    order: Vec<(Option<String>, i64)>,
    times: Vec<i64>,
}

impl MongoStore {
    /// Connects to `url` (`mongodb://…/DB` or `mongodb+srv://…/DB`); the
    /// metric cache of each type holds about `cache_bytes`.
    pub fn connect(url: &str, cache_bytes: u64, cache_mode: CacheMode) -> Result<Self, StoreError> {
        let client = Client::with_uri_str(url).map_err(engine)?;
        let base = client
            .default_database()
            .map(|d| d.name().to_owned())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        if base.len() > MAX_DB_NAME || base.contains('-') {
            return Err(StoreError::Engine(format!(
                "the database {base:?}: Cubed needs a name of at most {MAX_DB_NAME} characters without '-' (services' databases are named <db>-<service>)"
            )));
        }
        // Fails early, with the driver's reason, if no server answers.
        client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .run()
            .map_err(engine)?;
        Ok(MongoStore {
            client,
            base,
            cache_bytes: cache_bytes.max(MIN_CAP),
            cache_mode,
            known: Mutex::default(),
            max_services: AtomicUsize::new(usize::MAX),
            max_types: AtomicUsize::new(usize::MAX),
        })
    }

    /// Caps services and types per service, as `--max-services` and
    /// `--max-types` do for the embedded store.
    pub fn set_type_limits(&self, max_services: usize, max_types: usize) {
        self.max_services.store(max_services.max(1), Relaxed);
        self.max_types.store(max_types.max(1), Relaxed);
    }

    /// The URL's database name.
    pub fn database_name(&self) -> &str {
        &self.base
    }

    fn db_name(&self, tenant: &Tenant) -> Result<String, StoreError> {
        if tenant.key().is_empty() {
            return Ok(self.base.clone());
        }
        let name = format!("{}-{}", self.base, tenant.key());
        if name.len() > MAX_DB_NAME {
            return Err(StoreError::TooLarge(format!(
                "the service's database name {name:?} is longer than MongoDB's {MAX_DB_NAME} characters"
            )));
        }
        Ok(name)
    }

    fn db(&self, tenant: &Tenant) -> Result<Database, StoreError> {
        Ok(self.client.database(&self.db_name(tenant)?))
    }

    fn tenant_of(&self, db_name: &str) -> Option<Tenant> {
        if db_name == self.base {
            return Some(Tenant::default_tenant());
        }
        let key = db_name.strip_prefix(&self.base)?.strip_prefix('-')?;
        Tenant::from_header(Some(key)).ok()
    }

    fn events(&self, db: &Database, event_type: &str) -> Collection<Document> {
        db.collection(&events_name(event_type))
    }

    fn metrics(&self, db: &Database, event_type: &str) -> Collection<Document> {
        db.collection(&metrics_name(event_type))
    }

    /// Names of the database's collections ending in `suffix`.
    fn collections(db: &Database, suffix: &str) -> Result<Vec<String>, StoreError> {
        let names = db
            .list_collection_names()
            .filter(doc! {"name": {"$regex": format!("{suffix}$")}})
            .run()
            .map_err(engine)?;
        Ok(names)
    }

    /// Creates a collection, treating "already exists" (another process
    /// was first) as done.
    fn create(db: &Database, name: &str, capped: Option<u64>) -> Result<(), StoreError> {
        let action = db.create_collection(name);
        let r = match capped {
            Some(size) => action.capped(true).size(size).run(),
            None => action.run(),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) => match e.kind.as_ref() {
                ErrorKind::Command(c) if c.code == 48 => Ok(()),
                _ => Err(engine(e)),
            },
        }
    }

    /// Makes sure the type's events and metrics collections and their
    /// indexes exist (Cube's, created the first time a type is put),
    /// refusing a type or service beyond the caps. Outside any transaction.
    fn ensure_type(
        &self,
        db_name: &str,
        db: &Database,
        event_type: &str,
    ) -> Result<(), StoreError> {
        let key = (db_name.to_owned(), event_type.to_owned());
        if lock(&self.known).contains(&key) {
            return Ok(());
        }
        let ns = db_name.len() + 1 + metrics_name(event_type).len();
        if ns > MAX_NAMESPACE {
            return Err(StoreError::TooLarge(format!(
                "the namespace {db_name}.{} is longer than MongoDB's {MAX_NAMESPACE} bytes",
                metrics_name(event_type)
            )));
        }
        let existing = Self::collections(db, "_events")?;
        if !existing.contains(&events_name(event_type)) {
            let types = existing.len();
            if types >= self.max_types.load(Relaxed) {
                return Err(StoreError::TooMany {
                    what: "event types in this service",
                    limit: self.max_types.load(Relaxed),
                    flag: "--max-types",
                });
            }
            if types == 0 {
                let services = self.tenants()?.len();
                if services >= self.max_services.load(Relaxed) {
                    return Err(StoreError::TooMany {
                        what: "services with events",
                        limit: self.max_services.load(Relaxed),
                        flag: "--max-services",
                    });
                }
            }
            Self::create(db, &events_name(event_type), None)?;
        }
        self.events(db, event_type)
            .create_index(IndexModel::builder().keys(doc! {"t": 1}).build())
            .run()
            .map_err(engine)?;
        self.ensure_metrics(db, event_type)?;
        for name in ["cubed_dirty", "cubed_writes"] {
            Self::create(db, name, None)?;
        }
        db.collection::<Document>("cubed_dirty")
            .create_index(IndexModel::builder().keys(doc! {"y": 1}).build())
            .run()
            .map_err(engine)?;
        lock(&self.known).insert(key);
        Ok(())
    }

    fn ensure_metrics(&self, db: &Database, event_type: &str) -> Result<(), StoreError> {
        let name = metrics_name(event_type);
        let metrics = self.metrics(db, event_type);
        match self.cache_mode {
            CacheMode::Capped => Self::create(db, &name, Some(self.cache_bytes))?,
            CacheMode::Ttl { ttl_secs } => {
                Self::create(db, &name, None)?;
                let ttl = mongodb::options::IndexOptions::builder()
                    .expire_after(std::time::Duration::from_secs(ttl_secs))
                    .build();
                metrics
                    .create_index(
                        IndexModel::builder()
                            .keys(doc! {"w": 1})
                            .options(ttl)
                            .build(),
                    )
                    .run()
                    .map_err(engine)?;
            }
        }
        for keys in [
            doc! {"i": 1, "_id.e": 1, "_id.l": 1, "_id.t": 1},
            doc! {"i": 1, "_id.l": 1, "_id.t": 1},
        ] {
            metrics
                .create_index(IndexModel::builder().keys(keys).build())
                .run()
                .map_err(engine)?;
        }
        Ok(())
    }

    /// Builds one type's documents, replacing earlier events of the batch
    /// with the same id (the last one wins).
    fn type_batch(events: &[&NewEvent<'_>]) -> Result<TypeBatch, StoreError> {
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut docs: Vec<Option<Document>> = Vec::with_capacity(events.len());
        let mut ids = Vec::new();
        let mut order = Vec::with_capacity(events.len());
        let mut times = Vec::with_capacity(events.len());
        for e in events {
            let data = convert::json_to_bson(&e.data.json()).map_err(|u| {
                StoreError::TooLarge(format!("event data MongoDB cannot hold: {}", u.0))
            })?;
            let mut doc = Document::new();
            let canonical = match &e.id {
                Some(raw) => Some(
                    canonical_id(raw)
                        .map_err(|_| corrupt(format!("an unchecked id {raw}")))?
                        .into_owned(),
                ),
                None => None,
            };
            if let Some(c) = &canonical {
                let id = id_bson(c)?;
                doc.insert("_id", id.clone());
                match by_id.get(c) {
                    Some(&earlier) => docs[earlier] = None,
                    None => ids.push(id),
                }
                by_id.insert(c.clone(), docs.len());
            } else {
                doc.insert("_id", ObjectId::new());
            }
            doc.insert("t", date(e.time));
            doc.insert("d", data);
            docs.push(Some(doc));
            order.push((canonical, e.time));
            times.push(e.time);
        }
        Ok(TypeBatch {
            docs: docs.into_iter().flatten().collect(),
            ids,
            order,
            times,
        })
    }

    /// The writes of one put, inside the session's transaction.
    fn put_in(
        &self,
        session: &mut ClientSession,
        db: &Database,
        batches: &BTreeMap<String, TypeBatch>,
    ) -> Result<PutOutcome, mongodb::error::Error> {
        let mut outcome = PutOutcome::default();
        for (event_type, batch) in batches {
            let events = self.events(db, event_type);
            let mut previous: HashMap<String, i64> = HashMap::new();
            if !batch.ids.is_empty() {
                let mut found = events
                    .find(doc! {"_id": {"$in": batch.ids.clone()}})
                    .projection(doc! {"t": 1})
                    .session(&mut *session)
                    .run()?;
                let mut old = Vec::new();
                while let Some(d) = found.next(&mut *session) {
                    old.push(d?);
                }
                for d in old {
                    let (Some(id), Some(Bson::DateTime(t))) = (d.get("_id"), d.get("t")) else {
                        continue;
                    };
                    let value = convert::bson_to_value(id);
                    if let Ok(text) = serde_json::to_string(&value)
                        && let Ok(c) = canonical_id(&text)
                    {
                        previous.insert(c.into_owned(), t.timestamp_millis());
                    }
                }
                events
                    .delete_many(doc! {"_id": {"$in": batch.ids.clone()}})
                    .session(&mut *session)
                    .run()?;
            }
            let mut touched = batch.times.clone();
            for (id, time) in &batch.order {
                if let Some(id) = id
                    && let Some(old) = previous.insert(id.clone(), *time)
                {
                    outcome.replaced.push((event_type.clone(), old));
                    // The old time's bins are stale too (Cube never
                    // invalidated them; every process here does).
                    touched.push(old);
                }
            }
            events
                .insert_many(batch.docs.iter())
                .ordered(true)
                .session(&mut *session)
                .run()?;
            db.collection::<Document>("cubed_writes")
                .update_one(doc! {"_id": event_type}, doc! {"$inc": {"g": 1_i64}})
                .upsert(true)
                .session(&mut *session)
                .run()?;
            let mark = ObjectId::new();
            let mut floors: Vec<i64> = touched
                .iter()
                .map(|t| t - t.rem_euclid(crate::metric::TIERS[0]))
                .collect();
            floors.sort_unstable();
            floors.dedup();
            db.collection::<Document>("cubed_dirty")
                .insert_one(doc! {"_id": mark, "y": event_type, "times": floors})
                .session(&mut *session)
                .run()?;
            outcome
                .written
                .insert(event_type.clone(), batch.times.clone());
            outcome
                .marks
                .push((event_type.clone(), DirtyMark(mark.bytes().to_vec())));
        }
        Ok(outcome)
    }

    /// Applies every pending mark of the type, whichever process wrote it.
    fn apply_marks(&self, db: &Database, event_type: &str) -> Result<(), StoreError> {
        let marks = db.collection::<Document>("cubed_dirty");
        let found = marks
            .find(doc! {"y": event_type})
            .batch_size(BATCH)
            .run()
            .map_err(engine)?;
        let mut ids = Vec::new();
        let mut times = Vec::new();
        for d in found {
            let d = d.map_err(engine)?;
            if let Some(Bson::ObjectId(id)) = d.get("_id") {
                ids.push(DirtyMark(id.bytes().to_vec()));
            }
            if let Some(Bson::Array(ts)) = d.get("times") {
                times.extend(ts.iter().filter_map(|t| t.as_i64()));
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        times.sort_unstable();
        times.dedup();
        self.invalidate_in(db, event_type, &crate::metric::TIERS, &times, &ids)
    }

    fn invalidate_in(
        &self,
        db: &Database,
        event_type: &str,
        tiers: &[i64],
        times: &[i64],
        marks: &[DirtyMark],
    ) -> Result<(), StoreError> {
        let metrics = self.metrics(db, event_type);
        for &tier in tiers {
            let mut floors: Vec<i64> = times.iter().map(|t| t - t.rem_euclid(tier)).collect();
            floors.sort_unstable();
            floors.dedup();
            for chunk in floors.chunks(CACHE_WRITE_BATCH) {
                let dates: Vec<Bson> = chunk.iter().map(|&t| date(t)).collect();
                metrics
                    .update_many(
                        doc! {"i": false, "_id.l": tier, "_id.t": {"$in": dates}},
                        doc! {"$set": {"i": true}},
                    )
                    .run()
                    .map_err(engine)?;
            }
        }
        // Marks go second: a crash before this repeats the (idempotent)
        // invalidation at the next read.
        let ids: Vec<Bson> = marks
            .iter()
            .filter_map(|m| <[u8; 12]>::try_from(m.0.as_slice()).ok())
            .map(|b| Bson::ObjectId(ObjectId::from_bytes(b)))
            .collect();
        if !ids.is_empty() {
            db.collection::<Document>("cubed_dirty")
                .delete_many(doc! {"_id": {"$in": ids}})
                .run()
                .map_err(engine)?;
        }
        Ok(())
    }

    fn bin_doc(&self, source: &str, tier: i64, bin: &CachedBin, now: DateTime) -> Document {
        let mut d = doc! {
            "_id": {"e": source, "l": convert::number_bson(tier as f64), "t": date(bin.time)},
            "i": false,
            "v": Bson::Double(bin.value.unwrap_or(f64::NAN)),
        };
        if let CacheMode::Ttl { .. } = self.cache_mode {
            d.insert("w", now);
        }
        d
    }

    fn find_events(
        &self,
        tenant: &Tenant,
        event_type: &str,
        start: i64,
        stop: i64,
        order: Order,
    ) -> Result<mongodb::sync::Cursor<Document>, StoreError> {
        let db = self.db(tenant)?;
        let sort = match order {
            Order::Ascending => 1,
            Order::Descending => -1,
        };
        self.events(&db, event_type)
            .find(range_filter(start, stop))
            .sort(doc! {"t": sort})
            .batch_size(BATCH)
            .run()
            .map_err(engine)
    }

    fn has_events(&self, db: &Database, event_type: &str) -> Result<bool, StoreError> {
        Ok(self
            .events(db, event_type)
            .find_one(doc! {})
            .projection(doc! {"_id": 1})
            .run()
            .map_err(engine)?
            .is_some())
    }

    /// The BSON bytes of the documents `filter` matches (`$bsonSize`,
    /// MongoDB 4.4+).
    fn bson_bytes(coll: &Collection<Document>, filter: Document) -> Result<u64, StoreError> {
        let mut found = coll
            .aggregate([
                doc! {"$match": filter},
                doc! {"$group": {"_id": Bson::Null, "b": {"$sum": {"$bsonSize": "$$ROOT"}}}},
            ])
            .run()
            .map_err(engine)?;
        let total = match found.next() {
            Some(d) => {
                let d = d.map_err(engine)?;
                integer_of(d.get("b")).unwrap_or(0)
            }
            None => 0,
        };
        Ok(total.max(0) as u64)
    }

    /// Per-bin aggregates computed by the server (`$match` on time and the
    /// whole filter, `$group` on the bin), so that a sharded cluster does
    /// the scanning: [`Selected::Partials`].
    fn select_partials(
        &self,
        db: &Database,
        selection: &Selection<'_>,
        step: i64,
        accumulator: Document,
        visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let leaf = selection.leaf;
        let mut filter = range_filter(selection.start, selection.stop);
        for (key, value) in leaf.filter.query_document() {
            let v = convert::json_to_bson(&value.to_string()).map_err(|u| {
                StoreError::Engine(format!("a filter MongoDB cannot hold: {}", u.0))
            })?;
            filter.insert(key, v);
        }
        // An event without the value's field has no value (Cubed skips
        // it, even when a filter such as `ne` on that field passes it).
        let filter = match leaf.fields.first() {
            Some(f) => doc! {"$and": [filter, {format!("d.{}", f.head): {"$exists": true}}]},
            None => filter,
        };
        let since = doc! {"$subtract": [{"$toLong": "$t"}, selection.start]};
        let bin = doc! {"$subtract": [{"$toLong": "$t"}, {"$mod": [since, step]}]};
        let found = self
            .events(db, &leaf.event_type)
            .aggregate([
                doc! {"$match": filter},
                doc! {"$group": {"_id": bin, "v": accumulator}},
                doc! {"$sort": {"_id": 1}},
            ])
            .batch_size(BATCH)
            .run()
            .map_err(engine)?;
        let mut partials: Vec<(i64, f64)> = Vec::with_capacity(1024);
        for d in found {
            let d = d.map_err(engine)?;
            let Some(time) = integer_of(d.get("_id")) else {
                return Err(corrupt(format!("a bin start {:?}", d.get("_id"))));
            };
            // None: no number among the bin's values (min, max).
            let Some(value) = number_of(d.get("v")) else {
                continue;
            };
            partials.push((time, value));
            if partials.len() == partials.capacity() {
                if visit(Selected::Partials(&partials)).is_break() {
                    return Ok(());
                }
                partials.clear();
            }
        }
        if !partials.is_empty() {
            let _ = visit(Selected::Partials(&partials));
        }
        Ok(())
    }

    fn tenant_dbs(&self) -> Result<Vec<(String, Tenant)>, StoreError> {
        let names = self.client.list_database_names().run().map_err(engine)?;
        Ok(names
            .into_iter()
            .filter_map(|n| self.tenant_of(&n).map(|t| (n, t)))
            .collect())
    }
}

impl EventStore for MongoStore {
    fn put(&self, tenant: &Tenant, events: &[NewEvent<'_>]) -> Result<PutOutcome, StoreError> {
        if events.is_empty() {
            return Ok(PutOutcome::default());
        }
        let db_name = self.db_name(tenant)?;
        let db = self.client.database(&db_name);
        let mut grouped: BTreeMap<String, Vec<&NewEvent<'_>>> = BTreeMap::new();
        for e in events {
            grouped.entry(e.event_type.to_string()).or_default().push(e);
        }
        let mut batches = BTreeMap::new();
        for (event_type, events) in &grouped {
            batches.insert(event_type.clone(), Self::type_batch(events)?);
        }
        for event_type in batches.keys() {
            self.ensure_type(&db_name, &db, event_type)?;
        }
        let mut session = self.client.start_session().run().map_err(engine)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            session
                .start_transaction()
                .write_concern(majority())
                .run()
                .map_err(engine)?;
            let outcome = match self.put_in(&mut session, &db, &batches) {
                Ok(outcome) => outcome,
                Err(e) => {
                    let _ = session.abort_transaction().run();
                    if is_transient(&e) && attempt < TRANSACTION_ATTEMPTS {
                        continue;
                    }
                    return Err(engine(e));
                }
            };
            let mut commits = 0;
            loop {
                commits += 1;
                match session.commit_transaction().run() {
                    Ok(()) => return Ok(outcome),
                    Err(e)
                        if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                            && commits < TRANSACTION_ATTEMPTS => {}
                    Err(e) if is_transient(&e) && attempt < TRANSACTION_ATTEMPTS => break,
                    // Whether it committed is unknown: not acknowledged,
                    // like a write in flight at a crash (ids make a retry
                    // store an event once).
                    Err(e) => return Err(StoreError::Failed(format!("mongodb commit: {e}"))),
                }
            }
        }
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
        let cursor = self.find_events(tenant, event_type, start, stop, order)?;
        let mut text = String::new();
        for d in cursor {
            let d = d.map_err(engine)?;
            text.clear();
            data_json(&d, &mut text);
            let data = serde_json::from_str(&text).map_err(corrupt)?;
            let id = match d.get("_id") {
                None | Some(Bson::ObjectId(_)) => None,
                Some(other) => Some(convert::bson_to_value(other)),
            };
            let event = StoredEvent {
                time: time_of(&d)?,
                data,
                id,
            };
            if visit(event).is_break() {
                break;
            }
        }
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
        let cursor = self.find_events(tenant, event_type, start, stop, Order::Ascending)?;
        visit_data(cursor, visit)
    }

    /// Pushdown: the leaf's filter goes to MongoDB as Cube's query
    /// document (less `re`, whose regular expressions MongoDB would run as
    /// PCRE), and only the top-level fields the filter and the value read
    /// come back; each returned event is then checked and valued by
    /// `plan::filter`'s rules (`rows::RowSelector`), so the server's
    /// filtering only ever narrows what is read, never what is selected.
    fn select(
        &self,
        tenant: &Tenant,
        selection: &Selection<'_>,
        visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let leaf = selection.leaf;
        let db = self.db(tenant)?;
        if let Some(step) = selection.step.filter(|s| *s > 0)
            && let Some(accumulator) = group_accumulator(leaf)
        {
            return self.select_partials(&db, selection, step, accumulator, visit);
        }
        let mut filter = range_filter(selection.start, selection.stop);
        let mut heads: Vec<String> = Vec::new();
        for (key, value) in leaf.filter.query_document() {
            if !is_regex(&value)
                && let Ok(v) = convert::json_to_bson(&value.to_string())
            {
                filter.insert(key.clone(), v);
            }
            heads.push(top_field(&key));
        }
        for key in leaf.projection().keys() {
            heads.push(top_field(key));
        }
        heads.sort();
        heads.dedup();
        let mut projection = doc! {"_id": 0, "t": 1};
        for h in heads {
            projection.insert(h, 1);
        }
        let cursor = self
            .events(&db, &leaf.event_type)
            .find(filter)
            .projection(projection)
            .sort(doc! {"t": 1})
            .batch_size(BATCH)
            .run()
            .map_err(engine)?;
        rows::select_rows(leaf, visit, |each| visit_data(cursor, each))
    }

    fn types(&self, tenant: &Tenant) -> Result<Vec<String>, StoreError> {
        let db = self.db(tenant)?;
        let mut out = Vec::new();
        for name in Self::collections(&db, "_events")? {
            let Some(event_type) = name.strip_suffix("_events") else {
                continue;
            };
            // An empty collection (retention emptied it, or Cube created it)
            // is not a type with events.
            if self.has_events(&db, event_type)? {
                out.push(event_type.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn has_type(&self, tenant: &Tenant, event_type: &str) -> Result<bool, StoreError> {
        let db = self.db(tenant)?;
        self.has_events(&db, event_type)
    }

    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut out = Vec::new();
        for (_, tenant) in self.tenant_dbs()? {
            if !self.types(&tenant)?.is_empty() {
                out.push(tenant);
            }
        }
        Ok(out)
    }

    fn expire(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<Expired, StoreError> {
        let db = self.db(tenant)?;
        let events = self.events(&db, event_type);
        // Whole hours, as the embedded store deletes them, so that both
        // backends keep the same events under one horizon.
        let cutoff = before - before.rem_euclid(3_600_000);
        // The bytes of what goes, measured by the server before it goes.
        let older = if cutoff > LAST_MS {
            doc! {}
        } else {
            doc! {"t": {"$lt": bound(cutoff)}}
        };
        let bytes = Self::bson_bytes(&events, older.clone())?;
        let deleted = events
            .delete_many(older)
            .write_concern(majority())
            .run()
            .map_err(engine)?
            .deleted_count;
        let type_removed = deleted > 0 && !self.has_events(&db, event_type)?;
        Ok(Expired {
            cutoff,
            events: deleted,
            bytes: if deleted > 0 { bytes } else { 0 },
            type_removed,
        })
    }

    fn stats(&self, tenant: &Tenant) -> Result<Vec<TypeStats>, StoreError> {
        let db = self.db(tenant)?;
        let mut out = Vec::new();
        for event_type in self.types(tenant)? {
            let events = self.events(&db, &event_type);
            let count = events.count_documents(doc! {}).run().map_err(engine)?;
            let bytes = Self::bson_bytes(&events, doc! {})?;
            let oldest = events
                .find_one(doc! {})
                .sort(doc! {"t": 1})
                .projection(doc! {"t": 1})
                .run()
                .map_err(engine)?
                .map(|d| time_of(&d))
                .transpose()?;
            out.push(TypeStats {
                event_type,
                events: count,
                bytes,
                oldest,
            });
        }
        Ok(out)
    }

    fn retention_overrides(&self) -> Result<Vec<RetentionOverride>, StoreError> {
        let found = self
            .client
            .database(&self.base)
            .collection::<Document>("cubed_retention")
            .find(doc! {})
            .sort(doc! {"_id.s": 1, "_id.y": 1})
            .run()
            .map_err(engine)?;
        let mut out = Vec::new();
        for d in found {
            let d = d.map_err(engine)?;
            let id = d.get_document("_id").map_err(corrupt)?;
            let tenant = id.get_str("s").map_err(corrupt)?;
            let event_type = match id.get("y") {
                Some(Bson::String(t)) => Some(t.clone()),
                _ => None,
            };
            out.push(RetentionOverride {
                tenant: Tenant::from_key(tenant),
                event_type,
                horizon: d.get_str("h").map_err(corrupt)?.to_owned(),
            });
        }
        Ok(out)
    }

    fn set_retention_override(
        &self,
        tenant: &Tenant,
        event_type: Option<&str>,
        horizon: Option<&str>,
    ) -> Result<(), StoreError> {
        let coll = self
            .client
            .database(&self.base)
            .collection::<Document>("cubed_retention");
        let id = doc! {"s": tenant.key(), "y": event_type.map_or(Bson::Null, |t| Bson::String(t.into()))};
        match horizon {
            Some(h) => {
                coll.replace_one(doc! {"_id": id.clone()}, doc! {"_id": id, "h": h})
                    .upsert(true)
                    .write_concern(majority())
                    .run()
                    .map_err(engine)?;
            }
            None => {
                coll.delete_one(doc! {"_id": id})
                    .write_concern(majority())
                    .run()
                    .map_err(engine)?;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write was journaled and acknowledged by a majority.
        Ok(())
    }
}

impl MetricCache for MongoStore {
    fn get(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        start: i64,
        stop: i64,
    ) -> Result<Vec<CachedBin>, StoreError> {
        let db = self.db(tenant)?;
        self.apply_marks(&db, event_type)?;
        let found = self
            .metrics(&db, event_type)
            .find(doc! {
                "i": false,
                "_id.e": source,
                "_id.l": tier,
                "_id.t": range_of(start, stop),
            })
            .projection(doc! {"v": 1})
            .sort(doc! {"_id.t": 1})
            .batch_size(BATCH)
            .run()
            .map_err(engine)?;
        let mut out = Vec::new();
        for d in found {
            let d = d.map_err(engine)?;
            let time = match d.get_document("_id").ok().and_then(|id| id.get("t")) {
                Some(Bson::DateTime(t)) => t.timestamp_millis(),
                other => return Err(corrupt(format!("a cached bin whose time is {other:?}"))),
            };
            let value = match d.get("v") {
                // Marsup's fork stored bins without a value this way.
                None | Some(Bson::Null) => None,
                v => match number_of(v) {
                    Some(x) if x.is_nan() => None,
                    Some(x) => Some(x),
                    None => return Err(corrupt(format!("a cached value {v:?}"))),
                },
            };
            out.push(CachedBin { time, value });
        }
        Ok(out)
    }

    fn put(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
    ) -> Result<(), StoreError> {
        if bins.is_empty() {
            return Ok(());
        }
        let db_name = self.db_name(tenant)?;
        let db = self.client.database(&db_name);
        if !lock(&self.known).contains(&(db_name.clone(), event_type.to_owned())) {
            self.ensure_metrics(&db, event_type)?;
        }
        let now = DateTime::now();
        // As many of the newest as the cap holds (each document of one
        // source has one size), written oldest first so that the capped
        // collection's FIFO keeps the newest.
        let one = bson::to_vec(&self.bin_doc(source, tier, &bins[0], now))
            .map_err(corrupt)?
            .len() as u64;
        if one > self.cache_bytes {
            return Err(StoreError::TooLarge(format!(
                "a cached bin of {} bytes is over the cache of {} bytes per type (--cache-per-type)",
                one, self.cache_bytes
            )));
        }
        let fit = match self.cache_mode {
            CacheMode::Capped => usize::try_from(self.cache_bytes / one).unwrap_or(usize::MAX),
            CacheMode::Ttl { .. } => usize::MAX,
        };
        let mut sorted: Vec<&CachedBin> = bins.iter().collect();
        sorted.sort_by_key(|b| b.time);
        let keep = &sorted[sorted.len().saturating_sub(fit)..];
        for chunk in keep.chunks(CACHE_WRITE_BATCH) {
            let updates: Vec<Document> = chunk
                .iter()
                .map(|b| {
                    let d = self.bin_doc(source, tier, b, now);
                    let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                    doc! {"q": {"_id": id}, "u": d, "upsert": true}
                })
                .collect();
            let reply = db
                .run_command(doc! {
                    "update": metrics_name(event_type),
                    "updates": updates,
                    "ordered": true,
                })
                .run()
                .map_err(engine)?;
            if let Ok(errors) = reply.get_array("writeErrors")
                && let Some(first) = errors.first()
            {
                return Err(StoreError::Engine(format!("mongodb cache write: {first}")));
            }
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        for (_, tenant) in self.tenant_dbs()? {
            self.clear_tenant(&tenant)?;
        }
        Ok(())
    }

    fn clear_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let db_name = self.db_name(tenant)?;
        let db = self.client.database(&db_name);
        for name in Self::collections(&db, "_metrics")? {
            db.collection::<Document>(&name)
                .drop()
                .run()
                .map_err(engine)?;
            if let Some(event_type) = name.strip_suffix("_metrics") {
                self.ensure_metrics(&db, event_type)?;
            }
        }
        Ok(())
    }

    fn expire_bins(
        &self,
        tenant: &Tenant,
        event_type: &str,
        before: i64,
    ) -> Result<u64, StoreError> {
        let db = self.db(tenant)?;
        let metrics = self.metrics(&db, event_type);
        match metrics
            .delete_many(doc! {"_id.t": {"$lt": bound(before)}})
            .run()
        {
            Ok(r) => Ok(r.deleted_count),
            // Servers that refuse deletes from capped collections: marked
            // invalid instead (never returned; the cap evicts them).
            Err(_) => Ok(metrics
                .update_many(
                    doc! {"i": false, "_id.t": {"$lt": bound(before)}},
                    doc! {"$set": {"i": true}},
                )
                .run()
                .map_err(engine)?
                .modified_count),
        }
    }

    fn invalidate(
        &self,
        tenant: &Tenant,
        event_type: &str,
        tiers: &[i64],
        times: &[i64],
        marks: &[DirtyMark],
    ) -> Result<(), StoreError> {
        let db = self.db(tenant)?;
        self.invalidate_in(&db, event_type, tiers, times, marks)
    }

    fn shares_writes(&self) -> bool {
        true
    }

    fn shared_generation(
        &self,
        tenant: &Tenant,
        event_type: &str,
    ) -> Result<Option<u64>, StoreError> {
        let db = self.db(tenant)?;
        let found = db
            .collection::<Document>("cubed_writes")
            .find_one(doc! {"_id": event_type})
            .run()
            .map_err(engine)?;
        let g = found.and_then(|d| integer_of(d.get("g"))).unwrap_or(0);
        Ok(Some(g.max(0) as u64))
    }

    fn put_as_of(
        &self,
        tenant: &Tenant,
        event_type: &str,
        source: &str,
        tier: i64,
        bins: &[CachedBin],
        generation: Option<u64>,
    ) -> Result<bool, StoreError> {
        MetricCache::put(self, tenant, event_type, source, tier, bins)?;
        let Some(before) = generation else {
            return Ok(true);
        };
        if self.shared_generation(tenant, event_type)? == Some(before) {
            return Ok(true);
        }
        // A put (in any process) came while these were computed: they may
        // be stale. Invalid again, for this source and tier only.
        let db = self.db(tenant)?;
        let dates: Vec<Bson> = bins.iter().map(|b| date(b.time)).collect();
        for chunk in dates.chunks(CACHE_WRITE_BATCH) {
            self.metrics(&db, event_type)
                .update_many(
                    doc! {"_id.e": source, "_id.l": tier, "_id.t": {"$in": chunk.to_vec()}},
                    doc! {"$set": {"i": true}},
                )
                .run()
                .map_err(engine)?;
        }
        Ok(false)
    }
}

impl KeyStore for MongoStore {
    fn keys(&self) -> Result<Vec<crate::model::access::KeyRecord>, StoreError> {
        let found = self
            .client
            .database(&self.base)
            .collection::<Document>("cubed_keys")
            .find(doc! {})
            .sort(doc! {"n": 1})
            .run()
            .map_err(engine)?;
        let mut out = Vec::new();
        for d in found {
            let mut d = d.map_err(engine)?;
            d.remove("n");
            if let Some(id) = d.remove("_id") {
                d.insert("id", id);
            }
            out.push(bson::from_document(d).map_err(corrupt)?);
        }
        Ok(out)
    }

    fn add_key(&self, record: crate::model::access::KeyRecord) -> Result<(), StoreError> {
        let mut d = bson::to_document(&record).map_err(corrupt)?;
        if let Some(id) = d.remove("id") {
            d.insert("_id", id);
        }
        // Creation order across processes: the count of keys so far, made
        // unique by the ObjectId.
        d.insert("n", ObjectId::new());
        self.client
            .database(&self.base)
            .collection::<Document>("cubed_keys")
            .insert_one(d)
            .write_concern(majority())
            .run()
            .map_err(engine)?;
        Ok(())
    }

    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = self
            .client
            .database(&self.base)
            .collection::<Document>("cubed_keys")
            .update_one(
                doc! {"_id": id, "revoked_ms": {"$exists": false}},
                doc! {"$set": {"revoked_ms": now_ms}},
            )
            .write_concern(majority())
            .run()
            .map_err(engine)?;
        Ok(r.modified_count == 1)
    }
}
