"""Which changes of an order go back to the platforms its cases came from, and what they
say (pure; docs/integration.md).

One callback per (system, external id, order, version): its id is a hash of the four, so a
change read again (at-least-once redelivery, a restart, a replay from the start) is
recognised and never called twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from citybrain.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify  # one signature scheme
from citybrain.platforms.settings import Platform
from citybrain.wire.enums import STATUS_ZH
from citybrain.wire.models import WorkOrderChange

__all__ = ["Callback", "callback_id", "callbacks_for", "public_change", "sign", "verify", "CHANGE_NAMES",
           "SIGNATURE_HEADER", "TIMESTAMP_HEADER"]

CALLBACK_HEADER = "X-Citybrain-Callback"
SYSTEM_HEADER = "X-Citybrain-System"

CHANGE_NAMES = STATUS_ZH   # a public change is named by the status it reaches

# Changes whose type differs from the status they reach and are public nevertheless.
_RENAMED: frozenset[tuple[str, str]] = frozenset({("created", "registered"), ("verified", "closed")})


def public_change(change: WorkOrderChange) -> str | None:
    """The public change a change is for every case on its order (the status it reached:
    立案/受理, 派遣, 签收, 处置, 办结, 作废, 并单), or None: internal (a comment, evidence, a
    return, supervision, an assist, a visit, …)."""
    status = change.snapshot.status
    if change.type == status or (change.type, status) in _RENAMED:
        return status
    return None


def _newly_attached(change: WorkOrderChange) -> set[str]:
    """Report ids whose cases joined an existing order with this change: they hear 受理
    (registered) with the order's state at that version."""
    if change.type == "evidence_added" and change.snapshot.events:
        rid = change.snapshot.events[-1].report_id
        return {rid} if rid else set()
    if change.type == "merge_absorbed" and change.merge is not None:
        moved = set(change.merge.events)
        return {e.report_id for e in change.snapshot.events if e.event_id in moved and e.report_id}
    return set()


def callback_id(system: str, external_id: str, work_order_id: str, version: int) -> str:
    digest = hashlib.sha256("\x1f".join((system, external_id, work_order_id, str(version))).encode()).hexdigest()
    return "CB-" + digest[:24]


@dataclass(frozen=True)
class Callback:
    callback_id: str
    platform: str
    system: str
    external_id: str
    report_id: str | None
    work_order_id: str
    version: int
    change: str
    body: bytes

    @property
    def case(self) -> tuple[str, str]:
        return self.system, self.external_id


def payload(change: WorkOrderChange, public: str, system: str, external_id: str,
            report_id: str | None) -> dict[str, Any]:
    """The callback's JSON body (docs/integration.md): the case, the order and its state after the
    change — no personal data (the order's reporter ids, contacts and notes stay home)."""
    s = change.snapshot
    return {"callback_id": callback_id(system, external_id, s.work_order_id, change.version),
            "system": system, "external_id": external_id, "report_id": report_id,
            "work_order_id": s.work_order_id, "version": change.version,
            "change": public, "change_name": CHANGE_NAMES[public], "at": change.at.isoformat(),
            "status": s.status, "category": s.category, "category_name": s.category_name,
            "priority": s.priority, "department": s.department,
            "due_at": s.due_at.isoformat(), "dispatched_at": _iso(s.dispatched_at),
            "closed_at": _iso(s.closed_at), "cancelled_at": _iso(s.cancelled_at),
            "merged_into": s.merged_into}


def _iso(t) -> str | None:
    return t.isoformat() if t is not None else None


def callbacks_for(change: WorkOrderChange, platforms: dict[str, Platform]) -> tuple[list[Callback], list[str]]:
    """The callbacks one change makes (platform by system), and the systems of cases on the
    order that no platform is configured for (counted, not called)."""
    if not change.snapshot.external_refs:
        return [], []
    public = public_change(change)
    joined = _newly_attached(change) if public is None else set()
    out: list[Callback] = []
    unknown: list[str] = []
    for ref in change.snapshot.external_refs:
        what = public if public is not None else ("registered" if ref.report_id in joined else None)
        if what is None:
            continue
        platform = platforms.get(ref.system)
        if platform is None:
            unknown.append(ref.system)
            continue
        if what not in platform.changes:
            continue
        body = orjson.dumps(payload(change, what, ref.system, ref.id, ref.report_id))
        out.append(Callback(callback_id(ref.system, ref.id, change.work_order_id, change.version),
                            platform.name, ref.system, ref.id, ref.report_id, change.work_order_id,
                            change.version, what, body))
    return out, unknown
