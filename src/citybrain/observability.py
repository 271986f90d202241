"""The Grafana dashboard, as data: one place for its panels and PromQL.

``citybrain dashboard --write`` renders ``deploy/grafana/dashboards/citybrain.json``; a test
fails if the file drifts, and the Prometheus test asks a real Prometheus every expression
here.  Panel titles are Chinese with English in brackets.
"""

from __future__ import annotations

import json
from pathlib import Path

from citybrain.paths import PROJECT_ROOT

DASHBOARD_PATH = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "citybrain.json"

# (title, unit, [(expr, legend)], kind)
PANELS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    ("吞吐量 (throughput per source and outcome)", "ops",
     [("sum by (source, outcome) (rate(citybrain_ingest_outcome_total[1m]))", "{{source}} {{outcome}}")],
     "timeseries"),
    ("派单延迟 (dispatch latency p50/p95/p99)", "s",
     [(f"histogram_quantile({q}, sum by (le) (rate(citybrain_dispatch_latency_seconds_bucket[5m])))", f"p{int(q * 100)}")
      for q in (0.5, 0.95, 0.99)], "timeseries"),
    ("派单延迟 p99 按部门与优先级 (dispatch p99 by department and priority)", "s",
     [("histogram_quantile(0.99, sum by (le, department, priority) "
       "(rate(citybrain_dispatch_latency_seconds_bucket[5m])))", "{{department}} {{priority}}")], "timeseries"),
    ("阶段延迟 p99 按阶段 (stage latency p99: fetch → outputs acknowledged, and the wait before the "
     "fetch, by stage; event-loop lag)", "s",
     [("histogram_quantile(0.99, sum by (le, stage) (rate(citybrain_stage_latency_seconds_bucket[5m])))",
       "{{stage}}"),
      ("histogram_quantile(0.99, sum by (le, stage) (rate(citybrain_stage_wait_seconds_bucket[5m])))",
       "{{stage}} wait"),
      ("histogram_quantile(0.99, sum by (le) (rate(citybrain_event_loop_lag_seconds_bucket[5m])))",
       "event-loop lag")], "timeseries"),
    ("在办工单 (open orders by department and status)", "short",
     [("sum by (department, status) (citybrain_workorders_open)", "{{department}} {{status}}")], "timeseries"),
    ("超时工单 (overdue orders by department)", "short",
     [("sum by (department) (citybrain_workorders_overdue)", "{{department}}")], "timeseries"),
    ("自动督办 (supervision steps per hour by level)", "short",
     [("sum by (level) (increase(citybrain_supervision_steps_total[1h]))", "{{level}}")], "timeseries"),
    ("按期结案率 本月 (on-time closure rate, this month)", "percentunit",
     [('max by (department) (citybrain_evaluation_rate{rate="on_time_closure"})', "{{department}}")], "bargauge"),
    ("死信 按原因 (dead letters by reason)", "ops",
     [("sum by (source, reason) (rate(citybrain_deadletter_total[5m]))", "{{source}} {{reason}}")], "timeseries"),
    ("消费积压 (consumer lag by stage)", "short",
     [("sum by (stage) (citybrain_consumer_lag)", "{{stage}}")], "timeseries"),
    ("提交延迟 (offset commit latency p99)", "s",
     [("histogram_quantile(0.99, sum by (le, stage) (rate(citybrain_commit_latency_seconds_bucket[5m])))",
       "{{stage}}")], "timeseries"),
    ("Faust 指令路由消费者 (Faust's own consumer: rebalances, commit p99 ms)", "short",
     [("sum(citybrain_faust_total_rebalances)", "rebalances"),
      ("histogram_quantile(0.99, sum by (le) (rate(citybrain_faust_consumer_commit_latency_bucket[5m])))",
       "commit p99 ms")], "timeseries"),
    ("接口拒绝 (API refusals by reason)", "ops",
     [("sum by (reason) (rate(citybrain_auth_refusals_total[5m]))", "{{reason}}")], "timeseries"),
    ("工作进程 (workers up)", "short", [('sum(up{job="citybrain"})', "up")], "stat"),
    ("升级与应急响应 (escalations per hour by level reached; open orders under emergency response)", "short",
     [("sum by (to_level) (increase(citybrain_workorders_escalated_total[1h]))", "升级 → {{to_level}}"),
      ("sum by (emergency_level) (citybrain_workorders_emergency_open)", "应急 {{emergency_level}} open")],
     "timeseries"),
    ("设备完好率 (intact: in service, no open 设备故障 order / registered active, by kind and district)",
     "percentunit",
     [('max by (kind, district) (citybrain_device_intact_ratio{kind!="*"})', "{{kind}} {{district}}"),
      ('max(citybrain_device_intact_ratio{kind="*"})', "全市 city")], "timeseries"),
    ("协办 (open assisting parts by department)", "short",
     [("sum by (department) (citybrain_assists_open)", "{{department}}")], "timeseries"),
    ("各区县工单 (orders opened per hour and open orders, by district)", "short",
     [("sum by (district) (increase(citybrain_workorders_opened_total[1h]))", "{{district}} 立案/h opened"),
      ("sum by (district) (citybrain_workorders_open)", "{{district}} 在办 open")], "timeseries"),
    ("设备联网率 (networked: heard within the reporting interval / registered active, by kind and district)",
     "percentunit",
     [('max by (kind, district) (citybrain_device_networked_ratio{kind!="*"})', "{{kind}} {{district}}"),
      ('max(citybrain_device_networked_ratio{kind="*"})', "全市 city")], "timeseries"),
]


def expressions() -> list[str]:
    return [expr for _, _, targets, _ in PANELS for expr, _ in targets]


def dashboard() -> dict:
    panels = []
    for i, (title, unit, targets, kind) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": kind, "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
            "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "prometheus"}}
                        for j, (expr, legend) in enumerate(targets)],
        })
    return {"uid": "citybrain", "title": "城市大脑 一网统管 (citybrain)", "tags": ["citybrain"],
            "timezone": "browser", "schemaVersion": 39, "version": 1, "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"}, "panels": panels}


def render() -> str:
    return json.dumps(dashboard(), ensure_ascii=False, indent=2) + "\n"


def write(path: Path = DASHBOARD_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path
