//! API keys and roles, end to end on the real binary: keys made and revoked
//! with `cubed keys` (also while the server runs), every way a client can
//! present one (Bearer, Basic as collectd sends it, a WebSocket subprotocol,
//! the sign-in cookie), 401 and 403 as JSON and counted, one service never
//! seeing another's, the secure default on exposed addresses, keyed UDP.

#[path = "common/spawn.rs"]
mod spawn;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn bin() -> String {
    spawn::cubed_bin()
}

/// `cubed keys --data-dir DIR create --service S --role R`: the key it prints.
fn create_key(dir: &Path, service: &str, role: &str) -> String {
    let out = Command::new(bin())
        .args(["keys", "--data-dir"])
        .arg(dir)
        .args(["create", "--service", service, "--role", role])
        .output()
        .expect("run cubed keys");
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(key.starts_with("cubed_"), "{key}");
    key
}

/// The id of a key: the 16 hex digits after `cubed_`.
fn id_of(key: &str) -> &str {
    &key[6..22]
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A request's answer: status, headers we look at, JSON body.
struct Answer {
    status: u16,
    body: Value,
    www_authenticate: Option<String>,
    set_cookie: Option<String>,
}

fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let a = agent();
    let mut resp = match method {
        "GET" | "DELETE" => {
            let mut req = if method == "GET" {
                a.get(url)
            } else {
                a.delete(url)
            };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
        _ => {
            let mut req = a.post(url).header("content-type", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send(body.unwrap_or(""))
        }
    }
    .expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (www_authenticate, set_cookie) = (header("www-authenticate"), header("set-cookie"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        www_authenticate,
        set_cookie,
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// `Basic base64("collectd:KEY")`, as curl (collectd's write_http) sends
/// its `User` and `Password`.
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// Polls until `f` holds (keys are re-read every second).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn errors_of(tree: &Value, service: &str) -> u64 {
    tree["services"][service]["sum"]["incomingTransactionErrors"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn keys_bind_each_request_to_one_service_and_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = create_key(dir.path(), "acme", "admin");
    let operator = create_key(dir.path(), "default-service", "admin");
    let writer = create_key(dir.path(), "acme", "write");
    let reader = create_key(dir.path(), "acme", "read");
    let other_reader = create_key(dir.path(), "other", "read");
    let other_writer = create_key(dir.path(), "other", "write");
    let server = spawn::spawn(&bin(), dir.path(), &[]);
    let c = |p: &str| format!("http://{}{p}", server.collector);
    let e = |p: &str| format!("http://{}{p}", server.evaluator);
    let now = chrono::Utc::now().timestamp_millis();
    let event = |t: &str| json!([{"type": t, "time": now - 60_000, "data": {"v": 1}}]).to_string();

    // Without a key, or with one that is not ours: 401, JSON, a challenge.
    for (method, url) in [
        ("GET", e("/1.0/types")),
        ("GET", e("/1.0/metric?expression=sum(req)&step=6e4")),
        ("GET", e("/1.0/event?expression=req")),
        ("GET", e("/admin/metrics")),
        ("GET", e("/metrics")),
        ("GET", e("/1.0/status")),
        ("DELETE", e("/1.0/metric/cache")),
        ("POST", c("/1.0/event/put")),
        ("POST", c("/collectd")),
    ] {
        let a = call(method, &url, &[], Some("[]"));
        assert_eq!(a.status, 401, "{method} {url}: {}", a.body);
        assert_eq!(a.body["error"], "unauthorized", "{url}");
        assert!(a.www_authenticate.unwrap_or_default().contains("Bearer"));
        // The reader's key with its last character changed (to another one:
        // a key ending in `0` made this a valid key once in 16 runs).
        let last = if reader.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &reader[..reader.len() - 1]);
        assert_ne!(forged, reader);
        let a = call(
            method,
            &url,
            &[("authorization", &bearer(&forged))],
            Some("[]"),
        );
        assert_eq!(a.status, 401, "{url}: {}", a.body);
        assert_eq!(a.body["error"], "invalid key");
    }
    // The dashboard's files need no key.
    assert_eq!(call("GET", &e("/"), &[], None).status, 200);

    // Writers put into their own service, and nothing else.
    let put = |key: &str, t: &str, service: Option<&str>| {
        let auth = bearer(key);
        let mut h = vec![("authorization", auth.as_str())];
        if let Some(s) = service {
            h.push(("fiware-service", s));
        }
        call("POST", &c("/1.0/event/put"), &h, Some(&event(t)))
    };
    assert_eq!(put(&writer, "req", None).status, 200);
    assert_eq!(put(&writer, "req", Some("acme")).status, 200);
    let a = put(&writer, "req", Some("other"));
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(put(&other_writer, "secret", None).status, 200);
    assert_eq!(put(&reader, "req", None).status, 403, "a reader cannot put");
    // collectd's write_http sends its User/Password as Basic auth.
    let collectd = json!([{"values": [1.5], "dstypes": ["gauge"], "dsnames": ["value"],
        "time": (now / 1000 - 30) as f64, "interval": 10.0, "host": "h", "plugin": "load",
        "plugin_instance": "", "type": "load", "type_instance": ""}])
    .to_string();
    let a = call(
        "POST",
        &c("/collectd"),
        &[("authorization", &basic("collectd", &writer))],
        Some(&collectd),
    );
    assert_eq!(a.status, 200, "{}", a.body);

    // Readers see their own service only; a writer cannot read.
    let types = |key: &str| {
        call(
            "GET",
            &e("/1.0/types"),
            &[("authorization", &bearer(key))],
            None,
        )
    };
    let mut acme_types: Vec<String> =
        serde_json::from_value(types(&reader).body).expect("type list");
    acme_types.sort();
    assert!(acme_types.contains(&"req".to_owned()), "{acme_types:?}");
    assert!(!acme_types.contains(&"secret".to_owned()), "{acme_types:?}");
    assert_eq!(types(&other_reader).body, json!(["secret"]));
    assert_eq!(types(&writer).status, 403);
    let a = call(
        "GET",
        &e("/1.0/types"),
        &[
            ("authorization", &bearer(&reader)),
            ("fiware-service", "other"),
        ],
        None,
    );
    assert_eq!(a.status, 403, "{}", a.body);
    let a = call(
        "GET",
        &e("/1.0/event?expression=secret"),
        &[("authorization", &bearer(&reader))],
        None,
    );
    assert_eq!((a.status, a.body.clone()), (200, json!([])));
    let a = call(
        "GET",
        &e("/1.0/event?expression=secret"),
        &[("authorization", &bearer(&other_reader))],
        None,
    );
    assert_eq!(a.body.as_array().map(Vec::len), Some(1), "{}", a.body);

    // Cache clearing, resets and results need admin.
    let clear = |key: &str| {
        call(
            "DELETE",
            &e("/1.0/metric/cache"),
            &[("authorization", &bearer(key))],
            None,
        )
        .status
    };
    assert_eq!(clear(&reader), 403);
    assert_eq!(clear(&admin), 200);
    let results = |key: &str| {
        call(
            "GET",
            &e("/1.0/results?session_id=x"),
            &[("authorization", &bearer(key))],
            None,
        )
        .status
    };
    assert_eq!(results(&reader), 403);
    // Module results are server-wide: the operator's (an admin key of the
    // default service) only.
    assert_eq!(results(&admin), 403);
    assert_eq!(results(&operator), 200);
    let status = |key: &str| {
        call(
            "GET",
            &e("/1.0/status"),
            &[("authorization", &bearer(key))],
            None,
        )
        .status
    };
    assert_eq!(
        (status(&reader), status(&admin), status(&operator)),
        (403, 403, 200)
    );

    // /admin/metrics shows a key's own service only; 401s and 403s are
    // counted as errors there (a 403 under the key's service).
    let tree = |key: &str| {
        call(
            "GET",
            &e("/admin/metrics"),
            &[("authorization", &bearer(key))],
            None,
        )
        .body
    };
    let before = tree(&reader);
    let services: Vec<&String> = before["services"]
        .as_object()
        .expect("services")
        .keys()
        .collect();
    assert_eq!(services, vec!["acme"], "{before}");
    assert_eq!(types(&writer).status, 403);
    let after = tree(&reader);
    assert_eq!(errors_of(&after, "acme"), errors_of(&before, "acme") + 1);
    let prometheus = call(
        "GET",
        &e("/metrics"),
        &[("authorization", &bearer(&reader))],
        None,
    );
    let text = prometheus.body.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("service=\"acme\""), "{text}");
    assert!(!text.contains("service=\"other\""), "{text}");
    assert!(!text.contains("cubed_module_result"), "server-wide: {text}");
    let a = call(
        "DELETE",
        &e("/admin/metrics"),
        &[("authorization", &bearer(&reader))],
        None,
    );
    assert_eq!(a.status, 403);
    let a = call(
        "DELETE",
        &e("/admin/metrics"),
        &[("authorization", &bearer(&admin))],
        None,
    );
    assert_eq!(a.status, 204);
    let others = tree(&other_reader);
    assert!(
        others["services"]["other"].is_object(),
        "another service's figures stay: {others}"
    );

    // Keys over HTTP: an admin lists and makes its own service's only.
    let a = call(
        "GET",
        &e("/admin/keys"),
        &[("authorization", &bearer(&admin))],
        None,
    );
    let ids: Vec<&str> = a
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "{}", a.body);
    assert!(!ids.contains(&id_of(&other_reader)));
    assert!(
        !a.body.to_string().contains(&reader),
        "no key is ever shown again"
    );
    let a = call(
        "POST",
        &e("/admin/keys"),
        &[("authorization", &bearer(&admin))],
        Some(r#"{"role": "read"}"#),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let made = a.body["key"].as_str().expect("key").to_owned();
    assert_eq!(types(&made).status, 200);
    let a = call(
        "DELETE",
        &e(&format!("/admin/keys/{}", id_of(&other_reader))),
        &[("authorization", &bearer(&admin))],
        None,
    );
    assert_eq!(a.status, 404, "another service's key cannot be revoked");
    let a = call(
        "DELETE",
        &e(&format!("/admin/keys/{}", id_of(&made))),
        &[("authorization", &bearer(&admin))],
        None,
    );
    assert_eq!(a.status, 200);
    assert_eq!(types(&made).status, 401, "revoked at once");

    // The sign-in cookie authorizes GETs, never writes.
    let a = call(
        "POST",
        &e("/1.0/auth"),
        &[("authorization", &bearer(&reader))],
        None,
    );
    assert_eq!((a.status, a.body["service"].as_str()), (200, Some("acme")));
    let cookie = a.set_cookie.expect("set-cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_owned();
    assert_eq!(
        call("GET", &e("/1.0/types"), &[("cookie", &pair)], None).status,
        200
    );
    let a = call(
        "POST",
        &e("/1.0/auth"),
        &[("authorization", &bearer(&writer))],
        None,
    );
    let write_cookie = a.set_cookie.expect("set-cookie");
    let write_pair = write_cookie.split(';').next().expect("pair");
    let a = call(
        "POST",
        &c("/1.0/event/put"),
        &[("cookie", write_pair)],
        Some(&event("req")),
    );
    assert_eq!(
        a.status, 401,
        "a cookie never authorizes a write: {}",
        a.body
    );
    let a = call(
        "POST",
        &e("/1.0/auth"),
        &[("authorization", &bearer(&admin))],
        None,
    );
    let admin_cookie = a.set_cookie.expect("set-cookie");
    let admin_pair = admin_cookie.split(';').next().expect("pair");
    let a = call(
        "GET",
        &e("/admin/metrics?reset=true"),
        &[("cookie", admin_pair)],
        None,
    );
    assert_eq!(
        a.status, 401,
        "a GET that resets is not done on a cookie: {}",
        a.body
    );

    // WebSockets: the key as a subprotocol; the server selects `cubed`.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = format!("ws://{}/1.0/types/get", server.evaluator);
        let mut req = url.as_str().into_client_request().expect("request");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            format!("cubed, cubed-key.{reader}")
                .parse()
                .expect("header"),
        );
        let (mut ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("connect");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("cubed")
        );
        ws.send(tokio_tungstenite::tungstenite::Message::text("{}"))
            .await
            .expect("send");
        let answer = ws.next().await.expect("answer").expect("message");
        let got: Vec<String> =
            serde_json::from_str(answer.to_text().expect("text")).expect("types");
        assert!(got.contains(&"req".to_owned()) && !got.contains(&"secret".to_owned()));
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401)
            }
            other => panic!("a WebSocket without a key must be refused: {other:?}"),
        }
        let put_url = format!("ws://{}/1.0/event/put", server.collector);
        let mut req = put_url.as_str().into_client_request().expect("request");
        req.headers_mut()
            .insert("authorization", bearer(&reader).parse().expect("header"));
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 403)
            }
            other => panic!("a reader cannot open a put socket: {other:?}"),
        }
        // A write cookie does not open a put socket either.
        let mut req = put_url.as_str().into_client_request().expect("request");
        req.headers_mut()
            .insert("cookie", write_pair.parse().expect("header"));
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401)
            }
            other => panic!("a cookie cannot open a put socket: {other:?}"),
        }
    });

    // A socket opened with a key is closed (1008) once the key is revoked.
    let doomed = create_key(dir.path(), "acme", "write");
    eventually("the new writer to be accepted", || {
        put(&doomed, "req", None).status == 200
    });
    let socket = rt.block_on(async {
        let url = format!("ws://{}/1.0/event/put", server.collector);
        let mut req = url.as_str().into_client_request().expect("request");
        req.headers_mut()
            .insert("authorization", bearer(&doomed).parse().expect("header"));
        tokio_tungstenite::connect_async(req)
            .await
            .expect("connect")
            .0
    });
    let out = Command::new(bin())
        .args(["keys", "--data-dir"])
        .arg(dir.path())
        .args(["revoke", id_of(&doomed)])
        .output()
        .expect("revoke");
    assert!(out.status.success(), "{out:?}");
    rt.block_on(async {
        let mut socket = socket;
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match socket.next().await {
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                        return frame.map(|f| u16::from(f.code));
                    }
                    Some(Ok(_)) => continue,
                    _ => return None,
                }
            }
        })
        .await
        .expect("the socket of a revoked key is closed");
        assert_eq!(closed, Some(1008));
    });

    // `cubed keys` while the server runs: a revoked key stops working, a new
    // one starts working, within the reload interval.
    let out = Command::new(bin())
        .args(["keys", "--data-dir"])
        .arg(dir.path())
        .args(["revoke", id_of(&reader)])
        .output()
        .expect("revoke");
    assert!(out.status.success(), "{out:?}");
    eventually("the revoked key to be refused", || {
        types(&reader).status == 401
    });
    let fresh = create_key(dir.path(), "acme", "read");
    eventually("the new key to be accepted", || types(&fresh).status == 200);
    let out = Command::new(bin())
        .args(["keys", "--data-dir"])
        .arg(dir.path())
        .args(["list", "--service", "acme"])
        .output()
        .expect("list");
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains(id_of(&reader)) && listing.contains(id_of(&fresh)),
        "{listing}"
    );
    assert!(!listing.contains(id_of(&other_reader)), "{listing}");
    assert!(
        !listing.contains(&fresh),
        "keys are never listed: {listing}"
    );
    let keyfile = std::fs::read_to_string(dir.path().join("keys.json")).expect("keys.json");
    for key in [&admin, &writer, &reader, &fresh, &operator] {
        assert!(!keyfile.contains(key.as_str()), "only hashes are stored");
    }
    server.terminate();
}

