//! The real `cubed serve --store mongodb://…` binary against MongoDB
//! (SecantusDB started by tests/common/mongo.rs, or CUBED_TEST_MONGO_URL):
//! two processes on one database stay consistent, and a database in
//! Cube's own layout is read as it is, Cube's cached bins included.

#[path = "common/mongo.rs"]
mod mongo_server;
#[path = "common/spawn.rs"]
mod spawn;

use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use serde_json::{Value, json};

/// 2020-01-01T00:00:00Z.
const T0: i64 = 1_577_836_800_000;
const MIN: i64 = 60_000;

struct Server {
    spawned: Option<spawn::Spawned>,
    collector: String,
    evaluator: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.spawned.take() {
            s.terminate();
        }
    }
}

fn start(url: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let s = spawn::spawn(env!("CARGO_BIN_EXE_cubed"), dir.path(), &["--store", url]);
    Server {
        collector: format!("http://{}", s.collector),
        evaluator: format!("http://{}", s.evaluator),
        spawned: Some(s),
        _dir: dir,
    }
}

fn put(s: &Server, events: Value) {
    let r = ureq::post(&format!("{}/1.0/event/put", s.collector))
        .header("content-type", "application/json")
        .send(events.to_string())
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);
}

fn get(url: &str) -> Value {
    let mut r = ureq::get(url).call().expect("get");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The values of a metric's bins over `n` minutes from `T0`.
fn minutes(s: &Server, expr: &str, n: i64) -> Vec<Value> {
    let v = get(&format!(
        "{}/1.0/metric?expression={expr}&start={}&stop={}&step=60000",
        s.evaluator,
        iso(T0),
        iso(T0 + n * MIN)
    ));
    v.as_array()
        .expect("bins")
        .iter()
        .map(|b| b["value"].clone())
        .collect()
}

fn database(url: &str, name: &str) -> mongodb::sync::Database {
    mongodb::sync::Client::with_uri_str(url)
        .unwrap()
        .database(name)
}

#[test]
fn two_processes_on_one_database_stay_consistent() {
    let (server, name) = (mongo_server::server(), mongo_server::fresh_database());
    let url = server.url(&name);
    let _drop = mongo_server::DropDatabases {
        server: server.clone(),
        name: name.clone(),
    };
    let (a, b) = (start(&url), start(&url));
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"type": "hit", "time": iso(T0 + i * 10_000), "data": {"ms": i}}))
        .collect();
    put(&a, Value::from(events));
    // Read through the other process: computed, then from the cache.
    assert_eq!(
        minutes(&b, "sum(hit(ms))", 3),
        [json!(15), json!(30), json!(0)]
    );
    assert_eq!(
        minutes(&b, "sum(hit(ms))", 3),
        [json!(15), json!(30), json!(0)]
    );
    let cached = database(&url, &name)
        .collection::<Document>("hit_metrics")
        .count_documents(doc! {"i": false, "_id.e": "sum(hit(ms))"})
        .run()
        .unwrap();
    assert_eq!(cached, 3, "B cached its bins in MongoDB");
    // A put through A is seen by B's next read at once (no waiting for
    // A's invalidation interval): B applies A's dirty mark before it
    // trusts the cache.
    put(
        &a,
        json!([{"type": "hit", "time": iso(T0 + 30_000), "data": {"ms": 100}}]),
    );
    assert_eq!(
        minutes(&b, "sum(hit(ms))", 3),
        [json!(115), json!(30), json!(0)]
    );
    // And the other way round, with an upsert by id moving an event.
    put(
        &b,
        json!([{"type": "hit", "id": "x", "time": iso(T0 + 2 * MIN), "data": {"ms": 7}}]),
    );
    assert_eq!(
        minutes(&a, "sum(hit(ms))", 3),
        [json!(115), json!(30), json!(7)]
    );
    put(
        &b,
        json!([{"type": "hit", "id": "x", "time": iso(T0 + MIN), "data": {"ms": 1}}]),
    );
    assert_eq!(
        minutes(&a, "sum(hit(ms))", 3),
        [json!(115), json!(31), json!(0)]
    );
    assert_eq!(
        minutes(&b, "sum(hit(ms))", 3),
        [json!(115), json!(31), json!(0)]
    );
    // The events are where a Cube process would read them.
    let stored = database(&url, &name)
        .collection::<Document>("hit_events")
        .count_documents(doc! {})
        .run()
        .unwrap();
    assert_eq!(stored, 12);
}

