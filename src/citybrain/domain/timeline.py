"""One order's timeline: its changes (workorders.events) and the commands refused on it
(workorders.rejected), in the order they happened, each line readable on its own."""

from __future__ import annotations

from datetime import datetime
from typing import Any

TYPE_ZH = {"created": "立案", "dispatched": "派遣", "evidence_added": "新增证据", "recovery_recorded": "设备恢复",
           "accepted": "签收", "returned": "退回", "handled": "处置反馈", "verified": "核查结案",
           "verification_rejected": "核查不通过/返工", "cancelled": "作废", "extended": "延期",
           "supervised": "督办", "commented": "备注",
           "escalated": "升级", "deescalated": "降级", "assist_added": "协办派遣", "assist_accepted": "协办签收",
           "assist_handled": "协办处置反馈", "assist_returned": "协办退回", "assist_released": "协办解除",
           "visited": "回访", "recategorised": "改类", "reprioritised": "调整优先级", "merged": "并单（并入他单）",
           "merge_absorbed": "并单（并入重复件）", "split": "拆单"}
REASON_ZH = {"duplicate_command": "重复指令", "not_allowed_in_state": "当前状态不允许", "forbidden_role": "角色无权",
             "out_of_scope": "超出职责范围", "missing_field": "缺少字段", "unknown_department": "未知部门",
             "unknown_work_order": "无此工单",
             "assist_open": "协办未完成", "unknown_category": "未知类别", "invalid_field": "字段无效"}


def _actor(a: dict[str, Any]) -> str:
    who = a.get("department") or a.get("grid_prefix")
    return f"{a['role']}:{a['id']}" + (f"({who})" if who else "")


def timeline(changes: list[dict[str, Any]], rejections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both lists as parsed JSON of one order; duplicates (redelivery) collapse."""
    entries: dict[tuple[Any, ...], dict[str, Any]] = {}
    noted = 0
    for c in sorted(changes, key=lambda c: c["version"]):
        notes = c["snapshot"].get("notes") or []
        if "note" in c:               # decided by the caller (the API's order view)
            note = c["note"]
        else:                         # a note belongs to the change that added it
            note = notes[-1] if len(notes) > noted else None
        noted = max(noted, len(notes))
        entries[("change", c["version"])] = {
            "at": c["at"], "kind": "change", "type": c["type"],
            "label": TYPE_ZH.get(c["type"], c["type"]) + (f" {c['part']}" if c.get("part") else ""),
            "version": c["version"], "actor": _actor(c["actor"]), "status": c["snapshot"]["status"],
            "note": note}
    for r in rejections:
        cmd = r["command"]
        entries[("refusal", cmd["command_id"], r["reason"])] = {
            "at": r["at"], "kind": "refusal", "type": cmd["action"], "reason": r["reason"],
            "label": f"拒绝 {REASON_ZH.get(r['reason'], r['reason'])}", "actor": _actor(cmd["actor"]),
            "status": r.get("status"), "note": r["detail"], "command_id": cmd["command_id"]}
    # By time; a change's version breaks ties, so the order's own sequence always holds.
    return sorted(entries.values(), key=lambda e: (datetime.fromisoformat(e["at"]), e.get("version", 0)))
