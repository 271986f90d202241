"""研判 windows: tumbling hour and day windows (city-local time) per category × district ×
street, counting what happened to work orders in them (DESIGN §15).

Folded from ``workorders.events`` alone, so a replay of the log gives the same windows.
Each change counts in the window of its ``at``, under the place and category its
snapshot has then:

- ``opened`` (立案): a ``created`` change (an order split off is a new order too);
- ``closed`` (结案): a ``verified`` change (the one move into closed, by hand or automatic);
- ``returned`` (退回): a ``returned`` change (the lead department sends it back);
- ``reworked`` (返工): a ``verification_rejected`` change (核查不通过, back to 处置);
- ``overdue`` (超时): a ``supervised`` change of the lead's clocks at 100 % or more of a
  limit that is the order's first such step on record — its ``supervision_steps`` hold no
  other lead step at ≥ 100 %. So an order counts once when it falls overdue, and again only
  after a stage clock restarts (a return or a rework clears that clock's steps) and runs out.

Every rule reads one change alone, so distinct changes fold in any order to the same
windows. A change seen twice (at-least-once delivery: the same ``work_order_id`` and
``version``) counts once, in the window of the copy seen first — the log's order, which a
replay keeps. What is remembered for that: per order the versions seen (a bitmask),
forgotten ``keep_ended_days`` after the order ended (closed, cancelled, merged; the
lifecycle changes an ended order only for 回访 within days).

Pure: no Kafka. The stream side drains the counts as deltas and adds them up in its
store; :func:`fold` is the whole log at once, for tests and offline checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from citybrain.wire.models import CLOSED_STATUSES

Granularity = Literal["hour", "day"]
GRANULARITIES: tuple[Granularity, ...] = ("hour", "day")
MEASURES: tuple[str, ...] = ("opened", "closed", "overdue", "returned", "reworked")
_INDEX = {m: i for i, m in enumerate(MEASURES)}
_BY_TYPE = {"created": "opened", "verified": "closed", "returned": "returned",
            "verification_rejected": "reworked"}

# (window start as ISO 8601 with the city's offset, granularity, category, district, street)
WindowKey = tuple[str, str, str, str, str]


class WindowSettings(BaseModel):
    """``config/analytics.toml`` ``[windows]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="false: no worker folds or publishes windows (the API's are empty)")
    timezone: str = "Asia/Shanghai"
    keep_days: int = Field(366, ge=1, le=3660, description="how long the history store keeps a window")
    keep_ended_days: float = Field(15.0, gt=0, le=400, description="how long an ended order's versions "
                                                                   "are remembered for dedupe")
    publish_seconds: float = Field(2.0, gt=0, le=600, description="how often changed windows go out "
                                                                  "on analytics.windows")
    hotspot_seconds: float = Field(60.0, gt=0, le=3600, description="how often hotspots are found again "
                                                                    "for analytics.hotspots")


def key_text(key: WindowKey) -> str:
    """The record key on ``analytics.windows``: window|granularity|category|district|street."""
    return "|".join(key)


def window_start(at: datetime, granularity: str, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    if granularity == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"granularity must be hour or day, not {granularity!r}")


def _lead_share(step: str) -> float | None:
    """A supervision step key's share if it is the lead's (``accept@1``), else None
    (an assisting part's ``water/accept@1``, or a key this version does not know)."""
    if "/" in step or "@" not in step:
        return None
    try:
        return float(step.rsplit("@", 1)[1])
    except ValueError:
        return None


def measure(change: Mapping[str, Any]) -> str | None:
    """Which count one change adds to (one at most), by the rules above."""
    kind = change.get("type")
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    if kind != "supervised":
        return None
    sup = change.get("supervision") or {}
    if sup.get("department") or float(sup.get("share") or 0) < 1.0:
        return None
    own = f"{sup.get('clock')}@{float(sup['share']):g}"
    steps = (change.get("snapshot") or {}).get("supervision_steps") or ()
    earlier = [s for s in steps if s != own and (_lead_share(s) or 0) >= 1.0]
    return None if earlier else "overdue"


def place(change: Mapping[str, Any]) -> tuple[str, str, str]:
    snap = change.get("snapshot") or {}
    loc = snap.get("location") or {}
    street = loc.get("street_code") or ""
    return snap.get("category") or "", loc.get("district_code") or street[:6], street


