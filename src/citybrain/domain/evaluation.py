"""Evaluation (综合评价) of departments from the work-order log.

Folded from ``workorders.events`` alone, so the same log always gives the same figures,
whatever order the orders' changes arrive in (each order's own changes are in version
order in its partition; a change seen twice — at-least-once delivery — is ignored).

Definitions (docs/lifecycle.md), per department and period (a calendar month, or day, in
the city's time zone):

- the orders counted are those **closed (结案) in the period**, under the department
  that closed them; cancelled (作废) orders are not rated;
- on-time closure rate (按期结案率): closed with ``closed_at ≤ due_at`` (the due time
  after extensions) / closed;
- rework rate (返工率): closed orders that were reworked at least once / closed;
- extension rate (延期率): closed orders extended at least once / closed;
- return rate (退回率): returns (退回) by the department in the period / dispatches (派遣)
  to it in the period;
- times, over the closed orders, in hours: to dispatch (立案→派遣, the last dispatch),
  accept (派遣→签收), handle (签收→处置反馈, the last feedback), close (立案→结案);
  median and p90 by nearest rank.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

STAGES = ("dispatch", "accept", "handle", "close")
ALL = "*"   # the row for every department together


@dataclass(slots=True)
class _Order:
    version: int = 0
    department: str | None = None
    status: str = "registered"
    created_at: datetime | None = None
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    handled_at: datetime | None = None
    closed_at: datetime | None = None
    due_at: datetime | None = None
    rework_count: int = 0
    extension_count: int = 0


@dataclass
class Figures:
    department: str
    closed: int = 0
    on_time: int = 0
    reworked: int = 0
    extended: int = 0
    dispatches: int = 0
    returns: int = 0
    hours: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def as_dict(self) -> dict:
        def rate(n: int, d: int) -> float | None:
            return round(n / d, 4) if d else None
        out = {"department": self.department, "closed": self.closed, "on_time": self.on_time,
               "on_time_closure_rate": rate(self.on_time, self.closed),
               "rework_rate": rate(self.reworked, self.closed),
               "extension_rate": rate(self.extended, self.closed),
               "dispatches": self.dispatches, "returns": self.returns,
               "return_rate": rate(self.returns, self.dispatches)}
        for stage in STAGES:
            values = sorted(self.hours[stage])
            out[f"{stage}_hours_p50"] = quantile(values, 0.5)
            out[f"{stage}_hours_p90"] = quantile(values, 0.9)
        return out


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not sorted_values:
        return None
    return round(sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)], 4)


def _dt(v) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    return datetime.fromisoformat(v)


class Evaluation:
    def __init__(self, timezone: str = "Asia/Shanghai"):
        self.tz = ZoneInfo(timezone)
        self.orders: dict[str, _Order] = {}
        # (work_order_id, version) → (department, at): idempotent under redelivery
        self.dispatches: dict[tuple[str, int], tuple[str, datetime]] = {}
        self.returns: dict[tuple[str, int], tuple[str, datetime]] = {}

    def add(self, change: dict) -> None:
        """One ``workorders.events`` record, as parsed JSON."""
        wo, version, snap = change["work_order_id"], change["version"], change["snapshot"]
        order = self.orders.get(wo)
        if order is None:
            order = self.orders[wo] = _Order()
        if version <= order.version:
            return   # seen already
        at = _dt(change["at"])
        kind = change["type"]
        if kind == "dispatched" and snap.get("department"):
            self.dispatches[(wo, version)] = (snap["department"], at)
        elif kind == "returned":
            who = order.department or (change.get("actor") or {}).get("department")
            if who:
                self.returns[(wo, version)] = (who, at)
        order.version = version
        order.department = snap.get("department")
        order.status = snap["status"]
        for name in ("created_at", "dispatched_at", "accepted_at", "handled_at", "closed_at", "due_at"):
            setattr(order, name, _dt(snap.get(name)))
        order.rework_count = snap.get("rework_count", 0)
        order.extension_count = snap.get("extension_count", 0)

    def period_range(self, period: str) -> tuple[datetime, datetime]:
        """``YYYY-MM`` or ``YYYY-MM-DD`` in the city's time zone → [start, end)."""
        if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", period or ""):
            raise ValueError(f"period must be YYYY-MM or YYYY-MM-DD, not {period!r}")
        parts = [int(p) for p in period.split("-")]
        if len(parts) == 2:
            y, m = parts
            start = datetime(y, m, 1, tzinfo=self.tz)
            end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=self.tz)
        elif len(parts) == 3:
            start = datetime(*parts, tzinfo=self.tz)
            end = start + timedelta(days=1)
        else:
            raise ValueError(f"period must be YYYY-MM or YYYY-MM-DD, not {period!r}")
        return start, end

    def figures(self, period: str) -> dict[str, dict]:
        """department → figures for the period, plus ``*`` for all departments."""
        start, end = self.period_range(period)
        rows: dict[str, Figures] = {}

        def row(dept: str) -> list[Figures]:
            for d in (dept, ALL):
                if d not in rows:
                    rows[d] = Figures(d)
            return [rows[dept], rows[ALL]]

        for o in self.orders.values():
            if o.status != "closed" or o.closed_at is None or not (start <= o.closed_at < end):
                continue
            spans = {"dispatch": (o.created_at, o.dispatched_at), "accept": (o.dispatched_at, o.accepted_at),
                     "handle": (o.accepted_at, o.handled_at), "close": (o.created_at, o.closed_at)}
            for r in row(o.department or "unassigned"):
                r.closed += 1
                r.on_time += o.due_at is not None and o.closed_at <= o.due_at
                r.reworked += o.rework_count > 0
                r.extended += o.extension_count > 0
                for stage, (a, b) in spans.items():
                    if a is not None and b is not None and b >= a:
                        r.hours[stage].append((b - a).total_seconds() / 3600)
        for (dept, at) in self.dispatches.values():
            if start <= at < end:
                for r in row(dept):
                    r.dispatches += 1
        for (dept, at) in self.returns.values():
            if start <= at < end:
                for r in row(dept):
                    r.returns += 1
        return {d: f.as_dict() for d, f in sorted(rows.items())}

    def period_of(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m")
