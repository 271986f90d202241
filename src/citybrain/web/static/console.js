// citybrain operator console: a live board of work orders, a map of the grids, an
// order's timeline and the actions the signed-in role may take.  No framework, no CDN.
//
// The board is whole at any volume: the server filters, sorts, pages and counts (exact
// totals and facets in one call); the live stream updates the rows on the page in place
// and a debounced reload keeps membership and counts right; a reconnect sends the last
// event id and gets what changed meanwhile (or a "reload").
"use strict";

// The enumerations and their 中文 labels are the server's (GET /api/v1/meta "enums", from
// citybrain.wire.enums: one list each, held to the wire models); useEnums fills these at
// sign-in. Nothing below spells a status, priority, level, part or action list itself.
let OPEN = [], STATUS_ZH = {}, PRIORITY_ZH = {}, LEVEL_ZH = [""], ACTION_ZH = {}, IRREVERSIBLE = new Set(),
  SATISFACTION_ZH = {}, PART_ZH = {}, WARNING_ZH = {}, EMERGENCY_ZH = {}, EMERGENCY_LEVELS = [], OPEN_PARTS = [];
function useEnums(e) {
  OPEN = e.open_statuses;
  STATUS_ZH = e.status_zh;
  PRIORITY_ZH = Object.fromEntries([...e.priorities].reverse().map((p) => [p, e.priority_zh[p]]));  // highest first
  LEVEL_ZH = ["", ...e.supervision_levels.map((l) => e.supervision_zh[l] + "督办")];   // by supervision_level 1..3
  ACTION_ZH = Object.fromEntries(e.actions.map((a) => [a, `${e.action_zh[a]} ${a}`]));
  IRREVERSIBLE = new Set(e.irreversible);   // a second click confirms, and a reason (note) is required
  SATISFACTION_ZH = e.satisfaction_zh;
  PART_ZH = e.part_zh;
  WARNING_ZH = Object.fromEntries(e.warning_levels.map((l) => [l, e.warning_zh[l] + "预警"]));
  EMERGENCY_ZH = Object.fromEntries(e.emergency_levels.map((l) => [l, e.emergency_zh[l] + "响应"]));
  EMERGENCY_LEVELS = e.emergency_levels;
  OPEN_PARTS = e.open_parts;
}
const PAGE_SIZE = 100;
const REFRESH_MS = 1500;        // at most one reload of the page and counts per this, under any rate
const COLORS = {registered: "#f97316", dispatched: "#3b82f6", accepted: "#a855f7", handled: "#10b981",
                closed: "#6b7280", cancelled: "#52525b", merged: "#52525b"};
// The part of the order the signed-in department works: "lead", an assist, or null.
// A street desk (属地) works as the department street.<street_code>.
const isDesk = () => state.me.role === "department" || state.me.role === "street";
const myPart = (o) => !isDesk() ? null
  : o.department === state.me.department ? "lead"
  : (o.assists || []).find((a) => a.department === state.me.department) || null;
const warningChip = (o) => o.warning_level
  ? `<span class="level lv-${o.warning_level}" data-testid="warning-level">${WARNING_ZH[o.warning_level]} ${o.warning_level}</span>` : "";
const emergencyChip = (o) => o.emergency_level
  ? `<span class="emergency em-${o.emergency_level}" data-testid="emergency-level">${EMERGENCY_ZH[o.emergency_level]} ${o.emergency_level}</span>` : "";

const state = {token: sessionStorage.getItem("citybrain-token") || "", me: null, meta: null,
               rows: new Map(),          // work_order_id → {tr, o}: the rows on the page, updated in place
               total: 0, offset: 0, loadSeq: 0, refreshTimer: null, lastEventId: null, streaming: false,
               queue: "all", selected: null, detailTimer: null, map: null, layer: null, alerted: new Set()};
const $ = (id) => document.getElementById(id);
const fmt = (t) => t ? new Date(t).toLocaleString("zh-CN", {hour12: false, timeZone: "Asia/Shanghai"}) : "—";
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

async function api(path, options = {}) {
  const res = await fetch(path, {...options, headers: {...(options.headers || {}),
    "Authorization": "Bearer " + state.token, "Content-Type": "application/json"}});
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = body.error || {};
    throw new Error(`${res.status} ${e.reason || ""}: ${e.detail || res.statusText}${e.field ? " [" + e.field + "]" : ""}`);
  }
  return body;
}

// -- sign in -------------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  try {
    state.meta = await api("/api/v1/meta");
  } catch (e) {
    $("login-error").textContent = "登录失败 sign-in failed: " + e.message;
    sessionStorage.removeItem("citybrain-token");
    return;
  }
  sessionStorage.setItem("citybrain-token", token);
  useEnums(state.meta.enums);
  state.me = state.meta.me;
  const roleZh = {operator: "值班员", department: "部门", street: "街道属地", grid: "网格员"}[state.me.role] || state.me.role;
  $("who").textContent = `${roleZh} ${state.me.role}: ${state.me.name || state.me.id}` +
    (state.me.department ? ` · ${state.meta.departments[state.me.department] || ""} ${state.me.department}` : "") +
    (state.me.grid_prefix ? ` · ${state.me.grid_prefix}…` : "");
  $("login").hidden = true;
  $("app").hidden = false;
  fillFilters();
  restoreFromUrl();
  fillQueues();
  initMap();
  await loadOrders();
  streamChanges();
  setInterval(tickClocks, 30000);
  openFromHash();
  window.addEventListener("hashchange", openFromHash);
  if (state.me.role === "operator" || isDesk()) { loadDeviceHealth(); setInterval(loadDeviceHealth, 30000); }
  if (state.me.role === "operator" || state.me.role === "grid") initCaseForm();
}

// 设备完好率 and 联网率 (docs/lifecycle.md, device health): one definition, computed by the
// server (domain/device_health.py); a department sums its own rows' counts.
async function loadDeviceHealth() {
  try {
    const body = await api("/api/v1/kpis");
    const rows = Object.entries(body.device_health || {});
    const all = state.me.role === "operator" ? (body.device_health || {})["*"]
      : rows.map(([, r]) => r).reduce((a, r) => ({registered: a.registered + r.registered,
          in_service: a.in_service + r.in_service, faulty: a.faulty + r.faulty, networked: a.networked + (r.networked || 0)}),
        {registered: 0, in_service: 0, faulty: 0, networked: 0});
    if (!all || !all.registered) { $("devices").textContent = ""; return; }
    const pct = (n) => (n * 100 / all.registered).toFixed(1) + "%";
    $("devices").textContent = `设备完好率 intact ${pct(all.in_service)} · 联网率 networked ${pct(all.networked || 0)}` +
      ` · 故障 faulty ${all.faulty} / ${all.registered}`;
    const rate = (x) => x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%";
    $("devices").title = rows.filter(([k]) => k !== "*").map(([k, r]) =>
      `${k}: 完好 ${rate(r.intact_rate)} · 联网 ${rate(r.networked_rate)} (${r.faulty} 故障 / ${r.registered})`).join("\n");
  } catch (e) { /* the board works without it */ }
}

function fillFilters() {
  const dep = $("f-department");
  for (const [code, name] of Object.entries(state.meta.departments)) dep.add(new Option(`${name} ${code}`, code));
  if (state.me.role === "department") { dep.value = state.me.department; dep.disabled = true; }
  const cat = $("f-category");
  for (const [code, name] of Object.entries(state.meta.categories || {})) cat.add(new Option(`${name} ${code}`, code));
  const dis = $("f-district");
  for (const [code, name] of Object.entries(state.meta.districts || {})) dis.add(new Option(`${name} ${code}`, code));
  fillStreets();
  if (state.me.role === "street") {
    dis.value = state.me.street_code.slice(0, 6); dis.disabled = true;
    fillStreets();
    $("f-street").value = state.me.street_code; $("f-street").disabled = true;
  }
  const reload = () => { state.offset = 0; loadOrders(); };
  dis.addEventListener("change", () => { fillStreets(); zoomToDistrict(); reload(); });
  for (const id of ["f-status", "f-department", "f-category", "f-priority", "f-street", "f-emergency", "f-warning",
                    "f-overdue", "f-supervision", "f-sort"]) $(id).addEventListener("change", reload);
  let gridTyping = null;
  $("f-grid").addEventListener("input", () => { clearTimeout(gridTyping); gridTyping = setTimeout(reload, 400); });
  let typing = null;
  $("f-q").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(reload, 300); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadOrders(); });
  $("next").addEventListener("click", () => { if (state.offset + PAGE_SIZE < state.total) { state.offset += PAGE_SIZE; loadOrders(); } });
  $("rows").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-wo]");
    if (tr) location.hash = "#/orders/" + encodeURIComponent(tr.dataset.wo);
  });
  $("alerts").addEventListener("click", (ev) => {
    const a = ev.target.closest("[data-wo]");
    if (a) { location.hash = "#/orders/" + encodeURIComponent(a.dataset.wo); a.remove(); }
  });
}

