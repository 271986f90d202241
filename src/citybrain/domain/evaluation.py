"""Evaluation (综合评价) of departments from the work-order log.

Folded from ``workorders.events`` alone, so the same log always gives the same figures,
whatever order the orders' changes arrive in (each order's own changes are in version
order in its partition; a change seen twice — at-least-once delivery — is ignored).

Definitions (docs/lifecycle.md), per department and period (a calendar month, or day, in
the city's time zone):

- the orders counted are those **closed (结案) in the period**, under the department
  that closed them; cancelled (作废) and merged (并单) orders are not rated;
- on-time closure rate (按期结案率): closed with ``closed_at ≤ due_at`` (the due time
  after extensions) / closed;
- rework rate (返工率): closed orders that were reworked at least once / closed;
- extension rate (延期率): closed orders extended at least once / closed;
- return rate (退回率): returns (退回) by the department in the period / dispatches (派遣)
  to it in the period;
- assist work (协办), counted apart from the lead's: parts received (``assist_added``), parts
  handled and parts returned (``assist_returned``) by the assisting department, in the
  period of the change;
- satisfaction rate (满意率): visits (回访) that found the reporter satisfied or basically
  satisfied / visits, in the period of the visit, under the order's lead department;
- device health (设备完好率): the devices with an open device fault (设备故障) order now
  (``faulty_devices``); the rates are domain/device_health.py's ``device_rates``;
- times, over the closed orders, in hours: to dispatch (立案→派遣, the last dispatch),
  accept (派遣→签收), handle (签收→处置反馈, the last feedback), close (立案→结案);
  median and p90 by nearest rank.
"""

from __future__ import annotations

import base64
import math
import re
import sys
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from citybrain.wire.models import CLOSED_STATUSES

STAGES = ("dispatch", "accept", "handle", "close")
ASSIST_WORK = {"assist_added": "added", "assist_handled": "handled", "assist_returned": "returned"}
ALL = "*"   # the row for every department together
DISTRICT = "@"   # rows kept per district beside the departments' (key "@370306"): 市/区县 figures
CATEGORY = "#"   # and per category (key "#waterlogging"): 分类 figures, under the order's category then
PREFIX = {"department": "", "district": DISTRICT, "category": CATEGORY}
# A checkpoint's format: an older one (no category rows, no "format") is folded again from the log.
CHECKPOINT_FORMAT = 2


class DayFigures:
    """One department's orders closed on one day: counts and the stage hours, kept as
    arrays of doubles (the exact values a full replay sorts for its quantiles)."""

    __slots__ = ("closed", "on_time", "reworked", "extended", "hours")

    def __init__(self) -> None:
        self.closed = self.on_time = self.reworked = self.extended = 0
        self.hours = tuple(array("d") for _ in STAGES)

    def to_json(self) -> dict[str, Any]:
        return {"closed": self.closed, "on_time": self.on_time, "reworked": self.reworked,
                "extended": self.extended, "hours": [base64.b64encode(a.tobytes()).decode() for a in self.hours]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DayFigures:
        f = cls()
        f.closed, f.on_time, f.reworked, f.extended = d["closed"], d["on_time"], d["reworked"], d["extended"]
        for a, b64 in zip(f.hours, d["hours"], strict=False):
            a.frombytes(base64.b64decode(b64))
        return f


@dataclass
class Figures:
    department: str
    closed: int = 0
    on_time: int = 0
    reworked: int = 0
    extended: int = 0
    dispatches: int = 0
    returns: int = 0
    assists: int = 0
    assists_handled: int = 0
    assists_returned: int = 0
    visits: int = 0
    satisfied: int = 0
    hours: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def as_dict(self) -> dict[str, Any]:
        def rate(n: int, d: int) -> float | None:
            return round(n / d, 4) if d else None
        out = {"department": self.department, "closed": self.closed, "on_time": self.on_time,
               "on_time_closure_rate": rate(self.on_time, self.closed),
               "rework_rate": rate(self.reworked, self.closed),
               "extension_rate": rate(self.extended, self.closed),
               "dispatches": self.dispatches, "returns": self.returns,
               "return_rate": rate(self.returns, self.dispatches),
               "assists": self.assists, "assists_handled": self.assists_handled,
               "assists_returned": self.assists_returned, "visits": self.visits,
               "satisfaction_rate": rate(self.satisfied, self.visits)}
        for stage in STAGES:
            values = sorted(self.hours[stage])
            out[f"{stage}_hours_p50"] = quantile(values, 0.5)
            out[f"{stage}_hours_p90"] = quantile(values, 0.9)
        return out


def _district(snap: dict[str, Any]) -> str:
    return sys.intern(DISTRICT + ((snap.get("location") or {}).get("district_code") or ""))


def _places(snap: dict[str, Any]) -> tuple[str, str]:
    """The order's district row and category row."""
    return _district(snap), sys.intern(CATEGORY + (snap.get("category") or ""))


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not sorted_values:
        return None
    return round(sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)], 4)


