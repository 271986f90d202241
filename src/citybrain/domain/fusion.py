"""Incident fusion (一事一单): which open work order an event belongs to.

An event joins an open order of the same fusion group when

- it comes from a device or camera already attached to the order, or
- it lies within the category's radius of the order's anchor (its first location)
  and its time falls within the window around the order's first..last event time.

Otherwise it opens a new order whose id is derived from the event id, so a replay
opens the same order again, never a second one.  A recovery event is recorded on
the open order of its device, and opens nothing.  Closed and cancelled orders
leave the index, so a repeat alarm afterwards opens a new order — but their event ids
stay known (``retire``): any of their events delivered again is a duplicate, never a
new order.

The index holds one fusion group's open orders; the stream keys events by group so
every candidate order of an event lives in the same partition, whatever street or
grid border lies between them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from citybrain.domain.geo import distance_m
from citybrain.domain.ids import stable_id
from citybrain.domain.routing import Router
from citybrain.wire.models import CityEvent, WorkOrder


@dataclass(slots=True)
class OpenOrder:
    work_order_id: str
    group: str
    category: str
    lon: float
    lat: float
    first_at: float          # event time, epoch seconds
    last_at: float
    # Tuples, not sets: an entry is usually 1-3 ids, and 100k open orders held two empty
    # sets of 216 bytes each (measured: the index was 900 bytes per order).
    finders: tuple[str, ...] = ()       # device/camera ids
    event_ids: tuple[str, ...] = ()
    # needs_location: its point is a placeholder, so nothing joins it by distance (it is
    # kept out of the spatial hash).
    alone: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.work_order_id, "g": self.group, "c": self.category, "lon": self.lon,
             "lat": self.lat, "f": self.first_at, "l": self.last_at,
             "fd": sorted(self.finders), "e": sorted(self.event_ids)}
        return {**d, "a": True} if self.alone else d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpenOrder:
        return cls(d["id"], sys.intern(d["g"]), sys.intern(d["c"]), d["lon"], d["lat"], d["f"], d["l"],
                   tuple(d["fd"]), tuple(d["e"]), bool(d.get("a", False)))


@dataclass(frozen=True, slots=True)
class FusionEvent:
    """What fusion needs of a CityEvent."""

    event_id: str
    kind: str            # alarm | recovery | report
    category: str
    lon: float
    lat: float
    at: float            # occurred_at, epoch seconds
    finder: str | None   # device_id or camera_id
    alone: bool = False  # needs_location: a placeholder point, so it joins nothing

    @classmethod
    def of(cls, event: CityEvent) -> FusionEvent:
        return cls(event.event_id, event.kind, event.category, event.location.lon,
                   event.location.lat, _epoch(event.occurred_at),
                   event.device_id or event.camera_id, event.needs_location)


Action = Literal["open", "join", "recovery", "duplicate", "orphan_recovery"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    work_order_id: str | None


CELL_DEG = 0.002  # ~220 m north-south, ~180 m east-west here


def _cell(lon: float, lat: float) -> tuple[int, int]:
    return math.floor(lon / CELL_DEG), math.floor(lat / CELL_DEG)


class FusionIndex:
    """Open orders (of any number of groups) with a spatial hash, so a lookup looks at
    the few orders near the event, not at every open order of the city."""

    def __init__(self, orders: list[OpenOrder] | None = None):
        self.orders: dict[str, OpenOrder] = {}
        self._cells: dict[tuple[str, int, int], list[str]] = {}
        self._by_finder: dict[tuple[str, str], str] = {}
        self._by_event: dict[str, str] = {}
        self._retired: dict[str, str] = {}   # event id → its closed/cancelled order
        for order in orders or []:
            self.add(order)

    def __len__(self) -> int:
        return len(self.orders)

    def to_list(self) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self.orders.values()]

    @classmethod
    def from_list(cls, data: list[dict[str, Any]] | None) -> FusionIndex:
        return cls([OpenOrder.from_dict(d) for d in data or []])

    def add(self, order: OpenOrder) -> None:
        self.orders[order.work_order_id] = order
        if not order.alone:
            cx, cy = _cell(order.lon, order.lat)
            cell = self._cells.setdefault((order.group, cx, cy), [])
            if order.work_order_id not in cell:
                cell.append(order.work_order_id)
        for f in order.finders:
            self._by_finder[(order.group, f)] = order.work_order_id
        for e in order.event_ids:
            self._by_event[e] = order.work_order_id

    def retire(self, work_order_id: str, event_ids: Iterable[str]) -> None:
        """Remember the events of a closed or cancelled order: a replay of any of them is
        a duplicate (kept while the order is held in state — docs/architecture.md)."""
        for e in event_ids:
            self._retired[e] = work_order_id

    def forget_retired(self, work_order_id: str, event_ids: Iterable[str]) -> None:
        """The order left hot state (closed long enough ago that its inputs are gone)."""
        for e in event_ids:
            if self._retired.get(e) == work_order_id:
                del self._retired[e]

    def close(self, work_order_id: str) -> None:
        order = self.orders.pop(work_order_id, None)
        if order is None:
            return
        self.retire(work_order_id, order.event_ids)
        cx, cy = _cell(order.lon, order.lat)
        cell = self._cells.get((order.group, cx, cy))
        if cell is not None:
            if work_order_id in cell:
                cell.remove(work_order_id)
            if not cell:
                del self._cells[(order.group, cx, cy)]
        for f in order.finders:
            if self._by_finder.get((order.group, f)) == work_order_id:
                del self._by_finder[(order.group, f)]
        for e in order.event_ids:
            self._by_event.pop(e, None)

    def fuse(self, ev: FusionEvent, router: Router) -> Decision:
        known = self._by_event.get(ev.event_id) or self._retired.get(ev.event_id)
        if known is not None:
            return Decision("duplicate", known)
        group = router.group(ev.category)
        if ev.kind == "recovery":
            order = self._finder_order(group, ev.finder)
            if order is None:
                return Decision("orphan_recovery", None)
            self._attach(order, ev, add_finder=False)
            return Decision("recovery", order.work_order_id)
        order = None if ev.alone else self._finder_order(group, ev.finder) or self._nearest(ev, group, router)
        if order is not None:
            self._attach(order, ev, add_finder=True)
            return Decision("join", order.work_order_id)
        order = OpenOrder(work_order_id_for(group, ev.event_id), group, ev.category, ev.lon, ev.lat,
                          ev.at, ev.at, (ev.finder,) if ev.finder else (), (ev.event_id,), ev.alone)
        self.add(order)
        return Decision("open", order.work_order_id)

    def _attach(self, order: OpenOrder, ev: FusionEvent, add_finder: bool) -> None:
        order.event_ids = (*order.event_ids, ev.event_id)   # new: duplicates returned earlier
        self._by_event[ev.event_id] = order.work_order_id
        if add_finder and ev.finder:
            if ev.finder not in order.finders:
                order.finders = (*order.finders, ev.finder)
            self._by_finder[(order.group, ev.finder)] = order.work_order_id
        if ev.kind != "recovery":
            order.first_at = min(order.first_at, ev.at)
            order.last_at = max(order.last_at, ev.at)

    def _finder_order(self, group: str, finder: str | None) -> OpenOrder | None:
        if not finder:
            return None
        wo = self._by_finder.get((group, finder))
        return self.orders.get(wo) if wo else None

    def _nearest(self, ev: FusionEvent, group: str, router: Router) -> OpenOrder | None:
        rule = router.fusion(ev.category)
        window = rule.window_minutes * 60.0
        reach = max(rule.radius_m, router.max_radius(group))
        cx, cy = _cell(ev.lon, ev.lat)
        ky = math.ceil(reach / (CELL_DEG * 111_195.0))
        kx = math.ceil(reach / (CELL_DEG * 111_195.0 * max(math.cos(math.radians(ev.lat)), 0.01)))
        best: tuple[float, str] | None = None
        for dx in range(-kx, kx + 1):
            for dy in range(-ky, ky + 1):
                for wo in self._cells.get((group, cx + dx, cy + dy), ()):
                    order = self.orders[wo]
                    if not (order.first_at - window <= ev.at <= order.last_at + window):
                        continue
                    # The wider of the two categories' radii: a camera's ponding alert and
                    # a gauge's flood alarm of one group meet whichever came first.
                    radius = max(rule.radius_m, router.fusion(order.category).radius_m)
                    d = distance_m(ev.lon, ev.lat, order.lon, order.lat)
                    if d <= radius and (best is None or (d, wo) < best):
                        best = (d, wo)
        return self.orders[best[1]] if best else None


def _epoch(t: datetime) -> float:
    return t.timestamp()


def work_order_id_for(group: str, first_event_id: str) -> str:
    """Deterministic, and names the fusion group: whoever holds only the id (a command
    from a department) can route it to the partition that owns the order."""
    return f"WO-{group}-{stable_id('', first_event_id)[1:]}"


def group_of(work_order_id: str) -> str | None:
    parts = work_order_id.split("-")
    return "-".join(parts[1:-1]) or None if len(parts) >= 3 and parts[0] == "WO" else None


def open_entry(snapshot: WorkOrder) -> OpenOrder:
    """The index entry of an open work-order snapshot (rebuilding after a restart)."""
    alarms = [e for e in snapshot.events if e.kind != "recovery"] or snapshot.events
    return OpenOrder(
        snapshot.work_order_id, sys.intern(snapshot.fusion_group), sys.intern(snapshot.category),
        snapshot.location.lon, snapshot.location.lat,
        min(e.occurred_at.timestamp() for e in alarms), max(e.occurred_at.timestamp() for e in alarms),
        tuple(dict.fromkeys(snapshot.finders)), tuple(dict.fromkeys(e.event_id for e in snapshot.events)),
        snapshot.needs_location)
