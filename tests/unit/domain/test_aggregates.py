"""研判 windows: a scripted order's changes land in the right hour and day windows; the fold
is independent of the order of distinct changes, counts a redelivered change once, and its
totals equal a naive recount — also when drained in pieces and restored mid-way."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from citybrain.domain.aggregates import (
    GRANULARITIES,
    MEASURES,
    Aggregates,
    add_deltas,
    fold,
    key_text,
    measure,
    place,
    window_start,
)
from citybrain.domain.lifecycle import apply
from citybrain.wire.models import Actor, Command, EventRef, Location, WorkOrder, WorkOrderChange

CN = ZoneInfo("Asia/Shanghai")
OP = Actor(id="op-1", role="operator")
WATER = Actor(id="w-1", role="department", department="water")
LOC = Location(lon=117.8625, lat=36.7935, district_code="370306", street_code="370306002",
               community_code="370306002001", grid_code="370306002001016")


def as_json(changes: list[WorkOrderChange]) -> list[dict]:
    return [orjson.loads(to_json(c)) for c in changes]


def scripted(config, created: datetime) -> list[WorkOrderChange]:
    """立案 09:00, dispatched, returned, dispatched again, the accept clock runs out
    (supervised at 100 % and 150 %), accepted, handled, 核查不通过 (rework), handled, 结案."""
    dl = config.deadlines
    order = WorkOrder(work_order_id="WO-A", version=1, status="registered", category="waterlogging",
                      category_name="路面积水", fusion_group="flooding", priority="high", department=None,
                      route_rule="none", location=LOC, opened_at=created, created_at=created,
                      source_ingested_at=created, **dl.on_open("waterlogging", "high", created),
                      events=[EventRef(event_id="ev-A", source="report", kind="report", category="waterlogging",
                                       occurred_at=created, lon=LOC.lon, lat=LOC.lat)])
    changes = [WorkOrderChange(work_order_id="WO-A", version=1, type="created", at=created,
                               actor=Actor(id="citybrain", role="system"), snapshot=order)]

    def do(hours: float, action: str, actor: Actor, **extra) -> None:
        nonlocal order
        at = created + timedelta(hours=hours)
        out = apply(order, Command(command_id=f"c{len(changes)}", work_order_id="WO-A", action=action,
                                   actor=actor, ts=at, **extra), frozenset({"water"}), at, dl)
        assert out.change is not None, out.rejection
        changes.append(out.change)
        order = out.change.snapshot

    do(0.2, "dispatch", OP, department="water")
    do(0.4, "return", WATER)
    do(0.5, "dispatch", OP, department="water")
    late = dl.supervise_due(order, created + timedelta(hours=0.5 + 1.6))   # accept limit 1 h (high)
    assert [c.supervision.share for c in late if c.supervision] == [1.0, 1.5]
    changes += late
    order = late[-1].snapshot
    do(2.2, "accept", WATER)
    do(3.0, "handle", WATER)
    do(3.5, "reject_verification", OP)
    do(4.0, "handle", WATER)
    do(5.0, "verify", OP)
    return changes


def test_a_scripted_order_lands_in_its_hour_and_day_windows(config):
    created = datetime(2026, 12, 1, 9, 0, tzinfo=CN)
    log = as_json(scripted(config, created))
    windows = fold(log)
    day = {k[0]: v for k, v in windows.items() if k[1] == "day"}
    assert day == {"2026-12-01T00:00:00+08:00": {"opened": 1, "closed": 1, "overdue": 1, "returned": 1,
                                                 "reworked": 1}}
    hour = {k[0]: {m: n for m, n in v.items() if n} for k, v in windows.items() if k[1] == "hour"}
    assert hour == {"2026-12-01T09:00:00+08:00": {"opened": 1, "returned": 1},
                    "2026-12-01T11:00:00+08:00": {"overdue": 1},        # the accept clock ran out at 10:30
                    "2026-12-01T12:00:00+08:00": {"reworked": 1},
                    "2026-12-01T14:00:00+08:00": {"closed": 1}}
    (key,) = [k for k in windows if k[1] == "day"]
    assert key_text(key) == "2026-12-01T00:00:00+08:00|day|waterlogging|370306|370306002"


def test_overdue_counts_when_an_order_falls_overdue_not_at_every_step(config):
    """The 150 % step of the same clock is not a new fall; after a return restarts the accept
    clock (its steps cleared) running out again is; an assisting part's clock never is."""
    log = as_json(scripted(config, datetime(2026, 12, 1, 9, 0, tzinfo=CN)))
    sup = [c for c in log if c["type"] == "supervised"]
    assert [measure(c) for c in sup] == ["overdue", None]
    again = {**sup[0], "snapshot": {**sup[0]["snapshot"], "supervision_steps": ["accept@1"]}}
    assert measure(again) == "overdue"
    with_order_step = {**sup[0], "snapshot": {**sup[0]["snapshot"], "supervision_steps": ["order@1", "accept@1"]}}
    assert measure(with_order_step) is None
    part = {**sup[0], "supervision": {**sup[0]["supervision"], "department": "gas"}}
    assert measure(part) is None


def test_windows_are_city_local_days_and_hours():
    at = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)     # 00:30 on 1 Dec in 淄博
    assert window_start(at, "day", CN).isoformat() == "2026-12-01T00:00:00+08:00"
    assert window_start(at, "hour", CN).isoformat() == "2026-12-01T00:00:00+08:00"
    assert window_start(at + timedelta(minutes=29), "hour", CN).isoformat() == "2026-12-01T00:00:00+08:00"
    assert window_start(at + timedelta(minutes=30), "hour", CN).isoformat() == "2026-12-01T01:00:00+08:00"