def _at(v: Any) -> datetime:
    at = v if isinstance(v, datetime) else datetime.fromisoformat(v)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class Aggregates:
    """The running fold: ``add`` each change, ``drain`` the counts added since the last
    drain (deltas per window) and the dedupe entries that changed (for a store)."""

    def __init__(self, timezone: str = "Asia/Shanghai", keep_ended_days: float = 15.0):
        self.tz = ZoneInfo(timezone)
        self.keep_ended = timedelta(days=keep_ended_days)
        # order → [versions seen (bit v set for version v), the day it ended as an ordinal or 0]
        self.orders: dict[str, list[int]] = {}
        self.pending: dict[WindowKey, list[int]] = {}
        self.touched: set[str] = set()
        self.forgotten: set[str] = set()
        self.latest_day = 0       # the latest local day a change was made on (ordinal)
        self.duplicates = 0

    def add(self, change: Mapping[str, Any]) -> bool:
        """One ``workorders.events`` record as parsed JSON; False when it was seen already."""
        wo, version = change["work_order_id"], int(change["version"])
        at = _at(change["at"])
        day = at.astimezone(self.tz).date().toordinal()
        entry = self.orders.get(wo)
        if entry is None:
            entry = self.orders[wo] = [0, 0]
        bit = 1 << version
        if entry[0] & bit:
            self.duplicates += 1
            return False
        entry[0] |= bit
        status = (change.get("snapshot") or {}).get("status")
        if status in CLOSED_STATUSES and not entry[1]:
            entry[1] = day
        self.touched.add(wo)
        self.forgotten.discard(wo)
        what = measure(change)
        if what is not None:
            category, district, street = place(change)
            i = _INDEX[what]
            for g in GRANULARITIES:
                key = (window_start(at, g, self.tz).isoformat(), g, category, district, street)
                counts = self.pending.get(key)
                if counts is None:
                    counts = self.pending[key] = [0] * len(MEASURES)
                counts[i] += 1
        if day > self.latest_day:
            self._new_day(day)
        return True

    def _new_day(self, day: int) -> None:
        """The log reached a new day: forget the versions of orders ended long before."""
        self.latest_day = day
        horizon = day - self.keep_ended.days
        for wo in [wo for wo, (_, ended) in self.orders.items() if ended and ended < horizon]:
            del self.orders[wo]
            self.touched.discard(wo)
            self.forgotten.add(wo)

    def drain(self) -> tuple[dict[WindowKey, list[int]], dict[str, tuple[int, int]], set[str]]:
        """(count deltas per window, changed dedupe entries, forgotten orders) since the last drain."""
        deltas, self.pending = self.pending, {}
        changed = {wo: (self.orders[wo][0], self.orders[wo][1]) for wo in self.touched if wo in self.orders}
        forgotten, self.touched, self.forgotten = self.forgotten, set(), set()
        return deltas, changed, forgotten

    def restore(self, orders: Iterable[tuple[str, int, int]], latest_day: int = 0) -> None:
        """Dedupe entries kept by a store: (order, versions bitmask, ended day ordinal or 0)."""
        self.orders = {wo: [seen, ended] for wo, seen, ended in orders}
        self.latest_day = latest_day
        self.pending, self.touched, self.forgotten = {}, set(), set()


def fold(changes: Iterable[Mapping[str, Any]], timezone: str = "Asia/Shanghai",
         keep_ended_days: float = 15.0) -> dict[WindowKey, dict[str, int]]:
    """A whole log at once: every window with its counts (windows with none are absent)."""
    agg = Aggregates(timezone, keep_ended_days)
    for c in changes:
        agg.add(c)
    return {k: dict(zip(MEASURES, v, strict=True)) for k, v in agg.drain()[0].items()}


def add_deltas(totals: dict[WindowKey, list[int]], deltas: Mapping[WindowKey, list[int]]) -> None:
    """What a store does with drained deltas (for tests and the offline check)."""
    for key, d in deltas.items():
        t = totals.setdefault(key, [0] * len(MEASURES))
        for i, n in enumerate(d):
            t[i] += n
