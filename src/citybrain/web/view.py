"""Every worker's view of all work orders, for the API and the console.

Folded from ``workorders.events`` and ``workorders.rejected`` (all partitions), so any
worker answers for any order, not only those its partitions own.  Per order it keeps the
latest snapshot (zlib-compressed), a small summary for filtering, and the timeline
entries; live changes fan out to the SSE subscribers.
"""

from __future__ import annotations

import asyncio
import base64
import zlib
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from citybrain.domain.timeline import timeline


@dataclass(slots=True)
class _Entry:
    version: int
    created_at: str
    updated_at: str
    status: str
    department: str | None
    grid_code: str
    street_code: str
    snapshot: bytes                       # zlib(JSON)
    changes: list[dict] = field(default_factory=list)      # timeline-relevant part of each change
    refusals: list[dict] = field(default_factory=list)


def _slim(change: dict) -> dict:
    """What the timeline needs of a change (the snapshot itself is kept once, latest)."""
    snap = change["snapshot"]
    return {"work_order_id": change["work_order_id"], "version": change["version"], "type": change["type"],
            "at": change["at"], "actor": change["actor"], "supervision": change.get("supervision"),
            "snapshot": {"status": snap["status"], "notes": snap.get("notes", [])[-1:]}}


class OrderView:
    def __init__(self):
        self.orders: dict[str, _Entry] = {}
        self.subscribers: set[asyncio.Queue] = set()

    # -- folding ---------------------------------------------------------------

    def add_change(self, change: dict) -> None:
        wo, version, snap = change["work_order_id"], change["version"], change["snapshot"]
        entry = self.orders.get(wo)
        if entry is not None and version <= entry.version:
            return   # redelivered
        loc = snap["location"]
        packed = zlib.compress(orjson.dumps(snap), 1)
        if entry is None:
            entry = self.orders[wo] = _Entry(version, snap["created_at"], change["at"], snap["status"],
                                             snap.get("department"), loc["grid_code"], loc["street_code"], packed)
        else:
            entry.version, entry.updated_at, entry.status = version, change["at"], snap["status"]
            entry.department, entry.snapshot = snap.get("department"), packed
        entry.changes.append(_slim(change))
        self._publish({"kind": "change", "work_order_id": wo, "version": version, "type": change["type"],
                       "at": change["at"], "snapshot": snap})

    def add_rejection(self, rejection: dict) -> None:
        wo = rejection["command"]["work_order_id"]
        entry = self.orders.get(wo)
        if entry is None:
            return   # an unknown order: nothing to show it on (it is on workorders.rejected)
        key = (rejection["command"]["command_id"], rejection["reason"])
        if any((r["command"]["command_id"], r["reason"]) == key for r in entry.refusals):
            return
        entry.refusals.append(rejection)
        self._publish({"kind": "refusal", "work_order_id": wo, "at": rejection["at"],
                       "reason": rejection["reason"], "detail": rejection["detail"],
                       "action": rejection["command"]["action"], "snapshot": self.snapshot(wo)})

    def _publish(self, message: dict) -> None:
        for q in list(self.subscribers):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:      # a stalled client: dropped, its browser reconnects
                self.subscribers.discard(q)

    # -- reading ---------------------------------------------------------------

    def snapshot(self, wo: str) -> dict | None:
        entry = self.orders.get(wo)
        return None if entry is None else orjson.loads(zlib.decompress(entry.snapshot))

    def timeline(self, wo: str) -> list[dict]:
        entry = self.orders.get(wo)
        return [] if entry is None else timeline(entry.changes, entry.refusals)

    def query(self, *, status: set[str] | None = None, department: str | None = None,
              grid: str | None = None, street: str | None = None, since: datetime | None = None,
              visible=None, limit: int = 50, cursor: str | None = None) -> tuple[list[dict], str | None]:
        """Newest first by creation, keyset-paged: ``cursor`` is opaque to clients."""
        after = decode_cursor(cursor) if cursor else None
        rows = []
        for wo, e in self.orders.items():
            if status and e.status not in status:
                continue
            if department is not None and e.department != department:
                continue
            if grid and not e.grid_code.startswith(grid):
                continue
            if street and e.street_code != street:
                continue
            if since is not None and datetime.fromisoformat(e.updated_at) < since:
                continue
            key = (e.created_at, wo)
            if after is not None and key >= after:
                continue
            rows.append((key, wo))
        rows.sort(reverse=True)
        page: list[dict] = []
        last_key, out = None, None
        for key, wo in rows:
            snap = self.snapshot(wo)
            if visible is not None and not visible(snap):
                continue
            if len(page) == limit:      # one more exists: the next page starts after the last
                out = encode_cursor(last_key)
                break
            page.append(snap)
            last_key = key
        return page, out


def encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created, wo = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(created), str(wo)
    except Exception as e:  # noqa: BLE001 - anything malformed is the client's cursor
        raise ValueError("cursor is not one this server gave out") from e
