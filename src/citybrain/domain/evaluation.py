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
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

STAGES = ("dispatch", "accept", "handle", "close")
ALL = "*"   # the row for every department together


@dataclass(frozen=True, slots=True)
class _Closed:
    """What the figures need of one closed order: fixed once it is closed."""
    department: str
    day: str            # YYYY-MM-DD, city time
    on_time: bool
    reworked: bool
    extended: bool
    hours: tuple[float | None, ...]   # per STAGES


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
    """Memory stays small however long the log: an open order is (version, department);
    a closed one is its ``_Closed`` facts; dispatches and returns are counts per day."""

    def __init__(self, timezone: str = "Asia/Shanghai"):
        self.tz = ZoneInfo(timezone)
        self.open: dict[str, tuple[int, str | None]] = {}
        self.closed_version: dict[str, int] = {}
        self.closed_by_month: dict[str, list[_Closed]] = {}
        self.dispatches: Counter[tuple[str, str]] = Counter()   # (day, department)
        self.returns: Counter[tuple[str, str]] = Counter()

    @property
    def orders(self) -> int:
        return len(self.open) + len(self.closed_version)

    def _day(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m-%d")

    def add(self, change: dict) -> None:
        """One ``workorders.events`` record, as parsed JSON."""
        wo, version, snap = change["work_order_id"], change["version"], change["snapshot"]
        if wo in self.closed_version:
            self.closed_version[wo] = max(version, self.closed_version[wo])   # comments after 结案
            return
        seen, department = self.open.get(wo, (0, None))
        if version <= seen:
            return   # seen already (at-least-once delivery)
        kind = change["type"]
        if kind == "dispatched" and snap.get("department"):
            self.dispatches[(self._day(_dt(change["at"])), sys.intern(snap["department"]))] += 1
        elif kind == "returned":
            who = department or (change.get("actor") or {}).get("department")
            if who:
                self.returns[(self._day(_dt(change["at"])), who)] += 1
        status = snap["status"]
        if status == "closed":
            self.open.pop(wo, None)   # its facts move to the closed list
            self.closed_version[wo] = version
            facts = self._closed(snap)
            self.closed_by_month.setdefault(facts.day[:7], []).append(facts)
        elif status == "cancelled":
            self.open.pop(wo, None)
            self.closed_version[wo] = version
        else:
            dept = snap.get("department")
            self.open[wo] = (version, sys.intern(dept) if dept else None)

    def _closed(self, snap: dict) -> _Closed:
        t = {k: _dt(snap.get(k)) for k in ("created_at", "dispatched_at", "accepted_at", "handled_at",
                                           "closed_at", "due_at")}
        spans = ((t["created_at"], t["dispatched_at"]), (t["dispatched_at"], t["accepted_at"]),
                 (t["accepted_at"], t["handled_at"]), (t["created_at"], t["closed_at"]))
        hours = tuple((b - a).total_seconds() / 3600 if a is not None and b is not None and b >= a else None
                      for a, b in spans)
        closed = t["closed_at"]
        return _Closed(sys.intern(snap.get("department") or "unassigned"), self._day(closed),
                       t["due_at"] is not None and closed <= t["due_at"],
                       snap.get("rework_count", 0) > 0, snap.get("extension_count", 0) > 0, hours)

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
        first, last = start.strftime("%Y-%m-%d"), (end - timedelta(days=1)).strftime("%Y-%m-%d")
        rows: dict[str, Figures] = {}

        def row(dept: str) -> list[Figures]:
            for d in (dept, ALL):
                if d not in rows:
                    rows[d] = Figures(d)
            return [rows[dept], rows[ALL]]

        for facts in self.closed_by_month.get(period[:7], []):
            if not first <= facts.day <= last:
                continue
            for r in row(facts.department):
                r.closed += 1
                r.on_time += facts.on_time
                r.reworked += facts.reworked
                r.extended += facts.extended
                for stage, h in zip(STAGES, facts.hours):
                    if h is not None:
                        r.hours[stage].append(h)
        for (day, dept), n in self.dispatches.items():
            if first <= day <= last:
                for r in row(dept):
                    r.dispatches += n
        for (day, dept), n in self.returns.items():
            if first <= day <= last:
                for r in row(dept):
                    r.returns += n
        return {d: f.as_dict() for d, f in sorted(rows.items())}

    def period_of(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m")
