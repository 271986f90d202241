// citybrain 综合评价 KPI screen: the evaluation figures (docs/lifecycle.md "Evaluation")
// of a month per department, district and category, the last twelve months, and device health
// (设备完好率), as tables and Apache ECharts charts (vendored from npm, canvas renderer).
// No framework, no CDN.
//
// It relies on console.js only for the global api() helper and state.me / state.meta, and
// keeps everything else inside this closure (a second top-level const of the same name in
// another classic script would be a SyntaxError).  The view is switched by the tab bar
// (#views) or the hash: #/kpi shows it, #/orders/<id> and #/ the board.
"use strict";

(() => {
  const ROLES = new Set(["operator", "department", "street"]);   // grid and gateway tokens get 403
  const RATES = [   // [field, 中文, english, higher is better]
    ["on_time_closure_rate", "按期结案率", "on time", true],
    ["rework_rate", "返工率", "rework", false],
    ["return_rate", "退回率", "return", false],
    ["extension_rate", "延期率", "extension", false],
    ["satisfaction_rate", "满意率", "satisfaction", true],
  ];
  const STAGES = [["dispatch", "派遣", "dispatch"], ["accept", "签收", "accept"], ["handle", "处置", "handle"],
                  ["close", "结案", "close"]];
  const KIND_ZH = {sensor: "传感器", camera: "视频监控", gateway: "网关"};
  const PALETTE = ["#3b82f6", "#f97316", "#a855f7", "#eab308", "#10b981", "#ef4444", "#06b6d4", "#ec4899"];
  const RATE_COLORS = {on_time_closure_rate: "#10b981", rework_rate: "#f97316", return_rate: "#ef4444",
                       extension_rate: "#eab308", satisfaction_rate: "#3b82f6"};
  const TEXT = "#c9d8e6", GRIDLINE = "#23364a", MUTED = "#8aa4bd";
  const REFRESH_MS = 60000;        // while the screen is shown
  const TREND_MONTHS = 12;
  const PAST_TTL_MS = 600000;      // a closed month's figures are re-read at most this often

  const K = {ready: false, shown: false, period: null, seq: 0, timer: null, charts: new Map(),
             past: new Map(),        // period → {at, body}: earlier months for the trend
             body: null};
  const $k = (id) => document.getElementById(id);
  const escK = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const pct = (r) => r === null || r === undefined ? "—" : (r * 100).toFixed(1) + "%";
  const hours = (h) => h === null || h === undefined ? "—" : h === 0 ? "0" : h < 0.05 ? "<0.1"
    : h >= 100 ? Math.round(h).toString() : h.toFixed(1);
  const pctValue = (r) => r === null || r === undefined ? null : Math.round(r * 1000) / 10;

  const me = () => (typeof state !== "undefined" ? state.me : null);
  const meta = () => (typeof state !== "undefined" ? state.meta : null) || {};
  const allowed = () => !!me() && ROLES.has(me().role);

  // 中文 name and code of a department (street desks: street.<code>), district or device row.
  function deptLabel(code) {
    if (code === "*") return "全市 all";
    const m = meta();
    if (code.startsWith("street.")) {
      const s = code.slice(7);
      return `${(m.streets || {})[s] || "街道"} ${s}`;
    }
    return `${(m.departments || {})[code] || ""} ${code}`.trim();
  }
  function districtLabel(code) {
    if (code === "*") return `${(meta().city || {}).name || "全市"} all`;
    return `${(meta().districts || {})[code] || ""} ${code}`.trim();
  }
  function categoryLabel(code) {
    if (code === "*") return "全部类别 all";
    return `${(meta().categories || {})[code] || ""} ${code || "—"}`.trim();
  }
  function deviceLabel(key, r) {
    if (key === "*") return "全部设备 all";
    const owner = r.owner ? deptLabel(r.owner) : "无主 unowned";
    return `${owner} · ${KIND_ZH[r.kind] || ""} ${r.kind}`;
  }
  const shortName = (label) => label.split(" ")[0];

  // -- months ---------------------------------------------------------------------

  function thisMonth() {   // city time, as the evaluation's periods
    const parts = new Intl.DateTimeFormat("en-CA", {timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit"})
      .formatToParts(new Date());
    const get = (t) => parts.find((p) => p.type === t).value;
    return `${get("year")}-${get("month")}`;
  }
  function monthsBack(period, n) {   // [period, the month before, …], n of them
    let [y, m] = period.split("-").map(Number);
    const out = [];
    for (let i = 0; i < n; i++) {
      out.push(`${y}-${String(m).padStart(2, "0")}`);
      if (--m === 0) { m = 12; y -= 1; }
    }
    return out;
  }
  const monthZh = (p) => `${p.slice(0, 4)}年${Number(p.slice(5))}月`;

  // -- the view: tabs and hash ----------------------------------------------------

  function setup() {
    if (K.ready || !allowed() || !$k("kpi") || !$k("views")) return;
    K.ready = true;
    const nav = $k("views");
    const header = document.querySelector("header");
    const title = header && header.querySelector("h1");
    if (title) title.after(nav);   // the tab bar sits in the header, beside the title
    nav.hidden = false;
    nav.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-view]");
      if (!b) return;
      if (b.dataset.view === "kpi") location.hash = "#/kpi";
      else if (b.dataset.view === "board" && location.hash === "#/kpi") location.hash = "#/";
    });
    build();
    window.addEventListener("hashchange", fromHash);
    window.addEventListener("resize", () => { if (K.shown) resizeCharts(); });
    fromHash();
  }

  function fromHash() {
    if (location.hash === "#/kpi") show(true);
    else if (K.shown) show(false);
  }

  function show(on) {
    K.shown = on;
    $k("app").classList.toggle("kpi-view", on);
    $k("kpi").hidden = !on;
    for (const b of $k("views").querySelectorAll("button[data-view]")) {
      const active = b.dataset.view === (on ? "kpi" : "board");   // another view (研判) marks its own
      b.classList.toggle("active", active);
      b.setAttribute("aria-selected", String(active));
    }
    clearInterval(K.timer);
    if (on) {
      load();
      K.timer = setInterval(load, REFRESH_MS);
      requestAnimationFrame(resizeCharts);
    } else {
      // The board's map measured nothing while it was hidden: let Leaflet re-measure.
      requestAnimationFrame(() => window.dispatchEvent(new Event("resize")));
    }
  }

  // -- the screen's skeleton (once) -------------------------------------------------

  function build() {
    const sec = $k("kpi");
    const operator = me().role === "operator";
    const now = thisMonth();
    K.period = now;
    const options = monthsBack(now, TREND_MONTHS + 1).map((p) =>
      `<option value="${p}">${monthZh(p)} ${p}${p === now ? " (本月 this month)" : ""}</option>`).join("");
    const scope = operator ? "全市各部门 all departments" : `${deptLabel(me().department || "")} 本部门 own figures`;
    sec.innerHTML = `
      <div class="kpi-bar">
        <h2>综合评价 <small>evaluation</small></h2>
        <label>月份 month <select id="kpi-period" data-testid="kpi-period">${options}</select></label>
        <button id="kpi-refresh" class="secondary" data-testid="kpi-refresh">刷新 refresh</button>
        <span class="muted">${escK(scope)} · 口径 definitions: docs/lifecycle.md 综合评价</span>
        <span id="kpi-status" class="muted" data-testid="kpi-status"></span>
      </div>
      <div id="kpi-cards" class="kpi-cards" data-testid="kpi-cards"></div>
      <section class="kpi-block">
        <h3>部门 by department</h3>
        <div class="kpi-table"><table data-testid="kpi-departments"><thead>${headRow("部门 department")}</thead>
          <tbody id="kpi-dept-rows"></tbody></table></div>
        <div class="kpi-charts three">
          <div class="kpi-chart" id="kpi-chart-dept-closed" data-testid="kpi-chart"></div>
          <div class="kpi-chart" id="kpi-chart-dept-rates" data-testid="kpi-chart"></div>
          <div class="kpi-chart" id="kpi-chart-dept-hours" data-testid="kpi-chart"></div>
        </div>
      </section>
      <section class="kpi-block" id="kpi-district-block"${operator ? "" : " hidden"}>
        <h3>区县 by district</h3>
        <div class="kpi-table"><table data-testid="kpi-districts"><thead>${headRow("区县 district", false)}</thead>
          <tbody id="kpi-district-rows"></tbody></table></div>
        <div class="kpi-charts two">
          <div class="kpi-chart" id="kpi-chart-district" data-testid="kpi-chart"></div>
          <div class="kpi-chart" id="kpi-chart-district-hours" data-testid="kpi-chart"></div>
        </div>
      </section>
      <section class="kpi-block" id="kpi-category-block"${operator ? "" : " hidden"}>
        <h3>类别 by category <small class="muted">各环节当时的类别 the order's category at each step</small></h3>
        <div class="kpi-table"><table data-testid="kpi-categories"><thead>${headRow("类别 category", false)}</thead>
          <tbody id="kpi-category-rows"></tbody></table></div>
        <div class="kpi-charts two">
          <div class="kpi-chart" id="kpi-chart-category" data-testid="kpi-chart"></div>
          <div class="kpi-chart" id="kpi-chart-category-hours" data-testid="kpi-chart"></div>
        </div>
      </section>
      <section class="kpi-block two-up">
        <div>
          <h3>月度趋势 last ${TREND_MONTHS} months <small class="muted" id="kpi-trend-scope"></small></h3>
          <div class="kpi-chart" id="kpi-chart-trend" data-testid="kpi-chart"></div>
        </div>
        <div>
          <h3>设备完好率 device health <small class="muted">now 当前</small></h3>
          <div class="kpi-table"><table data-testid="kpi-devices"><thead><tr><th>设备 devices</th><th class="n">登记 registered</th>
            <th class="n">故障 faulty</th><th class="n">完好率 intact</th><th class="n">联网率 networked</th></tr></thead><tbody id="kpi-device-rows"></tbody></table></div>
          <div class="kpi-chart short" id="kpi-chart-devices" data-testid="kpi-chart"></div>
        </div>
      </section>`;
    $k("kpi-period").addEventListener("change", (ev) => { K.period = ev.target.value; load(); });
    $k("kpi-refresh").addEventListener("click", () => { K.past.clear(); load(); });
  }

  function headRow(first, assists = true) {
    return `<tr><th>${first}</th><th class="n">结案<br><small>closed</small></th>` +
      RATES.map(([, zh, en]) => `<th class="n">${zh}<br><small>${en}</small></th>`).join("") +
      (assists ? `<th class="n">协办<br><small>assists 办/退</small></th>` : "") +
      STAGES.map(([, zh, en]) => `<th class="n">${zh}时长 h<br><small>${en} p50 / p90</small></th>`).join("") + "</tr>";
  }

  // -- data --------------------------------------------------------------------------

  async function kpis(period) {
    const cached = K.past.get(period);
    if (period !== thisMonth() && cached && Date.now() - cached.at < PAST_TTL_MS) return cached.body;
    const body = await api("/api/v1/kpis?period=" + encodeURIComponent(period));
    if (period !== thisMonth()) K.past.set(period, {at: Date.now(), body});
    return body;
  }

  async function load() {
    const seq = ++K.seq;
    const period = K.period;
    $k("kpi-status").textContent = "加载中 loading…";
    $k("kpi-status").className = "muted";
    let body;
    try { body = await api("/api/v1/kpis?period=" + encodeURIComponent(period)); }
    catch (e) {
      if (seq === K.seq) { $k("kpi-status").textContent = "加载失败 failed: " + e.message; $k("kpi-status").className = "error"; }
      return;
    }
    if (seq !== K.seq || !K.shown) return;
    K.body = body;
    render(body);
    $k("kpi-status").textContent = "更新于 updated " +
      new Date().toLocaleTimeString("zh-CN", {hour12: false, timeZone: "Asia/Shanghai"});
    loadTrend(seq, period);
  }

  // The row the cards and the trend follow: the city's for operators, one's own otherwise.
  function ownRow(figures) {
    if (me().role === "operator") return figures["*"] || null;
    return figures[me().department] || Object.values(figures).find((r) => r.department !== "*") || null;
  }

  async function loadTrend(seq, period) {
    const months = monthsBack(period, TREND_MONTHS).reverse();
    const rows = [];
    for (const p of months) {
      let row = null;
      try { row = ownRow((p === period ? K.body : await kpis(p)).figures || {}); } catch (e) { /* a gap in the line */ }
      if (seq !== K.seq) return;
      rows.push(row);
    }
    $k("kpi-trend-scope").textContent = me().role === "operator" ? "全市 city" : deptLabel(me().department || "");
    chart("kpi-chart-trend", trendOption(months, rows));
  }

  // -- tables -------------------------------------------------------------------------

  function rateCell(r, field, title) {
    const v = r[field];
    return `<td class="n rate" data-field="${field}"${title ? ` title="${escK(title)}"` : ""}>${pct(v)}</td>`;
  }

  function figureRow(key, r, label, assists = true) {
    const cells = [
      `<td class="name" title="${escK(label)}">${escK(label)}</td>`,
      `<td class="n" data-field="closed"><b>${r.closed}</b></td>`,
      rateCell(r, "on_time_closure_rate", `按期 on time ${r.on_time} / 结案 closed ${r.closed}`),
      rateCell(r, "rework_rate", `of ${r.closed} closed`),
      rateCell(r, "return_rate", `退回 returns ${r.returns} / 派遣 dispatches ${r.dispatches}`),
      rateCell(r, "extension_rate", `of ${r.closed} closed`),
      rateCell(r, "satisfaction_rate", `回访 visits ${r.visits}`),
    ];
    if (assists) cells.push(`<td class="n" data-field="assists">${r.assists ?? 0}<small> ${r.assists_handled ?? 0}/${r.assists_returned ?? 0}</small></td>`);
    for (const [stage] of STAGES) {
      cells.push(`<td class="n hours" data-field="${stage}_hours">${hours(r[stage + "_hours_p50"])}<small> / ${hours(r[stage + "_hours_p90"])}</small></td>`);
    }
    return `<tr data-key="${escK(key)}"${key === "*" ? ' class="all"' : ""}>${cells.join("")}</tr>`;
  }

  // The city's row (*) first, then the rest by closed orders, most first.
  function ordered(figures) {
    return Object.entries(figures).sort(([a, x], [b, y]) =>
      (a === "*") !== (b === "*") ? (a === "*" ? -1 : 1) : (y.closed - x.closed) || a.localeCompare(b));
  }

  function render(body) {
    const figures = body.figures || {};
    const cols = 8 + STAGES.length;
    const depts = ordered(figures);
    $k("kpi-dept-rows").innerHTML = depts.length
      ? depts.map(([k, r]) => figureRow(k, r, deptLabel(k))).join("")
      : `<tr><td colspan="${cols}" class="muted">本月暂无评价数据 no figures for ${escK(body.period)}</td></tr>`;
    const districts = ordered(body.by_district || {});
    $k("kpi-district-rows").innerHTML = districts.length
      ? districts.map(([k, r]) => figureRow(k, r, districtLabel(k), false)).join("")
      : `<tr><td colspan="${cols - 1}" class="muted">暂无 none</td></tr>`;
    const categories = ordered(body.by_category || {});
    $k("kpi-category-rows").innerHTML = categories.length
      ? categories.map(([k, r]) => figureRow(k, r, categoryLabel(k), false)).join("")
      : `<tr><td colspan="${cols - 1}" class="muted">暂无 none</td></tr>`;
    const devices = Object.entries(body.device_health || {}).sort(([a], [b]) =>
      (a === "*") !== (b === "*") ? (a === "*" ? 1 : -1) : a.localeCompare(b));
    $k("kpi-device-rows").innerHTML = devices.length ? devices.map(([k, r]) =>
      `<tr data-key="${escK(k)}"${k === "*" ? ' class="all"' : ""}><td class="name">${escK(deviceLabel(k, r))}</td>
       <td class="n">${r.registered}</td><td class="n${r.faulty ? " bad" : ""}">${r.faulty}</td>
       <td class="n rate" data-field="intact_rate">${pct(r.intact_rate)}</td>
       <td class="n rate" data-field="networked_rate">${pct(r.networked_rate)}</td></tr>`).join("")
      : `<tr><td colspan="5" class="muted">暂无设备 no devices</td></tr>`;
    cards(ownRow(figures), (body.device_health || {})["*"] ||
      (devices.length ? devices.map(([, r]) => r).reduce((a, r) => ({registered: a.registered + r.registered,
        faulty: a.faulty + r.faulty, networked: a.networked + (r.networked || 0)}),
        {registered: 0, faulty: 0, networked: 0}) : null));

    const rows = depts.filter(([k]) => k !== "*");
    const names = rows.map(([k]) => shortName(deptLabel(k)));
    chart("kpi-chart-dept-closed", closedOption("结案数与按期结案率 closed · on time", names, rows.map(([, r]) => r)));
    chart("kpi-chart-dept-rates", ratesOption("各项比率 rates", names, rows.map(([, r]) => r)));
    chart("kpi-chart-dept-hours", hoursOption("办理时长 hours p50 (p90 浅色 light)", names, rows.map(([, r]) => r)));
    if (me().role === "operator") {
      const drows = districts.filter(([k]) => k !== "*");
      const dnames = drows.map(([k]) => shortName(districtLabel(k)));
      chart("kpi-chart-district", closedOption("区县 结案数与比率 closed · rates", dnames, drows.map(([, r]) => r), true));
      chart("kpi-chart-district-hours", hoursOption("区县 办理时长 hours p50 (p90 浅色)", dnames, drows.map(([, r]) => r)));
      const crows = categories.filter(([k]) => k !== "*");
      const cnames = crows.map(([k]) => shortName(categoryLabel(k)));
      chart("kpi-chart-category", closedOption("类别 结案数与比率 closed · rates", cnames, crows.map(([, r]) => r), true));
      chart("kpi-chart-category-hours", hoursOption("类别 办理时长 hours p50 (p90 浅色)", cnames, crows.map(([, r]) => r)));
    }
    const owned = devices.filter(([k]) => k !== "*");
    chart("kpi-chart-devices", devicesOption(owned), Math.max(120, 56 + 30 * owned.length));
    resizeCharts();
  }

  function cards(row, health) {
    const intact = health && health.registered ? (health.registered - health.faulty) / health.registered : null;
    const networked = health && health.registered ? (health.networked || 0) / health.registered : null;
    const card = (zh, en, value, testid, sub = "") =>
      `<div class="kpi-card" data-testid="kpi-card-${testid}"><span class="k">${zh} <small>${en}</small></span>
       <b>${value}</b><small class="muted">${sub}</small></div>`;
    const r = row || {closed: 0, on_time: 0, returns: 0, dispatches: 0, visits: 0};
    $k("kpi-cards").innerHTML =
      card("结案", "closed", r.closed ?? 0, "closed", `派遣 dispatched ${r.dispatches ?? 0}`) +
      RATES.map(([field, zh, en, good]) => card(zh, en, pct(r[field]), field,
        field === "on_time_closure_rate" ? `${r.on_time ?? 0} / ${r.closed ?? 0}`
        : field === "return_rate" ? `${r.returns ?? 0} / ${r.dispatches ?? 0}`
        : field === "satisfaction_rate" ? `回访 visits ${r.visits ?? 0}` : (good ? "" : "越低越好 lower is better"))).join("") +
      card("结案时长", "close h p50", hours(r.close_hours_p50), "close-hours", `p90 ${hours(r.close_hours_p90)}`) +
      card("设备完好率", "devices intact", pct(intact === null ? null : Math.round(intact * 10000) / 10000), "intact",
           health ? `故障 faulty ${health.faulty} / ${health.registered}` : "") +
      card("联网率", "devices networked", pct(networked === null ? null : Math.round(networked * 10000) / 10000),
           "networked", health ? `联网 heard ${health.networked || 0} / ${health.registered}` : "");
  }

  // -- charts (ECharts, canvas) ---------------------------------------------------------

  function chart(id, option, height) {
    const div = $k(id);
    if (!div || typeof echarts === "undefined") return;
    if (height) div.style.height = height + "px";
    let c = K.charts.get(id);
    if (!option) {      // nothing to draw: say so instead of empty axes
      if (c) { c.dispose(); K.charts.delete(id); }
      div.classList.add("empty");
      div.textContent = "暂无数据 no data";
      return;
    }
    if (!c) {
      div.classList.remove("empty");
      div.textContent = "";
      c = echarts.init(div, null, {renderer: "canvas"});
      K.charts.set(id, c);
    }
    c.setOption(option, true);
  }

  function resizeCharts() { for (const c of K.charts.values()) c.resize(); }

  const base = (title) => ({
    backgroundColor: "transparent", animation: false, color: PALETTE,
    textStyle: {color: TEXT, fontFamily: "Noto Sans CJK SC, PingFang SC, Microsoft YaHei, sans-serif"},
    title: {text: title, left: 8, top: 4, textStyle: {color: TEXT, fontSize: 13, fontWeight: 600}},
    tooltip: {trigger: "axis", axisPointer: {type: "shadow"}, backgroundColor: "#13202e", borderColor: GRIDLINE,
              textStyle: {color: TEXT}},
    legend: {top: 26, left: 8, textStyle: {color: TEXT, fontSize: 11}, itemWidth: 12, itemHeight: 8},
    grid: {left: 12, right: 16, top: 60, bottom: 8, containLabel: true},
  });
  const catAxis = (names) => ({type: "category", data: names, axisLine: {lineStyle: {color: GRIDLINE}},
    axisLabel: {color: TEXT, interval: 0, hideOverlap: true, fontSize: 11, rotate: names.length > 8 ? 30 : 0}});
  // No axis names (they collide with the legend, which names the series): the labels carry the unit.
  const valAxis = (unit = "", extra = {}) => ({type: "value",
    axisLabel: {color: MUTED, fontSize: 11, formatter: unit ? `{value}${unit}` : "{value}"},
    splitLine: {lineStyle: {color: GRIDLINE}}, ...extra});
  const pctAxis = () => valAxis("%", {min: 0, max: 100, splitLine: {show: false}});
  const pctTip = (v) => v === null || v === undefined || Number.isNaN(v) ? "—" : v + "%";

  function closedOption(title, names, rows, withSatisfaction = false) {
    if (!rows.length) return null;
    const o = base(title);
    o.xAxis = catAxis(names);
    o.yAxis = [valAxis("", {minInterval: 1}), pctAxis()];
    o.series = [
      {name: "结案 closed", type: "bar", data: rows.map((r) => r.closed), barMaxWidth: 36, itemStyle: {color: "#3b82f6"},
       label: {show: true, position: "top", color: TEXT, fontSize: 11}},
      {name: "按期结案率 on time", type: "line", yAxisIndex: 1, data: rows.map((r) => pctValue(r.on_time_closure_rate)),
       itemStyle: {color: "#10b981"}, symbolSize: 8, connectNulls: false, tooltip: {valueFormatter: pctTip}},
    ];
    if (withSatisfaction) {
      o.series.push({name: "满意率 satisfaction", type: "line", yAxisIndex: 1, itemStyle: {color: "#eab308"}, symbolSize: 8,
                     data: rows.map((r) => pctValue(r.satisfaction_rate)), tooltip: {valueFormatter: pctTip}});
      o.series.push({name: "返工率 rework", type: "line", yAxisIndex: 1, itemStyle: {color: "#f97316"}, symbolSize: 8,
                     data: rows.map((r) => pctValue(r.rework_rate)), tooltip: {valueFormatter: pctTip}});
    }
    return o;
  }

  function ratesOption(title, names, rows) {
    if (!rows.length) return null;
    const o = base(title);
    o.xAxis = catAxis(names);
    o.yAxis = pctAxis();
    o.yAxis.splitLine = {lineStyle: {color: GRIDLINE}};
    o.series = RATES.map(([field, zh]) => ({name: zh, type: "bar", barMaxWidth: 14, itemStyle: {color: RATE_COLORS[field]},
      data: rows.map((r) => pctValue(r[field])), tooltip: {valueFormatter: pctTip}}));
    return o;
  }

  // Per stage one bar as tall as the p90, its lower part (solid) the p50: a stack per stage.
  function hoursOption(title, names, rows) {
    if (!rows.length) return null;
    const o = base(title);
    const shown = STAGES.filter(([s]) => s !== "dispatch");
    const h = (v) => (v === null || v === undefined ? "—" : hours(v) + " h");
    o.xAxis = catAxis(names);
    o.yAxis = valAxis(" h");
    o.legend.data = shown.map(([, zh, en]) => `${zh} ${en}`);
    o.tooltip.formatter = (params) => [params[0].axisValueLabel].concat(params.map((p) =>
      `${p.marker}${p.seriesName}: ${p.data && p.data.shown !== undefined ? h(p.data.shown) : "—"}`)).join("<br>");
    o.series = [];
    shown.forEach(([stage, zh, en], i) => {
      const color = PALETTE[i + 2];
      const p50 = rows.map((r) => r[stage + "_hours_p50"]);
      const p90 = rows.map((r) => r[stage + "_hours_p90"]);
      o.series.push({name: `${zh} ${en}`, type: "bar", stack: stage, barMaxWidth: 16, itemStyle: {color},
                     data: p50.map((v) => ({value: v, shown: v}))});
      o.series.push({name: `${zh} ${en} p90`, type: "bar", stack: stage, barMaxWidth: 16,
                     itemStyle: {color, opacity: 0.35},
                     data: p90.map((v, j) => ({value: v === null || p50[j] === null ? null : Math.max(v - p50[j], 0), shown: v}))});
    });
    return o;
  }

  function trendOption(months, rows) {
    if (!rows.some((r) => r)) return null;
    const o = base("结案数与比率 closed · rates by month");
    o.xAxis = catAxis(months.map((p) => p.slice(2)));
    o.yAxis = [valAxis("", {minInterval: 1}), pctAxis()];
    const f = (field) => rows.map((r) => (r ? pctValue(r[field]) : null));
    o.series = [
      {name: "结案 closed", type: "bar", barMaxWidth: 24, itemStyle: {color: "#3b82f6"}, data: rows.map((r) => (r ? r.closed : 0))},
      {name: "按期结案率", type: "line", yAxisIndex: 1, itemStyle: {color: "#10b981"}, data: f("on_time_closure_rate"),
       tooltip: {valueFormatter: pctTip}},
      {name: "满意率", type: "line", yAxisIndex: 1, itemStyle: {color: "#eab308"}, data: f("satisfaction_rate"),
       tooltip: {valueFormatter: pctTip}},
      {name: "返工率", type: "line", yAxisIndex: 1, itemStyle: {color: "#f97316"}, data: f("rework_rate"),
       tooltip: {valueFormatter: pctTip}},
    ];
    return o;
  }

  function devicesOption(devices) {
    if (!devices.length) return null;
    const o = base("完好率 intact rate by owner · kind");
    o.legend.show = false;
    o.grid = {left: 8, right: 56, top: 32, bottom: 8, containLabel: true};
    o.xAxis = pctAxis();
    o.xAxis.splitLine = {lineStyle: {color: GRIDLINE}};
    o.yAxis = {type: "category", inverse: true, data: devices.map(([k, r]) => deviceLabel(k, r)),
               axisLabel: {color: TEXT, fontSize: 11}, axisLine: {lineStyle: {color: GRIDLINE}}};
    o.series = [{name: "完好率 intact", type: "bar", barMaxWidth: 14,
                 data: devices.map(([, r]) => ({value: pctValue(r.intact_rate),
                   itemStyle: {color: r.intact_rate === null ? MUTED : r.intact_rate >= 0.95 ? "#10b981"
                                      : r.intact_rate >= 0.85 ? "#eab308" : "#ef4444"}})),
                 label: {show: true, position: "right", color: TEXT, fontSize: 11, formatter: (p) => pctTip(p.value)},
                 tooltip: {valueFormatter: pctTip}}];
    return o;
  }

  // -- start: once console.js has signed in (it unhides #app) -------------------------

  function whenSignedIn() {
    const app = $k("app");
    if (!app) return;
    if (!app.hidden && me()) { setup(); return; }
    const watch = new MutationObserver(() => {
      if (!app.hidden && me()) { watch.disconnect(); setup(); }
    });
    watch.observe(app, {attributes: true, attributeFilter: ["hidden"]});
  }
  whenSignedIn();
})();
