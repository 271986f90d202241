"""The Grafana dashboard, as data: one place for its panels and PromQL.

``citybrain dashboard --write`` renders ``deploy/grafana/dashboards/citybrain.json``; a test
fails if the file drifts, and the Prometheus test asks a real Prometheus every expression
here.  Panel titles are Chinese with English in brackets; each panel's description names
the metrics it charts.  Rows: throughput, latency, lifecycle, 研判, device health, faults;
variables $district, $department, $category.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from citybrain.paths import PROJECT_ROOT

DASHBOARD_PATH = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "citybrain.json"

# The dashboard's variables (label values, multi-select, "All" = any value).  Each panel
# filters only by the labels its metric has; the Prometheus test resolves them to ".*".
VARIABLES: list[tuple[str, str, str]] = [
    ("district", "区县 district", "label_values(citybrain_workorders_open, district)"),
    ("department", "部门 department", "label_values(citybrain_workorders_open, department)"),
    ("category", "类别 category", "label_values(citybrain_workorders_opened_total, category)"),
]
D, P, C = 'district=~"$district"', 'department=~"$department"', 'category=~"$category"'

# (title, unit, [(expr, legend)], kind)
Panel = tuple[str, str, list[tuple[str, str]], str]


def _quantiles(metric: str, by: str = "", where: str = "") -> list[tuple[str, str]]:
    labels = f"le, {by}" if by else "le"
    sel = f"{{{where}}}" if where else ""
    return [(f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{sel}[5m])))",
             f"p{int(q * 100)}" + (f" {{{{{by}}}}}" if by else "")) for q in (0.5, 0.95, 0.99)]


_RATES = (("on_time_closure", "按期结案率"), ("satisfaction", "满意率"), ("rework", "返工率"),
          ("return", "退回率"), ("extension", "延期率"))

# Rows in order; within a row the panels fill two columns.  Counters that stay absent
# until the first failure answer 0 per stage (`or … * 0`), so a quiet system draws a
# flat line, not "No data".
ROWS: list[tuple[str, list[Panel]]] = [
    ("吞吐 (throughput)", [
        ("吞吐量 (throughput per source and outcome: normal | event | suppressed | deadletter)", "ops",
         [("sum by (source, outcome) (rate(citybrain_ingest_outcome_total[1m]))", "{{source}} {{outcome}}"),
          ("sum(rate(citybrain_ingested_total[1m]))", "读入 ingested")], "timeseries"),
        ("事件 按类别 (city events produced per source and category)", "ops",
         [(f"sum by (source, category) (rate(citybrain_events_total{{{C}}}[5m]))", "{{source}} {{category}}")],
         "timeseries"),
        ("各区县工单 (orders opened per hour and open orders, by district)", "short",
         [(f"sum by (district) (increase(citybrain_workorders_opened_total{{{D}, {P}, {C}}}[1h]))",
           "{{district}} 立案/h opened"),
          (f"sum by (district) (citybrain_workorders_open{{{D}, {P}}})", "{{district}} 在办 open")], "timeseries"),
        ("融合 一事一单 (fusion: open | join | recovery | duplicate; evidence attached by category)", "ops",
         [("sum by (action) (rate(citybrain_fusion_outcome_total[5m]))", "{{action}}"),
          (f"sum by (category) (rate(citybrain_evidence_attached_total{{{C}}}[5m]))", "附证 {{category}}")],
         "timeseries"),
        ("抑制 按原因 (suppressed records by source and reason)", "ops",
         [("sum by (source, reason) (rate(citybrain_suppressed_total[5m]))", "{{source}} {{reason}}")],
         "timeseries"),
        ("阶段处理量 (records handled per stage; API requests by route and code)", "ops",
         [("sum by (stage) (rate(citybrain_stage_records_total[1m]))", "{{stage}}"),
          ("sum by (route, code) (rate(citybrain_api_requests_total[5m]))", "API {{route}} {{code}}")],
         "timeseries"),
    ]),
    ("时延 (latency)", [
        ("派单延迟 (dispatch latency p50/p95/p99)", "s",
         _quantiles("citybrain_dispatch_latency_seconds", where=P), "timeseries"),
        ("派单延迟 p99 按部门与优先级 (dispatch p99 by department and priority)", "s",
         [("histogram_quantile(0.99, sum by (le, department, priority) "
           f"(rate(citybrain_dispatch_latency_seconds_bucket{{{P}}}[5m])))", "{{department}} {{priority}}")],
         "timeseries"),
        ("阶段延迟 p99 按阶段 (stage latency p99: fetch → outputs acknowledged, and the wait before the "
         "fetch, by stage; event-loop lag)", "s",
         [("histogram_quantile(0.99, sum by (le, stage) (rate(citybrain_stage_latency_seconds_bucket[5m])))",
           "{{stage}}"),
          ("histogram_quantile(0.99, sum by (le, stage) (rate(citybrain_stage_wait_seconds_bucket[5m])))",
           "{{stage}} wait"),
          ("histogram_quantile(0.99, sum by (le) (rate(citybrain_event_loop_lag_seconds_bucket[5m])))",
           "event-loop lag")], "timeseries"),
        ("提交延迟 (offset commit latency p99)", "s",
         [("histogram_quantile(0.99, sum by (le, stage) (rate(citybrain_commit_latency_seconds_bucket[5m])))",
           "{{stage}}")], "timeseries"),
        ("垃圾回收停顿 p99 (garbage-collector pause p99 by generation; passes per second)", "s",
         [("histogram_quantile(0.99, sum by (le, generation) (rate(citybrain_gc_pause_seconds_bucket[5m])))",
           "gen {{generation}}"),
          ("sum by (generation) (rate(citybrain_gc_pause_seconds_count[5m]))", "gen {{generation}} passes/s")],
         "timeseries"),
        ("Faust 自身消费者 (Faust's own consumer, beside the stages: rebalances, commit p99 ms)", "short",
         [("sum(citybrain_faust_total_rebalances)", "rebalances"),
          ("histogram_quantile(0.99, sum by (le) (rate(citybrain_faust_consumer_commit_latency_bucket[5m])))",
           "commit p99 ms")], "timeseries"),
    ]),
    ("工单流转 (lifecycle)", [
        ("在办工单 (open orders by department and status)", "short",
         [(f"sum by (department, status) (citybrain_workorders_open{{{D}, {P}}})", "{{department}} {{status}}")],
         "timeseries"),
        ("超时工单 (overdue orders by department)", "short",
         [(f"sum by (department) (citybrain_workorders_overdue{{{P}}})", "{{department}}")], "timeseries"),
        ("工单变更 (work-order changes per second by action)", "ops",
         [("sum by (action) (rate(citybrain_workorder_transitions_total[5m]))", "{{action}}")], "timeseries"),
        ("自动督办 (supervision steps per hour by level)", "short",
         [("sum by (level) (increase(citybrain_supervision_steps_total[1h]))", "{{level}}")], "timeseries"),
        ("协办 (open assisting parts by department)", "short",
         [(f"sum by (department) (citybrain_assists_open{{{P}}})", "{{department}}")], "timeseries"),
        ("综合评价 本月 (this month: on-time closure and satisfaction rates; rework, return and extension "
         "rates)", "percentunit",
         [(f'max by (department) (citybrain_evaluation_rate{{{P}, rate="{code}"}})', f"{{{{department}}}} {zh} {code}")
          for code, zh in _RATES], "timeseries"),
        ("环节时长 本月 (hours to dispatch | accept | handle | close, median and p90, orders closed this month)",
         "h",
         [(f'max by (department, stage) (citybrain_evaluation_hours{{{P}, quantile="0.5"}})',
           "{{department}} {{stage}} p50"),
          (f'max by (department, stage) (citybrain_evaluation_hours{{{P}, quantile="0.9"}})',
           "{{department}} {{stage}} p90")], "timeseries"),
        ("本月结案与协办 (closed this month; assist parts received | handled | returned, by department)",
         "short",
         [(f"max by (department) (citybrain_evaluation_closed{{{P}}})", "{{department}} 结案 closed"),
          (f"max by (department, work) (citybrain_evaluation_assists{{{P}}})", "{{department}} 协办 {{work}}")],
         "timeseries"),
    ]),
    ("研判 (analysis: categories, areas, escalations)", [
        ("立案 按类别 每小时 (orders opened per hour by category)", "short",
         [(f"sum by (category) (increase(citybrain_workorders_opened_total{{{D}, {P}, {C}}}[1h]))",
           "{{category}}")], "timeseries"),
        ("立案 前十区县 24小时 (top 10 districts by orders opened, last 24 h)", "short",
         [(f"topk(10, sum by (district) (increase(citybrain_workorders_opened_total{{{D}, {P}, {C}}}[24h])))",
           "{{district}}")], "bargauge"),
        ("升级与应急响应 (escalations per hour by level reached; open orders under emergency response)", "short",
         [(f"sum by (to_level) (increase(citybrain_workorders_escalated_total{{{C}}}[1h]))", "升级 → {{to_level}}"),
          ("sum by (emergency_level) (citybrain_workorders_emergency_open)", "应急 {{emergency_level}} open")],
         "timeseries"),
        ("立案 按部门 每小时 (orders opened per hour by department)", "short",
         [(f"sum by (department) (increase(citybrain_workorders_opened_total{{{D}, {P}, {C}}}[1h]))",
           "{{department}}")], "timeseries"),
        ("区域预警 (area warnings holding now by level; orders they raised per hour by kind: new = started "
         "at its level, open = escalated to it)", "short",
         [("sum by (level) (max by (kind, level) (citybrain_area_warnings_active))", "预警 {{level}} holding"),
          ("sum by (kind, way) (increase(citybrain_area_warning_orders_total[1h]))", "工单 {{kind}} {{way}}")],
         "timeseries"),
    ]),
    ("设备健康 (device health)", [
        ("设备完好率 (intact: in service, no open 设备故障 order / registered active, by kind and district)",
         "percentunit",
         [(f'max by (kind, district) (citybrain_device_intact_ratio{{kind!="*", {D}}})', "{{kind}} {{district}}"),
          ('max(citybrain_device_intact_ratio{kind="*"})', "全市 city")], "timeseries"),
        ("设备联网率 (networked: heard within the reporting interval / registered active, by kind and district)",
         "percentunit",
         [(f'max by (kind, district) (citybrain_device_networked_ratio{{kind!="*", {D}}})',
           "{{kind}} {{district}}"),
          ('max(citybrain_device_networked_ratio{kind="*"})', "全市 city")], "timeseries"),
        ("登记设备 (registered active devices by kind and district; registry by kind and status)", "short",
         [(f"sum by (kind, district) (max by (kind, district, owner) (citybrain_devices_registered{{{D}}}))",
           "{{kind}} {{district}}"),
          ("max by (kind, status) (citybrain_registry_devices)", "登记 {{kind}} {{status}}")], "timeseries"),
        ("设备状态 (devices heard by this cluster's partitions, by kind and state: online | offline | fault)",
         "short",
         [(f"sum by (kind, state) (citybrain_devices{{{D}}})", "{{kind}} {{state}}")], "timeseries"),
    ]),
    ("故障 (faults)", [
        ("工作进程 (workers up, ready, reaching Kafka, registry loaded)", "short",
         [('sum(up{job="citybrain"})', "up 在线"),
          ("sum(citybrain_worker_ready)", "ready 就绪"),
          ("sum(citybrain_broker_up)", "broker 可达"),
          ("sum(citybrain_registry_loaded)", "registry 已载入")], "stat"),
        ("死信 按原因 (dead letters by reason)", "ops",
         [("sum by (source, reason) (rate(citybrain_deadletter_total[5m]))", "{{source}} {{reason}}")],
         "timeseries"),
        ("阶段失败 每小时 (stage failures per hour by stage: each rewinds and retries)", "short",
         [("sum by (stage) (increase(citybrain_stage_failures_total[1h]))"
           " or sum by (stage) (citybrain_stage_records_total) * 0", "{{stage}}")], "timeseries"),
        ("消费积压 (consumer lag by stage)", "short",
         [("sum by (stage) (citybrain_consumer_lag)", "{{stage}}")], "timeseries"),
        ("再均衡 (partition assignments per stage, total)", "short",
         [("sum by (stage) (citybrain_rebalances_total)", "{{stage}}")], "timeseries"),
        ("接口拒绝与指令拒绝 (API refusals by reason; lifecycle commands refused per hour by reason)", "short",
         [("sum by (reason) (increase(citybrain_auth_refusals_total[1h]))", "接口 {{reason}}"),
          ("sum by (reason) (increase(citybrain_commands_rejected_total[1h]))"
           ' or label_replace(vector(0), "reason", "无 none", "", "")', "指令 {{reason}}")],
         "timeseries"),
        ("状态丢弃与淘汰 (held state dropped past the record limit; closed orders evicted from hot state)",
         "short",
         [("sum by (state) (increase(citybrain_state_dropped_total[1h]))"
           ' or label_replace(vector(0), "state", "无 none", "", "")', "丢弃 dropped {{state}}"),
          ("sum(increase(citybrain_state_evicted_total[1h]))", "淘汰 evicted")], "timeseries"),
    ]),
]
PANELS: list[Panel] = [p for _, panels in ROWS for p in panels]


def resolve(expr: str, value: str = ".*") -> str:
    """A panel's expression with every variable set to ``value`` (".*": Grafana's All)."""
    for name, _, _ in VARIABLES:
        expr = expr.replace(f"${name}", value)
    return expr


def expressions() -> list[str]:
    """Every panel's expression, variables at All: what the Prometheus test asks."""
    return [resolve(expr) for _, _, targets, _ in PANELS for expr, _ in targets]


def metric_names(expr: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r"\b(citybrain_[a-z0-9_]+|up)\b(?=[{\[ )])", expr)))


def _variable(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "definition": query, "query": {"query": query, "refId": f"var-{name}"},
            "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


def dashboard() -> dict:
    panels: list[dict] = []
    y = 0
    for row_title, row in ROWS:
        panels.append({"id": len(panels) + 1, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        y += 1
        for i, (title, unit, targets, kind) in enumerate(row):
            codes = sorted({m for expr, _ in targets for m in metric_names(expr)})
            panels.append({
                "id": len(panels) + 1, "type": kind, "title": title,
                "description": "指标 metrics: " + ", ".join(codes),
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": y + (i // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
                "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
                            for j, (expr, legend) in enumerate(targets)],
            })
        y += (len(row) + 1) // 2 * 8
    return {"uid": "citybrain", "title": "城市大脑 一网统管 (citybrain)", "tags": ["citybrain"],
            "timezone": "browser", "schemaVersion": 39, "version": 2, "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": [_variable(*v) for v in VARIABLES]}, "panels": panels}


def render() -> str:
    return json.dumps(dashboard(), ensure_ascii=False, indent=2) + "\n"


def write(path: Path = DASHBOARD_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path