/// Runs `cubed serve` with `args` and returns its exit status and stderr if
/// it exits within 60 s, or `None` (killing it) once it says it is serving.
fn serve_outcome(dir: &Path, args: &[&str]) -> Option<(std::process::ExitStatus, String)> {
    let mut child = Command::new(bin())
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("CUBED_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut text = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("cubed serving") {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        text.push_str(&line);
        text.push('\n');
    }
    Some((child.wait().expect("wait"), text))
}

#[test]
fn an_exposed_address_needs_keys_or_auth_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exposed = [
        "--collector-addr",
        "0.0.0.0:0",
        "--evaluator-addr",
        "127.0.0.1:0",
        "--udp-addr",
        "off",
    ];
    let (status, stderr) = serve_outcome(dir.path(), &exposed).expect("it must refuse");
    assert!(!status.success());
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without API keys"),
        "{stderr}"
    );
    assert!(stderr.contains("--auth off"), "{stderr}");
    let mut open = exposed.to_vec();
    open.extend(["--auth", "off"]);
    assert!(
        serve_outcome(dir.path(), &open).is_none(),
        "--auth off serves"
    );
    create_key(dir.path(), "acme", "admin");
    assert!(
        serve_outcome(dir.path(), &exposed).is_none(),
        "with a key it serves"
    );
}

