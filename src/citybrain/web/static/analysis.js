// citybrain 研判 screen (issue 37 item 5), for operators: orders opened and closed per day
// (GET /api/v1/analytics/windows), today's counts against their own baseline with anomalies
// flagged (/api/v1/analytics/trends), 高发 hotspots as a list and a heat layer on a map of
// their own (/api/v1/hotspots), and 设备完好率 / 联网率 by kind and district (/api/v1/kpis).
// Each part loads on its own: one that answers 404 or fails says 暂无数据 and why, the
// others still draw.  Apache ECharts (vendored) and Leaflet (vendored), no framework.
//
// Like kpi.js it uses console.js only for api() and state.me / state.meta and keeps the
// rest inside this closure.  #/analysis shows it; any other hash hides it.
"use strict";

(() => {
  const HASH = "#/analysis";
  const DAY_SPANS = [14, 30, 60, 90];
  const REFRESH_MS = 60000;
  const KIND_ZH = {sensor: "传感器", camera: "视频监控", gateway: "网关"};
  const TEXT = "#c9d8e6", GRIDLINE = "#23364a", MUTED = "#8aa4bd";
  const A = {ready: false, shown: false, seq: 0, timer: null, charts: new Map(), map: null, heat: null,
             days: 30, district: "", category: "", date: ""};
  const $a = (id) => document.getElementById(id);
  const escA = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const pctA = (r) => r === null || r === undefined ? "—" : (r * 100).toFixed(1) + "%";
  const me = () => (typeof state !== "undefined" ? state.me : null);
  const meta = () => (typeof state !== "undefined" ? state.meta : null) || {};
  const districtName = (code) => code === "*" ? "全市 city" : `${(meta().districts || {})[code] || ""} ${code}`.trim();
  const categoryName = (code) => `${(meta().categories || {})[code] || ""} ${code}`.trim();
  const streetName = (code) => `${(meta().streets || {})[code] || ""} ${code || ""}`.trim();
  const short = (label) => label.split(" ")[0] || label;

  // -- city days (CST, as the windows are cut) -------------------------------------------

  function cityToday() {
    return new Intl.DateTimeFormat("en-CA", {timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
                                             day: "2-digit"}).format(new Date());
  }
  function addDays(day, n) {   // "YYYY-MM-DD" + n days, calendar arithmetic in UTC
    const d = new Date(day + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }
  const cityMidnight = (day) => `${day}T00:00:00+08:00`;

  // -- the view: tab and hash --------------------------------------------------------------

  function setup() {
    if (A.ready || !me() || me().role !== "operator" || !$a("analysis") || !$a("views")) return;
    A.ready = true;
    const tab = $a("views").querySelector("[data-view=analysis]");
    tab.hidden = false;
    $a("views").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-view]");
      if (!b) return;
      if (b.dataset.view === "analysis") location.hash = HASH;
      else if (b.dataset.view === "board" && location.hash === HASH) location.hash = "#/";
    });
    build();
    window.addEventListener("hashchange", fromHash);
    window.addEventListener("resize", () => { if (A.shown) resizeAll(); });
    fromHash();
  }

  function fromHash() {
    if (location.hash === HASH) show(true);
    else if (A.shown) show(false);
  }

  function show(on) {
    A.shown = on;
    $a("app").classList.toggle("analysis-view", on);
    $a("analysis").hidden = !on;
    if (on) {
      for (const b of $a("views").querySelectorAll("button[data-view]")) {
        const active = b.dataset.view === "analysis";
        b.classList.toggle("active", active);
        b.setAttribute("aria-selected", String(active));
      }
    }
    else if (location.hash !== "#/kpi") {     // back to the board (kpi.js marks its own tab)
      for (const b of $a("views").querySelectorAll("button[data-view]")) {
        b.classList.toggle("active", b.dataset.view === "board");
        b.setAttribute("aria-selected", String(b.dataset.view === "board"));
      }
      requestAnimationFrame(() => window.dispatchEvent(new Event("resize")));   // the board's map re-measures
    }
    clearInterval(A.timer);
    if (on) {
      load();
      A.timer = setInterval(load, REFRESH_MS);
      requestAnimationFrame(resizeAll);
    }
  }

  // -- skeleton (once) ---------------------------------------------------------------------

  function build() {
    const m = meta();
    A.date = cityToday();
    const districts = Object.entries(m.districts || {}).sort(([a], [b]) => a.localeCompare(b))
      .map(([code, name]) => `<option value="${escA(code)}">${escA(name)} ${escA(code)}</option>`).join("");
    const categories = Object.entries(m.categories || {}).sort(([a], [b]) => a.localeCompare(b))
      .map(([code, name]) => `<option value="${escA(code)}">${escA(name)} ${escA(code)}</option>`).join("");
    const spans = DAY_SPANS.map((d) => `<option value="${d}"${d === A.days ? " selected" : ""}>近 ${d} 天 last ${d} days</option>`).join("");
    $a("analysis").innerHTML = `
      <div class="an-bar">
        <h2>研判 <small>analysis</small></h2>
        <label>区县 district <select id="an-district" data-testid="an-district"><option value="">全市 whole city</option>${districts}</select></label>
        <label>类别 category <select id="an-category" data-testid="an-category"><option value="">全部 all</option>${categories}</select></label>
        <label>范围 span <select id="an-days" data-testid="an-days">${spans}</select></label>
        <label>趋势日期 trend day <input id="an-date" data-testid="an-date" type="date" value="${A.date}" max="${A.date}"></label>
        <button id="an-refresh" class="secondary" data-testid="an-refresh">刷新 refresh</button>
        <span id="an-status" class="muted" data-testid="an-status"></span>
      </div>
      <div id="an-cards" class="kpi-cards" data-testid="an-cards"></div>
      <section class="an-block">
        <h3>每日立案与结案 opened · closed per day <small class="muted" id="an-window-scope"></small></h3>
        <div class="an-chart wide" id="an-chart-daily" data-testid="an-chart"></div>
      </section>
      <section class="an-block two-up">
        <div>
          <h3>趋势与异常 trends <small class="muted" id="an-trend-scope"></small></h3>
          <div class="an-chart" id="an-chart-trends" data-testid="an-chart"></div>
          <div class="kpi-table an-table"><table data-testid="an-trends"><thead><tr><th>类别 category</th><th>区县 district</th>
            <th class="n">当日 count</th><th class="n">基线 baseline</th><th class="n">标准差 sd</th><th class="n">z</th><th>异常 anomaly</th></tr></thead>
            <tbody id="an-trend-rows"></tbody></table></div>
        </div>
        <div>
          <h3>高发 hotspots <small class="muted" id="an-hotspot-scope"></small></h3>
          <div id="an-map" data-testid="an-map"></div>
          <div id="an-hotspots" class="an-list" data-testid="an-hotspots"></div>
        </div>
      </section>
      <section class="an-block two-up">
        <div>
          <h3>设备完好率与联网率 按类型与区县 device health by kind · district <small class="muted">now 当前</small></h3>
          <div class="an-chart" id="an-chart-devices" data-testid="an-chart"></div>
        </div>
        <div>
          <h3>明细 rows</h3>
          <div class="kpi-table an-table"><table data-testid="an-devices"><thead><tr><th>类型 kind</th><th>区县 district</th>
            <th class="n">登记 registered</th><th class="n">在用 in service</th><th class="n">故障 faulty</th>
            <th class="n">完好率 intact</th><th class="n">联网率 networked</th></tr></thead><tbody id="an-device-rows"></tbody></table></div>
        </div>
      </section>`;
    const changed = () => {
      A.district = $a("an-district").value;
      A.category = $a("an-category").value;
      A.days = Number($a("an-days").value);
      A.date = $a("an-date").value || cityToday();
      load();
    };
    for (const id of ["an-district", "an-category", "an-days", "an-date"]) $a(id).addEventListener("change", changed);
    $a("an-refresh").addEventListener("click", load);
  }

  // -- data: each part on its own ----------------------------------------------------------

  // A part that cannot be shown: 404 (the route is not there: this worker predates it) and
  // 503 (no window store) are 暂无数据 with the reason; anything else too, with its message.
  function unavailable(e) {
    const code = (e && e.message || "").split(" ")[0];
    if (code === "404") return "暂无数据 no data — 研判接口未提供 analytics API not available (404)";
    if (code === "503") return "暂无数据 no data — 本节点无研判窗口 this worker keeps no windows (503)";
    return "暂无数据 no data — 加载失败 failed: " + (e && e.message || e);
  }

  async function load() {
    const seq = ++A.seq;
    $a("an-status").textContent = "加载中 loading…";
    const parts = await Promise.allSettled([loadWindows(seq), loadTrends(seq), loadHotspots(seq), loadDevices(seq)]);
    if (seq !== A.seq) return;
    const failed = parts.filter((p) => p.status === "rejected").length;
    $a("an-status").textContent = "更新于 updated " +
      new Date().toLocaleTimeString("zh-CN", {hour12: false, timeZone: "Asia/Shanghai"}) +
      (failed ? ` · ${failed} 项暂无数据 part(s) without data` : "");
    cards();
  }

  function filters(extra = {}) {
    const p = new URLSearchParams(extra);
    if (A.district) p.set("district", A.district);
    if (A.category) p.set("category", A.category);
    return p;
  }

  async function loadWindows(seq) {
    const today = cityToday();
    const first = addDays(today, 1 - A.days);
    const days = Array.from({length: A.days}, (_, i) => addDays(first, i));
    $a("an-window-scope").textContent = `${first} – ${today} · ${A.district ? districtName(A.district) : "全市 city"}` +
      (A.category ? ` · ${categoryName(A.category)}` : "");
    let body;
    try {
      body = await api("/api/v1/analytics/windows?" + filters({granularity: "day", from: cityMidnight(first),
                                                                to: cityMidnight(addDays(today, 1))}));
    } catch (e) {
      if (seq === A.seq) { A.windows = null; empty("an-chart-daily", unavailable(e)); }
      throw e;
    }
    if (seq !== A.seq) return;
    // Items are per day × category × district × street: summed per day here.
    const per = new Map(days.map((d) => [d, {opened: 0, closed: 0, overdue: 0, returned: 0, reworked: 0}]));
    for (const it of body.items || []) {
      const day = cityDayOf(it.window_start);
      const row = per.get(day);
      if (!row) continue;
      for (const k of Object.keys(row)) row[k] += it[k] || 0;
    }
    const rows = days.map((d) => per.get(d));
    A.windows = rows.reduce((a, r) => { for (const k of Object.keys(a)) a[k] += r[k]; return a; },
                            {opened: 0, closed: 0, overdue: 0, returned: 0, reworked: 0});
    A.windows.complete = body.complete !== false;
    chart("an-chart-daily", dailyOption(days, rows));
  }

  // "2026-12-01T00:00:00+08:00" → "2026-12-01" (the city day the window starts).
  function cityDayOf(iso) {
    return new Intl.DateTimeFormat("en-CA", {timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
                                             day: "2-digit"}).format(new Date(iso));
  }

  async function loadTrends(seq) {
    let body;
    try { body = await api("/api/v1/analytics/trends?" + filters({date: A.date})); }
    catch (e) {
      if (seq === A.seq) {
        A.trends = null;
        empty("an-chart-trends", unavailable(e));
        $a("an-trend-rows").innerHTML = `<tr><td colspan="7" class="muted">${escA(unavailable(e))}</td></tr>`;
        $a("an-trend-scope").textContent = "";
      }
      throw e;
    }
    if (seq !== A.seq) return;
    const items = (body.items || []).slice().sort((a, b) => (b.anomaly - a.anomaly) || (Math.abs(b.z ?? 0) - Math.abs(a.z ?? 0))
      || (b.count - a.count) || `${a.category}${a.district}`.localeCompare(`${b.category}${b.district}`));
    A.trends = items;
    $a("an-trend-scope").textContent = `${body.date} 对比前 ${body.weeks} 周同日 vs the same weekday of ${body.weeks} weeks · ` +
      `|z| > ${body.k} 为异常 anomaly`;
    $a("an-trend-rows").innerHTML = items.length ? items.slice(0, 40).map((t) =>
      `<tr data-key="${escA(t.category)}@${escA(t.district)}"${t.anomaly ? ' class="anomaly"' : ""}>
        <td class="name">${escA(categoryName(t.category))}</td><td class="name">${escA(districtName(t.district))}</td>
        <td class="n" data-field="count">${t.count}</td><td class="n" data-field="baseline">${fixed(t.baseline_mean)}</td>
        <td class="n">${fixed(t.baseline_sd)}</td><td class="n" data-field="z">${fixed(t.z)}</td>
        <td data-field="anomaly">${t.anomaly ? `<b class="bad">异常 ${t.z > 0 ? "偏高 high" : "偏低 low"}</b>` : "—"}</td></tr>`).join("")
      : `<tr><td colspan="7" class="muted">暂无数据 no orders that day or in its baseline</td></tr>`;
    chart("an-chart-trends", trendsOption(items.slice(0, 12), body.k, body.min_sd ?? 1));
  }
  const fixed = (v) => v === null || v === undefined ? "—" : Number(v).toFixed(Math.abs(v) >= 10 ? 0 : 1);

  async function loadHotspots(seq) {
    let body;
    try { body = await api("/api/v1/hotspots?" + filters()); }
    catch (e) {
      if (seq === A.seq) {
        A.hotspots = null;
        $a("an-hotspots").innerHTML = `<p class="muted">${escA(unavailable(e))}</p>`;
        if (A.heat) A.heat.clearLayers();
      }
      throw e;
    }
    if (seq !== A.seq) return;
    const spots = body.hotspots || [];
    A.hotspots = body;
    $a("an-hotspot-scope").textContent = `${body.total ?? spots.length} 处 · ${body.source === "history" ? "历史库 history" : "在办视图 live view"}`;
    await ensureMap();
    heatLayer(spots);
    $a("an-hotspots").innerHTML = spots.length ? spots.slice(0, 15).map((h, i) =>
      `<div class="hs" data-testid="an-hotspot" data-i="${i}"><b>×${h.count}</b> ${escA(categoryName(h.category))} · ` +
      `${escA(streetName(h.street_code))} <span class="muted">${escA(String(h.radius_m))} m / ${escA(String(h.days))} 天 · ` +
      `${escA(dayOf(h.first_ts ?? h.first))}–${escA(dayOf(h.last_ts ?? h.last))}</span></div>`).join("")
      : `<p class="muted">暂无高发 no hotspots</p>`;
    $a("an-hotspots").querySelectorAll(".hs").forEach((el) => el.addEventListener("click", () => {
      const h = spots[Number(el.dataset.i)];
      A.map.setView([h.lat, h.lon], 16);
    }));
  }
  function dayOf(t) {
    if (t === null || t === undefined) return "";
    const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
    return Number.isNaN(d.getTime()) ? "" : cityDayOf(d.toISOString());
  }

  async function loadDevices(seq) {
    let body;
    try { body = await api("/api/v1/kpis"); }
    catch (e) {
      if (seq === A.seq) { A.devices = null; empty("an-chart-devices", unavailable(e)); }
      throw e;
    }
    if (seq !== A.seq) return;
    const rows = Object.values(body.device_health_by_kind_district || {})
      .filter((r) => r.kind !== "*" && (!A.district || r.district === A.district))
      .sort((a, b) => a.kind.localeCompare(b.kind) || a.district.localeCompare(b.district));
    A.devices = {rows, city: (body.device_health_by_kind_district || {})["*@*"] || (body.device_health || {})["*"] || null};
    const rate = (r, f) => `<td class="n rate" data-field="${f}">${pctA(r[f])}</td>`;
    $a("an-device-rows").innerHTML = rows.length ? rows.map((r) =>
      `<tr data-key="${escA(r.kind)}@${escA(r.district)}"><td>${escA(KIND_ZH[r.kind] || "")} ${escA(r.kind)}</td>
        <td class="name">${escA(districtName(r.district))}</td><td class="n">${r.registered}</td>
        <td class="n">${r.in_service ?? r.registered - r.faulty}</td><td class="n${r.faulty ? " bad" : ""}">${r.faulty}</td>
        ${rate(r, "intact_rate")}${rate(r, "networked_rate")}</tr>`).join("")
      : `<tr><td colspan="7" class="muted">暂无设备 no devices</td></tr>`;
    chart("an-chart-devices", devicesOption(rows), Math.max(200, 70 + 26 * rows.length));
  }

  function cards() {
    const w = A.windows, d = A.devices && A.devices.city;
    const card = (zh, en, value, testid, sub = "") =>
      `<div class="kpi-card" data-testid="an-card-${testid}"><span class="k">${zh} <small>${en}</small></span>
       <b>${value}</b><small class="muted">${sub}</small></div>`;
    const n = (k) => (w ? w[k] : "—");
    const anomalies = A.trends ? A.trends.filter((t) => t.anomaly).length : "—";
    $a("an-cards").innerHTML =
      card("立案", `opened, ${A.days} d`, n("opened"), "opened", w && !w.complete ? "回放中 still replaying" : "") +
      card("结案", `closed, ${A.days} d`, n("closed"), "closed") +
      card("超时", "overdue", n("overdue"), "overdue") +
      card("退回", "returned", n("returned"), "returned") +
      card("返工", "reworked", n("reworked"), "reworked") +
      card("趋势异常", "anomalies", anomalies, "anomalies", A.trends ? `${A.date}` : "") +
      card("高发", "hotspots", A.hotspots ? (A.hotspots.total ?? (A.hotspots.hotspots || []).length) : "—", "hotspots") +
      card("设备完好率", "intact", d ? pctA(d.intact_rate) : "—", "intact", d ? `故障 faulty ${d.faulty} / ${d.registered}` : "") +
      card("联网率", "networked", d ? pctA(d.networked_rate) : "—", "networked", d ? `联网 heard ${d.networked ?? "—"} / ${d.registered}` : "");
  }

  // -- the map: city outline and a heat layer of the hotspots ------------------------------

  async function ensureMap() {
    if (A.map || typeof L === "undefined") return;
    A.map = L.map("an-map", {preferCanvas: true, attributionControl: false, zoomControl: true});
    if (meta().tile_url) L.tileLayer(meta().tile_url, {maxZoom: 19}).addTo(A.map);
    try {
      const geo = await (await fetch("/city.geojson")).json();
      const outline = L.geoJSON(geo, {style: {color: "#2d5a88", weight: 0.6, fillOpacity: 0.04}, interactive: false}).addTo(A.map);
      A.map.fitBounds(outline.getBounds());
    } catch (e) { A.map.setView([36.8, 117.9], 10); }
    A.heat = L.layerGroup().addTo(A.map);
    A.svg = L.svg();      // the heat on SVG above the outline's canvas: few shapes, each one findable
  }

  // Heat: each hotspot as rings that fade outwards, in pixels so they show at the city's
  // zoom, larger and redder the more orders it holds — overlapping spots add up.
  function heatLayer(spots) {
    if (!A.heat) return;
    A.heat.clearLayers();
    const most = Math.max(1, ...spots.map((h) => h.count));
    for (const h of spots) {
      const w = h.count / most;
      const color = w > 0.66 ? "#ef4444" : w > 0.33 ? "#f97316" : "#eab308";
      for (const [px, alpha] of [[30, 0.14], [19, 0.24], [10, 0.4]]) {
        L.circleMarker([h.lat, h.lon], {radius: px * (0.6 + 0.4 * w), stroke: false, fillColor: color, fillOpacity: alpha,
                                        interactive: false, renderer: A.svg, className: "an-heat"}).addTo(A.heat);
      }
      L.circleMarker([h.lat, h.lon], {radius: 3, color, weight: 1, fillColor: color, fillOpacity: 0.9, renderer: A.svg,
                                      className: "an-heat-centre"})
        .bindTooltip(`高发 ${categoryName(h.category)} ×${h.count} · ${h.radius_m} m / ${h.days} 天`).addTo(A.heat);
    }
  }

  // -- charts (ECharts, canvas) -------------------------------------------------------------

  function empty(id, why) {
    const div = $a(id);
    const c = A.charts.get(id);
    if (c) { c.dispose(); A.charts.delete(id); }
    div.classList.add("empty");
    div.textContent = why;
  }

  function chart(id, option, height) {
    const div = $a(id);
    if (!div || typeof echarts === "undefined") return;
    if (height) div.style.height = height + "px";
    if (!option) { empty(id, "暂无数据 no data"); return; }
    let c = A.charts.get(id);
    if (!c) {
      div.classList.remove("empty");
      div.textContent = "";
      c = echarts.init(div, null, {renderer: "canvas"});
      A.charts.set(id, c);
    }
    c.setOption(option, true);
    c.resize();
  }

  function resizeAll() {
    for (const c of A.charts.values()) c.resize();
    if (A.map) A.map.invalidateSize();
  }

  const base = () => ({
    backgroundColor: "transparent", animation: false,
    textStyle: {color: TEXT, fontFamily: "Noto Sans CJK SC, PingFang SC, Microsoft YaHei, sans-serif"},
    tooltip: {trigger: "axis", axisPointer: {type: "shadow"}, backgroundColor: "#13202e", borderColor: GRIDLINE,
              textStyle: {color: TEXT}},
    legend: {top: 4, left: 8, textStyle: {color: TEXT, fontSize: 11}, itemWidth: 12, itemHeight: 8},
    grid: {left: 12, right: 16, top: 36, bottom: 8, containLabel: true},
  });
  const valAxis = (extra = {}) => ({type: "value", minInterval: 1, axisLabel: {color: MUTED, fontSize: 11},
                                     splitLine: {lineStyle: {color: GRIDLINE}}, ...extra});
  const catAxis = (names, rotate = 0) => ({type: "category", data: names, axisLine: {lineStyle: {color: GRIDLINE}},
    axisLabel: {color: TEXT, fontSize: 11, hideOverlap: true, rotate}});

  function dailyOption(days, rows) {
    if (!rows.some((r) => r.opened || r.closed || r.overdue)) return null;
    const o = base();
    o.xAxis = catAxis(days.map((d) => d.slice(5)));
    o.yAxis = valAxis();
    o.series = [
      {name: "立案 opened", type: "bar", barMaxWidth: 18, itemStyle: {color: "#3b82f6"}, data: rows.map((r) => r.opened)},
      {name: "结案 closed", type: "bar", barMaxWidth: 18, itemStyle: {color: "#10b981"}, data: rows.map((r) => r.closed)},
      {name: "超时 overdue", type: "line", itemStyle: {color: "#fbbf24"}, symbolSize: 6, data: rows.map((r) => r.overdue)},
      {name: "退回 returned", type: "line", itemStyle: {color: "#ef4444"}, symbolSize: 6, data: rows.map((r) => r.returned)},
      {name: "返工 reworked", type: "line", itemStyle: {color: "#a855f7"}, symbolSize: 6, data: rows.map((r) => r.reworked)},
    ];
    return o;
  }

  // The day's count per category × district (red when an anomaly) beside its baseline's mean
  // (grey), and the thresholds mean ± k·max(sd, min_sd) as dashes: beyond them is 异常.
  function trendsOption(items, k, minSd) {
    if (!items.length) return null;
    const o = base();
    const names = items.map((t) => `${short(categoryName(t.category))}\n${short(districtName(t.district))}`);
    o.xAxis = catAxis(names);
    o.xAxis.axisLabel.interval = 0;
    o.yAxis = valAxis();
    o.grid.bottom = 4;
    const spread = (t) => k * Math.max(t.baseline_sd ?? 0, minSd);
    const dash = {type: "scatter", symbol: "rect", symbolSize: [26, 2], itemStyle: {color: "#eab308"}, z: 5};
    o.series = [
      {name: "基线均值 baseline mean", type: "bar", barMaxWidth: 16, itemStyle: {color: "#5b6b7c"},
       data: items.map((t) => t.baseline_mean)},
      {name: "当日 count", type: "bar", barMaxWidth: 16,
       data: items.map((t) => ({value: t.count, itemStyle: {color: t.anomaly ? "#ef4444" : "#3b82f6"}})),
       label: {show: true, position: "top", color: TEXT, fontSize: 11,
               formatter: (p) => items[p.dataIndex].anomaly ? `${p.value} 异常` : `${p.value}`}},
      {...dash, name: `异常阈值 ±${k}σ threshold`, data: items.map((t) => t.baseline_mean + spread(t))},
      {...dash, name: "lower", data: items.map((t) => (t.baseline_mean - spread(t) > 0 ? t.baseline_mean - spread(t) : null))},
    ];
    o.legend.data = ["基线均值 baseline mean", "当日 count", `异常阈值 ±${k}σ threshold`];
    return o;
  }

  function devicesOption(rows) {
    if (!rows.length) return null;
    const o = base();
    o.grid = {left: 8, right: 56, top: 36, bottom: 8, containLabel: true};
    o.xAxis = {type: "value", min: 0, max: 100, axisLabel: {color: MUTED, fontSize: 11, formatter: "{value}%"},
               splitLine: {lineStyle: {color: GRIDLINE}}};
    o.yAxis = {type: "category", inverse: true, axisLine: {lineStyle: {color: GRIDLINE}},
               axisLabel: {color: TEXT, fontSize: 11},
               data: rows.map((r) => `${KIND_ZH[r.kind] || r.kind} · ${short(districtName(r.district))}`)};
    const v = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 10);
    const label = {show: true, position: "right", color: TEXT, fontSize: 10,
                   formatter: (p) => (p.value === null || p.value === undefined ? "—" : p.value + "%")};
    o.series = [
      {name: "完好率 intact", type: "bar", barMaxWidth: 10, itemStyle: {color: "#10b981"}, label,
       data: rows.map((r) => v(r.intact_rate))},
      {name: "联网率 networked", type: "bar", barMaxWidth: 10, itemStyle: {color: "#3b82f6"}, label,
       data: rows.map((r) => v(r.networked_rate))},
    ];
    return o;
  }

  // -- start: once console.js has signed in (it unhides #app) ------------------------------

  function whenSignedIn() {
    const app = $a("app");
    if (!app) return;
    if (!app.hidden && me()) { setup(); return; }
    const watch = new MutationObserver(() => {
      if (!app.hidden && me()) { watch.disconnect(); setup(); }
    });
    watch.observe(app, {attributes: true, attributeFilter: ["hidden"]});
  }
  whenSignedIn();
})();
