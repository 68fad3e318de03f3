//! The dashboard in a real browser: Debian's chromium, headless, driven over
//! the DevTools protocol (headless_chrome), loads the page from a server this
//! test starts, adds charts over events the test put, checks what they show,
//! the inline error for a bad expression, the URL that reproduces the
//! dashboard, the type browser, and that events put afterwards show up live
//! in a chart and in the event tail. Screenshots are kept in
//! `target/tmp/dashboard-*.png`.
//!
//! Needs chromium (`apt-get install -y chromium`; `.ci/run` installs it).
//! `CUBED_CHROMIUM` names another binary.

mod common;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{TestServer, enc, get};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::{Value, json};

fn chromium() -> PathBuf {
    let path = std::env::var_os("CUBED_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "the dashboard test needs chromium at {} (Debian: apt-get install -y chromium; \
         or set CUBED_CHROMIUM to a Chromium binary)",
        path.display()
    );
    path
}

fn launch() -> Browser {
    let profile = tempfile::tempdir().expect("profile dir").keep();
    let options = LaunchOptions::default_builder()
        .path(Some(chromium()))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1400, 1000)))
        .user_data_dir(Some(profile))
        .idle_browser_timeout(Duration::from_secs(300))
        .args(vec![
            OsStr::new("--disable-gpu"),
            OsStr::new("--disable-quic"),
            OsStr::new("--disable-component-update"),
        ])
        .build()
        .expect("launch options");
    Browser::new(options).expect("chromium starts")
}