// The street list follows the district chosen (street codes begin with their district's).
function fillStreets() {
  const st = $("f-street"), district = $("f-district").value;
  while (st.options.length > 1) st.remove(1);
  for (const [code, name] of Object.entries(state.meta.streets)) {
    if (!district || code.startsWith(district)) st.add(new Option(`${name} ${code}`, code));
  }
}

// Work queues (工作队列): a preset of filters and a sort, each with its count in its tab.
const QUEUES = {
  all: {zh: "全部在办 all open", params: {}},
  triage: {zh: "待分拨 triage", params: {status: "registered", sort: "created"}},
  overdue: {zh: "超时 overdue", params: {overdue: "true", sort: "due"}},
  supervision: {zh: "督办 supervision", params: {supervision: "1,2,3", sort: "due"}},
  urgent: {zh: "紧急 urgent", params: {priority: "urgent,high", sort: "due"}},
  followup: {zh: "回访 follow-up", params: {status: "handled,closed", followup: "true", sort: "followup"}},
  history: {zh: "历史 history (一年 a year)", params: {}},
};

function fillQueues() {
  const nav = $("queues");
  for (const [name, qd] of Object.entries(QUEUES)) {
    if (name === "triage" && state.me.role !== "operator") continue;   // 分拨 is the operators' work
    const b = document.createElement("button");
    b.className = "queue" + (name === state.queue ? " on" : "");
    b.dataset.queue = name;
    b.dataset.testid = "queue-" + name;
    if (name === "all") b.id = "queue-all-btn";
    b.innerHTML = `${qd.zh} <b class="n"></b>`;
    b.addEventListener("click", () => {
      state.queue = name;
      for (const el of nav.children) el.classList.toggle("on", el.dataset.queue === name);
      for (const id of ["f-status", "f-overdue", "f-supervision", "f-priority"]) $(id).value = "";
      for (const r of state.rows.values()) r.tr.remove();     // a queue shows its own clock: rows anew
      state.rows.clear();
      $("f-sort").value = QUEUES[name].params.sort || "-created";
      state.offset = 0;
      loadOrders();
    });
    nav.appendChild(b);
  }
}

// Each queue's count, for the tabs: one facets call over the open orders (in this
// principal's scope and district) and one count of the follow-up worklist.
async function loadQueueCounts() {
  const scope = new URLSearchParams();
  for (const [name, id] of [["district", "f-district"], ["street", "f-street"], ["department", "f-department"]]) {
    if ($(id).value) scope.set(name, $(id).value);
  }
  try {
    const [open, follow] = await Promise.all([
      api(`/api/v1/workorders/facets?status=${OPEN.join(",")}&${scope}`),
      api(`/api/v1/workorders?status=handled,closed&followup=true&limit=1&${scope}`)]);
    const f = open.facets, sum = (o, skip) => Object.entries(o || {}).reduce((n, [k, c]) => n + (k !== skip ? c : 0), 0);
    const n = {history: "",
               all: open.total, triage: (f.status || {}).registered || 0, overdue: (f.overdue || {}).true || 0,
               supervision: sum(f.supervision, "0"), urgent: ((f.priority || {}).urgent || 0) + ((f.priority || {}).high || 0),
               followup: follow.total};
    for (const b of $("queues").children) b.querySelector(".n").textContent = (n[b.dataset.queue] ?? "").toLocaleString("zh-CN");
  } catch (e) { /* the tabs work without counts */ }
}

// The board's view in the page's address (?district=…&overdue=true&queue=…): a reload or
// a link shared on shift opens the same view (the token stays per tab, by design).
const URL_FILTERS = {q: "f-q", status: "f-status", category: "f-category", priority: "f-priority",
                     department: "f-department", district: "f-district", street: "f-street", grid: "f-grid",
                     emergency: "f-emergency", warning: "f-warning", overdue: "f-overdue",
                     supervision: "f-supervision", sort: "f-sort"};

function restoreFromUrl() {
  const u = new URLSearchParams(location.search);
  for (const [name, id] of Object.entries(URL_FILTERS)) {
    if (!u.has(name) || $(id).disabled) continue;
    $(id).value = u.get(name);
    if (id === "f-district") fillStreets();
  }
  if (u.has("queue") && QUEUES[u.get("queue")]) state.queue = u.get("queue");
  state.offset = Math.max(0, parseInt(u.get("offset") || "0", 10) || 0);
}

function syncUrl() {
  const u = new URLSearchParams();
  for (const [name, id] of Object.entries(URL_FILTERS)) {
    const v = $(id).value.trim();
    if (v && !$(id).disabled && !(name === "sort" && v === "-created")) u.set(name, v);   // defaults stay out
  }
  if (state.queue !== "all") u.set("queue", state.queue);
  if (state.offset) u.set("offset", String(state.offset));
  const search = u.toString() ? "?" + u : "";
  if (search !== location.search) history.replaceState(null, "", location.pathname + search + location.hash);
}

function query() {
  const p = new URLSearchParams({limit: String(PAGE_SIZE), offset: String(state.offset), facets: "true"});
  p.set("status", $("f-status").value || OPEN.join(","));
  for (const [name, value] of Object.entries(QUEUES[state.queue].params)) p.set(name, value);
  const pick = {department: "f-department", category: "f-category", priority: "f-priority", district: "f-district",
                street: "f-street", emergency: "f-emergency", warning: "f-warning", overdue: "f-overdue",
                supervision: "f-supervision", sort: "f-sort"};
  for (const [name, id] of Object.entries(pick)) if ($(id).value) p.set(name, $(id).value);
  if ($("f-grid").value.trim()) p.set("grid", $("f-grid").value.trim());
  if ($("f-q").value.trim()) p.set("q", $("f-q").value.trim());
  return p;
}

// One page of the board and its counts.  Responses that arrive out of order are dropped.
// 历史: the year's cases from the worker's history store (search by words, category,
// district, status), read-only rows on the same board; back to the live board from the tabs.
function historyQuery() {
  const p = new URLSearchParams({limit: String(PAGE_SIZE), offset: String(state.offset)});
  if ($("f-q").value.trim()) p.set("q", $("f-q").value.trim());
  for (const [name, id] of [["category", "f-category"], ["district", "f-district"], ["status", "f-status"]]) {
    if ($(id).value) p.set(name, $(id).value);
  }
  return p;
}

async function loadHistory(seq) {
  const body = await api("/api/v1/history?" + historyQuery());
  if (seq !== state.loadSeq) return;
  renderPage({...body, facets: null});
  if (state.clusterLayer) {               // the map shows these results, not the live board's
    state.clusterLayer.clearLayers();
    for (const o of body.items) {
      L.circleMarker([o.location.lat, o.location.lon], {radius: 6, color: COLORS[o.status] || "#6b7280", fillOpacity: 0.8})
        .bindTooltip(`${STATUS_ZH[o.status] || o.status} · ${o.work_order_id}`)
        .on("click", () => { location.hash = "#/orders/" + encodeURIComponent(o.work_order_id); })
        .addTo(state.clusterLayer);
    }
    $("map").dataset.orders = String(body.items.length);
  }
  const how = {fts: "全文 full text", like: `近 30 天 last 30 days`, all: "全部 all"}[body.search] || body.search;
  $("counts").innerHTML = `历史 history · 共 <b data-testid="total">${body.total.toLocaleString("zh-CN")}</b> 单 orders · ${how}` +
    `${body.complete ? "" : " · 历史库仍在加载 still loading"} · ${body.took_ms} ms · <a href="#" id="back-live">返回在办 back to live</a>`;
  $("back-live").addEventListener("click", (ev) => { ev.preventDefault(); $("queue-all-btn").click(); });
}

