"use strict";
(() => {
  const query = new URLSearchParams(location.search);
  const every = 1000 * Math.min(60, Math.max(0.25, parseFloat(query.get("interval")) || 2));
  const KEEP = 60, TOKEN = "modelfleet.token", DASH = "\u2014";
  const TILES = [
    ["throughput", "rps", [["rps", "req/s", "big"], ["requests", "total"]]],
    ["latency", "p99", [["p50_ms", "p50"], ["p99_ms", "p99", "big"]]],
    ["errors", null, [["error_ratio", "5xx", "big"], ["rejected_ratio", "4xx"],
                      ["errors", "5xx total"]]],
    ["cache", null, [["cache", "state", "big"], ["cache_hit_ratio", "hits"]]],
    ["queue", null, [["queue_depth", "queued", "big"], ["inflight", "in flight"]]],
    ["drift", "psi", [["max_psi", "max PSI", "big"], ["drift_feature", "worst"],
                      ["max_ks", "max KS"]]],
    ["accuracy", "accuracy", [["accuracy_live", "live", "big"],
                              ["accuracy_registered", "registered"],
                              ["labelled_requests", "labelled"]]],
  ];
  const cards = new Map();
  let timer = null;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const given = (v) => v !== null && v !== undefined && Number.isFinite(Number(v));
  const fixed = (v, digits) => (given(v) ? Number(v).toFixed(digits) : DASH);
  const pct = (v) => (given(v) ? (100 * v).toFixed(1) + "%" : DASH);
  const ms = (v) => (given(v) ? Number(v).toFixed(v < 10 ? 2 : 1) + " ms" : DASH);
  const whole = (v) => (given(v) ? String(Math.round(v)) : DASH);
  function duration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    const two = (n) => String(n).padStart(2, "0");
    return (d ? d + "d " : "") + (d || h ? two(h) + "h " : "") + two(m) + "m " + two(s % 60) + "s";
  }

  function spark(name) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 120 30");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("data-chart", name);
    svg.setAttribute("data-points", "0");
    svg.appendChild(document.createElementNS("http://www.w3.org/2000/svg", "polyline"));
    return svg;
  }

  function draw(svg, points, top) {
    const values = points.filter(given);
    const high = Math.max(top || 0, ...values) || 1;
    // Spread over the width while the history fills up, then slide.
    const step = 120 / Math.max(points.length - 1, 1);
    const xy = [];
    points.forEach((v, i) => {
      if (given(v)) xy.push(`${(i * step).toFixed(1)},${(29 - (28 * v) / high).toFixed(1)}`);
    });
    if (xy.length === 1) {
      const y = xy[0].split(",")[1];  // one value so far: a level line
      xy.splice(0, 1, `0,${y}`, `120,${y}`);
    }
    svg.firstChild.setAttribute("points", xy.join(" "));
    svg.setAttribute("data-points", String(values.length));
  }

  function makeCard(name) {
    const root = el("section", {class: "card", "data-model": name});
    const fields = {}, charts = {};
    const field = (tag, key, attrs) => (fields[key] = el(tag, {...attrs, "data-field": key}));
    const head = el("header");
    head.append(field("h2", "name"), field("span", "state", {class: "badge"}));
    const meta = el("span", {class: "muted"});
    meta.append("version ", field("b", "version"), " \u00b7 ", field("span", "variant"),
                " \u00b7 stages ", field("span", "stages"));
    head.append(meta);
    root.append(head, field("p", "reason", {class: "reason"}));
    const tiles = el("div", {class: "tiles"});
    for (const [title, chart, rows] of TILES) {
      const tile = el("div", {class: "tile", "data-tile": title});
      const list = el("dl");
      for (const [key, label, size] of rows) {
        list.append(el("dt", {}, label), field("dd", key, size ? {class: size} : {}));
      }
      tile.append(el("h3", {}, title), list);
      if (chart) tile.append((charts[chart] = spark(chart)));
      tiles.append(tile);
    }
    const classes = el("div", {class: "classes"});
    classes.append(el("h3", {}, "predictions per class"), field("div", "predictions"));
    root.append(tiles, classes);
    $("models").append(root);
    fields.name.textContent = name;
    return {root, fields, charts, history: {rps: [], p99: [], psi: [], accuracy: []}};
  }

  function figures(m) {
    const drift = m.drift || {}, acc = m.accuracy || {}, psi = drift.psi || {};
    let worst = null;
    for (const [feature, score] of Object.entries(psi)) {
      if (worst === null || score > psi[worst]) worst = feature;
    }
    // The live-accuracy gauge reads 0 until the first label arrives: show it only with labels.
    const labelled = (acc.labelled_rows || 0) + (acc.labelled_requests || 0) > 0;
    const live = labelled ? acc.live : null;
    const hit = m.cache_hit_ratio;
    return {
      state: [m.state || DASH, m.state], reason: [m.reason || "", m.reason],
      version: [m.version ?? DASH, m.version], variant: [m.variant || DASH, m.variant],
      stages: [(m.stages || []).join(", ") || DASH, (m.stages || []).join(",")],
      rps: [fixed(m.rps, 2), m.rps], requests: [whole(m.requests), m.requests],
      p50_ms: [ms(m.p50_ms), m.p50_ms], p99_ms: [ms(m.p99_ms), m.p99_ms],
      error_ratio: [pct(m.error_ratio), m.error_ratio],
      rejected_ratio: [pct(m.rejected_ratio), m.rejected_ratio],
      errors: [whole(m.errors), m.errors],
      cache: [m.cache || DASH, m.cache], cache_hit_ratio: [pct(hit), hit],
      queue_depth: [whole(m.queue_depth), m.queue_depth], inflight: [whole(m.inflight), m.inflight],
      max_psi: [drift.profile ? fixed(drift.max_psi, 3) : "no profile", drift.max_psi],
      drift_feature: [worst ?? DASH, worst], max_ks: [fixed(drift.max_ks, 3), drift.max_ks],
      accuracy_live: [labelled ? pct(live) : "no labels", live],
      accuracy_registered: [pct(acc.registered), acc.registered],
      labelled_requests: [whole(acc.labelled_requests), acc.labelled_requests],
    };
  }

  function classRows(target, predictions) {
    const entries = Object.entries(predictions || {}).sort((a, b) => b[1] - a[1]);
    const total = entries.reduce((sum, [, n]) => sum + n, 0) || 1;
    const rows = entries.slice(0, 12).map(([label, n]) => {
      const row = el("div", {class: "class", "data-class": label});
      const bar = el("div", {class: "bar"});
      bar.style.width = ((100 * n) / total).toFixed(1) + "%";
      const wrap = el("div");
      wrap.append(bar);
      const shown = el("span", {class: "count", "data-value": String(n)}, whole(n));
      row.append(el("span", {class: "name"}, label), wrap, shown);
      return row;
    });
    const more = entries.length - 12;
    if (more > 0) rows.push(el("div", {class: "muted"}, `and ${more} more`));
    if (!rows.length) rows.push(el("div", {class: "muted"}, "none yet"));
    target.replaceChildren(...rows);
  }

  function update(card, m) {
    const f = figures(m);
    for (const [key, [text, value]] of Object.entries(f)) {
      const node = card.fields[key];
      node.textContent = String(text);
      node.setAttribute("data-value", value === null || value === undefined ? "" : String(value));
    }
    card.root.setAttribute("data-state", m.state || "");
    // The thresholds of 'modelfleet monitor rules' by default: PSI 0.2, 1 % of 5xx answers.
    card.fields.max_psi.classList.toggle("alert", given(f.max_psi[1]) && f.max_psi[1] > 0.2);
    card.fields.error_ratio.classList.toggle("alert", given(m.error_ratio) && m.error_ratio > 0.01);
    card.fields.reason.hidden = !m.reason;
    card.fields.cache.title = m.cache_reason || "";
    classRows(card.fields.predictions, m.predictions);
    const h = card.history;
    const points = {rps: m.rps, p99: m.p99_ms, psi: f.max_psi[1], accuracy: f.accuracy_live[1]};
    for (const [name, value] of Object.entries(points)) {
      h[name].push(given(value) ? Number(value) : null);
      if (h[name].length > KEEP) h[name].shift();
      draw(card.charts[name], h[name], name === "accuracy" ? 1 : 0);
    }
  }

  function show(state, message) {
    const status = $("status");
    status.setAttribute("data-state", state);
    status.textContent = message;
    document.body.classList.toggle("stale", state !== "ok");
  }

  function render(doc) {
    const server = doc.server;
    $("server-version").textContent = "modelfleet " + server.version;
    $("uptime").textContent = "up " + duration(server.uptime_s || 0);
    const seen = new Set();
    for (const m of doc.models) {
      const name = String(m.name);
      seen.add(name);
      if (!cards.has(name)) cards.set(name, makeCard(name));
      update(cards.get(name), m);
    }
    for (const [name, card] of cards) {
      if (!seen.has(name)) {
        card.root.remove();
        cards.delete(name);
      }
    }
    $("empty").hidden = doc.models.length > 0;
    show("ok", "live \u00b7 updated " + new Date().toLocaleTimeString() +
      " \u00b7 rates over the last " + Math.round(doc.window_s) + " s");
  }

  function askToken(message) {
    show("auth", message);
    $("auth").hidden = false;
    $("token").focus();
  }

  async function poll() {
    const headers = {Accept: "application/json"};
    const token = sessionStorage.getItem(TOKEN);
    if (token) headers.Authorization = "Bearer " + token;
    const abort = new AbortController();
    const guard = setTimeout(() => abort.abort(), Math.max(5000, every));
    let response, doc = null;
    try {
      response = await fetch("monitor/summary", {headers, cache: "no-store", signal: abort.signal});
      doc = await response.json().catch(() => null);
    } catch (err) {
      const why = err && err.name === "AbortError" ? "no answer in time" : "connection failed";
      show("unreachable", "cannot reach the server at " + location.host + " (" + why +
        "); retrying every " + every / 1000 + " s");
      return true;
    } finally {
      clearTimeout(guard);
    }
    const said = doc && typeof doc.error === "string" ? doc.error : response.statusText;
    if (response.status === 401 || response.status === 403) {
      if (token) sessionStorage.removeItem(TOKEN);
      askToken(token ? "the token was refused: " + said
        : "this server needs a bearer token with the admin scope to show its figures");
      return false;
    }
    if (!response.ok) {
      show("error", "the server answered " + response.status + ": " + said);
    } else if (!doc?.server || doc.server.name !== "modelfleet" || !Array.isArray(doc.models)) {
      show("error", "monitor/summary did not answer with a modelfleet summary");
    } else {
      render(doc);
    }
    return true;
  }

  function loop() {
    clearTimeout(timer);
    poll()
      .catch((err) => { show("error", "cannot show the summary: " + err); return true; })
      .then((again) => { if (again) timer = setTimeout(loop, every); });
  }

  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN, value);
    $("token").value = "";
    $("auth").hidden = true;
    show("connecting", "connecting\u2026");
    loop();
  });
  loop();
})();
