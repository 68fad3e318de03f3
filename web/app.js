// Cubed's dashboard: charts of metric expressions over one multiplexed
// WebSocket to /1.0/metric/get, drawn with uPlot; a type browser
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
    if (p.get("mode") === "horizon") state.mode = "horizon";
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
        for (const m of queued) ws.send(m);
        if (this.onOpen) this.onOpen();
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

  const pending = new Map(); // request id -> {chart, start, stop, step, values}

  function request(chart, full) {
    const b = bins();
    let start = b.start;
    if (!full) start = Math.max(b.start, b.stop - TRAILING_BINS * b.step);
    if (full) chart.lastFull = Date.now();
    chart.seq += 1;
    const id = chart.id + "." + chart.seq;
    pending.set(id, { chart, seq: chart.seq, start, stop: b.stop, step: b.step, values: new Map() });
    metrics.send({
      expression: chart.expression,
      start: new Date(start).toISOString(),
      stop: new Date(b.stop).toISOString(),
      step: b.step,
      id,
    });
  }

  function onMetricMessage(msg) {
    const id = msg.id;
    const req = pending.get(id);
    if (!req) return;
    const chart = req.chart;
    if (msg.error !== undefined) {
      pending.delete(id);
      const text = msg.message ? msg.error + ": " + msg.message : msg.error;
      if (!chart.confirmed) {
        removeChart(chart);
        showExpressionError(chart.expression, text);
      } else {
        chart.errorEl.textContent = text;
        chart.errorEl.hidden = false;
      }
      return;
    }
    const t = Date.parse(msg.time);
    if (t >= req.stop) {
      // The end marker: the answer is complete.
      pending.delete(id);
      if (!state.charts.includes(chart) || req.step !== state.step) return;
      for (let x = req.start; x < req.stop; x += req.step) {
        const v = req.values.get(x);
        chart.data.set(x, v === undefined ? null : v);
      }
      if (!chart.confirmed) {
        chart.confirmed = true;
        hideExpressionError();
        writeUrl();
      }
      chart.errorEl.hidden = true;
      render(chart);
      return;
    }
    req.values.set(t, msg.value === undefined || msg.value === null ? null : msg.value);
  }

  const metrics = new Socket("/1.0/metric/get", onMetricMessage, () => refreshAll(true), $("status"));

  function refreshAll(full) {
    const now = Date.now();
    for (const c of state.charts) request(c, full || now - c.lastFull >= FULL_REFRESH_MS);
  }

  // ---- charts -------------------------------------------------------------

  function addChart(expression) {
    expression = expression.trim();
    if (!expression) return;
    const chart = {
      id: "c" + nextChartId++,
      expression,
      data: new Map(),
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
    chart.el = el;
    chart.errorEl = el.querySelector(".error");
    $("charts").appendChild(el);
    $("empty").hidden = true;
    state.charts.push(chart);
    createPlot(chart);
    request(chart, true);
  }

  function removeChart(chart) {
    state.charts = state.charts.filter((c) => c !== chart);
    if (chart.plot) chart.plot.destroy();
    chart.el.remove();
    $("empty").hidden = state.charts.length > 0;
  }

  function plotWidth() {
    return Math.max(300, $("charts").clientWidth - 18);
  }

  function createPlot(chart) {
    if (chart.plot) chart.plot.destroy();
    const horizon = state.mode === "horizon";
    const series = [{}];
    if (horizon) {
      for (let k = 0; k < HORIZON_BANDS; k++)
        series.push({ label: "+" + k, stroke: "transparent", fill: POSITIVE[k], width: 0, points: { show: false } });
      for (let k = 0; k < HORIZON_BANDS; k++)
        series.push({ label: "-" + k, stroke: "transparent", fill: NEGATIVE[k], width: 0, points: { show: false } });
    } else {
      // Points are drawn where bins are few enough to see them (uPlot's
      // default), so a value between two empty bins is not lost.
      series.push({ label: chart.expression, stroke: chart.color, fill: chart.color + "22", width: 1.5, points: { size: 5 } });
    }
    const opts = {
      width: plotWidth(),
      height: horizon ? 90 : 140,
      legend: { show: false },
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

  /** The arrays uPlot draws: times in seconds, then one array per series. */
  function plotData(chart) {
    const b = bins();
    for (const t of chart.data.keys()) if (t < b.start || t >= b.stop) chart.data.delete(t);
    const xs = [];
    const vs = [];
    for (let t = b.start; t < b.stop; t += b.step) {
      xs.push(t / 1000);
      const v = chart.data.get(t);
      vs.push(v === undefined ? null : v);
    }
    chart.values = vs;
    chart.times = xs;
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
    chart.plot.setData(plotData(chart));
    let min = null;
    let max = null;
    let latest = null;
    for (const v of chart.values) {
      if (v === null) continue;
      if (min === null || v < min) min = v;
      if (max === null || v > max) max = v;
      latest = v;
    }
    chart.el.querySelector(".chart-latest").textContent = fmt(latest);
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
    el.textContent = t.toLocaleString() + ": " + fmt(chart.values[i]);
  }

  function rebuildAll() {
    for (const c of state.charts) {
      c.data.clear();
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