async function loadOrders() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = null;
  const seq = ++state.loadSeq;
  syncUrl();
  if (state.queue === "history") {
    try { await loadHistory(seq); boardNote(""); }
    catch (e) { if (seq === state.loadSeq) boardNote("历史查询失败 history search failed: " + e.message); }
    return;
  }
  try {
    const body = await api("/api/v1/workorders?" + query());
    if (seq !== state.loadSeq) return;
    if (!state.streaming && !state.lastEventId) state.lastEventId = body.event_id;
    if (body.total > 0 && body.items.length === 0 && state.offset > 0) {     // the page emptied: back one
      state.offset = Math.max(0, Math.floor((body.total - 1) / PAGE_SIZE) * PAGE_SIZE);
      return loadOrders();
    }
    renderPage(body);
    boardNote("");
    loadQueueCounts();
  } catch (e) {
    if (seq === state.loadSeq) boardNote("加载失败 could not load orders: " + e.message + " — 将重试 retrying with the stream");
  }
}

function scheduleRefresh() {
  if (state.refreshTimer === null) state.refreshTimer = setTimeout(loadOrders, REFRESH_MS);
}

// -- the board -------------------------------------------------------------------

// When an open order falls overdue: the earlier of its own and the running stage's due time.
function dueAt(o) {
  if (!OPEN.includes(o.status)) return null;
  const stage = o.accept_due_at || o.handle_due_at;
  const due = Date.parse(o.due_at);
  return stage ? Math.min(due, Date.parse(stage)) : due;
}
const isOverdue = (o) => { const d = dueAt(o); return d !== null && Date.now() > d; };

function span(ms) {
  const m = Math.round(Math.abs(ms) / 60000);
  if (m < 60) return `${m}分`;
  if (m < 1440) return `${Math.floor(m / 60)}时${m % 60 ? (m % 60) + "分" : ""}`;
  return `${Math.floor(m / 1440)}天${Math.floor((m % 1440) / 60)}时`;
}

function clockText(o) {
  if (state.queue === "followup" && o.followup_due_at) {
    const left = Date.parse(o.followup_due_at) - Date.now();
    return left < 0 ? `回访超时 ${span(left)}` : `回访 剩 ${span(left)}`;
  }
  const d = dueAt(o);
  if (d === null) return o.closed_at ? `已结案 closed ${fmt(o.closed_at)}` : o.cancelled_at ? `已作废 cancelled ${fmt(o.cancelled_at)}` : "—";
  const left = d - Date.now();
  return left < 0 ? `超时 overdue ${span(left)}` : `剩 ${span(left)}`;
}

function fillRow(tr, o) {
  tr.dataset.wo = o.work_order_id;
  tr.dataset.status = o.status;
  tr.dataset.version = o.version;
  tr.classList.toggle("overdue", isOverdue(o));
  tr.classList.toggle("supervised", o.supervision_level > 0);
  tr.classList.toggle("emergency-row", !!o.emergency_level);
  tr.classList.toggle("selected", state.selected === o.work_order_id);
  const assists = (o.assists || []).filter((a) => a.status !== "released");
  const district = (state.meta.districts || {})[o.location.district_code];
  const street = (district ? district + " " : "") + (state.meta.streets[o.location.street_code] || o.location.street_code);
  const d = dueAt(o);
  tr.innerHTML = `<td class="clock" data-testid="clock" data-due="${d ?? ""}" title="时限 due ${esc(fmt(d))}">${esc(clockText(o))}</td>
    <td class="id" title="${esc(o.work_order_id)}">${esc(shortId(o.work_order_id))}</td>
    <td>${esc(o.category_name)} <span class="muted">${esc(o.category)}</span></td>
    <td><span class="prio pr-${esc(o.priority)}" data-testid="priority">${PRIORITY_ZH[o.priority] || ""} ${esc(o.priority)}</span></td>
    <td><span class="status st-${o.status}">${STATUS_ZH[o.status] || ""} ${o.status}</span> ${warningChip(o)} ${emergencyChip(o)}${o.supervision_level ? ` <span class="sup" data-testid="row-supervision">${LEVEL_ZH[o.supervision_level]} L${o.supervision_level}</span>` : ""}</td>
    <td>${o.department ? esc((state.meta.departments[o.department] || "") + " " + o.department) : '<span class="muted">待分拨 triage</span>'}${assists.length ? ` <span class="muted" data-testid="row-assists">+协办 ${esc(assists.map((a) => a.department).join(", "))}</span>` : ""}</td>
    <td title="网格 grid ${esc(o.location.grid_code)}">${esc(street)}</td>`;
}

// An order id without its "WO-<group>-" head (the category column says it): the part that
// tells two orders apart; the whole id is the cell's title and the deep link's.
const shortId = (id) => id.replace(/^WO-[a-z_]+-/, "");

// The page's rows in the server's order, each built or rewritten only when its order
// changed: a change re-renders one row, never the board.
function renderPage(body) {
  const tbody = $("rows");
  const seen = new Set();
  let before = tbody.firstChild;
  for (const o of body.items) {
    const id = o.work_order_id;
    let r = state.rows.get(id);
    if (!r) {
      r = {tr: document.createElement("tr"), o};
      fillRow(r.tr, o);
      state.rows.set(id, r);
    } else if (o.version > r.o.version || o.status !== r.o.status) {
      r.o = o;
      fillRow(r.tr, o);
    } else {
      r.o = o;                // same order, fresher computed fields (overdue_at, followup_due_at)
    }
    seen.add(id);
    if (r.tr !== before) tbody.insertBefore(r.tr, before);
    else before = before.nextSibling;
  }
  for (const [id, r] of state.rows) if (!seen.has(id)) { r.tr.remove(); state.rows.delete(id); }
  state.total = body.total;
  $("empty").hidden = body.total > 0;
  const f = body.facets || {};
  if (!body.facets && state.queue === "history") { $("prev").disabled = state.offset === 0;
    $("next").disabled = state.offset + PAGE_SIZE >= body.total; }
  const overdue = (f.overdue || {}).true || 0;
  const supervised = Object.entries(f.supervision || {}).reduce((n, [lv, c]) => n + (lv !== "0" ? c : 0), 0);
  const emergency = Object.entries(f.emergency || {}).reduce((n, [lv, c]) => n + (lv !== "none" ? c : 0), 0);
  $("counts").innerHTML = `共 <b data-testid="total">${body.total.toLocaleString("zh-CN")}</b> 单 orders · ` +
    `超时 overdue <b data-testid="overdue-count">${overdue.toLocaleString("zh-CN")}</b> · ` +
    `督办 supervised <b>${supervised.toLocaleString("zh-CN")}</b> · 应急 emergency <b>${emergency}</b>`;
  const pages = Math.max(1, Math.ceil(body.total / PAGE_SIZE));
  const page = Math.floor(state.offset / PAGE_SIZE) + 1;
  $("page").textContent = body.total
    ? `第 ${page} / ${pages} 页 · ${state.offset + 1}–${state.offset + body.items.length} of ${body.total.toLocaleString("zh-CN")}`
    : "";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE_SIZE >= body.total;
  loadMap();
}

// A streamed change: the row on the page now, membership and counts at the next reload.
function onChange(msg) {
  const o = msg.snapshot;
  const r = state.rows.get(o.work_order_id);
  if (r && o.version >= r.o.version) {
    r.o = o;
    fillRow(r.tr, o);
    if (msg.kind === "change") { r.tr.classList.remove("fresh"); void r.tr.offsetWidth; r.tr.classList.add("fresh"); }
  }
  if (msg.kind === "change") maybeAlert(msg);
  if (state.selected === o.work_order_id) refreshDetail();
  scheduleRefresh();
}

function tickClocks() {
  for (const {tr, o} of state.rows.values()) {
    const cell = tr.querySelector("td.clock");
    if (cell) cell.textContent = clockText(o);
    tr.classList.toggle("overdue", isOverdue(o));
  }
  scheduleRefresh();     // orders fall overdue with no change streamed: counts and filters follow
}

