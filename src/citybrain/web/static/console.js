// citybrain operator console: a live board of work orders, a map of the grids, an
// order's timeline and the actions the signed-in role may take.  No framework, no CDN.
"use strict";

const OPEN = ["registered", "dispatched", "accepted", "handled"];
const STATUS_ZH = {registered: "立案", dispatched: "派遣", accepted: "签收", handled: "处置反馈",
                   closed: "结案", cancelled: "作废"};
const LEVEL_ZH = ["", "街道督办", "区督办", "市督办"];
const COLORS = {registered: "#f97316", dispatched: "#3b82f6", accepted: "#a855f7", handled: "#10b981",
                closed: "#6b7280", cancelled: "#52525b"};
const ACTION_ZH = {dispatch: "派遣 dispatch", accept: "签收 accept", return: "退回 return",
                   handle: "处置反馈 handled", verify: "核查通过 verify", reject_verification: "核查不通过 reject",
                   cancel: "作废 cancel", extend: "延期 extend", supervise: "督办 supervise", comment: "备注 comment",
                   assist: "增派协办 add assist", release_assist: "解除协办 release assist",
                   set_emergency_level: "应急响应 emergency level", visit: "回访 visit"};
const SATISFACTION_ZH = {satisfied: "满意", basically_satisfied: "基本满意", unsatisfied: "不满意"};
const PART_ZH = {dispatched: "待签收", accepted: "已签收", handled: "已处置", released: "已解除"};
const WARNING_ZH = {blue: "蓝色预警", yellow: "黄色预警", orange: "橙色预警", red: "红色预警"};
const EMERGENCY_ZH = {IV: "Ⅳ级响应", III: "Ⅲ级响应", II: "Ⅱ级响应", I: "Ⅰ级响应"};
const OPEN_PARTS = ["dispatched", "accepted"];
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
               orders: new Map(), selected: null, map: null, markers: new Map(), layer: null};
const $ = (id) => document.getElementById(id);
const fmt = (t) => t ? new Date(t).toLocaleString("zh-CN", {hour12: false}) : "—";
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
  state.me = state.meta.me;
  const roleZh = {operator: "值班员", department: "部门", street: "街道属地", grid: "网格员"}[state.me.role] || state.me.role;
  $("who").textContent = `${roleZh} ${state.me.role}: ${state.me.name || state.me.id}` +
    (state.me.department ? ` · ${state.meta.departments[state.me.department] || ""} ${state.me.department}` : "") +
    (state.me.grid_prefix ? ` · ${state.me.grid_prefix}…` : "");
  $("login").hidden = true;
  $("app").hidden = false;
  fillFilters();
  initMap();
  await loadOrders();
  streamChanges();
  if (state.me.role === "operator" || isDesk()) { loadDeviceHealth(); setInterval(loadDeviceHealth, 30000); }
}

// 设备完好率: devices without an open device fault / registered, from the evaluation.
async function loadDeviceHealth() {
  try {
    const body = await api("/api/v1/kpis");
    const rows = Object.entries(body.device_health || {});
    const all = state.me.role === "operator" ? (body.device_health || {})["*"]
      : rows.map(([, r]) => r).reduce((a, r) => ({registered: a.registered + r.registered, faulty: a.faulty + r.faulty}),
                                      {registered: 0, faulty: 0});
    if (!all || !all.registered) { $("devices").textContent = ""; return; }
    const rate = (all.registered - all.faulty) / all.registered;
    $("devices").textContent = `设备完好率 devices intact ${(rate * 100).toFixed(1)}% · 故障 faulty ${all.faulty} / ${all.registered}`;
    $("devices").title = rows.filter(([k]) => k !== "*").map(([k, r]) =>
      `${k}: ${r.intact_rate === null ? "—" : (r.intact_rate * 100).toFixed(1) + "%"} (${r.faulty}/${r.registered})`).join("\n");
  } catch (e) { /* the board works without it */ }
}

function fillFilters() {
  const dep = $("f-department");
  for (const [code, name] of Object.entries(state.meta.departments)) {
    dep.add(new Option(`${name} ${code}`, code));
  }
  if (state.me.role === "department") { dep.value = state.me.department; dep.disabled = true; }
  const dis = $("f-district");
  for (const [code, name] of Object.entries(state.meta.districts || {})) dis.add(new Option(`${name} ${code}`, code));
  fillStreets();
  if (state.me.role === "street") {
    dis.value = state.me.street_code.slice(0, 6); dis.disabled = true;
    fillStreets();
    $("f-street").value = state.me.street_code; $("f-street").disabled = true;
  }
  dis.addEventListener("change", () => { fillStreets(); zoomToDistrict(); loadOrders(); });
  for (const id of ["f-status", "f-department", "f-street", "f-emergency"]) $(id).addEventListener("change", loadOrders);
  $("f-grid").addEventListener("change", loadOrders);
}

