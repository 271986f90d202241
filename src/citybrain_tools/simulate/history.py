"""A synthetic history of work orders: D days at N orders a day, written the way the fuse
stage writes them — every change on ``workorders.events`` and the order's state record on
``workorders.state`` — with the record timestamps of the day they happened.

The change mix follows a district's closed loop: most orders are dispatched, accepted,
handled and verified; some are returned and dispatched again, reworked, extended,
supervised when a clock runs late, or cancelled.  The newest orders are still open at
various stages, and a share of the open ones are old (long-running orders: what the
daily state rewrite keeps within the view's reach).

Snapshots are dicts updated in place and serialised with orjson: a year at Fuzhou-like
volume (≈ 1.1M orders, 6M changes) is generated in minutes.  A unit test validates them
against the wire models.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from citybrain.domain import deadlines

SYSTEM = deadlines.SYSTEM.model_dump(exclude_none=True)   # the lifecycle's own actor, as JSON
OPERATOR = {"id": "operator", "role": "operator"}
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Place:
    category: str
    category_name: str
    fusion_group: str
    department: str
    priority: str
    grid_code: str
    lon: float
    lat: float


@dataclass
class HistoryRecord:
    topic: str        # "events" or "state"
    key: bytes
    value: bytes
    timestamp_ms: int


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class OrderHistory:
    """One order's changes as they are generated; ``snapshot`` is the latest."""

    def __init__(self, wo: str, place: Place, created: datetime, limit_hours: float):
        g = place.grid_code
        self.wo = wo
        self.steps: list[dict[str, Any]] = []
        self.changes: list[tuple[datetime, bytes]] = []   # (at, the change's JSON)
        self.snapshot: dict[str, Any] = {
            "work_order_id": wo, "version": 0, "status": "registered", "category": place.category,
            "category_name": place.category_name, "fusion_group": place.fusion_group, "priority": place.priority,
            "department": None, "route_rule": f"category:{place.category}",
            "location": {"lon": place.lon, "lat": place.lat, "district_code": g[:6], "street_code": g[:9],
                         "community_code": g[:12], "grid_code": g},
            "description": "", "opened_at": _iso(created), "created_at": _iso(created),
            "source_ingested_at": _iso(created), "dispatched_at": None, "time_limit_basis": "natural",
            "time_limit_hours": limit_hours, "due_at": _iso(created + limit_hours * HOUR),
            "accept_limit_hours": 2.0, "handle_limit_hours": limit_hours - 4, "stage_started_at": None,
            "accept_due_at": None, "handle_due_at": None, "supervision_steps": [], "last_recovery_at": None,
            "events": [{"event_id": f"ev-{wo}", "source": "report", "kind": "report", "category": place.category,
                        "occurred_at": _iso(created), "finder": f"R-{wo[-6:]}", "lon": place.lon, "lat": place.lat}],
            "evidence": [], "finders": [f"R-{wo[-6:]}"], "recovered_finders": [], "accepted_at": None,
            "handled_at": None, "closed_at": None, "cancelled_at": None, "return_count": 0, "rework_count": 0,
            "extension_count": 0, "supervision_level": 0, "notes": [], "applied_commands": []}

    def change(self, kind: str, at: datetime, actor: dict, status: str, supervision: dict | None = None,
               note: str | None = None, **fields) -> None:
        s = self.snapshot
        s["version"] += 1
        s["status"] = status
        s.update(fields)
        if note:
            s["notes"] = [*s["notes"], note]
        if kind != "created" and actor is not SYSTEM:
            s["applied_commands"] = [*s["applied_commands"], f"cmd-{self.wo}-{s['version']}"]
        at_s = _iso(at)
        change = {"work_order_id": self.wo, "version": s["version"], "type": kind, "at": at_s, "actor": actor,
                  "snapshot": s, "supervision": supervision}
        self.steps.append({"version": s["version"], "type": kind, "at": at_s, "actor": actor, "status": status,
                           "supervision": supervision, "note": note})
        self.changes.append((at, orjson.dumps(change)))
        self.snapshot = dict(s)

    def state_record(self, at: datetime) -> bytes:
        return orjson.dumps({"work_order_id": self.wo, "version": self.snapshot["version"], "at": _iso(at),
                             "snapshot": self.snapshot, "steps": self.steps, "steps_omitted": 0})


