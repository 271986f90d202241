"""One order's timeline: its changes (workorders.events) and the commands refused on it
(workorders.rejected), in the order they happened, each line readable on its own."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from citybrain.wire.enums import REASON_ZH as REASON_ZH
from citybrain.wire.enums import TYPE_ZH as TYPE_ZH

# The labels live with every other enumeration's, in wire/enums.py.


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