#[test]
fn a_cube_database_is_read_as_it_is() {
    let (server, name) = (mongo_server::server(), mongo_server::fresh_database());
    let url = server.url(&name);
    let _drop = mongo_server::DropDatabases {
        server: server.clone(),
        name: name.clone(),
    };
    // What square/cube wrote: events with ObjectIds (one with a client id),
    // numbers as the Node driver typed them, and a capped metrics
    // collection with its indexes and two cached bins, one valid and one
    // invalidated.
    let db = database(&url, &name);
    let at = |ms: i64| Bson::DateTime(DateTime::from_millis(ms));
    db.create_collection("legacy_events").run().unwrap();
    let events = db.collection::<Document>("legacy_events");
    events
        .insert_many([
            doc! {"_id": ObjectId::new(), "t": at(T0), "d": {"ms": 5_i32}},
            doc! {"_id": ObjectId::new(), "t": at(T0 + 10_000), "d": {"ms": 2.5_f64}},
            doc! {"_id": "given", "t": at(T0 + 20_000), "d": {"ms": 7.5_f64, "path": "/a"}},
        ])
        .run()
        .unwrap();
    db.create_collection("legacy_metrics")
        .capped(true)
        .size(10_000_000)
        .run()
        .unwrap();
    let metrics = db.collection::<Document>("legacy_metrics");
    let bin = |t: i64, invalid: bool, v: f64| {
        doc! {"_id": {"e": "sum(legacy(ms))", "l": 60_000_i32, "t": at(t)}, "i": invalid, "v": v}
    };
    metrics
        .insert_many([bin(T0 + MIN, false, 42.0), bin(T0 + 2 * MIN, true, 99.0)])
        .run()
        .unwrap();
    let s = start(&url);
    let types = get(&format!("{}/1.0/types", s.evaluator));
    assert!(
        types.as_array().unwrap().contains(&json!("legacy")),
        "{types}"
    );
    let got = get(&format!(
        "{}/1.0/event?expression=legacy(ms)&start={}&stop={}",
        s.evaluator,
        iso(T0),
        iso(T0 + MIN)
    ));
    let values: Vec<Value> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["ms"].clone())
        .collect();
    assert_eq!(values, [json!(5), json!(2.5), json!(7.5)]);
    // Minute 0 from the events; minute 1 is Cube's valid cached bin (there
    // are no events in it: 42 can only come from the cache); minute 2's
    // bin was invalid, so it is computed.
    assert_eq!(
        minutes(&s, "sum(legacy(ms))", 3),
        [json!(15), json!(42), json!(0)]
    );
    // A put through Cubed invalidates Cube's bin with Cube's flag.
    put(
        &s,
        json!([{"type": "legacy", "time": iso(T0 + MIN + 1), "data": {"ms": 1}}]),
    );
    assert_eq!(
        minutes(&s, "sum(legacy(ms))", 3),
        [json!(15), json!(1), json!(0)]
    );
    // Cubed's bin took the place of Cube's (the same key, Cube's layout).
    let mine = metrics
        .find_one(doc! {"_id": {"e": "sum(legacy(ms))", "l": 60_000_i32, "t": at(T0 + MIN)}})
        .run()
        .unwrap()
        .expect("the bin");
    assert_eq!(mine.get("v"), Some(&Bson::Double(1.0)));
    assert_eq!(mine.get("i"), Some(&Bson::Boolean(false)));
    // The new event is stored as Cube stores them.
    let stored = events
        .find_one(doc! {"d.ms": 1})
        .run()
        .unwrap()
        .expect("stored");
    assert!(matches!(stored.get("_id"), Some(Bson::ObjectId(_))));
    assert_eq!(stored.get("t"), Some(&at(T0 + MIN + 1)));
    assert_eq!(stored.get("d"), Some(&Bson::Document(doc! {"ms": 1_i32})));
}