// The street list follows the district chosen (street codes begin with their district's).
function fillStreets() {
  const st = $("f-street"), district = $("f-district").value;
  while (st.options.length > 1) st.remove(1);
  for (const [code, name] of Object.entries(state.meta.streets)) {
    if (!district || code.startsWith(district)) st.add(new Option(`${name} ${code}`, code));
  }
}

function query() {
  const p = new URLSearchParams({limit: "500"});
  p.set("status", $("f-status").value || OPEN.join(","));
  if ($("f-department").value) p.set("department", $("f-department").value);
  if ($("f-district").value) p.set("district", $("f-district").value);
  if ($("f-street").value) p.set("street", $("f-street").value);
  if ($("f-grid").value.trim()) p.set("grid", $("f-grid").value.trim());
  if ($("f-emergency").value) p.set("emergency", $("f-emergency").value);
  return p;
}

function matches(o) {
  const status = $("f-status").value;
  if (status ? o.status !== status : !OPEN.includes(o.status)) return false;
  const dep = $("f-department").value;
  if (dep && o.department !== dep && !(o.assists || []).some((a) => a.department === dep)) return false;
  const em = $("f-emergency").value;
  if (em && !em.split(",").includes(o.emergency_level || "none")) return false;
  if ($("f-district").value && o.location.district_code !== $("f-district").value) return false;
  if ($("f-street").value && o.location.street_code !== $("f-street").value) return false;
  if ($("f-grid").value.trim() && !o.location.grid_code.startsWith($("f-grid").value.trim())) return false;
  return true;
}

async function loadOrders() {
  try {
    const body = await api("/api/v1/workorders?" + query());
    state.orders = new Map(body.items.map((o) => [o.work_order_id, o]));
    render();
  } catch (e) {
    flash("加载失败 could not load orders: " + e.message, true);
  }
}

// -- the board -------------------------------------------------------------------

function isOverdue(o) {
  if (!OPEN.includes(o.status)) return false;
  const now = Date.now();
  const stage = o.accept_due_at || o.handle_due_at;
  return now > Date.parse(o.due_at) || (stage && now > Date.parse(stage));
}

function row(o) {
  const tr = document.createElement("tr");
  tr.dataset.wo = o.work_order_id;
  tr.dataset.status = o.status;
  if (isOverdue(o)) tr.classList.add("overdue");
  if (o.supervision_level > 0) tr.classList.add("supervised");
  if (o.emergency_level) tr.classList.add("emergency-row");
  const assists = (o.assists || []).filter((a) => a.status !== "released");
  if (state.selected === o.work_order_id) tr.classList.add("selected");
  const district = (state.meta.districts || {})[o.location.district_code];
  const street = (district ? district + " " : "") + (state.meta.streets[o.location.street_code] || o.location.street_code);
  const due = o.accept_due_at || o.handle_due_at || o.due_at;
  tr.innerHTML = `<td>${esc(o.work_order_id)}</td><td>${esc(o.category_name)} <span class="muted">${esc(o.category)}</span></td>
    <td><span class="status st-${o.status}">${STATUS_ZH[o.status]} ${o.status}</span> ${warningChip(o)} ${emergencyChip(o)}</td>
    <td>${o.department ? esc((state.meta.departments[o.department] || "") + " " + o.department) : '<span class="muted">待分拨 triage</span>'}${assists.length ? ` <span class="muted" data-testid="row-assists">+协办 ${esc(assists.map((a) => a.department).join(", "))}</span>` : ""}</td>
    <td>${esc(street)} · ${esc(o.location.grid_code)}</td>
    <td>${o.supervision_level ? LEVEL_ZH[o.supervision_level] + " L" + o.supervision_level : "—"}</td>
    <td>${isOverdue(o) ? "超时 overdue " : ""}${esc(new Date(due).toLocaleString("zh-CN", {hour12: false}))}</td>`;
  tr.addEventListener("click", () => select(o.work_order_id));
  return tr;
}