def lifecycle(h: OrderHistory, place: Place, created: datetime, rng: random.Random, stop_before: datetime) -> bool:
    """Generate the order's changes up to ``stop_before``; True when it ended (closed or
    cancelled)."""
    dept = {"id": f"{place.department}-1", "role": "department", "department": place.department}
    t = created
    h.change("created", t, SYSTEM, "registered")

    def at(hours: float) -> datetime | None:
        nonlocal t
        t = t + hours * HOUR
        return t if t < stop_before else None

    def dispatch() -> bool:
        when = at(rng.uniform(0.05, 1.5))
        if when is None:
            return False
        h.change("dispatched", when, SYSTEM if rng.random() < 0.8 else OPERATOR, "dispatched",
                 department=place.department, dispatched_at=_iso(when), stage_started_at=_iso(when),
                 accept_due_at=_iso(when + 2 * HOUR))
        return True

    if not dispatch():
        return False
    if rng.random() < 0.02:                                   # 作废
        when = at(rng.uniform(0.2, 3))
        if when is None:
            return False
        h.change("cancelled", when, OPERATOR, "cancelled", note="重复上报，作废", cancelled_at=_iso(when))
        return True
    if rng.random() < 0.05:                                   # 退回, then dispatched again
        when = at(rng.uniform(0.2, 2))
        if when is None:
            return False
        h.change("returned", when, dept, "registered", note="非本部门职责", return_count=1, department=None)
        if not dispatch():
            return False
    if rng.random() < 0.04:                                   # the accept clock ran out: 督办
        when = at(2.0)
        if when is None:
            return False
        h.change("supervised", when, SYSTEM, "dispatched",
                 supervision={"clock": "accept", "share": 1.0, "level": "street", "due_at": _iso(when)},
                 supervision_steps=["accept@1.0"], supervision_level=1)
    when = at(rng.uniform(0.1, 2))
    if when is None:
        return False
    h.change("accepted", when, dept, "accepted", accepted_at=_iso(when), stage_started_at=_iso(when),
             accept_due_at=None, handle_due_at=_iso(when + (h.snapshot["handle_limit_hours"]) * HOUR))
    if rng.random() < 0.03:                                   # 延期
        when = at(rng.uniform(0.5, 3))
        if when is None:
            return False
        h.change("extended", when, dept, "accepted", note="等待配件", extension_count=1,
                 time_limit_hours=h.snapshot["time_limit_hours"] + 24)
    reworks = 1 if rng.random() < 0.04 else 0
    for n in range(reworks + 1):
        when = at(rng.lognormvariate(1.2, 0.8))
        if when is None:
            return False
        h.change("handled", when, dept, "handled", note="已处置" if n == 0 else "返工完成", handled_at=_iso(when))
        when = at(rng.uniform(0.3, 6))
        if when is None:
            return False
        if n < reworks:
            h.change("verification_rejected", when, OPERATOR, "accepted", note="现场仍有积水，返工",
                     rework_count=n + 1, handled_at=None)
        else:
            h.change("verified", when, OPERATOR, "closed", closed_at=_iso(when))
    return True


def places(config, n: int = 64, seed: int = 1) -> list[Place]:
    """Categories with a default department, at grid centres of the city map."""
    rng = random.Random(seed)
    categories = [c for c in config.taxonomy.categories if c.department]
    grids = config.city_map.grid_codes
    out = []
    for _ in range(n):
        c, g = rng.choice(categories), rng.choice(grids)
        centre = config.city_map.grid_polygon(g).representative_point()
        out.append(Place(c.code, c.name_zh, c.code, c.department, c.priority, g, round(centre.x, 6),
                         round(centre.y, 6)))
    return out


def generate(config, days: int, per_day: int, open_orders: int, now: datetime | None = None,
             seed: int = 1, state_every_change_days: float = 8.0) -> Iterator[HistoryRecord]:
    """The history ending at ``now``, day by day.  Every change goes to events; the state
    topic gets every change of the last ``state_every_change_days`` days and, before that,
    each order's final record only (what compaction leaves of it).  An open order whose
    last change is older than a day gets a rewrite within the last day, as the fuse stage
    does."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    spots = places(config, seed=seed)
    total = days * per_day
    # The orders left open: most among the newest, a fifth anywhere in the history.
    recent = min(total, int(per_day * 3.5))
    keep_open = set(rng.sample(range(total - recent, total), min(recent, int(open_orders * 0.8))))
    keep_open |= set(rng.sample(range(total), min(total, open_orders - len(keep_open))))
    every_change_since = now - timedelta(days=state_every_change_days)
    # Records leave in timestamp order, as a live system appends them (readers find their
    # start with offsets_for_times): held in a heap until no later order can precede them.
    pending: list[tuple[int, int, HistoryRecord]] = []
    seq = 0

    def push(record: HistoryRecord) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(pending, (record.timestamp_ms, seq, record))

    def due(before: int | None) -> Iterator[HistoryRecord]:
        while pending and (before is None or pending[0][0] < before):
            yield heapq.heappop(pending)[2]

    n = 0
    for day in range(days):
        for i in range(per_day):
            created = start + timedelta(days=day, seconds=rng.uniform(0, 86400))
            if created >= now:
                n += 1
                continue
            place = rng.choice(spots)
            wo = f"WO-{place.fusion_group}-h{day:03d}{i:05d}"
            h = OrderHistory(wo, place, created, 24.0)
            stop = created + rng.uniform(0.02, 5) * HOUR if n in keep_open else now
            ended = lifecycle(h, place, created, rng, min(stop, now))
            key = wo.encode()
            for k, (at, value) in enumerate(h.changes):
                ts = int(at.timestamp() * 1000)
                push(HistoryRecord("events", key, value, ts))
                if at >= every_change_since and k < len(h.changes) - 1:
                    push(HistoryRecord("state", key, orjson.dumps(
                        {"work_order_id": wo, "version": k + 1, "at": _iso(at),
                         "snapshot": orjson.loads(value)["snapshot"], "steps": h.steps[:k + 1],
                         "steps_omitted": 0}), ts))
            last_at = h.changes[-1][0]
            push(HistoryRecord("state", key, h.state_record(last_at), int(last_at.timestamp() * 1000)))
            if not ended and now - last_at > timedelta(days=1):
                rewrite = now - timedelta(hours=rng.uniform(0.1, 20))
                push(HistoryRecord("state", key, h.state_record(last_at), int(rewrite.timestamp() * 1000)))
            n += 1
        # Orders created later start later: everything before the next day is final.
        yield from due(int((start + timedelta(days=day + 1)).timestamp() * 1000))
    yield from due(None)


def estimate_records(days: int, per_day: int) -> int:
    """About how many records ``generate`` yields (for progress), as measured: ~5 changes
    and one state record per order, and a state record per change in the last 8 days."""
    return int(days * per_day * 6.2) + per_day * 8 * 5
