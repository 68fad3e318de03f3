// Cubed's dashboard: charts of metric expressions over one multiplexed
// WebSocket to /1.0/metric/get (live requests: bins arrive as they close,
// and again when a late event changes them), drawn with uPlot, a line per
// group for grouped expressions (stacked on request); a type browser
// (/1.0/types/get) and a live event tail (WebSocket /1.0/event/get without
// `stop`). The page state (step, window, mode, charts, tail) lives in the URL.
// With API keys in force the page signs in (POST /1.0/auth turns a key into
// an HttpOnly cookie that its GETs and WebSockets carry) and switches
// between the services of the keys signed in with in this tab.
"use strict";

(() => {
  const STEPS = [10000, 60000, 300000, 3600000, 86400000];
  const MAX_BINS = 10000; // the server's limit per request
  const REFRESH_MS = 5000; // how often the trailing bins are asked again
  const FULL_REFRESH_MS = 60000; // how often a whole window is asked again
  const TRAILING_BINS = 30; // bins asked on a trailing refresh
  const HORIZON_BANDS = 4;
  const TAIL_MAX = 200; // events kept in the tail list
  const TAIL_DELAY_MS = 2000; // how far behind now the live tail runs
  const AXIS_SIZE = 64; // fixed y-axis width, so every chart shares one time axis
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  const POSITIVE = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"];
  const NEGATIVE = ["#fcbba1", "#fb6a4a", "#cb181d", "#67000d"];

  const $ = (id) => document.getElementById(id);
  const wsUrl = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;

  const state = {
    step: 10000,
    window: 3600000,
    mode: "line",
    charts: [], // {id, expression, el, plot, data: Map(time -> value|null), seq, lastFull, confirmed}
    tail: "",
  };
  let nextChartId = 1;

  // ---- numbers and times -------------------------------------------------

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    return String(+v.toPrecision(6));
  }

  /** The window's bins: [start, stop) with stop = now floored to the step, as Cubism asks. */
  function bins() {
    const step = state.step;
    const stop = Math.floor(Date.now() / step) * step;
    const n = Math.min(MAX_BINS, Math.max(1, Math.ceil(state.window / step)));
    return { step, start: stop - n * step, stop, n };
  }

  // ---- URL state ----------------------------------------------------------

  function readUrl() {
    const p = new URLSearchParams(location.search);
    const step = Number(p.get("step"));
    if (STEPS.includes(step)) state.step = step;
    const win = Number(p.get("window"));
    if (Number.isFinite(win) && win > 0) state.window = win;
    if (["horizon", "stacked"].includes(p.get("mode"))) state.mode = p.get("mode");
    state.tail = p.get("tail") || "";
    return p.getAll("chart");
  }

  function writeUrl() {
    const p = new URLSearchParams();
    p.set("step", state.step);
    p.set("window", state.window);
    p.set("mode", state.mode);
    for (const c of state.charts) if (c.confirmed) p.append("chart", c.expression);
    if (state.tail) p.set("tail", state.tail);
    history.replaceState(null, "", "?" + p.toString());
  }

  // ---- a WebSocket that reconnects ----------------------------------------

  class Socket {
    constructor(path, onMessage, onOpen, statusEl) {
      this.path = path;
      this.onMessage = onMessage;
      this.onOpen = onOpen;
      this.statusEl = statusEl;
      this.queue = [];
      this.closedByUs = false;
      this.delay = 500;
      this.connect();
    }
    connect() {
      const ws = new WebSocket(wsUrl(this.path));
      this.ws = ws;
      this.setStatus("connecting", "");
      ws.onopen = () => {
        this.delay = 500;
        this.setStatus("live", "open");
        const queued = this.queue;
        this.queue = [];
        // A socket whose onOpen asks for everything again (the metric
        // socket) drops what was queued: it would be asked twice.
        if (this.onOpen) this.onOpen();
        else for (const m of queued) ws.send(m);
      };
      ws.onmessage = (e) => {
        let msg;
        try {
          msg = JSON.parse(e.data);
        } catch (_) {
          return;
        }
        this.onMessage(msg);
      };
      ws.onclose = () => {
        if (this.closedByUs) return;
        this.setStatus("disconnected, retrying", "closed");
        setTimeout(() => this.connect(), this.delay);
        this.delay = Math.min(this.delay * 2, 10000);
      };
    }
    setStatus(text, cls) {
      if (!this.statusEl) return;
      this.statusEl.textContent = text;
      this.statusEl.className = "status " + cls;
    }
    send(obj) {
      const m = JSON.stringify(obj);
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(m);
      else this.queue.push(m);
    }
    close() {
      this.closedByUs = true;
      this.ws.close();
    }
    /** Connects again at once (after signing in, or switching services). */
    reconnect() {
      this.delay = 500;
      this.queue = [];
      if (this.ws.readyState === WebSocket.CLOSED) this.connect();
      else this.ws.close();
    }
  }

  // ---- metric requests ----------------------------------------------------
  // A chart is live: one metric/get request without `stop`, whose answers
  // are its history, then each bin as it closes and any bin a put changed
  // (README "Live metrics"). A chart whose expression asks for the top N
  // groups (`.group(field, N)`), which the server cannot follow live, asks
  // again every few seconds instead.

  const pending = new Map(); // request id -> {chart, seq, start, stop, step, live, rows}
  const TOP_RE = /\.group\(\s*([^(),]+?)\s*(?:,\s*\d+\s*)?\)/g;

  function hasTop(expression) {
    return /\.group\([^()]*,/.test(expression);
  }

  /** The expression with every `.group(field)` asking for the top `n` (0: all groups). */
  function withTop(expression, n) {
    return expression.replace(TOP_RE, (_, field) => (n > 0 ? ".group(" + field + ", " + n + ")" : ".group(" + field + ")"));
  }

  function cancel(chart) {
    if (chart.liveId) {
      metrics.send({ cancel: chart.liveId });
      pending.delete(chart.liveId);
    }
    chart.liveId = null;
  }

  function request(chart, full) {
    const b = bins();
    chart.live = !hasTop(chart.expression);
    if (chart.live && !full) return; // a live chart is told what changes
    // A top N is over the whole window: such a chart always asks for it,
    // once its last answer is in (requests must not pile up).
    if (!chart.live) {
      if (chart.pendingId && pending.has(chart.pendingId)) return;
      full = true;
    }
    let start = b.start;
    if (!full) start = Math.max(b.start, b.stop - TRAILING_BINS * b.step);
    if (full) chart.lastFull = Date.now();
    chart.seq += 1;
    const id = chart.id + "." + chart.seq;
    const req = { chart, seq: chart.seq, start, stop: b.stop, step: b.step, live: chart.live, rows: [] };
    pending.set(id, req);
    const msg = { expression: chart.expression, start: new Date(start).toISOString(), step: b.step, id };
    if (chart.live) {
      cancel(chart);
      chart.liveId = id;
    } else {
      msg.stop = new Date(b.stop).toISOString();
      chart.pendingId = id;
    }
    metrics.send(msg);
  }

  /** Keeps one answer row: `{time, value}` or a group's `{time, group, value}`. */
  function keep(chart, row) {
    const t = row.time;
    if (row.group === undefined) {
      chart.data.set(t, row.value);
      return;
    }
    const name = row.other ? "other" : String(row.group);
    let g = chart.groups.get(name);
    if (!g) {
      g = new Map();
      chart.groups.set(name, g);
      chart.groupsChanged = true;
    }
    g.set(t, row.value);
    if (!chart.grouped) {
      chart.grouped = true;
      chart.groupsChanged = true;
    }
  }

  let renderQueued = new Set();
  function renderSoon(chart) {
    if (renderQueued.size === 0) setTimeout(() => {
      const charts = renderQueued;
      renderQueued = new Set();
      for (const c of charts) if (state.charts.includes(c)) render(c);
    }, 100);
    renderQueued.add(chart);
  }

  function confirm(chart) {
    if (chart.confirmed) return;
    chart.confirmed = true;
    hideExpressionError();
    writeUrl();
  }

  function onMetricMessage(msg) {
    const id = msg.id;
    const req = pending.get(id);
    if (!req) return;
    const chart = req.chart;
    if (req.seq !== chart.seq || !state.charts.includes(chart)) {
      pending.delete(id);
      return;
    }
    if (msg.error !== undefined) {
      pending.delete(id);
      if (req.live) chart.liveId = null; // that request is over
      const text = msg.message ? msg.error + ": " + msg.message : msg.error;
      // A refused expression removes a new chart; anything else (a
      // timeout, too many live metrics) is shown and asked again.
      const refused = ["invalid expression", "invalid request", "query too large"].includes(msg.error);
      if (!chart.confirmed && refused) {
        removeChart(chart);
        showExpressionError(chart.expression, text);
      } else {
        chart.errorEl.textContent = text;
        chart.errorEl.hidden = false;
        chart.retry = true;
      }
      return;
    }
    if (msg.live === true) {
      // The live request's history is complete (it may have had no bins).
      confirm(chart);
      chart.errorEl.hidden = true;
      renderSoon(chart);
      return;
    }
    const t = Date.parse(msg.time);
    const row = { time: t, value: msg.value === undefined || msg.value === null ? null : msg.value, group: msg.group, other: msg.other };
    if (req.live) {
      // Every message of a live request is a bin to draw (or draw again).
      if (req.step !== state.step) return;
      keep(chart, row);
      confirm(chart);
      chart.errorEl.hidden = true;
      renderSoon(chart);
      return;
    }
    if (t >= req.stop && msg.group === undefined) {
      // The end marker: the answer is complete.
      pending.delete(id);
      if (req.step !== state.step) return;
      const grouped = req.rows.some((r) => r.group !== undefined);
      if (grouped) {
        // The groups of the range asked for (a top N may have changed).
        const names = new Set(req.rows.map((r) => (r.other ? "other" : String(r.group))));
        for (const name of [...chart.groups.keys()]) if (!names.has(name)) {
          chart.groups.delete(name);
          chart.groupsChanged = true;
        }
        for (const g of chart.groups.values()) for (let x = req.start; x < req.stop; x += req.step) g.delete(x);
      } else {
        for (let x = req.start; x < req.stop; x += req.step) chart.data.set(x, null);
      }
      for (const r of req.rows) keep(chart, r);
      confirm(chart);
      chart.errorEl.hidden = true;
      render(chart);
      return;
    }
    req.rows.push(row);
  }

  const metrics = new Socket("/1.0/metric/get", onMetricMessage, () => {
    // A new socket: the server forgot every request of the old one.
    pending.clear();
    for (const c of state.charts) c.liveId = null;
    refreshAll(true);
  }, $("status"));

  function refreshAll(full) {
    const now = Date.now();
    for (const c of state.charts) {
      if (!full && c.live && !c.retry) {
        render(c); // the window moves on with the clock
        continue;
      }
      c.retry = false;
      request(c, full || c.live || now - c.lastFull >= FULL_REFRESH_MS);
    }
  }

  // ---- charts -------------------------------------------------------------

  function addChart(expression) {
    expression = expression.trim();
    if (!expression) return;
    const chart = {
      id: "c" + nextChartId++,
      expression,
      data: new Map(),
      groups: new Map(), // group name -> Map(time -> value|null); "other" last
      grouped: false,
      seq: 0,
      lastFull: 0,
      confirmed: false,
      color: COLORS[(nextChartId - 2) % COLORS.length],
    };
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.expression = expression;
    el.innerHTML =
      '<div class="chart-head"><span class="chart-title"></span>' +
      '<span class="chart-hover"></span>' +
      '<label class="chart-top-label" hidden>groups <select class="chart-top" title="Show the top N groups over the window (the rest as other)">' +
      '<option value="0">all</option><option value="1">top 1</option><option value="3">top 3</option><option value="5">top 5</option><option value="10">top 10</option></select></label>' +
      '<span class="chart-range">min <span class="chart-min">–</span> · max <span class="chart-max">–</span></span>' +
      '<span class="chart-latest" title="latest value">–</span>' +
      '<button class="chart-remove" type="button" title="Remove this chart">×</button></div>' +
      '<div class="error" hidden></div><div class="chart-plot"></div>';
    el.querySelector(".chart-title").textContent = expression;
    el.querySelector(".chart-title").title = expression;
    el.querySelector(".chart-remove").onclick = () => {
      removeChart(chart);
      writeUrl();
    };
    const top = el.querySelector(".chart-top");
    const m = /\.group\([^()]*,\s*(\d+)\s*\)/.exec(expression);
    top.value = m && [...top.options].some((o) => o.value === m[1]) ? m[1] : "0";
    top.onchange = () => setTop(chart, Number(top.value));
    chart.el = el;
    chart.errorEl = el.querySelector(".error");
    $("charts").appendChild(el);
    $("empty").hidden = true;
    state.charts.push(chart);
    createPlot(chart);
    request(chart, true);
  }

  /** Asks for the top `n` groups (0: all of them, live). */
  function setTop(chart, n) {
    cancel(chart);
    if (chart.pendingId) {
      metrics.send({ cancel: chart.pendingId });
      pending.delete(chart.pendingId);
      chart.pendingId = null;
    }
    chart.expression = withTop(chart.expression, n);
    chart.el.dataset.expression = chart.expression;
    chart.el.querySelector(".chart-title").textContent = chart.expression;
    chart.el.querySelector(".chart-title").title = chart.expression;
    chart.groups.clear();
    chart.groupsChanged = true;
    createPlot(chart);
    request(chart, true);
    writeUrl();
  }

  function removeChart(chart) {
    cancel(chart);
    state.charts = state.charts.filter((c) => c !== chart);
    if (chart.plot) chart.plot.destroy();
    chart.el.remove();
    $("empty").hidden = state.charts.length > 0;
  }

  function plotWidth() {
    return Math.max(300, $("charts").clientWidth - 18);
  }

  /** The names of a grouped chart's series, in order ("other" last). */
  function groupNames(chart) {
    const names = [...chart.groups.keys()].filter((n) => n !== "other").sort();
    if (chart.groups.has("other")) names.push("other");
    return names;
  }

  function createPlot(chart) {
    if (chart.plot) chart.plot.destroy();
    prune(chart);
    chart.groupsChanged = false;
    const horizon = state.mode === "horizon" && !chart.grouped;
    const stacked = state.mode === "stacked" && chart.grouped;
    const series = [{}];
    if (horizon) {
      for (let k = 0; k < HORIZON_BANDS; k++)
        series.push({ label: "+" + k, stroke: "transparent", fill: POSITIVE[k], width: 0, points: { show: false } });
      for (let k = 0; k < HORIZON_BANDS; k++)
        series.push({ label: "-" + k, stroke: "transparent", fill: NEGATIVE[k], width: 0, points: { show: false } });
    } else if (chart.grouped) {
      // One line per group; stacked: each group's area on top of the ones before.
      const names = groupNames(chart);
      names.forEach((name, i) => {
        const color = name === "other" ? "#7f7f7f" : COLORS[i % COLORS.length];
        const s = { label: name, stroke: color, fill: stacked ? color + "99" : undefined, width: 1.5, points: { size: 4 } };
        // Stacked series draw running sums; the legend shows the group's own value.
        if (stacked)
          s.value = (u, v, si, idx) => {
            const col = chart.columns && chart.columns[i];
            return fmt(col && idx !== null && idx !== undefined ? col[1][idx] : v);
          };
        series.push(s);
      });
      if (stacked) series.splice(1, series.length - 1, ...series.slice(1).reverse());
    } else {
      // Points are drawn where bins are few enough to see them (uPlot's
      // default), so a value between two empty bins is not lost.
      series.push({ label: chart.expression, stroke: chart.color, fill: chart.color + "22", width: 1.5, points: { size: 5 } });
    }
    chart.el.querySelector(".chart-top-label").hidden = !chart.grouped;
    chart.el.classList.toggle("grouped", chart.grouped);
    const opts = {
      width: plotWidth(),
      height: horizon ? 90 : 140,
      legend: { show: chart.grouped },
      cursor: { sync: { key: "cubed" }, drag: { x: false, y: false }, points: { show: !horizon } },
      scales: {
        x: {
          time: true,
          range: () => {
            const b = bins();
            return [b.start / 1000, (b.stop - b.step) / 1000];
          },
        },
        y: horizon ? { range: () => [0, chart.bandHeight || 1] } : {},
      },
      axes: [
        {},
        horizon ? { size: AXIS_SIZE, values: (u, vals) => vals.map(() => ""), ticks: { show: false }, grid: { show: false } } : { size: AXIS_SIZE },
      ],
      series,
      hooks: { setCursor: [(u) => showHover(chart, u)] },
    };
    chart.plot = new uPlot(opts, plotData(chart), chart.el.querySelector(".chart-plot"));
  }

  /** Forgets bins the window has left, and groups left without any. */
  function prune(chart) {
    const b = bins();
    const inWindow = (t) => t >= b.start && t < b.stop;
    for (const t of chart.data.keys()) if (!inWindow(t)) chart.data.delete(t);
    for (const [name, g] of chart.groups) {
      for (const t of g.keys()) if (!inWindow(t)) g.delete(t);
      if (g.size === 0) {
        chart.groups.delete(name);
        chart.groupsChanged = true;
      }
    }
  }

  /** The arrays uPlot draws: times in seconds, then one array per series. */
  function plotData(chart) {
    const b = bins();
    const xs = [];
    for (let t = b.start; t < b.stop; t += b.step) xs.push(t / 1000);
    chart.times = xs;
    const column = (m) => xs.map((x) => {
      const v = m.get(x * 1000);
      return v === undefined ? null : v;
    });
    if (chart.grouped) {
      const names = groupNames(chart);
      const cols = names.map((n) => column(chart.groups.get(n)));
      chart.columns = names.map((n, i) => [n, cols[i]]);
      chart.values = cols.flat();
      if (state.mode !== "stacked") return [xs, ...cols];
      // Stacked: running sums, drawn from the top down.
      const sums = [];
      let acc = xs.map(() => 0);
      for (const col of cols) {
        acc = acc.map((a, i) => a + (col[i] === null ? 0 : col[i]));
        sums.push(acc);
      }
      return [xs, ...sums.reverse()];
    }
    const vs = column(chart.data);
    chart.values = vs;
    if (state.mode !== "horizon") return [xs, vs];
    // Horizon: the values folded into bands of equal height (as Cubism does);
    // negative values fold the same way in a second palette.
    let extent = 0;
    for (const v of vs) if (v !== null && Math.abs(v) > extent) extent = Math.abs(v);
    const h = extent > 0 ? extent / HORIZON_BANDS : 1;
    chart.bandHeight = h;
    const out = [xs];
    for (const sign of [1, -1])
      for (let k = 0; k < HORIZON_BANDS; k++)
        out.push(vs.map((v) => (v === null ? null : Math.min(h, Math.max(0, sign * v - k * h)))));
    return out;
  }

  function render(chart) {
    if (!chart.plot) return;
    prune(chart);
    if (chart.groupsChanged) createPlot(chart);
    else chart.plot.setData(plotData(chart));
    let min = null;
    let max = null;
    let latest = null;
    for (const v of chart.values) {
      if (v === null) continue;
      if (min === null || v < min) min = v;
      if (max === null || v > max) max = v;
      latest = v;
    }
    chart.el.querySelector(".chart-latest").textContent = chart.grouped ? chart.groups.size + " groups" : fmt(latest);
    chart.el.querySelector(".chart-min").textContent = fmt(min);
    chart.el.querySelector(".chart-max").textContent = fmt(max);
  }

  function showHover(chart, u) {
    const el = chart.el.querySelector(".chart-hover");
    const i = u.cursor.idx;
    if (i === null || i === undefined || !chart.times || i >= chart.times.length) {
      el.textContent = "";
      return;
    }
    const t = new Date(chart.times[i] * 1000);
    if (chart.grouped) {
      el.textContent = t.toLocaleString();
      return;
    }
    el.textContent = t.toLocaleString() + ": " + fmt(chart.values[i]);
  }

  function rebuildAll() {
    for (const c of state.charts) {
      c.data.clear();
      c.groups.clear();
      createPlot(c);
      request(c, true);
    }
    writeUrl();
  }

  // ---- the inline expression error ---------------------------------------

  function showExpressionError(expression, text) {
    const el = $("expression-error");
    // Parse errors end with "at N", N counted in characters: point at it.
    const at = /\bat (\d+)$/.exec(text);
    const caret = at ? "\n" + " ".repeat(Math.min(Number(at[1]), expression.length)) + "^" : "";
    el.textContent = text + "\n" + expression + caret;
    el.hidden = false;
    $("expression").value = expression;
  }

  function hideExpressionError() {
    $("expression-error").hidden = true;
  }

  // ---- types --------------------------------------------------------------

  async function loadTypes() {
    const ul = $("types");
    try {
      const r = await fetch("/1.0/types/get");
      const types = await r.json();
      ul.textContent = "";
      if (!Array.isArray(types) || types.length === 0) {
        ul.innerHTML = '<li class="hint">no events yet</li>';
        return;
      }
      for (const t of types) {
        const li = document.createElement("li");
        const chartBtn = document.createElement("button");
        chartBtn.type = "button";
        chartBtn.textContent = t;
        chartBtn.title = "Chart sum(" + t + ")";
        chartBtn.onclick = () => addChart("sum(" + t + ")");
        const tailBtn = document.createElement("button");
        tailBtn.type = "button";
        tailBtn.textContent = "tail";
        tailBtn.title = "Tail " + t + " events";
        tailBtn.style.float = "right";
        tailBtn.onclick = () => {
          $("tail-expression").value = t;
          startTail(t);
        };
        li.append(chartBtn, tailBtn);
        ul.appendChild(li);
      }
    } catch (e) {
      ul.innerHTML = "";
      const li = document.createElement("li");
      li.className = "error";
      li.textContent = "could not load types: " + e;
      ul.appendChild(li);
    }
  }

  // ---- keys: sign in, switch services, sign out -------------------------------
  // The keys signed in with are kept in this tab's sessionStorage only (gone
  // when the tab closes), so that the user can switch services; the server
  // is told which one to use by POST /1.0/auth, which sets the cookie.

  const KEYS = "cubed.keys";

  function savedKeys() {
    try {
      const list = JSON.parse(sessionStorage.getItem(KEYS));
      return Array.isArray(list) ? list : [];
    } catch (_) {
      return [];
    }
  }

  async function signIn(key) {
    const r = await fetch("/1.0/auth", { method: "POST", headers: { Authorization: "Bearer " + key } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.message || body.error || "HTTP " + r.status);
    const list = savedKeys().filter((k) => k.service !== body.service);
    list.push({ service: body.service, role: body.role, key });
    sessionStorage.setItem(KEYS, JSON.stringify(list));
    return body;
  }

  function showAccount(who) {
    $("account").hidden = false;
    const signedIn = who !== null;
    $("signin-form").hidden = signedIn;
    $("signout").hidden = !signedIn;
    $("service-label").hidden = !signedIn;
    $("role").textContent = signedIn ? who.role : "";
    const select = $("service");
    select.textContent = "";
    for (const k of savedKeys()) {
      const o = document.createElement("option");
      o.value = k.service;
      o.textContent = k.service;
      select.appendChild(o);
    }
    if (signedIn && !savedKeys().some((k) => k.service === who.service)) {
      // Signed in by a cookie from another tab: this tab holds no key for it.
      const o = document.createElement("option");
      o.value = who.service;
      o.textContent = who.service;
      select.appendChild(o);
    }
    const add = document.createElement("option");
    add.value = "";
    add.textContent = "another key…";
    select.appendChild(add);
    if (signedIn) select.value = who.service;
  }

  /** Everything shown was another service's (or nobody's): ask again. */
  function reloadAll() {
    pending.clear();
    for (const c of state.charts) {
      c.data.clear();
      c.groups.clear();
      createPlot(c);
    }
    metrics.reconnect(); // its onOpen asks for every chart again
    loadTypes();
    if (state.tail) startTail(state.tail);
  }

  async function useKey(key) {
    $("signin-error").hidden = true;
    try {
      showAccount(await signIn(key));
      reloadAll();
    } catch (e) {
      $("signin-error").textContent = "sign-in failed: " + e.message;
      $("signin-error").hidden = false;
    }
  }

  async function initAccount() {
    let r;
    try {
      r = await fetch("/1.0/auth");
    } catch (_) {
      return;
    }
    const body = await r.json().catch(() => ({}));
    if (r.ok && body.auth === false) return; // keys are not in force
    showAccount(r.ok ? body : null);
    $("signin-form").onsubmit = (e) => {
      e.preventDefault();
      const key = $("signin-key").value.trim();
      $("signin-key").value = "";
      if (key) useKey(key);
    };
    $("service").onchange = () => {
      const k = savedKeys().find((x) => x.service === $("service").value);
      if (k) useKey(k.key);
      else {
        $("signin-form").hidden = false;
        $("signin-key").focus();
      }
    };
    $("signout").onclick = async () => {
      sessionStorage.removeItem(KEYS);
      await fetch("/1.0/auth", { method: "DELETE" }).catch(() => {});
      showAccount(null);
      reloadAll();
    };
  }

  // ---- live event tail ----------------------------------------------------

  let tailSocket = null;

  function stopTail() {
    if (tailSocket) tailSocket.close();
    tailSocket = null;
    $("tail-stop").disabled = true;
  }

  function startTail(expression) {
    expression = expression.trim();
    stopTail();
    $("tail").textContent = "";
    $("tail-error").hidden = true;
    state.tail = expression;
    writeUrl();
    if (!expression) return;
    const list = $("tail");
    const sock = new Socket(
      "/1.0/event/get",
      (msg) => {
        if (msg === null) return;
        if (msg.error !== undefined) {
          $("tail-error").textContent = msg.message ? msg.error + ": " + msg.message : msg.error;
          $("tail-error").hidden = false;
          stopTail();
          return;
        }
        const li = document.createElement("li");
        const time = document.createElement("span");
        time.className = "time";
        time.textContent = msg.time;
        const data = document.createElement("span");
        data.className = "data";
        // Cube returns only the fields the expression names: `type(a, b)`.
        data.textContent = msg.data === undefined ? "" : JSON.stringify(msg.data);
        li.append(time, data);
        list.prepend(li);
        while (list.children.length > TAIL_MAX) list.lastChild.remove();
      },
      null,
      null,
    );
    // Newest history first is not guaranteed in a live stream, so the tail
    // starts at "now" and shows what arrives from then on.
    sock.send({ expression, delay: TAIL_DELAY_MS, start: new Date(Date.now() - TAIL_DELAY_MS).toISOString() });
    tailSocket = sock;
    $("tail-stop").disabled = false;
  }

  // ---- wiring ---------------------------------------------------------------

  function init() {
    const charts = readUrl();
    $("step").value = String(state.step);
    if (![...$("window").options].some((o) => o.value === String(state.window))) {
      const o = document.createElement("option");
      o.value = String(state.window);
      o.textContent = state.window / 1000 + " s";
      $("window").appendChild(o);
    }
    $("window").value = String(state.window);
    $("mode").value = state.mode;

    $("add-form").onsubmit = (e) => {
      e.preventDefault();
      hideExpressionError();
      addChart($("expression").value);
      $("expression").value = "";
    };
    $("step").onchange = () => {
      state.step = Number($("step").value);
      rebuildAll();
    };
    $("window").onchange = () => {
      state.window = Number($("window").value);
      rebuildAll();
    };
    $("mode").onchange = () => {
      state.mode = $("mode").value;
      rebuildAll();
    };
    $("types-refresh").onclick = loadTypes;
    $("tail-form").onsubmit = (e) => {
      e.preventDefault();
      startTail($("tail-expression").value);
    };
    $("tail-stop").onclick = () => {
      stopTail();
      state.tail = "";
      writeUrl();
    };
    window.addEventListener("resize", () => {
      for (const c of state.charts) if (c.plot) c.plot.setSize({ width: plotWidth(), height: c.plot.height });
    });

    for (const e of charts) addChart(e);
    if (state.tail) {
      $("tail-expression").value = state.tail;
      startTail(state.tail);
    }
    loadTypes();
    initAccount();
    setInterval(() => refreshAll(false), REFRESH_MS);
  }

  // For tests and the console: the charts and what they draw.
  window.cubed = { state, addChart, refreshAll };
  init();
})();