# -- properties ----------------------------------------------------------------------

TYPES = ["created", "dispatched", "accepted", "returned", "handled", "verified", "verification_rejected",
         "supervised", "commented", "cancelled"]
T0 = datetime(2026, 12, 1, tzinfo=CN)


@st.composite
def changes(draw, max_orders: int = 6):
    """Distinct (order, version) changes over three days, any types, two streets, two categories."""
    out = []
    for n in range(draw(st.integers(1, max_orders))):
        street = draw(st.sampled_from(["370306001", "370306002", "370303001"]))
        category = draw(st.sampled_from(["waterlogging", "manhole_cover"]))
        for version in range(1, draw(st.integers(1, 8)) + 1):
            kind = "created" if version == 1 else draw(st.sampled_from(TYPES[1:]))
            at = T0 + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
            steps = draw(st.lists(st.sampled_from(["order@1", "accept@1", "accept@1.5", "water/handle@1"]),
                                  unique=True, max_size=3))
            share = draw(st.sampled_from([0.5, 1.0, 1.5]))
            status = "closed" if kind == "verified" else "cancelled" if kind == "cancelled" else "accepted"
            out.append({"work_order_id": f"WO-{n}", "version": version, "type": kind, "at": at.isoformat(),
                        "supervision": {"clock": "accept", "share": share, "department": None}
                        if kind == "supervised" else None,
                        "snapshot": {"status": status, "category": category, "supervision_steps": steps,
                                     "location": {"district_code": street[:6], "street_code": street}}})
    return out


def naive(log: list[dict]) -> dict:
    """Each distinct (order, version) once — its first copy — counted by the rules, by hand."""
    seen, counts = set(), Counter()
    for c in log:
        if (c["work_order_id"], c["version"]) in seen:
            continue
        seen.add((c["work_order_id"], c["version"]))
        what = measure(c)
        if what is not None:
            at = datetime.fromisoformat(c["at"])
            for g in GRANULARITIES:
                counts[(window_start(at, g, CN).isoformat(), g, *place(c), what)] += 1
    out: dict = {}
    for (*key, what), n in counts.items():
        out.setdefault(tuple(key), dict.fromkeys(MEASURES, 0))[what] = n
    return out


@settings(max_examples=150, deadline=None)
@given(log=changes(), data=st.data())
def test_distinct_changes_fold_alike_in_any_order(log, data):
    shuffled = data.draw(st.permutations(log))
    assert fold(shuffled) == fold(log) == naive(log)


@settings(max_examples=150, deadline=None)
@given(log=changes(), data=st.data())
def test_a_redelivered_change_counts_once_in_the_window_of_its_first_copy(log, data):
    """At-least-once: copies of changes come again later in the log, with later timestamps."""
    again = data.draw(st.lists(st.sampled_from(log), max_size=len(log)))
    late = [{**c, "at": (datetime.fromisoformat(c["at"]) + timedelta(hours=data.draw(st.integers(0, 30))))
             .isoformat()} for c in again]
    assert fold(log + late) == fold(log) == naive(log + late)


@settings(max_examples=100, deadline=None)
@given(log=changes(), data=st.data())
def test_drained_pieces_and_a_restore_midway_add_up_to_the_whole(log, data):
    """As the worker does it: deltas drained per batch and added in a store; a restart
    restores the dedupe entries drained so far and goes on (a batch read again included)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=4)))
    totals: dict = {}
    agg = Aggregates()
    stored: dict = {}
    start = 0
    for cut in [*cuts, len(log)]:
        for c in log[start:cut]:
            agg.add(c)
        deltas, dedupe, forgotten = agg.drain()
        add_deltas(totals, deltas)
        stored.update(dedupe)
        for wo in forgotten:
            stored.pop(wo, None)
        agg = Aggregates()                                         # a restart …
        agg.restore([(wo, seen, ended) for wo, (seen, ended) in stored.items()])
        for c in log[max(0, start - 3):cut]:                       # … that reads a few records again
            agg.add(c)
        add_deltas(totals, agg.drain()[0])
        start = cut
    assert {k: dict(zip(MEASURES, v, strict=True)) for k, v in totals.items()} == naive(log)


def test_an_ended_order_is_forgotten_after_its_keep_days_and_not_before():
    def change(version: int, kind: str, status: str, at: datetime) -> dict:
        return {"work_order_id": "WO-1", "version": version, "type": kind, "at": at.isoformat(),
                "snapshot": {"status": status, "category": "waterlogging",
                             "location": {"district_code": "370306", "street_code": "370306002"}}}
    agg = Aggregates(keep_ended_days=2)
    agg.add(change(1, "created", "registered", T0))
    agg.add(change(2, "verified", "closed", T0 + timedelta(hours=1)))
    other = {**change(1, "created", "registered", T0 + timedelta(days=2)), "work_order_id": "WO-2"}
    agg.add(other)
    assert not agg.add(change(2, "verified", "closed", T0 + timedelta(days=2)))   # still a duplicate
    agg.add({**other, "version": 2, "type": "commented", "at": (T0 + timedelta(days=3)).isoformat()})
    assert "WO-1" not in agg.orders and agg.drain()[2] == {"WO-1"}
    assert agg.duplicates == 1