#[test]
fn what_mongodb_cannot_hold_is_refused_before_anything_is_stored() {
    // A name of 14 characters: with `-` and a 50-character service, 65.
    let (server, name) = (mongo_server::server(), mongo_server::fresh_database());
    let name = format!("{name:_<14}");
    let url = server.url(&name);
    let _drop = mongo_server::DropDatabases {
        server: server.clone(),
        name: name.clone(),
    };
    let s = start(&url);
    let refused = |service: Option<&str>, body: Value| -> (u16, String) {
        let mut req = ureq::post(&format!("{}/1.0/event/put", s.collector))
            .header("content-type", "application/json");
        if let Some(svc) = service {
            req = req.header("fiware-service", svc);
        }
        let mut r = req
            .config()
            .http_status_as_error(false)
            .build()
            .send(body.to_string())
            .expect("put");
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    // A field name with a NUL character is no BSON key: the whole batch goes.
    let (status, body) = refused(
        None,
        json!([
            {"type": "ok", "time": iso(T0), "data": {"x": 1}},
            {"type": "nul", "time": iso(T0), "data": {"a\u{0}b": 1}}
        ]),
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("NUL"), "{body}");
    // A service whose database name would pass MongoDB's 63 characters;
    // one that fits is stored.
    let (status, body) = refused(
        Some(&"s".repeat(48)),
        json!([{"type": "ok", "time": iso(T0)}]),
    );
    assert_eq!(status, 200, "{body}");
    let long = "s".repeat(50);
    let (status, body) = refused(Some(&long), json!([{"type": "ok", "time": iso(T0)}]));
    assert_eq!(status, 413, "{body}");
    let db = database(&url, &name);
    let names = db.list_collection_names().run().unwrap();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("_events") && n != "cube_request_events"),
        "{names:?}"
    );
}

/// The database stops in the middle of a stream of puts and comes back:
/// puts meanwhile are refused (never acknowledged), the server recovers
/// without a restart, and every acknowledged event is there. Always on a
/// SecantusDB of its own (it is stopped and started again), keeping its
/// files in a temporary directory.
#[test]
fn the_database_stopping_mid_put_loses_nothing_acknowledged() {
    let files = tempfile::tempdir().unwrap();
    let storage = files.path().to_str().unwrap().to_owned();
    let port = mongo_server::free_port();
    let db = mongo_server::OwnSecantus::start(port, &storage);
    // A short server selection timeout: a put fails in 2 s while the
    // database is away, instead of the driver's 30.
    let url = format!("mongodb://127.0.0.1:{port}/cube?serverSelectionTimeoutMS=2000");
    let s = start(&url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let put_batch = |b: usize| -> u16 {
        let events: Vec<Value> = (0..50)
            .map(|i| {
                json!({"type": "durable", "id": format!("b{b}i{i}"),
                       "time": iso(T0 + (b * 50 + i) as i64), "data": {"b": b}})
            })
            .collect();
        match agent
            .post(&format!("{}/1.0/event/put", s.collector))
            .header("content-type", "application/json")
            .send(Value::from(events).to_string())
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    };
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut b = 0;
    while acknowledged.len() < 20 {
        assert_eq!(put_batch(b), 200, "batch {b} before the stop");
        acknowledged.push(b);
        b += 1;
    }
    // Stop it while puts go on from another thread.
    let stopper = std::thread::spawn(move || db.stop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        match put_batch(b) {
            200 => acknowledged.push(b),
            status => {
                assert!(status >= 500 || status == 0, "batch {b}: {status}");
                refused += 1;
            }
        }
        b += 1;
    }
    stopper.join().unwrap();
    assert!(
        refused > 0,
        "no put was refused while the database was down"
    );
    // Back, on the same files: puts succeed again without a restart.
    let _db = mongo_server::OwnSecantus::start(port, &storage);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut after = 0;
    while after < 5 {
        assert!(std::time::Instant::now() < deadline, "puts never recovered");
        if put_batch(b) == 200 {
            acknowledged.push(b);
            after += 1;
        }
        b += 1;
    }
    let got = get(&format!(
        "{}/1.0/event?expression=durable(b)&start={}&stop={}&limit=10000",
        s.evaluator,
        iso(T0),
        iso(T0 + 10 * MIN)
    ));
    let mut per_batch = std::collections::HashMap::<u64, usize>::new();
    for e in got.as_array().unwrap() {
        *per_batch
            .entry(e["data"]["b"].as_u64().unwrap())
            .or_default() += 1;
    }
    for b in &acknowledged {
        assert_eq!(
            per_batch.get(&(*b as u64)),
            Some(&50),
            "acknowledged batch {b}"
        );
    }
    // A refused batch is all or nothing (one transaction).
    assert!(per_batch.values().all(|n| *n == 50), "{per_batch:?}");
}