// -- alerts: a new urgent, red-warning or emergency order --------------------------

function alertable(o) {
  return o.priority === "urgent" || o.warning_level === "red" || !!o.emergency_level;
}

function maybeAlert(msg) {
  const o = msg.snapshot;
  if (msg.type === "replay" || !OPEN.includes(o.status) || !alertable(o) || state.alerted.has(o.work_order_id)) return;
  if (!(msg.type === "created" || msg.type === "escalated" || msg.type === "dispatched")) return;
  state.alerted.add(o.work_order_id);
  const why = o.emergency_level ? EMERGENCY_ZH[o.emergency_level] : o.warning_level === "red" ? "红色预警" : "特急 urgent";
  const text = `${why} · ${o.category_name} · ${(state.meta.streets || {})[o.location.street_code] || ""} · ${o.work_order_id}`;
  const item = document.createElement("div");
  item.className = "alert";
  item.dataset.wo = o.work_order_id;
  item.dataset.testid = "alert";
  item.textContent = "⚠ 新紧急工单 new urgent order: " + text;
  $("alerts").prepend(item);
  while ($("alerts").children.length > 5) $("alerts").lastChild.remove();
  beep();
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification("城市大脑 紧急工单", {body: text, tag: o.work_order_id});
  }
}

let audio = null;
function beep() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.value = 880; gain.gain.value = 0.08;
    osc.connect(gain).connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.35);
  } catch (e) { /* no sound device: the banner stays */ }
}

// -- the map -----------------------------------------------------------------------

async function initMap() {
  if (state.map) return;
  state.map = L.map("map", {preferCanvas: true, attributionControl: false, zoomControl: true});
  if (state.meta.tile_url) L.tileLayer(state.meta.tile_url, {maxZoom: 19}).addTo(state.map);
  const res = await fetch("/city.geojson");
  const geo = await res.json();
  state.layer = L.geoJSON(geo, {style: {color: "#2d5a88", weight: 0.6, fillOpacity: 0.04},
    onEachFeature: (f, layer) => layer.bindTooltip(
      `${f.properties.district_name} ${f.properties.street_name} · ${f.properties.grid_name} ${f.properties.grid_code}`)}).addTo(state.map);
  // District outlines over the grids; the board's district filter zooms to one.
  state.districts = new Map((geo.districts || []).map((d) => [d.district_code,
    L.geoJSON(d.geometry, {style: {color: "#1e3a5f", weight: 2.2, fill: false}, interactive: false}).addTo(state.map)]));
  state.map.fitBounds(state.layer.getBounds());
  const legend = L.control({position: "bottomright"});
  legend.onAdd = () => {
    const div = L.DomUtil.create("div", "legend");
    div.dataset.testid = "legend";
    div.innerHTML = OPEN.map((s) => `<span><i style="background:${COLORS[s]}"></i>${STATUS_ZH[s]} ${s}</span>`).join("") +
      `<span><i style="background:#fbbf24"></i>超时 overdue</span><span><b class="cluster-key">12</b> 聚合 cluster</span>` +
      `<span><i style="background:#0c4a6e;border:2px solid #38bdf8"></i>摄像头 camera</span><span><i class="sq" style="background:#22c55e"></i>传感器 sensor</span>` +
      `<span><i class="sq" style="background:#ef4444"></i>设备故障 fault</span><span><i style="border:3px solid #f472b6"></i>当前工单 opened</span>` +
      `<span class="muted">全部匹配工单 every matching order</span>`;
    return div;
  };
  legend.addTo(state.map);
  // Orders as server-made clusters of the whole result; devices and cameras on demand.
  state.clusterLayer = L.layerGroup().addTo(state.map);
  state.deviceLayers = {camera: L.layerGroup(), sensor: L.layerGroup()};
  state.nearLayer = L.layerGroup().addTo(state.map);
  if (state.me.role !== "grid") {
    const overlays = {"摄像头 cameras": state.deviceLayers.camera, "传感器 sensors": state.deviceLayers.sensor};
    if (state.me.role === "operator") {
      state.hotspotLayer = L.layerGroup();
      overlays["高发 hotspots"] = state.hotspotLayer;
    }
    L.control.layers(null, overlays, {collapsed: false, position: "topright"}).addTo(state.map);
  }
  initWarnings();
  state.map.on("moveend", () => { loadMap(); loadDevices(); });
  state.map.on("overlayadd", (ev) => { if (ev.layer === state.hotspotLayer) loadHotspots(); else loadDevices(); });
  state.map.on("overlayremove", (ev) => { if (ev.layer === state.hotspotLayer) $("hotspots").hidden = true; });
  zoomToDistrict();
  loadMap();
}

// 区域预警: the warnings of outside authorities holding now (GET /api/v1/warnings), each
// area filled in its level's colour under the orders, listed in a legend; looked at again
// every minute, so a warning that ends leaves the map by itself.
// Colours by the level's rank (the server's warning_levels, lowest first: 蓝 黄 橙 红).
const WARNING_PALETTE = ["#3b82f6", "#eab308", "#f97316", "#dc2626"];
const warningColor = (level) => WARNING_PALETTE[state.meta.enums.warning_levels.indexOf(level)] || "#94a3b8";
function initWarnings() {
  state.warningLayer = L.layerGroup().addTo(state.map);
  const legend = L.control({position: "topleft"});     // under the zoom buttons, clear of the status legend
  legend.onAdd = () => {
    const div = L.DomUtil.create("div", "legend warning-legend");
    div.dataset.testid = "warning-legend";
    div.id = "warning-legend";
    div.hidden = true;
    div.style.maxWidth = "15em";   // a narrow map: wrap rather than run under the status legend
    return div;
  };
  legend.addTo(state.map);
  loadWarnings();
  setInterval(loadWarnings, 60_000);
}

async function loadWarnings() {
  if (!state.warningLayer) return;
  let body;
  try { body = await api("/api/v1/warnings"); } catch (e) { return; }
  state.warningLayer.clearLayers();
  for (const f of [...body.features].reverse()) {      // the strongest drawn last, on top
    const p = f.properties, color = warningColor(p.level);
    L.geoJSON(f, {style: {color, weight: 2, dashArray: "6 4", fillColor: color, fillOpacity: 0.12}})
      .bindTooltip(`区域预警 ${esc(p.label)}<br>${esc(p.title || "")} 至 until ${esc(fmt(p.valid_to))}<br>` +
                   `影响类别 categories: ${p.categories.map((c) => esc((state.meta.categories || {})[c] || c)).join("、")}`)
      .addTo(state.warningLayer);
  }
  const legend = $("warning-legend");
  legend.hidden = body.total === 0;
  legend.innerHTML = `<b>区域预警 area warnings ${body.total}</b>` + body.features.map((f) =>
    `<span data-testid="area-warning" data-level="${f.properties.level}"><i class="sq" style="background:${warningColor(f.properties.level)}"></i>` +
    `${esc(f.properties.level_zh)}${esc(f.properties.kind_zh)}预警 ${esc(f.properties.issuer)}<br><span class="muted">${esc(f.id)} 至 ${esc(fmt(f.properties.valid_to))}</span></span>`).join("");
  $("map").dataset.warnings = String(body.total);
}

function zoomToDistrict() {
  if (!state.map || !state.districts) return;
  const chosen = state.districts.get($("f-district").value);
  state.map.fitBounds(chosen ? chosen.getBounds() : state.layer.getBounds());
}