function render() {
  const rows = $("rows");
  rows.replaceChildren();
  const list = [...state.orders.values()].filter(matches)
    .sort((a, b) => (b.created_at > a.created_at ? 1 : b.created_at < a.created_at ? -1 : 0));
  for (const o of list) rows.appendChild(row(o));
  $("empty").hidden = list.length > 0;
  const overdue = list.filter(isOverdue).length;
  $("counts").textContent = `${list.length} 单 orders · 超时 overdue ${overdue} · 督办 supervised ${list.filter((o) => o.supervision_level > 0).length}`;
  drawMarkers(list);
}

function upsert(o, fresh) {
  state.orders.set(o.work_order_id, o);
  const old = document.querySelector(`tr[data-wo="${CSS.escape(o.work_order_id)}"]`);
  if (!matches(o)) { if (old) old.remove(); drawMarkers([...state.orders.values()].filter(matches)); return; }
  const tr = row(o);
  if (fresh) tr.classList.add("fresh");
  if (old) old.replaceWith(tr); else render();
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
  zoomToDistrict();
  drawMarkers([...state.orders.values()].filter(matches));
}

function zoomToDistrict() {
  if (!state.map || !state.districts) return;
  const chosen = state.districts.get($("f-district").value);
  state.map.fitBounds(chosen ? chosen.getBounds() : state.layer.getBounds());
}

function drawMarkers(list) {
  if (!state.map) return;
  for (const m of state.markers.values()) m.remove();
  state.markers.clear();
  for (const o of list) {
    const m = L.circleMarker([o.location.lat, o.location.lon], {radius: o.supervision_level ? 8 : 6,
      color: isOverdue(o) ? "#fbbf24" : COLORS[o.status], fillOpacity: 0.85, weight: 2})
      .bindTooltip(`${o.category_name} · ${STATUS_ZH[o.status]} · ${o.work_order_id}`)
      .on("click", () => select(o.work_order_id)).addTo(state.map);
    state.markers.set(o.work_order_id, m);
  }
}

// -- one order ---------------------------------------------------------------------