def _dt(v: str | datetime | None) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    return datetime.fromisoformat(v)


def _at(v: str | datetime) -> datetime:
    """A time the record always has (a change's ``at``, a closed order's ``closed_at``)."""
    return v if isinstance(v, datetime) else datetime.fromisoformat(v)


class Evaluation:
    """Memory stays small however long the log: an open order is (version, department);
    a closed one is counts and hours in its closing day's ``DayFigures``, and its last
    version for ``keep_closed_days`` after closure (later copies of its changes are
    duplicates; the lifecycle makes no change to an order that long closed); dispatches
    and returns are counts per day.

    The whole state exports as a checkpoint (``checkpoint_meta`` and one record per day
    changed since the last export) so that a restart folds only the log's tail."""

    def __init__(self, timezone: str = "Asia/Shanghai", keep_closed_days: float = 15.0):
        self.tz = ZoneInfo(timezone)
        self.keep_closed = timedelta(days=keep_closed_days)
        self.open: dict[str, tuple[int, str | None]] = {}
        self.closed_version: dict[str, tuple[int, str]] = {}   # order → (version, closing day)
        self.days: dict[str, dict[str, DayFigures]] = {}        # closing day → department → figures
        self.dispatches: Counter[tuple[str, str]] = Counter()   # (day, department)
        self.returns: Counter[tuple[str, str]] = Counter()
        # assist work: (day, department, "added" | "handled" | "returned") → count
        self.assist_work: Counter[tuple[str, str, str]] = Counter()
        # visits: (day, department, satisfaction) → count
        self.visits: Counter[tuple[str, str, str]] = Counter()
        # open device-fault orders: order → [owner, kind, device count]
        self.device_faults: dict[str, list[Any]] = {}
        self.finished = 0          # orders ended (closed, cancelled, merged), ever
        self.latest_day = ""       # the latest day a change was made on
        self.changed_days: set[str] = set()   # since the last checkpoint export

    @property
    def orders(self) -> int:
        return len(self.open) + self.finished

    def _day(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m-%d")

    def add(self, change: dict[str, Any]) -> None:
        """One ``workorders.events`` record, as parsed JSON."""
        wo, version, snap = change["work_order_id"], change["version"], change["snapshot"]
        at = _at(change["at"])
        day = self._day(at)
        if day > self.latest_day:
            self._new_day(day)
        kind = change["type"]
        closed = self.closed_version.get(wo)
        if closed is not None:
            if kind == "visited" and version > closed[0]:   # 回访 after 结案
                self._count_visit(day, snap)
            self.closed_version[wo] = (max(version, closed[0]), closed[1])   # comments after 结案
            return
        seen, department = self.open.get(wo, (0, None))
        if version <= seen:
            return   # seen already (at-least-once delivery)
        if kind == "visited":
            self._count_visit(day, snap)
        places = _places(snap)
        if kind == "dispatched" and snap.get("department"):
            self.dispatches[(day, sys.intern(snap["department"]))] += 1
            for row in places:
                self.dispatches[(day, row)] += 1
        elif kind == "returned":
            who = department or (change.get("actor") or {}).get("department")
            if who:
                self.returns[(day, who)] += 1
                for row in places:
                    self.returns[(day, row)] += 1
        elif kind in ASSIST_WORK and change.get("part"):
            self.assist_work[(day, sys.intern(change["part"]), ASSIST_WORK[kind])] += 1
        status = snap["status"]
        if snap.get("category") == "device_fault":
            if status in CLOSED_STATUSES:
                self.device_faults.pop(wo, None)
            else:
                kind = "camera" if snap["events"] and snap["events"][0]["source"] == "video" else "sensor"
                finders = [str(f) for f in snap.get("finders") or ()]
                self.device_faults[wo] = [snap.get("department") or "", kind, len(finders) or 1, finders]
        if status in CLOSED_STATUSES:
            self.open.pop(wo, None)
            self.finished += 1
            closing_day = day
            if status == "closed":
                closing_day = self._count_closed(snap)
            self.closed_version[wo] = (version, closing_day)
        else:
            dept = snap.get("department")
            self.open[wo] = (version, sys.intern(dept) if dept else None)

    def _count_visit(self, day: str, snap: dict[str, Any]) -> None:
        visit = (snap.get("visits") or [{}])[-1]
        if visit.get("satisfaction"):
            self.visits[(day, sys.intern(snap.get("department") or "unassigned"), visit["satisfaction"])] += 1
            for row in _places(snap):
                self.visits[(day, row, visit["satisfaction"])] += 1

    def _new_day(self, day: str) -> None:
        """The log reached a new day: forget the versions of orders closed long before."""
        self.latest_day = day
        horizon = (datetime.fromisoformat(day) - self.keep_closed).strftime("%Y-%m-%d")
        for wo in [wo for wo, (_, d) in self.closed_version.items() if d < horizon]:
            del self.closed_version[wo]

    def _count_closed(self, snap: dict[str, Any]) -> str:
        t = {k: _dt(snap.get(k)) for k in ("created_at", "dispatched_at", "accepted_at", "handled_at",
                                           "closed_at", "due_at")}
        spans = ((t["created_at"], t["dispatched_at"]), (t["dispatched_at"], t["accepted_at"]),
                 (t["accepted_at"], t["handled_at"]), (t["created_at"], t["closed_at"]))
        closed = _at(snap["closed_at"])
        day = self._day(closed)
        hours = [(b - a).total_seconds() / 3600 if a is not None and b is not None and b >= a else None
                 for a, b in spans]
        for row in (sys.intern(snap.get("department") or "unassigned"), *_places(snap)):
            f = self.days.setdefault(day, {}).get(row)
            if f is None:
                f = self.days[day][row] = DayFigures()
            f.closed += 1
            due = t["due_at"]
            f.on_time += due is not None and closed <= due
            f.reworked += snap.get("rework_count", 0) > 0
            f.extended += snap.get("extension_count", 0) > 0
            for values, h in zip(f.hours, hours, strict=True):
                if h is not None:
                    values.append(h)
        self.changed_days.add(day)
        return day

    # -- checkpoint ----------------------------------------------------------------

    def checkpoint_meta(self) -> dict[str, Any]:
        """Everything but the days' figures, as JSON-ready data."""
        return {"open": self.open, "closed_version": self.closed_version, "finished": self.finished,
                "latest_day": self.latest_day,
                "dispatches": [[d, dept, n] for (d, dept), n in self.dispatches.items()],
                "returns": [[d, dept, n] for (d, dept), n in self.returns.items()],
                "assist_work": [[d, dept, what, n] for (d, dept, what), n in self.assist_work.items()],
                "visits": [[d, dept, how, n] for (d, dept, how), n in self.visits.items()],
                "device_faults": self.device_faults, "format": CHECKPOINT_FORMAT}

    def checkpoint_days(self, everything: bool = False) -> dict[str, dict[str, Any]]:
        """The days changed since the last call (``everything``: all), as JSON-ready data."""
        days = self.days if everything else self.changed_days
        out = {day: {dept: f.to_json() for dept, f in self.days[day].items()} for day in days}
        self.changed_days = set()
        return out

    def clear(self) -> None:
        self.restore({"open": {}, "closed_version": {}, "finished": 0, "latest_day": "", "dispatches": [],
                      "returns": []}, {})

    @staticmethod
    def current(meta: dict[str, Any]) -> bool:
        """Whether a checkpoint holds every row this version keeps (else: fold the log again)."""
        return bool(meta.get("format", 1) == CHECKPOINT_FORMAT)

    def restore(self, meta: dict[str, Any], days: dict[str, dict[str, Any]]) -> None:
        self.open = {wo: (v, sys.intern(d) if d else None) for wo, (v, d) in meta["open"].items()}
        self.closed_version = {wo: (v, d) for wo, (v, d) in meta["closed_version"].items()}
        self.finished, self.latest_day = meta["finished"], meta["latest_day"]
        self.dispatches = Counter({(d, sys.intern(dept)): n for d, dept, n in meta["dispatches"]})
        self.returns = Counter({(d, sys.intern(dept)): n for d, dept, n in meta["returns"]})
        self.assist_work = Counter({(d, sys.intern(dept), what): n
                                    for d, dept, what, n in meta.get("assist_work", ())})
        self.visits = Counter({(d, sys.intern(dept), how): n for d, dept, how, n in meta.get("visits", ())})
        self.device_faults = dict(meta.get("device_faults") or {})
        self.days = {day: {sys.intern(dept): DayFigures.from_json(f) for dept, f in depts.items()}
                     for day, depts in days.items()}
        self.changed_days = set()

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
            y, m, d = parts
            start = datetime(y, m, d, tzinfo=self.tz)
            end = start + timedelta(days=1)
        else:
            raise ValueError(f"period must be YYYY-MM or YYYY-MM-DD, not {period!r}")
        return start, end

    def figures(self, period: str, by: str = "department") -> dict[str, dict[str, Any]]:
        """department (``by="district"``: district code; ``by="category"``: category code,
        the order's category when it was dispatched, returned, visited or closed) →
        figures for the period, plus ``*`` for the whole city.  Assist work is a
        department's only."""
        if by not in PREFIX:
            raise ValueError(f"by must be department, district or category, not {by!r}")
        start, end = self.period_range(period)
        first, last = start.strftime("%Y-%m-%d"), (end - timedelta(days=1)).strftime("%Y-%m-%d")
        rows: dict[str, Figures] = {}
        prefix = PREFIX[by]
        districts = by != "department"    # rows under a prefix: no assist work

        def row(key: str) -> list[Figures]:
            if (key[:1] != prefix) if prefix else (key[:1] in (DISTRICT, CATEGORY)):
                return []
            dept = key[1:] if prefix else key
            for d in (dept, ALL):
                if d not in rows:
                    rows[d] = Figures(d)
            return [rows[dept], rows[ALL]]

        for day, depts in self.days.items():
            if not first <= day <= last:
                continue
            for dept, f in depts.items():
                for r in row(dept):
                    r.closed += f.closed
                    r.on_time += f.on_time
                    r.reworked += f.reworked
                    r.extended += f.extended
                    for stage, values in zip(STAGES, f.hours, strict=True):
                        r.hours[stage].extend(values)
        for (day, dept), n in self.dispatches.items():
            if first <= day <= last:
                for r in row(dept):
                    r.dispatches += n
        for (day, dept), n in self.returns.items():
            if first <= day <= last:
                for r in row(dept):
                    r.returns += n
        for (day, dept, what), n in self.assist_work.items():
            if first <= day <= last and not districts:
                for r in row(dept):
                    if what == "added":
                        r.assists += n
                    elif what == "handled":
                        r.assists_handled += n
                    else:
                        r.assists_returned += n
        for (day, dept, how), n in self.visits.items():
            if first <= day <= last:
                for r in row(dept):
                    r.visits += n
                    r.satisfied += n if how != "unsatisfied" else 0
        out = {d: f.as_dict() for d, f in sorted(rows.items())}
        if districts:
            for shown in out.values():
                shown[by] = shown.pop("department")
        return out

    def faulty_devices(self) -> set[str]:
        """The devices with an open 设备故障 order now (the finders of every open
        device_fault order) — the 完好率's faults (domain/device_health.py, ``device_rates``).
        An entry from a checkpoint older than this (no finders kept) counts once its order
        changes again."""
        return {d for entry in self.device_faults.values() if len(entry) > 3 for d in entry[3]}

    def period_of(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m")