// The orders matching the board's filters (all pages), clustered by the server for the
// map's zoom and bounds: a number in a circle is a cluster (click: zoom in), a dot one order.
let mapSeq = 0;
async function loadMap() {
  if (!state.map || !state.clusterLayer || state.queue === "history") return;
  const p = query();
  for (const k of ["limit", "offset", "facets", "sort"]) p.delete(k);
  p.set("zoom", String(state.map.getZoom()));
  p.set("bbox", state.map.getBounds().pad(0.2).toBBoxString());
  const seq = ++mapSeq;
  let body;
  try { body = await api("/api/v1/workorders/map?" + p); } catch (e) { return; }
  if (seq !== mapSeq) return;
  state.clusterLayer.clearLayers();
  for (const c of body.cells) {
    if (c.count === 1) {
      const overdue = c.overdue > 0;
      L.circleMarker([c.lat, c.lon], {radius: 6, color: overdue ? "#fbbf24" : COLORS[c.status], fillColor: COLORS[c.status],
                                       fillOpacity: 0.85, weight: 2})
        .bindTooltip(`${STATUS_ZH[c.status] || c.status} · ${c.work_order_id}${overdue ? " · 超时" : ""}`)
        .on("click", () => { location.hash = "#/orders/" + encodeURIComponent(c.work_order_id); })
        .addTo(state.clusterLayer);
    } else {
      const size = Math.round(22 + 8 * Math.log10(c.count));
      const hot = c.overdue / c.count > 0.5 ? " hot" : "";
      L.marker([c.lat, c.lon], {icon: L.divIcon({className: "cluster" + hot, iconSize: [size, size],
                                                   html: `<span>${c.count.toLocaleString("zh-CN")}</span>`})})
        .bindTooltip(Object.entries(c.statuses).map(([s, n]) => `${STATUS_ZH[s] || s} ${n}`).join(" · ") + ` · 超时 ${c.overdue}`)
        .on("click", () => state.map.setView([c.lat, c.lon], Math.min(state.map.getZoom() + 2, 18)))
        .addTo(state.clusterLayer);
    }
  }
  $("map").dataset.orders = String(body.total);
}

// Devices and cameras with their health, for the map's bounds once zoomed in far enough.
async function loadDevices() {
  if (!state.map || !state.deviceLayers) return;
  for (const [kind, layer] of Object.entries(state.deviceLayers)) {
    if (!state.map.hasLayer(layer)) continue;
    layer.clearLayers();
    if (state.map.getZoom() < 13) continue;       // a whole city's devices is not a map
    let body;
    try { body = await api(`/api/v1/devices?kind=${kind}&bbox=${state.map.getBounds().toBBoxString()}`); } catch (e) { continue; }
    for (const d of body.items) {
      L.circleMarker([d.lat, d.lon], {radius: kind === "camera" ? 5 : 3, weight: kind === "camera" ? 2 : 1,
                                       color: d.health === "fault" ? "#ef4444" : kind === "camera" ? "#38bdf8" : "#22c55e",
                                       fillColor: kind === "camera" ? "#0c4a6e" : "#22c55e", fillOpacity: 0.9})
        .bindTooltip(`${kind === "camera" ? "摄像头" : "传感器"} ${d.device_id}${d.sensor_type ? " " + d.sensor_type : ""} · ` +
                     `${d.health === "fault" ? "故障 fault " + d.fault_orders.join(", ") : "正常 ok"}`)
        .addTo(layer);
    }
  }
}

// 同地同类: the same category within 200 m in the 30 days before it (the history store).
async function showNearby(o) {
  const dd = $("detail-nearby");
  if (!dd) return;
  let body;
  try { body = await api(`/api/v1/workorders/${encodeURIComponent(o.work_order_id)}/nearby?radius_m=200&days=30`); }
  catch (e) { dd.textContent = "—"; return; }
  if (!body.items.length) { dd.textContent = "200 米内 30 天无同类 none within 200 m in 30 days"; return; }
  dd.innerHTML = `<b>${body.count}</b> 单 within 200 m / 30 天: ` + body.items.slice(0, 6).map((n) =>
    `<a href="#/orders/${encodeURIComponent(n.work_order_id)}">${esc(n.work_order_id.slice(-8))}</a> ` +
    `<span class="muted">${STATUS_ZH[n.status] || n.status} ${Math.round(n.distance_m)} m ${esc(fmt(n.created_at).slice(0, 10))}</span>`).join(" · ");
}

// 高发: the same category again and again at one place (the server finds them over the
// history store): red rings on the map, the strongest first in a list under it.
async function loadHotspots() {
  if (!state.hotspotLayer) return;
  const p = new URLSearchParams();
  if ($("f-district").value) p.set("district", $("f-district").value);
  if ($("f-category").value) p.set("category", $("f-category").value);
  let body;
  try { body = await api("/api/v1/hotspots?" + p); } catch (e) { boardNote("高发加载失败 hotspots: " + e.message); return; }
  state.hotspotLayer.clearLayers();
  const most = Math.max(1, ...body.hotspots.map((h) => h.count));
  for (const h of body.hotspots) {
    L.circle([h.lat, h.lon], {radius: Math.max(h.radius_m, 40), color: "#ef4444", weight: 2,
                              fillColor: "#ef4444", fillOpacity: 0.15 + 0.45 * h.count / most})
      .bindTooltip(`高发 ${(state.meta.categories || {})[h.category] || h.category} ${h.category} ×${h.count} · ` +
                   `${h.radius_m} m / ${h.days} 天`).addTo(state.hotspotLayer);
  }
  const list = $("hotspots");
  list.hidden = false;
  list.innerHTML = `<b>高发 hotspots ${body.total}</b> <span class="muted">(${body.source === "history" ? "历史库 history" : "在办视图 live view"}, ${body.took_ms} ms)</span>` +
    body.hotspots.slice(0, 12).map((h, i) => `<div class="hs" data-testid="hotspot" data-i="${i}">` +
      `${esc((state.meta.categories || {})[h.category] || h.category)} <span class="muted">${esc(h.category)}</span> ×<b>${h.count}</b> · ` +
      `${esc((state.meta.streets || {})[h.street_code] || h.street_code)} · ${esc(fmt(h.first_ts * 1000).slice(0, 10))}–${esc(fmt(h.last_ts * 1000).slice(0, 10))}</div>`).join("");
  list.querySelectorAll(".hs").forEach((el) => el.addEventListener("click", () => {
    const h = body.hotspots[Number(el.dataset.i)];
    state.map.setView([h.lat, h.lon], 17);
  }));
}

// 周边视频: the cameras within 300 m of the selected order, listed and drawn.
async function showCamerasNear(o) {
  if (!state.map || state.me.role === "grid") return;
  state.nearLayer.clearLayers();
  // The opened order itself, above the clusters.
  L.circleMarker([o.location.lat, o.location.lon], {radius: 10, color: "#f472b6", weight: 3, fillOpacity: 0.2,
                                                     interactive: false}).addTo(state.nearLayer);
  let body;
  try { body = await api(`/api/v1/workorders/${encodeURIComponent(o.work_order_id)}/cameras?radius_m=300`); } catch (e) { return; }
  L.circle([o.location.lat, o.location.lon], {radius: body.radius_m, color: "#38bdf8", weight: 1, fill: false,
                                               interactive: false}).addTo(state.nearLayer);
  for (const c of body.cameras) {
    L.circleMarker([c.lat, c.lon], {radius: 5, color: c.health === "fault" ? "#ef4444" : "#38bdf8", fillOpacity: 0.9})
      .bindTooltip(`摄像头 ${c.device_id} · ${c.distance_m} m · ${c.health === "fault" ? "故障" : "正常"}`).addTo(state.nearLayer);
  }
  const dd = $("detail-cameras");
  if (dd) {
    dd.textContent = body.cameras.length
      ? body.cameras.slice(0, 8).map((c) => `${c.device_id} ${Math.round(c.distance_m)} m${c.health === "fault" ? " 故障" : ""}`).join(" · ")
        + (body.cameras.length > 8 ? ` …(+${body.cameras.length - 8})` : "")
      : `${body.radius_m} 米内无摄像头 none within ${body.radius_m} m`;
  }
}

// -- 立案: a case from a call or a patrol ----------------------------------------------
// The place comes from the gazetteer (an address lookup) or a click on the map; photos go
// to the media store first and ride on the report as URLs.

const caseState = {lon: null, lat: null, photos: [], marker: null, picking: false};