async function select(wo) {
  state.selected = wo;
  document.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
  const tr = document.querySelector(`tr[data-wo="${CSS.escape(wo)}"]`);
  if (tr) tr.classList.add("selected");
  let body;
  try { body = await api("/api/v1/workorders/" + encodeURIComponent(wo)); }
  catch (e) { flash("加载失败 " + e.message, true); return; }
  const o = body.work_order;
  const d = $("detail");
  d.hidden = false;
  const evidence = o.evidence.map((u) => `<a href="${esc(u)}" target="_blank" rel="noopener">${esc(u.split("/").pop())}</a>`).join(", ") || "—";
  d.innerHTML = `<h2 data-testid="detail-title">${esc(o.category_name)} · ${esc(o.work_order_id)}</h2>
    <dl>
      <dt>状态 status</dt><dd data-testid="detail-status"><span class="status st-${o.status}">${STATUS_ZH[o.status]} ${o.status}</span>${o.overdue ? ' <b class="error">超时 overdue</b>' : ""}</dd>
      <dt>主办 lead</dt><dd data-testid="detail-department">${o.department ? esc((state.meta.departments[o.department] || "") + " " + o.department) : "待分拨 triage"}</dd>
      <dt>协办 assists</dt><dd data-testid="detail-assists">${(o.assists || []).length ? `<table class="parts">${o.assists.map((a) =>
        `<tr data-part="${esc(a.department)}" data-part-status="${esc(a.status)}"><td>${esc((state.meta.departments[a.department] || "") + " " + a.department)}</td>
         <td><span class="part pt-${esc(a.status)}">${PART_ZH[a.status] || ""} ${esc(a.status)}</span></td>
         <td class="muted">${a.accept_due_at ? "签收时限 " + esc(fmt(a.accept_due_at)) : a.handle_due_at ? "处置时限 " + esc(fmt(a.handle_due_at)) : a.handled_at ? "处置 " + esc(fmt(a.handled_at)) : ""}</td>
         <td class="muted">${esc(a.added_by)}</td></tr>`).join("")}</table>` : "—"}</dd>
      <dt>预警 warning</dt><dd data-testid="detail-warning">${warningChip(o) || "—"} · 优先级 priority ${esc(o.priority)}</dd>
      <dt>应急 emergency</dt><dd data-testid="detail-emergency">${emergencyChip(o) || "—"}</dd>
      <dt>位置 where</dt><dd data-testid="detail-where">${esc((state.meta.districts || {})[o.location.district_code] || "")} ${esc(state.meta.streets[o.location.street_code] || "")} ${esc(o.location.grid_code)} (${o.location.lon.toFixed(5)}, ${o.location.lat.toFixed(5)})</dd>
      <dt>描述 description</dt><dd>${esc(o.description)}</dd>
      <dt>发现 finders</dt><dd>${esc(o.finders.join(", ") || "—")} · ${o.events.length} 条事件 events</dd>
      <dt>证据 evidence</dt><dd>${evidence}</dd>
      <dt>时限 due</dt><dd>结案 ${esc(fmt(o.due_at))}${o.accept_due_at ? " · 签收 " + esc(fmt(o.accept_due_at)) : ""}${o.handle_due_at ? " · 处置 " + esc(fmt(o.handle_due_at)) : ""}</dd>
      <dt>督办 supervision</dt><dd>${o.supervision_level ? LEVEL_ZH[o.supervision_level] + " level " + o.supervision_level : "—"}</dd>
      <dt>回访 visits</dt><dd data-testid="detail-visits">${(o.visits || []).map((v) => `${SATISFACTION_ZH[v.satisfaction]} ${esc(v.satisfaction)} (${esc(fmt(v.at))})`).join(" · ") || "—"}</dd>
      <dt>返工/退回/延期</dt><dd>rework ${o.rework_count} · return ${o.return_count} · extension ${o.extension_count}</dd>
    </dl>
    <div id="actions" data-testid="actions"></div>
    <div id="flash"></div>
    <h3>时间线 timeline</h3>
    <ul id="timeline" data-testid="timeline">${body.timeline.map((e) =>
      `<li class="${e.kind}" data-type="${esc(e.type)}"><span class="at">${esc(new Date(e.at).toLocaleString("zh-CN", {hour12: false}))}</span>
       ${e.version ? "v" + e.version : ""} <b>${esc(e.label)}</b> ${esc(e.type)} · ${esc(e.actor)}
       ${e.note ? "<br><span class=muted>" + esc(e.note) + "</span>" : ""}</li>`).join("")}</ul>`;
  renderActions(o);
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
    if (open) acts.push("assist", "set_emergency_level");
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
  const note = Object.assign(document.createElement("input"), {placeholder: "说明 note / reason", size: 22});
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
      for (const lv of ["IV", "III", "II", "I", "none"]) sel.add(new Option(EMERGENCY_ZH[lv] ? `${EMERGENCY_ZH[lv]} ${lv}` : "解除 none", lv));
      box.appendChild(sel);
    }
    if (action === "visit") {
      const sel = document.createElement("select");
      sel.dataset.testid = "visit-satisfaction";
      for (const [v, zh] of Object.entries(SATISFACTION_ZH)) sel.add(new Option(`${zh} ${v}`, v));
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
    if (action === "cancel" || action === "reject_verification") b.className = "danger";
    if (action === "comment") b.className = "secondary";
    b.addEventListener("click", () => command(o, action));
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
  if (action === "extend") {
    body.extend_minutes = parseInt(document.querySelector('[data-testid="extend-minutes"]').value, 10);
    if (!body.note) { flash("延期需要说明理由 an extension needs a reason (note)", true); return; }
  }
  try {
    await api(`/api/v1/workorders/${encodeURIComponent(o.work_order_id)}/commands`, {method: "POST", body: JSON.stringify(body)});
    flash(`已提交 ${ACTION_ZH[action]} — 结果见时间线 the outcome appears on the timeline`);
  } catch (e) {
    flash("提交失败 refused: " + e.message, true);
  }
}

function flash(text, bad) {
  const el = $("flash");
  if (!el) { if (bad) console.warn(text); return; }
  el.textContent = text;
  el.className = bad ? "error" : "muted";
}

// -- live changes (Server-Sent Events over fetch, so the token stays in a header) ----

async function streamChanges() {
  for (;;) {
    try {
      const res = await fetch("/api/v1/stream", {headers: {"Authorization": "Bearer " + state.token}});
      if (!res.ok) throw new Error(res.status);
      $("live").className = "live on";
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
          const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) onMessage(JSON.parse(data));
        }
      }
    } catch (e) { /* reconnect below */ }
    $("live").className = "live off";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function onMessage(msg) {
  if (!msg.snapshot) return;
  upsert(msg.snapshot, msg.kind === "change");
  if (state.selected === msg.work_order_id) select(msg.work_order_id);
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("token").value.trim());
});
if (state.token) signIn(state.token);