/// Evaluates `js` (an expression) in the page and parses its JSON.stringify'd value.
fn eval(tab: &Tab, js: &str) -> Value {
    let wrapped = format!("JSON.stringify((() => {{ return {js}; }})())");
    let r = tab.evaluate(&wrapped, false).expect("evaluate");
    match r.value {
        Some(Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Polls `js` until `ok` accepts its value; fails with the last value seen.
fn wait_for(
    tab: &Tab,
    what: &str,
    js: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = eval(tab, js);
        if ok(&v) {
            return v;
        }
        if Instant::now() > deadline {
            screenshot(tab, "failure");
            panic!("timed out waiting for {what}; last value: {v}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn screenshot(tab: &Tab, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("dashboard-{name}.png"));
    if let Ok(png) = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true) {
        let _ = std::fs::write(&path, png);
        eprintln!("screenshot: {}", path.display());
    }
    path
}

/// The text shown by `.selector` inside the chart for `expression`.
fn chart_text(expression: &str, selector: &str) -> String {
    format!(
        "(() => {{ const c = [...document.querySelectorAll('.chart')].find(e => e.dataset.expression === {e}); \
         return c ? c.querySelector('{selector}').textContent : null; }})()",
        e = json!(expression)
    )
}

/// What the chart for `expression` draws: its non-empty (time, value) pairs.
fn chart_points(expression: &str) -> String {
    format!(
        "(() => {{ const c = window.cubed.state.charts.find(c => c.expression === {e} && c.confirmed); \
         if (!c) return null; const [xs, ys] = c.plot.data; \
         return xs.map((x, i) => [x * 1000, ys[i]]).filter(p => p[1] !== null && p[1] !== 0); }})()",
        e = json!(expression)
    )
}

/// A grouped chart's legend as shown: the labels of its visible legend
/// (uPlot's first row is the time).
fn legend(expression: &str) -> String {
    format!(
        "(() => {{ const c = window.cubed.state.charts.find(c => c.expression === {e} && c.confirmed); \
         if (!c || !c.columns) return null; const l = c.el.querySelector('.u-legend'); \
         if (!l || l.offsetParent === null) return null; \
         return [...l.querySelectorAll('.u-series .u-label')].slice(1).map(e => e.textContent); }})()",
        e = json!(expression)
    )
}

/// A grouped chart's columns: [[group, [[time ms, value], …]], …] without
/// empty or zero bins.
fn chart_columns(expression: &str) -> String {
    format!(
        "(() => {{ const c = window.cubed.state.charts.find(c => c.expression === {e} && c.confirmed); \
         if (!c || !c.columns) return null; \
         return c.columns.map(([n, col]) => [n, col.map((v, i) => [c.times[i] * 1000, v]).filter(p => p[1] !== null && p[1] !== 0)]); }})()",
        e = json!(expression)
    )
}

/// The value a chart holds for the bin at `time` (ms).
fn chart_value(expression: &str, time: i64) -> String {
    format!(
        "(() => {{ const c = window.cubed.state.charts.find(c => c.expression === {e}); \
         return c ? (c.data.get({time}) ?? null) : null; }})()",
        e = json!(expression)
    )
}

fn type_into(tab: &Tab, selector: &str, text: &str) {
    let el = tab.wait_for_element(selector).expect(selector);
    el.click().expect("click");
    tab.type_str(text).expect("type");
    tab.press_key("Enter").expect("enter");
}

#[test]
fn dashboard_charts_errors_url_types_and_live_updates() {
    let server = TestServer::start();
    let minute = 60_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    // Two minutes back, so that a minute rolling over during the test (or
    // Cubism's delays) cannot push the newest bin out of a window.
    let last = now - now % minute - 2 * minute;
    // Bin k minutes before the newest closed one holds k+1 requests with duration 10*(k+1).
    let mut events = Vec::new();
    for k in 0..10i64 {
        for j in 0..=k {
            events.push(json!({
                "type": "request",
                "time": last - k * minute + j * 1000,
                "data": {"duration": 10 * (k + 1), "path": if k % 2 == 0 { "/login" } else { "/home" }},
            }));
        }
    }
    server.put(&Value::Array(events));

    let browser = launch();
    let tab = browser.new_tab().expect("tab");
    tab.set_default_timeout(Duration::from_secs(20));
    let base = server.evaluator_url("/");
    tab.navigate_to(&format!("{base}?step=60000&window=3600000"))
        .expect("navigate")
        .wait_until_navigated()
        .expect("page loads");

    // The socket is up and the type browser lists the type.
    wait_for(
        &tab,
        "the metric socket",
        "document.getElementById('status').textContent",
        Duration::from_secs(10),
        |v| v == "live",
    );
    wait_for(
        &tab,
        "the type browser",
        "[...document.querySelectorAll('#types li button:first-child')].map(b => b.textContent)",
        Duration::from_secs(10),
        |v| v == &json!(["request"]),
    );

    // Add two charts by typing their expressions.
    let count = "sum(request)";
    let mean = "sum(request(duration).eq(path, \"/login\")) / sum(request.eq(path, \"/login\"))";
    type_into(&tab, "#expression", count);
    type_into(&tab, "#expression", mean);

    // sum(request): 55 events spread 1..10 per bin; the window's empty bins are 0.
    let points = wait_for(
        &tab,
        "the count chart's data",
        &chart_points(count),
        Duration::from_secs(15),
        |v| v.as_array().is_some_and(|a| a.len() == 10),
    );
    let mut expected: Vec<(i64, f64)> = (0..10)
        .map(|k| (last - k * minute, (k + 1) as f64))
        .collect();
    expected.sort_by_key(|p| p.0);
    let drawn: Vec<(i64, f64)> = points
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p[0].as_f64().unwrap_or(0.0) as i64,
                p[1].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert_eq!(drawn, expected, "the count chart draws one value per bin");
    assert_eq!(eval(&tab, &chart_text(count, ".chart-max")), json!("10"));
    assert_eq!(eval(&tab, &chart_text(count, ".chart-min")), json!("0"));

    // The mean of /login durations: only even k bins have /login events, each
    // bin's durations are all 10*(k+1): min 10, max 90; the server agrees.
    wait_for(
        &tab,
        "the mean chart's max",
        &chart_text(mean, ".chart-max"),
        Duration::from_secs(15),
        |v| v == "90",
    );
    assert_eq!(eval(&tab, &chart_text(mean, ".chart-min")), json!("10"));
    let (status, served) = get(
        &server.evaluator_url(&format!(
            "/1.0/metric?step=60000&start={}&stop={}&expression={}",
            last - 9 * minute,
            last + minute,
            enc(mean)
        )),
        None,
    );
    assert_eq!(status, 200);
    let served_values: Vec<f64> = served
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("value").and_then(Value::as_f64))
        .collect();
    assert_eq!(served_values, vec![90.0, 70.0, 50.0, 30.0, 10.0]);
    let mean_points = eval(&tab, &chart_points(mean));
    let drawn_mean: Vec<f64> = mean_points
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p[1].as_f64())
        .collect();
    assert_eq!(
        drawn_mean, served_values,
        "the chart draws what the server computes"
    );

    // A grouped expression: a line per group, with a legend, drawing the
    // server's rows (the /login bins are the even k, /home the odd).
    let grouped = "sum(request).group(path)";
    type_into(&tab, "#expression", grouped);
    wait_for(
        &tab,
        "the grouped chart's legend",
        &legend(grouped),
        Duration::from_secs(15),
        |v| v == &json!(["/home", "/login"]),
    );
    let per_group = |parity: i64| -> Value {
        let mut points: Vec<Value> = (0..10i64)
            .filter(|k| k % 2 == parity)
            .map(|k| json!([last - k * minute, k + 1]))
            .collect();
        points.reverse();
        Value::Array(points)
    };
    wait_for(
        &tab,
        "the grouped chart's columns",
        &chart_columns(grouped),
        Duration::from_secs(15),
        |v| v == &json!([["/home", per_group(1)], ["/login", per_group(0)]]),
    );
    // The top 1 group over the window (/home: 30 requests, /login: 25),
    // the rest as `other`: the expression asks the server for it.
    eval(
        &tab,
        &format!(
            "(() => {{ const c = window.cubed.state.charts.find(c => c.expression === {e}); \
             const s = c.el.querySelector('.chart-top'); s.value = '1'; s.onchange(); return true; }})()",
            e = json!(grouped)
        ),
    );
    let top1 = "sum(request).group(path, 1)";
    wait_for(
        &tab,
        "the top group and the rest",
        &legend(top1),
        Duration::from_secs(15),
        |v| v == &json!(["/home", "other"]),
    );
    // Stacked: the top of the stack is every group together, which is
    // what sum(request) draws.
    eval(
        &tab,
        "(() => { const m = document.getElementById('mode'); m.value = 'stacked'; m.onchange(); return true; })()",
    );
    let stacked_top = format!(
        "(() => {{ const c = window.cubed.state.charts.find(c => c.expression === {e} && c.confirmed); \
         if (!c || !c.columns) return null; const [xs, top] = c.plot.data; \
         return xs.map((x, i) => [x * 1000, top[i]]).filter(p => p[1] !== null && p[1] !== 0); }})()",
        e = json!(top1)
    );
    wait_for(
        &tab,
        "the stacked chart",
        &stacked_top,
        Duration::from_secs(15),
        |v| v == &points,
    );
    screenshot(&tab, "groups");
    eval(
        &tab,
        &format!(
            "(() => {{ const c = window.cubed.state.charts.find(c => c.expression === {e}); \
             c.el.querySelector('.chart-remove').click(); return true; }})()",
            e = json!(top1)
        ),
    );
    eval(
        &tab,
        "(() => { const m = document.getElementById('mode'); m.value = 'line'; m.onchange(); return true; })()",
    );

    // A bad expression: no chart, and the server's explanation inline.
    let bad = "sum(request(duration)";
    type_into(&tab, "#expression", bad);
    let (status, body) = get(
        &server.evaluator_url(&format!("/1.0/metric?step=60000&expression={}", enc(bad))),
        None,
    );
    assert_eq!(status, 400);
    let explanation = format!(
        "{}: {}",
        body["error"].as_str().unwrap_or_default(),
        body["message"].as_str().unwrap_or_default()
    );
    assert!(explanation.contains("expected"), "{explanation}");
    let shown = wait_for(
        &tab,
        "the inline error",
        "document.getElementById('expression-error').hidden ? null : document.getElementById('expression-error').textContent",
        Duration::from_secs(10),
        |v| v.is_string(),
    );
    assert!(
        shown.as_str().unwrap_or_default().starts_with(&explanation),
        "shown {shown}, server said {explanation}"
    );
    assert_eq!(
        eval(&tab, "document.querySelectorAll('.chart').length"),
        json!(2)
    );
    screenshot(&tab, "charts");

    // The URL reproduces the dashboard: a fresh tab on it shows the same charts.
    let url = eval(&tab, "location.href");
    let url = url.as_str().expect("href").to_owned();
    let tab2 = browser.new_tab().expect("tab");
    tab2.navigate_to(&url)
        .expect("navigate")
        .wait_until_navigated()
        .expect("loads");
    wait_for(
        &tab2,
        "the charts from the URL",
        "window.cubed && window.cubed.state.charts.filter(c => c.confirmed).map(c => c.expression)",
        Duration::from_secs(15),
        |v| v == &json!([count, mean]),
    );
    assert_eq!(
        eval(&tab2, "document.getElementById('step').value"),
        json!("60000")
    );
    wait_for(
        &tab2,
        "the reloaded max",
        &chart_text(count, ".chart-max"),
        Duration::from_secs(15),
        |v| v == "10",
    );
    let _ = tab2.close(true);

    // An existing Cubism.js page (d3 v3), opened from a file — another origin —
    // reads GET /1.0/metric answers by position, through CORS.
    let cubism_page = format!(
        "file://{}/tests/cubism/index.html?host={}&expression={}",
        env!("CARGO_MANIFEST_DIR"),
        enc(&format!("http://{}", server.evaluator)),
        enc(count)
    );
    let tab3 = browser.new_tab().expect("tab");
    tab3.navigate_to(&cubism_page)
        .expect("navigate")
        .wait_until_navigated()
        .expect("loads");
    let descending: Vec<Value> = (1..=10).rev().map(|v| json!(v)).collect();
    wait_for(
        &tab3,
        "Cubism's values",
        "window.cubismValues ? window.cubismValues().filter(v => v !== null && v !== 0) : null",
        Duration::from_secs(20),
        |v| v == &Value::Array(descending.clone()),
    );
    let zeros = eval(&tab3, "window.cubismValues().filter(v => v === 0).length");
    assert_eq!(
        zeros,
        json!(50),
        "Cubism saw a dense answer: 60 bins, 50 of them empty"
    );
    screenshot(&tab3, "cubism");
    let _ = tab3.close(true);

    // Live: a 10 s step dashboard (horizon mode) with a live tail; events put
    // afterwards appear in the chart once their bin closes, and in the tail,
    // pushed by the server: the page sends nothing more once its requests
    // are made.
    let live_chart = "sum(beat(v))";
    tab.navigate_to(&format!(
        "{base}?step=10000&window=300000&mode=horizon&chart={}&tail={}",
        enc(live_chart),
        enc("beat(v, note)")
    ))
    .expect("navigate")
    .wait_until_navigated()
    .expect("loads");
    wait_for(
        &tab,
        "the live chart",
        &chart_text(live_chart, ".chart-latest"),
        Duration::from_secs(15),
        |v| v.is_string(),
    );
    // The tail is running before the event exists.
    std::thread::sleep(Duration::from_millis(1500));
    let asked = common::status_figure(&server, "websocket", "messages_received");
    server.put(&json!([{"type": "beat", "data": {"v": 7, "note": "hello from the test"}}]));
    wait_for(
        &tab,
        "the put event in the live tail",
        "[...document.querySelectorAll('#tail li .data')].map(e => e.textContent)",
        Duration::from_secs(30),
        |v| v == &json!([r#"{"v":7,"note":"hello from the test"}"#]),
    );
    wait_for(
        &tab,
        "the put event in the live chart",
        &chart_text(live_chart, ".chart-max"),
        Duration::from_secs(45),
        |v| v == "7",
    );
    // A late event corrects a bin the chart already drew (0 there).
    let now = chrono::Utc::now().timestamp_millis();
    let late_bin = now - now % 10_000 - 60_000;
    assert_eq!(eval(&tab, &chart_value(live_chart, late_bin)), json!(0));
    server.put(
        &json!([{"type": "beat", "time": late_bin + 5_000, "data": {"v": 5, "note": "late"}}]),
    );
    wait_for(
        &tab,
        "the late event's bin corrected",
        &chart_value(live_chart, late_bin),
        Duration::from_secs(20),
        |v| v == &json!(5),
    );
    assert_eq!(
        common::status_figure(&server, "websocket", "messages_received"),
        asked,
        "the page asked nothing more: the server pushed the new bin and the correction"
    );
    assert_eq!(
        eval(&tab, "document.getElementById('mode').value"),
        json!("horizon")
    );
    let shot = screenshot(&tab, "live");
    assert!(shot.exists(), "the screenshot was written");
}

/// With keys in force the dashboard asks for a key, shows only that
/// service's types and charts (over the cookie that `POST /1.0/auth` sets),
/// and switches between the services signed in with.
#[test]
fn dashboard_signs_in_and_switches_services() {
    use cubed::model::Tenant;
    use cubed::model::access::Role;
    use cubed::service::auth::create_key;
    use cubed::storage::embedded::credentials::KeyFile;

    let keys = tempfile::tempdir().expect("keys dir");
    let file = KeyFile::in_dir(keys.path());
    let now = chrono::Utc::now().timestamp_millis();
    let tenant = |s: &str| Tenant::from_header(Some(s)).expect("tenant");
    let key = |s: &str, role| create_key(&file, &tenant(s), role, now).expect("key").1;
    let (acme, other) = (key("acme", Role::Read), key("other", Role::Read));
    let writers = [
        (key("acme", Role::Write), "acme_req"),
        (key("other", Role::Write), "other_req"),
    ];
    let server = TestServer::start_with_keys(keys.path());
    for (writer, t) in writers {
        let mut resp = common::agent()
            .post(&server.collector_url("/1.0/event/put"))
            .header("authorization", &format!("Bearer {writer}"))
            .send(&json!([{"type": t, "time": now - 30_000}]).to_string())
            .expect("put");
        assert_eq!(
            resp.status().as_u16(),
            200,
            "{:?}",
            resp.body_mut().read_to_string()
        );
    }
    // Keys are required: without one the API answers 401.
    assert_eq!(get(&server.evaluator_url("/1.0/types"), None).0, 401);

    let browser = launch();
    let tab = browser.new_tab().expect("tab");
    tab.navigate_to(&server.evaluator_url("/"))
        .expect("navigate")
        .wait_until_navigated()
        .expect("loads");
    wait_for(
        &tab,
        "the sign-in form",
        "!document.getElementById('account').hidden && !document.getElementById('signin-form').hidden",
        Duration::from_secs(20),
        |v| v == &json!(true),
    );
    // The service's own types (`cube_request` events are each service's too).
    let types = "[...document.querySelectorAll('#types li button:first-child')].map(b => b.textContent).filter(t => !t.startsWith('cube_'))";
    // (Set, not typed: typing 91 characters key by key takes seconds.)
    let sign_in = |key: &str| {
        eval(
            &tab,
            &format!(
                "(() => {{ document.getElementById('signin-key').value = {k}; \
                 document.getElementById('signin-form').requestSubmit(); return true; }})()",
                k = json!(key)
            ),
        )
    };
    sign_in(&acme);
    wait_for(&tab, "acme's types", types, Duration::from_secs(20), |v| {
        v == &json!(["acme_req"])
    });
    assert_eq!(
        eval(&tab, "document.getElementById('service').value"),
        json!("acme")
    );
    // A chart works over the cookie (its WebSocket carries it).
    eval(&tab, "window.cubed.addChart('sum(acme_req)')");
    wait_for(
        &tab,
        "the chart's answer",
        "window.cubed.state.charts.length === 1 && window.cubed.state.charts[0].confirmed",
        Duration::from_secs(20),
        |v| v == &json!(true),
    );
    // Another key: pick "another key…", sign in, see the other service.
    eval(
        &tab,
        "(() => { const s = document.getElementById('service'); s.value = ''; s.onchange(); return true; })()",
    );
    sign_in(&other);
    wait_for(&tab, "other's types", types, Duration::from_secs(20), |v| {
        v == &json!(["other_req"])
    });
    let options = eval(
        &tab,
        "[...document.getElementById('service').options].map(o => o.value).filter(v => v)",
    );
    assert_eq!(options, json!(["acme", "other"]));
    // Back to acme by choosing it.
    eval(
        &tab,
        "(() => { const s = document.getElementById('service'); s.value = 'acme'; s.onchange(); return true; })()",
    );
    wait_for(
        &tab,
        "acme's types again",
        types,
        Duration::from_secs(20),
        |v| v == &json!(["acme_req"]),
    );
    screenshot(&tab, "signed-in");
    // The key is never put in the page's URL.
    let url = eval(&tab, "location.href");
    assert!(!url.to_string().contains("cubed_"), "{url}");
}