function initCaseForm() {
  $("new-case").hidden = false;
  const cat = $("c-category");
  for (const [code, name] of Object.entries(state.meta.categories || {})) cat.add(new Option(`${name} ${code}`, code));
  const showLimits = () => {
    const lim = (state.meta.category_limits || {})[cat.value];
    $("c-limits").textContent = lim ? `${PRIORITY_ZH[lim.priority] || ""} ${lim.priority} · 主办 ${lim.department ? (state.meta.departments[lim.department] || "") + " " + lim.department : "待分拨 triage"} · ` +
      `时限 ${lim.time_limit_hours} 小时 (${lim.time_limit_basis === "working" ? "工作时" : "自然时"}) · 签收 ${lim.accept_limit_hours} h · 处置 ${lim.handle_limit_hours} h` : "";
  };
  cat.addEventListener("change", showLimits);
  showLimits();
  $("new-case").addEventListener("click", () => { $("case").hidden = false; $("detail").hidden = true; caseState.picking = true; $("c-address").focus(); });
  $("c-cancel").addEventListener("click", closeCaseForm);
  let typing = null;
  $("c-address").addEventListener("input", () => {
    clearPlace();            // a point found for another address must not file this one
    clearTimeout(typing); typing = setTimeout(lookupPlaces, 250);
  });
  $("c-photos").addEventListener("change", uploadPhotos);
  $("case").addEventListener("submit", fileCase);
  state.map && state.map.on("click", (ev) => { if (caseState.picking && !$("case").hidden) placeAt(ev.latlng.lng, ev.latlng.lat, "地图点选 picked on the map"); });
}

function clearPlace() {
  caseState.lon = caseState.lat = null;
  if (caseState.marker) { caseState.marker.remove(); caseState.marker = null; }
  $("c-where").textContent = "位置 where: 未定 — 选一个地点，或在地图上点选 pick a place or click the map";
}

function closeCaseForm() {
  $("case").hidden = true;
  caseState.picking = false;
  if (caseState.marker) { caseState.marker.remove(); caseState.marker = null; }
}

async function lookupPlaces() {
  const q = $("c-address").value.trim();
  const box = $("c-places");
  box.replaceChildren();
  if (!q) return;
  let body;
  try { body = await api("/api/v1/places?" + new URLSearchParams({q, limit: "6"})); }
  catch (e) { box.textContent = "查询失败 lookup failed: " + e.message; return; }
  if (q !== $("c-address").value.trim()) return;
  const best = body.located;
  for (const c of body.candidates) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.testid = "c-place";
    if (best && c.name === best.name && c.kind === best.kind) b.className = "best";
    b.textContent = `${c.name} · ${c.kind} · ${Object.values(c.codes).slice(-1)[0] || ""}`;
    b.addEventListener("click", () => placeAt(c.lon, c.lat, `${c.name} (${c.kind})`));
    box.appendChild(b);
  }
  if (!body.candidates.length) box.textContent = "未找到 nothing found — 在地图上点选 click the map";
  else if (best) placeAt(best.lon, best.lat, `${best.name} (${best.kind})`);
}

function placeAt(lon, lat, label) {
  caseState.lon = Math.round(lon * 1e6) / 1e6;
  caseState.lat = Math.round(lat * 1e6) / 1e6;
  $("c-where").textContent = `位置 where: ${label} (${caseState.lon}, ${caseState.lat})`;
  if (!state.map) return;
  if (caseState.marker) caseState.marker.setLatLng([lat, lon]);
  else caseState.marker = L.marker([lat, lon]).addTo(state.map);
  state.map.setView([lat, lon], Math.max(state.map.getZoom(), 15));
}

async function uploadPhotos() {
  for (const file of $("c-photos").files) {
    try {
      const res = await fetch("/api/v1/media", {method: "POST", body: file,
        headers: {"Authorization": "Bearer " + state.token, "Content-Type": file.type || "application/octet-stream"}});
      const body = await res.json();
      if (!res.ok) throw new Error(`${res.status} ${(body.error || {}).detail || ""}`);
      caseState.photos.push(body.url);
      if ($("c-result").className === "error") { $("c-result").textContent = ""; $("c-result").className = ""; }
      const img = document.createElement("img");
      img.alt = file.name;
      img.dataset.testid = "c-thumb";
      img.src = URL.createObjectURL(file);
      $("c-thumbs").appendChild(img);
    } catch (e) {
      $("c-result").textContent = `照片上传失败 photo refused (${file.name}): ${e.message}`;
      $("c-result").className = "error";
    }
  }
  $("c-photos").value = "";
}

async function fileCase(ev) {
  ev.preventDefault();
  const out = $("c-result");
  const address = $("c-address").value.trim();
  if (caseState.lon === null && !address) { out.textContent = "请填写地址或在地图上点选 an address or a map point is needed"; out.className = "error"; return; }
  // No point chosen: the address alone goes; the server locates it or answers needs_location.
  const body = {report_id: "R-OP-" + crypto.randomUUID(), category: $("c-category").value, channel: $("c-channel").value,
                description: $("c-description").value.trim(), photos: caseState.photos};
  if (address) body.address = address;
  if (caseState.lon !== null) { body.lon = caseState.lon; body.lat = caseState.lat; }
  if ($("c-phone").value.trim()) body.contact_phone = $("c-phone").value.trim();
  try {
    const got = await api("/api/v1/reports", {method: "POST", body: JSON.stringify(body)});
    out.className = "muted";
    out.textContent = `已受理 accepted ${got.report_id} · 网格 ${got.grid_code} — 等待成单 waiting for its order …`;
    caseState.photos = [];
    $("c-thumbs").replaceChildren();
    for (let i = 0; i < 40; i++) {           // the order appears within seconds
      await new Promise((r) => setTimeout(r, 500));
      try {
        const r = await api("/api/v1/reports/" + encodeURIComponent(got.report_id));
        out.innerHTML = `已立案 filed: <a data-testid="c-order" href="#/orders/${encodeURIComponent(r.work_order_id)}">${esc(r.work_order_id)}</a> · ${esc(r.status_zh)}`;
        return;
      } catch (e) { /* not yet */ }
    }
    out.textContent += " (仍在处理 still on its way: see the board)";
  } catch (e) {
    out.className = "error";
    out.textContent = "立案失败 refused: " + e.message;
  }
}

// Evidence photos from the media store need the token: fetched, shown as thumbnails.
async function showThumbs(container) {
  for (const a of container.querySelectorAll("a[data-media]")) {
    try {
      const res = await fetch(a.getAttribute("href"), {headers: {"Authorization": "Bearer " + state.token}});
      if (!res.ok) continue;
      const img = document.createElement("img");
      img.src = URL.createObjectURL(await res.blob());
      img.dataset.testid = "evidence-thumb";
      a.replaceChildren(img);
      a.addEventListener("click", (ev) => { ev.preventDefault(); window.open(img.src, "_blank"); });
    } catch (e) { /* the link stays */ }
  }
}

// -- one order (deep link: #/orders/<id>) -------------------------------------------

