"""Incident fusion (一事一单): which open work order an event belongs to.

An event joins an open order of the same fusion group when

- it comes from a device or camera already attached to the order, or
- it lies within the category's radius of the order's anchor (its first location)
  and its time falls within the window around the order's first..last event time.

Otherwise it opens a new order whose id is derived from the event id, so a replay
opens the same order again, never a second one.  A recovery event is recorded on
the open order of its device, and opens nothing.  Closed and cancelled orders
leave the index, so a repeat alarm afterwards opens a new order.

The index holds one fusion group's open orders; the stream keys events by group so
every candidate order of an event lives in the same partition, whatever street or
grid border lies between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from citybrain.domain.geo import distance_m
from citybrain.domain.ids import stable_id
from citybrain.domain.routing import Router


@dataclass(slots=True)
class OpenOrder:
    work_order_id: str
    group: str
    category: str
    lon: float
    lat: float
    first_at: float          # event time, epoch seconds
    last_at: float
    finders: set[str] = field(default_factory=set)     # device/camera ids
    event_ids: set[str] = field(default_factory=set)

    def to_dict(self) -> dict:
        return {"id": self.work_order_id, "g": self.group, "c": self.category, "lon": self.lon,
                "lat": self.lat, "f": self.first_at, "l": self.last_at,
                "fd": sorted(self.finders), "e": sorted(self.event_ids)}

    @classmethod
    def from_dict(cls, d: dict) -> "OpenOrder":
        return cls(d["id"], d["g"], d["c"], d["lon"], d["lat"], d["f"], d["l"],
                   set(d["fd"]), set(d["e"]))


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

    @classmethod
    def of(cls, event) -> "FusionEvent":
        return cls(event.event_id, event.kind, event.category, event.location.lon,
                   event.location.lat, _epoch(event.occurred_at),
                   event.device_id or event.camera_id)


Action = Literal["open", "join", "recovery", "duplicate", "orphan_recovery"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    work_order_id: str | None


class FusionIndex:
    """The open orders of one fusion group (small: a group rarely has many open)."""

    def __init__(self, orders: list[OpenOrder] | None = None):
        self.orders: dict[str, OpenOrder] = {o.work_order_id: o for o in orders or []}

    def to_list(self) -> list[dict]:
        return [o.to_dict() for o in self.orders.values()]

    @classmethod
    def from_list(cls, data: list[dict] | None) -> "FusionIndex":
        return cls([OpenOrder.from_dict(d) for d in data or []])

    def close(self, work_order_id: str) -> None:
        self.orders.pop(work_order_id, None)

    def fuse(self, ev: FusionEvent, router: Router) -> Decision:
        for order in self.orders.values():
            if ev.event_id in order.event_ids:
                return Decision("duplicate", order.work_order_id)
        if ev.kind == "recovery":
            order = self._by_finder(ev.finder)
            if order is None:
                return Decision("orphan_recovery", None)
            order.event_ids.add(ev.event_id)
            return Decision("recovery", order.work_order_id)
        order = self._by_finder(ev.finder) or self._nearest(ev, router)
        if order is not None:
            order.event_ids.add(ev.event_id)
            if ev.finder:
                order.finders.add(ev.finder)
            order.first_at = min(order.first_at, ev.at)
            order.last_at = max(order.last_at, ev.at)
            return Decision("join", order.work_order_id)
        group = router.group(ev.category)
        order = OpenOrder(stable_id("WO", ev.event_id), group, ev.category, ev.lon, ev.lat,
                          ev.at, ev.at, {ev.finder} if ev.finder else set(), {ev.event_id})
        self.orders[order.work_order_id] = order
        return Decision("open", order.work_order_id)

    def _by_finder(self, finder: str | None) -> OpenOrder | None:
        if not finder:
            return None
        for order in self.orders.values():
            if finder in order.finders:
                return order
        return None

    def _nearest(self, ev: FusionEvent, router: Router) -> OpenOrder | None:
        rule = router.fusion(ev.category)
        group = router.group(ev.category)
        window = rule.window_minutes * 60.0
        best: tuple[float, str] | None = None
        for order in self.orders.values():
            if order.group != group:
                continue
            if not (order.first_at - window <= ev.at <= order.last_at + window):
                continue
            # The wider of the two categories' radii: a camera's ponding alert and a
            # gauge's flood alarm of one group meet whichever arrives first.
            radius = max(rule.radius_m, router.fusion(order.category).radius_m)
            d = distance_m(ev.lon, ev.lat, order.lon, order.lat)
            if d <= radius and (best is None or (d, order.work_order_id) < best):
                best = (d, order.work_order_id)
        return self.orders[best[1]] if best else None


def _epoch(t: datetime) -> float:
    return t.timestamp()
