"""Every worker's view of all work orders, for the API and the console.

Folded from ``workorders.state`` and ``workorders.rejected`` (all partitions, from the
console's retention back), so any worker answers for any order, not only those its
partitions own.  Per order it keeps the latest snapshot (compressed,
``citybrain.packing``), a small summary for filtering, and the timeline entries; live
changes fan out to the SSE subscribers.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import sys
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from citybrain import packing
from citybrain.domain.timeline import timeline


def _intern(s: str | None) -> str | None:
    return sys.intern(s) if s else None


@dataclass(slots=True)
class _Entry:
    version: int
    created_at: str
    updated_at: str
    status: str
    department: str | None
    grid_code: str
    street_code: str
    latest: bytes                  # {"snapshot": …} JSON; packed once it goes quiet
    packed: bool = False
    steps: list[tuple] = field(default_factory=list)       # (version, type, at, actor, supervision, status, note, part)
    assists: tuple[str, ...] = ()   # assisting departments (any part state)
    emergency_level: str | None = None
    refusals: list[dict] = field(default_factory=list)


class OrderView:
    def __init__(self):
        self.orders: dict[str, _Entry] = {}
        # (created_at, id) ascending: a page walks back from the newest and stops when full,
        # so a list costs the page, not the orders held (measured 34k orders: see
        # docs/performance.md "A year of history").
        self.by_created: list[tuple[str, str]] = []
        self.subscribers: set[asyncio.Queue] = set()
        self.hot: set[str] = set()     # orders whose latest change is held uncompressed
        self._actors: dict[tuple, dict] = {}   # one shared dict per distinct actor (memory)
        self.by_report: dict[str, str] = {}    # report id → the order it joined (反馈)

    def _actor(self, actor: dict) -> dict:
        key = (actor.get("role"), actor.get("id"), actor.get("department"), actor.get("grid_prefix"))
        shared = self._actors.get(key)
        if shared is None:
            shared = self._actors[key] = actor
        return shared

    # -- folding ---------------------------------------------------------------

    def add_state(self, state: dict) -> None:
        """One ``workorders.state`` record (``OrderState``) as parsed JSON: the order's
        latest snapshot and its timeline.  An older or equal version (a redelivery, a
        daily rewrite of an open order) changes nothing."""
        wo, version, snap = state["work_order_id"], state["version"], state["snapshot"]
        entry = self.orders.get(wo)
        if entry is not None and version <= entry.version:
            return
        known = entry.version if entry is not None else 0
        latest = orjson.dumps({"snapshot": snap})
        loc = snap["location"]
        if entry is None:
            entry = self.orders[wo] = _Entry(version, snap["created_at"], state["at"], sys.intern(snap["status"]),
                                             _intern(snap.get("department")), sys.intern(loc["grid_code"]),
                                             sys.intern(loc["street_code"]), latest)
            bisect.insort(self.by_created, (entry.created_at, wo))
        else:
            entry.version, entry.updated_at, entry.status = version, state["at"], sys.intern(snap["status"])
            entry.department, entry.latest, entry.packed = _intern(snap.get("department")), latest, False
        self.hot.add(wo)
        events = snap.get("events") or ()
        for e in events[-(version - known):] if known else events:
            if e.get("report_id"):
                self.by_report[e["report_id"]] = wo
        entry.assists = tuple(sys.intern(a["department"]) for a in snap.get("assists") or ())
        entry.emergency_level = snap.get("emergency_level")
        entry.steps = [(s["version"], sys.intern(s["type"]), s["at"], self._actor(s["actor"]), s.get("supervision"),
                        sys.intern(s["status"]), s.get("note"), s.get("part")) for s in state["steps"]]
        if self.subscribers:
            for step in state["steps"]:
                if step["version"] > known:
                    self._publish({"kind": "change", "work_order_id": wo, "version": step["version"],
                                   "type": step["type"], "at": step["at"], "snapshot": snap})

    def evict_closed(self, before: str) -> int:
        """Forget closed and cancelled orders last changed before ``before`` (ISO time): the
        view is for the live board and recent history; the log keeps everything and the
        evaluation keeps its own compact facts.  Without this every worker's view grew
        with every order the city ever had."""
        cutoff = datetime.fromisoformat(before)
        gone = [wo for wo, e in self.orders.items()
                if e.status in ("closed", "cancelled") and datetime.fromisoformat(e.updated_at) < cutoff]
        for wo in gone:
            del self.orders[wo]
            self.hot.discard(wo)
        if gone:
            self.by_created = [key for key in self.by_created if key[1] in self.orders]
            self.by_report = {r: wo for r, wo in self.by_report.items() if wo in self.orders}
        return len(gone)

    def compact(self) -> int:
        """Compress the latest change of every order that was not touched since the last
        call; returns how many."""
        n = 0
        for wo in self.hot:
            entry = self.orders.get(wo)
            if entry is not None and not entry.packed:
                entry.latest, entry.packed = packing.pack(entry.latest), True
                n += 1
        self.hot = set()
        return n

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
        if entry is None:
            return None
        return orjson.loads(packing.unpack(entry.latest) if entry.packed else entry.latest)["snapshot"]

    def timeline(self, wo: str) -> list[dict]:
        entry = self.orders.get(wo)
        if entry is None:
            return []
        changes = [{"work_order_id": wo, "version": v, "type": t, "at": at, "actor": actor,
                    "supervision": sup, "note": note, "snapshot": {"status": st}, "part": part}
                   for v, t, at, actor, sup, st, note, part in entry.steps]
        return timeline(changes, entry.refusals)

    def query(self, *, status: set[str] | None = None, department: str | None = None,
              grid: str | None = None, street: str | None = None, district: str | None = None,
              since: datetime | None = None,
              visible=None, limit: int = 50, cursor: str | None = None,
              emergency: set[str] | None = None) -> tuple[list[dict], str | None]:
        """Newest first by creation, keyset-paged: ``cursor`` is opaque to clients.
        ``department`` matches the lead and the assisting departments; ``emergency``:
        emergency levels (``none`` for orders without one)."""
        after = decode_cursor(cursor) if cursor else None
        keys = self.by_created
        i = bisect.bisect_left(keys, after) if after is not None else len(keys)
        page: list[dict] = []
        last_key: tuple[str, str] | None = None
        out: str | None = None
        while i > 0:
            i -= 1
            key = keys[i]
            e = self.orders[key[1]]
            if status and e.status not in status:
                continue
            if department is not None and e.department != department and department not in e.assists:
                continue
            if emergency and (e.emergency_level or "none") not in emergency:
                continue
            if grid and not e.grid_code.startswith(grid):
                continue
            if street and e.street_code != street:
                continue
            if district and not e.street_code.startswith(district):   # codes nest: 6 of 9 digits
                continue
            if since is not None and datetime.fromisoformat(e.updated_at) < since:
                continue
            snap = self.snapshot(key[1])
            if snap is None or (visible is not None and not visible(snap)):
                continue
            if len(page) == limit:      # one more exists: the next page starts after the last
                out = encode_cursor(last_key) if last_key is not None else None
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