function openFromHash() {
  const m = location.hash.match(/^#\/orders\/(.+)$/);
  if (m) select(decodeURIComponent(m[1]));
}

function refreshDetail() {
  clearTimeout(state.detailTimer);
  state.detailTimer = setTimeout(() => { if (state.selected) select(state.selected, true); }, 300);
}
// ``again``: the same order changed — what the user was typing or choosing stays.
async function select(wo, again = false) {
  state.selected = wo;
  for (const [id, r] of state.rows) r.tr.classList.toggle("selected", id === wo);
  if (!again) closeCaseForm();
  let body;
  try { body = await api("/api/v1/workorders/" + encodeURIComponent(wo)); }
  catch (e) { flash("加载失败 " + e.message, true); return; }
  if (state.selected !== wo) return;
  const o = body.work_order;
  const d = $("detail");
  const kept = again ? keepInputs() : null;
  d.hidden = false;
  const evidence = o.evidence.map((u) => u.includes("/api/v1/media/")
    ? `<a href="${esc(u)}" data-media="1" class="thumb">${esc(u.split("/").pop().slice(0, 12))}…</a>`
    : `<a href="${esc(u)}" target="_blank" rel="noopener">${esc(u.split("/").pop())}</a>`).join(" ") || "—";
  d.innerHTML = `<h2 data-testid="detail-title">${esc(o.category_name)} · ${esc(o.work_order_id)}</h2>
    ${body.from_history ? '<p class="muted" data-testid="from-history">历史记录 from the history store: the order as it ended (no timeline kept here)</p>' : ""}
    <dl>
      <dt>状态 status</dt><dd data-testid="detail-status"><span class="status st-${o.status}">${STATUS_ZH[o.status]} ${o.status}</span>${o.overdue ? ' <b class="error">超时 overdue</b>' : ""}</dd>
      <dt>主办 lead</dt><dd data-testid="detail-department">${o.department ? esc((state.meta.departments[o.department] || "") + " " + o.department) : "待分拨 triage"}</dd>
      <dt>协办 assists</dt><dd data-testid="detail-assists">${(o.assists || []).length ? `<table class="parts">${o.assists.map((a) =>
        `<tr data-part="${esc(a.department)}" data-part-status="${esc(a.status)}"><td>${esc((state.meta.departments[a.department] || "") + " " + a.department)}</td>
         <td><span class="part pt-${esc(a.status)}">${PART_ZH[a.status] || ""} ${esc(a.status)}</span></td>
         <td class="muted">${a.accept_due_at ? "签收时限 " + esc(fmt(a.accept_due_at)) : a.handle_due_at ? "处置时限 " + esc(fmt(a.handle_due_at)) : a.handled_at ? "处置 " + esc(fmt(a.handled_at)) : ""}</td>
         <td class="muted">${esc(a.added_by)}</td></tr>`).join("")}</table>` : "—"}</dd>
      <dt>优先级 priority</dt><dd data-testid="detail-priority"><span class="prio pr-${esc(o.priority)}">${PRIORITY_ZH[o.priority] || ""} ${esc(o.priority)}</span></dd>
      <dt>预警 warning</dt><dd data-testid="detail-warning">${warningChip(o) || "—"}</dd>
      <dt>应急 emergency</dt><dd data-testid="detail-emergency">${emergencyChip(o) || "—"}</dd>
      <dt>位置 where</dt><dd data-testid="detail-where">${esc((state.meta.districts || {})[o.location.district_code] || "")} ${esc(state.meta.streets[o.location.street_code] || "")} ${esc(o.location.grid_code)} (${o.location.lon.toFixed(5)}, ${o.location.lat.toFixed(5)})</dd>
      ${related(o)}
      <dt>同地同类 same place</dt><dd id="detail-nearby" data-testid="detail-nearby">…</dd>
      <dt>周边视频 cameras ≤300 m</dt><dd id="detail-cameras" data-testid="detail-cameras">…</dd>
      <dt>描述 description</dt><dd>${esc(o.description)}</dd>
      ${o.address ? `<dt>地址 address</dt><dd data-testid="detail-address">${esc(o.address)}</dd>` : ""}
      ${o.reporter_contact ? `<dt>来电人 caller</dt><dd data-testid="detail-contact">${esc(o.reporter_contact)}</dd>` : ""}
      <dt>发现 finders</dt><dd>${esc(o.finders.join(", ") || "—")} · ${o.events.length} 条事件 events</dd>
      <dt>证据 evidence</dt><dd class="thumbs" data-testid="detail-evidence">${evidence}</dd>
      <dt>时限 due</dt><dd data-testid="detail-due"><b>${esc(clockText(o))}</b> · 结案时限 close by ${esc(fmt(o.due_at))}${o.accept_due_at ? " · 签收时限 accept by " + esc(fmt(o.accept_due_at)) : ""}${o.handle_due_at ? " · 处置时限 handle by " + esc(fmt(o.handle_due_at)) : ""}</dd>
      <dt>督办 supervision</dt><dd>${o.supervision_level ? LEVEL_ZH[o.supervision_level] + " level " + o.supervision_level : "—"}</dd>
      <dt>回访 visits</dt><dd data-testid="detail-visits">${(o.visits || []).map((v) => `${SATISFACTION_ZH[v.satisfaction]} ${esc(v.satisfaction)} (${esc(fmt(v.at))})`).join(" · ") || "—"}</dd>
      <dt>返工/退回/延期</dt><dd>rework ${o.rework_count} · return ${o.return_count} · extension ${o.extension_count}</dd>
    </dl>
    <div id="actions" data-testid="actions"></div>
    <div id="flash"></div>
    <h3>时间线 timeline</h3>
    <ul id="timeline" data-testid="timeline">${body.timeline.map((e) =>
      `<li class="${e.kind}" data-type="${esc(e.type)}"><span class="at">${esc(fmt(e.at))}</span>
       ${e.version ? "v" + e.version : ""} <b>${esc(e.label)}</b> ${esc(e.type)} · ${esc(e.actor)}
       ${e.note ? "<br><span class=muted>" + esc(noteText(e.note)) + "</span>" : ""}</li>`).join("")}</ul>`;
  renderActions(o);
  if (kept) restoreInputs(kept);
  showThumbs(d);
  showCamerasNear(o);
  showNearby(o);
  if (!again && state.map) state.map.setView([o.location.lat, o.location.lon], Math.max(state.map.getZoom(), 15));
}

// A note as the order keeps it starts "<time> <role>:<id> " (the audit trail); the
// timeline line shows both already.
const noteText = (note) => note.replace(/^\d{4}-\d\d-\d\dT\S+ [a-z]+:\S+ /, "");

// Orders this one was merged into or from, split from or into: deep links.
function related(o) {
  const link = (id) => `<a href="#/orders/${encodeURIComponent(id)}">${esc(id)}</a>`;
  const rows = [];
  if (o.merged_into) rows.push(["合并到 merged into", [o.merged_into]]);
  if ((o.merged_from || []).length) rows.push(["合并自 merged from", o.merged_from]);
  if (o.split_from) rows.push(["拆分自 split from", [o.split_from]]);
  if ((o.split_into || []).length) rows.push(["拆出 split into", o.split_into]);
  return rows.map(([label, ids]) => `<dt>${label}</dt><dd data-testid="detail-related">${ids.map(link).join(", ")}</dd>`).join("");
}

// The note being typed and the choices made in the action bar, across a re-render.
function keepInputs() {
  const box = $("actions");
  if (!box) return null;
  const values = {};
  for (const el of box.querySelectorAll("[data-testid]")) values[el.dataset.testid] = el.value;
  const focused = document.activeElement && box.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
  return {values, focused};
}

function restoreInputs(kept) {
  for (const el of $("actions").querySelectorAll("[data-testid]")) {
    const v = kept.values[el.dataset.testid];
    if (v !== undefined && (el.tagName !== "SELECT" || [...el.options].some((op) => op.value === v))) el.value = v;
    if (el.dataset.testid === kept.focused) el.focus();
  }
}

function allowed(o) {
  const role = state.me.role, s = o.status, open = OPEN.includes(s);
  const acts = [];
  if (role === "operator") {
    if (s === "registered") acts.push("dispatch");
    if (s === "dispatched") acts.push("accept", "return");
    if (s === "accepted") acts.push("handle");
    if (s === "handled") acts.push("verify", "reject_verification");
    if (open) acts.push("supervise", "extend", "cancel");
    if (open) acts.push("assist", "set_emergency_level", "recategorise", "reprioritise", "merge", "split");
    if (s === "handled" || s === "closed") acts.push("visit");
    if (open && (o.assists || []).some((a) => OPEN_PARTS.includes(a.status))) acts.push("release_assist");
  } else if (isDesk()) {
    const part = myPart(o);
    if (part === "lead") {
      if (s === "dispatched") acts.push("accept", "return");
      if (s === "accepted") acts.push("handle");
      if (open) acts.push("extend");
    } else if (part && open) {          // an assisting department works its own part
      if (part.status === "dispatched") acts.push("accept", "return");
      if (part.status === "accepted") acts.push("handle");
    }
  } else if (role === "grid") {
    if (s === "handled") acts.push("verify", "reject_verification");
  }
  acts.push("comment");
  return acts;
}

function renderActions(o) {
  const box = $("actions");
  box.replaceChildren();
  const note = Object.assign(document.createElement("input"), {placeholder: "说明 note / reason（作废须填）", size: 26});
  note.dataset.testid = "note";
  box.appendChild(note);
  for (const action of allowed(o)) {
    if (action === "dispatch") {
      const sel = document.createElement("select");
      sel.dataset.testid = "dispatch-department";
      for (const [code, name] of Object.entries(state.meta.departments)) sel.add(new Option(`${name} ${code}`, code));
      box.appendChild(sel);
    }
    if (action === "assist") {
      const sel = document.createElement("select");
      sel.dataset.testid = "assist-department";
      for (const [code, name] of Object.entries(state.meta.departments)) {
        if (code !== o.department) sel.add(new Option(`${name} ${code}`, code));
      }
      box.appendChild(sel);
    }
    if (action === "release_assist") {
      const sel = document.createElement("select");
      sel.dataset.testid = "release-department";
      for (const a of o.assists.filter((a) => OPEN_PARTS.includes(a.status))) sel.add(new Option(a.department, a.department));
      box.appendChild(sel);
    }
    if (action === "set_emergency_level") {
      const sel = document.createElement("select");
      sel.dataset.testid = "emergency-select";
      for (const lv of [...EMERGENCY_LEVELS, "none"]) sel.add(new Option(EMERGENCY_ZH[lv] ? `${EMERGENCY_ZH[lv]} ${lv}` : "解除 none", lv));
      box.appendChild(sel);
    }
    if (action === "visit") {
      const sel = document.createElement("select");
      sel.dataset.testid = "visit-satisfaction";
      for (const [v, zh] of Object.entries(SATISFACTION_ZH)) sel.add(new Option(`${zh} ${v}`, v));
      box.appendChild(sel);
    }
    if (action === "recategorise") {
      const sel = document.createElement("select");
      sel.dataset.testid = "recategorise-category";
      for (const [code, name] of Object.entries(state.meta.categories || {})) {
        if (code !== o.category) sel.add(new Option(`${name} ${code}`, code));
      }
      box.appendChild(sel);
    }
    if (action === "reprioritise") {
      const sel = document.createElement("select");
      sel.dataset.testid = "reprioritise-priority";
      for (const [code, zh] of Object.entries(PRIORITY_ZH)) if (code !== o.priority) sel.add(new Option(`${zh} ${code}`, code));
      box.appendChild(sel);
    }
    if (action === "merge") {
      const into = Object.assign(document.createElement("input"), {placeholder: "保留工单号 surviving WO-…", size: 24});
      into.dataset.testid = "merge-into";
      box.appendChild(into);
    }
    if (action === "split") {
      const sel = document.createElement("select");
      sel.dataset.testid = "split-evidence";
      sel.multiple = true;
      sel.size = Math.min(4, Math.max(2, o.events.length));
      for (const e of o.events) sel.add(new Option(`${e.report_id || e.event_id} · ${e.source} ${e.kind}`, e.report_id || e.event_id));
      box.appendChild(sel);
    }
    if (action === "extend") {
      const mins = Object.assign(document.createElement("input"), {type: "number", value: 60, min: 1, style: "width:5em"});
      mins.dataset.testid = "extend-minutes";
      box.appendChild(mins);
    }
    const b = document.createElement("button");
    b.textContent = ACTION_ZH[action];
    b.dataset.action = action;
    if (action === "cancel" || action === "merge" || action === "reject_verification") b.className = "danger";
    if (action === "comment") b.className = "secondary";
    b.addEventListener("click", () => {
      if (!IRREVERSIBLE.has(action)) return command(o, action);
      if (!note.value.trim()) { flash(`${ACTION_ZH[action]} 不可撤销，须填写理由 irreversible: a reason (note) is required`, true); note.focus(); return; }
      if (b.dataset.confirm !== "yes") {          // the second click confirms
        b.dataset.confirm = "yes";
        b.textContent = `确认${ACTION_ZH[action]}? confirm`;
        flash(`再点一次确认 click again to confirm: ${ACTION_ZH[action]} — 不可撤销 cannot be undone`, true);
        setTimeout(() => { if (b.isConnected) { b.dataset.confirm = ""; b.textContent = ACTION_ZH[action]; } }, 6000);
        return;
      }
      command(o, action);
    });
    box.appendChild(b);
  }
}

async function command(o, action) {
  const body = {command_id: crypto.randomUUID(), action,
                note: document.querySelector('[data-testid="note"]').value.trim()};
  if (action === "dispatch") body.department = document.querySelector('[data-testid="dispatch-department"]').value;
  if (action === "assist") body.department = document.querySelector('[data-testid="assist-department"]').value;
  if (action === "release_assist") body.department = document.querySelector('[data-testid="release-department"]').value;
  if (action === "visit") body.satisfaction = document.querySelector('[data-testid="visit-satisfaction"]').value;
  if (action === "set_emergency_level") body.emergency_level = document.querySelector('[data-testid="emergency-select"]').value;
  if (action === "recategorise") body.category = document.querySelector('[data-testid="recategorise-category"]').value;
  if (action === "reprioritise") body.priority = document.querySelector('[data-testid="reprioritise-priority"]').value;
  if (action === "merge") body.into = document.querySelector('[data-testid="merge-into"]').value.trim();
  if (action === "split") {
    body.evidence = [...document.querySelector('[data-testid="split-evidence"]').selectedOptions].map((op) => op.value);
    if (!body.evidence.length) { flash("拆分须选择移出的事件 choose what moves to the new order", true); return; }
  }
  if (action === "extend") {
    body.extend_minutes = parseInt(document.querySelector('[data-testid="extend-minutes"]').value, 10);
    if (!body.note) { flash("延期需要说明理由 an extension needs a reason (note)", true); return; }
  }
  try {
    await api(`/api/v1/workorders/${encodeURIComponent(o.work_order_id)}/commands`, {method: "POST", body: JSON.stringify(body)});
    const note = document.querySelector('[data-testid="note"]');
    if (note) note.value = "";
    flash(`已提交 ${ACTION_ZH[action]} — 结果见时间线 the outcome appears on the timeline`);
  } catch (e) {
    flash("提交失败 refused: " + e.message, true);
  }
}

function boardNote(text) {
  $("board-flash").textContent = text;
  $("board-flash").className = text ? "error" : "";
}

function flash(text, bad) {
  const el = $("flash") || $("board-flash");
  if (!el) { if (bad) console.warn(text); return; }
  el.textContent = text;
  el.className = bad ? "error" : "muted";
}

// -- live changes (Server-Sent Events over fetch, so the token stays in a header) ----
// Each event has an id; a reconnect sends the last one (Last-Event-ID) and the server
// replays the orders changed meanwhile, or says "reload" when it cannot.

function setLive(on, text) {
  if (on) state.offlineSince = null;
  else state.offlineSince = state.offlineSince || new Date();
  $("live").className = on ? "live on" : "live off";
  $("live").textContent = on ? "● 实时 live"
    : `● 断开 offline ${fmt(state.offlineSince).slice(-8)}起${text ? " · " + text : ""}`;
  $("live").title = on ? "" : "看板停在断开时刻，重连后自动补齐 the board is as of the cut; it catches up on reconnect";
}

async function streamChanges() {
  let wait = 1000;
  for (;;) {
    try {
      const headers = {"Authorization": "Bearer " + state.token};
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const res = await fetch("/api/v1/stream", {headers});
      if (!res.ok) throw new Error(res.status);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += decoder.decode(value, {stream: true});
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let data = "", id = null;
          for (const line of chunk.split("\n")) {
            if (line.startsWith("data: ")) data += line.slice(6);
            else if (line.startsWith("id: ")) id = line.slice(4);
          }
          if (!data) continue;
          const msg = JSON.parse(data);
          if (id) state.lastEventId = id;
          if (msg.kind === "hello") { state.streaming = true; state.workerStopped = false; wait = 1000; setLive(true); scheduleRefresh(); }
          else if (msg.kind === "reload") {       // connected, but what was missed is not held: reload
            state.streaming = true; state.workerStopped = false; wait = 1000; setLive(true);
            loadOrders(); if (state.selected) refreshDetail();
          }
          else if (msg.kind === "shutdown") state.workerStopped = true;
          else if (msg.snapshot) onChange(msg);
        }
      }
    } catch (e) { /* reconnect below */ }
    state.streaming = false;
    setLive(false, state.workerStopped ? "工作进程已停止 worker stopped — 等待重启 waiting for it" : "重连中 reconnecting");
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 10000);
  }
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("token").value.trim());
});
if (state.token) signIn(state.token);