#[test]
fn with_keys_udp_takes_only_keyed_datagrams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = create_key(dir.path(), "acme", "write");
    let reader = create_key(dir.path(), "acme", "read");
    // Without --udp-keyed, the UDP collector is off when keys are in force.
    let server = spawn::spawn(&bin(), dir.path(), &["--udp-addr", "127.0.0.1:0"]);
    assert_eq!(server.udp, "off");
    server.terminate();
    let server = spawn::spawn(
        &bin(),
        dir.path(),
        &["--udp-addr", "127.0.0.1:0", "--udp-keyed"],
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let now = chrono::Utc::now().timestamp_millis();
    for (t, key) in [
        ("unkeyed", None),
        ("forged", Some("cubed_x")),
        ("keyed", Some(writer.as_str())),
    ] {
        let mut d = json!({"type": t, "time": now - 10_000, "data": {"v": 1}});
        if let Some(k) = key {
            d["key"] = Value::from(k);
        }
        socket
            .send_to(d.to_string().as_bytes(), &server.udp)
            .expect("send");
    }
    let e = format!("http://{}/1.0/types", server.evaluator);
    // The reader's own requests leave `cube_request` events in acme, once a
    // second: the datagrams' types are the others.
    let types = || -> Vec<String> {
        call("GET", &e, &[("authorization", &bearer(&reader))], None)
            .body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|t| !t.starts_with("cube_"))
            .map(str::to_owned)
            .collect()
    };
    eventually("the keyed datagram to be stored", || types() == ["keyed"]);
    // Give the others as long again: they never arrive.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(types(), ["keyed"]);
    server.terminate();
}
