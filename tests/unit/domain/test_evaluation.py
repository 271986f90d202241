"""综合评价: the figures of a scripted month against a hand-computed table."""

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic_core import to_json

from citybrain.domain.evaluation import Evaluation, quantile
from citybrain.domain.lifecycle import apply
from citybrain.wire.models import Actor, Command, EventRef, Location, WorkOrder, WorkOrderChange

CN = ZoneInfo("Asia/Shanghai")
DEPTS = frozenset({"water", "city_mgmt", "environment"})
OP = Actor(id="op-1", role="operator")
WATER = Actor(id="w-1", role="department", department="water")
CITY = Actor(id="c-1", role="department", department="city_mgmt")
LOC = Location(lon=117.8625, lat=36.7935, district_code="370306", street_code="370306002",
               community_code="370306002001", grid_code="370306002001016")


def script(config, wo: str, created: datetime, steps) -> list[WorkOrderChange]:
    dl = config.deadlines
    order = WorkOrder(work_order_id=wo, version=1, status="registered", category="waterlogging",
                      category_name="路面积水", fusion_group="flooding", priority="high", department=None,
                      route_rule="none", location=LOC, opened_at=created, created_at=created,
                      source_ingested_at=created, **dl.on_open("waterlogging", "high", created),
                      events=[EventRef(event_id=f"ev-{wo}", source="report", kind="report",
                                       category="waterlogging", occurred_at=created, lon=LOC.lon, lat=LOC.lat)])
    changes = [WorkOrderChange(work_order_id=wo, version=1, type="created", at=created,
                               actor=Actor(id="citybrain", role="system"), snapshot=order)]
    for n, (hours, action, actor, extra) in enumerate(steps):
        at = created + timedelta(hours=hours)
        cmd = Command(command_id=f"{wo}-{n}", work_order_id=wo, action=action, actor=actor, ts=at, **extra)
        out = apply(order, cmd, DEPTS, at, dl)
        assert out.change is not None, out.rejection
        changes.append(out.change)
        order = out.change.snapshot
    return changes


def d(dept):
    return {"department": dept}


@pytest.fixture(scope="module")
def month(config):
    t = lambda day, hh, month=11: datetime(2026, month, day, hh, tzinfo=CN)  # noqa: E731
    return [
        # A water: on time, 0.5 / 0.5 / 4 / 6 h
        script(config, "A", t(2, 9), [(0.5, "dispatch", OP, d("water")), (1, "accept", WATER, {}),
                                      (5, "handle", WATER, {}), (6, "verify", OP, {})]),
        # B water: reworked once, closed after 15 h > 12 h: late
        script(config, "B", t(3, 9), [(1, "dispatch", OP, d("water")), (3, "accept", WATER, {}),
                                      (10, "handle", WATER, {}), (11, "reject_verification", OP, {}),
                                      (14, "handle", WATER, {}), (15, "verify", OP, {})]),
        # C: returned by water (wrong department), re-dispatched to city_mgmt, on time
        script(config, "C", t(5, 9), [(1, "dispatch", OP, d("water")), (2, "return", WATER, {}),
                                      (3, "dispatch", OP, d("city_mgmt")), (4, "accept", CITY, {}),
                                      (6, "handle", CITY, {}), (7, "verify", OP, {})]),
        # D water: extended by 4 h (due 16 h), closed at 14 h: on time
        script(config, "D", t(10, 9), [(0.5, "dispatch", OP, d("water")), (1, "accept", WATER, {}),
                                       (2, "extend", WATER, {"extend_minutes": 240, "note": "等待配件"}),
                                       (12, "handle", WATER, {}), (14, "verify", OP, {})]),
        # E city_mgmt: on time, 2 / 0.5 / 0.5 / 4 h
        script(config, "E", t(12, 9), [(2, "dispatch", OP, d("city_mgmt")), (2.5, "accept", CITY, {}),
                                       (3, "handle", CITY, {}), (4, "verify", OP, {})]),
        # F city_mgmt: dispatched, then cancelled (作废): not rated, dispatch counted
        script(config, "F", t(28, 9), [(1, "dispatch", OP, d("city_mgmt")), (2, "accept", CITY, {}),
                                       (3, "cancel", OP, {"note": "重复上报 duplicate"})]),
        # G water: dispatched 30 Nov, closed 1 Dec: a November dispatch, a December closure
        script(config, "G", t(30, 20), [(1, "dispatch", OP, d("water")), (2, "accept", WATER, {}),
                                        (4, "handle", WATER, {}), (5, "verify", OP, {})]),
        # H water: dispatched 31 Oct, closed 1 Nov on time, 1 / 2 / 3 / 8 h
        script(config, "H", t(31, 20, month=10), [(1, "dispatch", OP, d("water")), (3, "accept", WATER, {}),
                                                  (6, "handle", WATER, {}), (8, "verify", OP, {})]),
    ]


# Worked out by hand from the script above (docs/lifecycle.md has the definitions).
EXPECTED = {
    "water": {"closed": 4, "on_time": 3, "on_time_closure_rate": 0.75, "rework_rate": 0.25,
              "extension_rate": 0.25, "dispatches": 5, "returns": 1, "return_rate": 0.2,
              "dispatch_hours_p50": 0.5, "dispatch_hours_p90": 1, "accept_hours_p50": 0.5,
              "accept_hours_p90": 2, "handle_hours_p50": 4, "handle_hours_p90": 11,
              "close_hours_p50": 8, "close_hours_p90": 15},
    "city_mgmt": {"closed": 2, "on_time": 2, "on_time_closure_rate": 1.0, "rework_rate": 0.0,
                  "extension_rate": 0.0, "dispatches": 3, "returns": 0, "return_rate": 0.0,
                  "dispatch_hours_p50": 2, "dispatch_hours_p90": 3, "accept_hours_p50": 0.5,
                  "accept_hours_p90": 1, "handle_hours_p50": 0.5, "handle_hours_p90": 2,
                  "close_hours_p50": 4, "close_hours_p90": 7},
    "*": {"closed": 6, "on_time": 5, "on_time_closure_rate": 0.8333, "rework_rate": 0.1667,
          "extension_rate": 0.1667, "dispatches": 8, "returns": 1, "return_rate": 0.125,
          "dispatch_hours_p50": 1, "dispatch_hours_p90": 3, "accept_hours_p50": 0.5,
          "accept_hours_p90": 2, "handle_hours_p50": 3, "handle_hours_p90": 11,
          "close_hours_p50": 7, "close_hours_p90": 15},
}


def as_log(month) -> list[dict]:
    """The changes as they would be read back from workorders.events (JSON)."""
    return [orjson.loads(to_json(c)) for changes in month for c in changes]


def test_scripted_month_matches_the_hand_computed_table(month):
    ev = Evaluation()
    for change in as_log(month):
        ev.add(change)
    got = ev.figures("2026-11")
    assert set(got) == set(EXPECTED)
    for dept, row in EXPECTED.items():
        assert {k: got[dept][k] for k in row} == row, dept


def test_the_same_month_by_district_sums_to_the_whole_city(month):
    """E and F lie in 张店区 (370303), the rest in 周村区: per district the same figures,
    the city row equal to the departments' city row, and no district row among them."""
    log = as_log(month)
    for change in log:
        if change["work_order_id"] in ("E", "F"):
            change["snapshot"]["location"].update(district_code="370303", street_code="370303001",
                                                  community_code="370303001001", grid_code="370303001001001")
    ev = Evaluation()
    for change in log:
        ev.add(change)
    by_district = ev.figures("2026-11", by="district")
    assert set(by_district) == {"370306", "370303", "*"}
    assert (by_district["370303"]["closed"], by_district["370303"]["dispatches"]) == (1, 2)
    assert (by_district["370306"]["closed"], by_district["370306"]["dispatches"]) == (5, 6)
    assert by_district["370306"]["returns"] == 1 and by_district["370303"]["on_time_closure_rate"] == 1.0
    city = {k: v for k, v in by_district["*"].items() if k != "district"}
    assert city == {k: v for k, v in ev.figures("2026-11")["*"].items() if k != "department"}
    assert set(ev.figures("2026-11")) == set(EXPECTED)
    with pytest.raises(ValueError):
        ev.figures("2026-11", by="street")


def test_the_same_month_by_category_sums_to_the_whole_city(month):
    """E and F are garbage overflow (垃圾满溢), the rest waterlogging: per category the same
    figures as per district above, the city row the departments' city row; a checkpoint
    keeps the category rows, and one from before them is not current (folded again)."""
    log = as_log(month)
    for change in log:
        if change["work_order_id"] in ("E", "F"):
            change["snapshot"]["category"] = "garbage_overflow"
    ev = Evaluation()
    for change in log:
        ev.add(change)
    by_category = ev.figures("2026-11", by="category")
    assert set(by_category) == {"waterlogging", "garbage_overflow", "*"}
    assert (by_category["garbage_overflow"]["closed"], by_category["garbage_overflow"]["dispatches"]) == (1, 2)
    assert (by_category["waterlogging"]["closed"], by_category["waterlogging"]["dispatches"]) == (5, 6)
    assert by_category["waterlogging"]["returns"] == 1 and by_category["garbage_overflow"]["category"] == "garbage_overflow"
    city = {k: v for k, v in by_category["*"].items() if k != "category"}
    assert city == {k: v for k, v in ev.figures("2026-11")["*"].items() if k != "department"}
    assert set(ev.figures("2026-11")) == set(EXPECTED)
    assert set(ev.figures("2026-11", by="district")) == {"370306", "*"}
    meta = orjson.loads(orjson.dumps(ev.checkpoint_meta()))
    assert Evaluation.current(meta) and not Evaluation.current({k: v for k, v in meta.items() if k != "format"})
    restored = Evaluation()
    restored.restore(meta, orjson.loads(orjson.dumps(ev.checkpoint_days(everything=True))))
    assert restored.figures("2026-11", by="category") == by_category


def test_same_log_same_figures_whatever_the_interleaving_and_redelivery(month):
    per_order = [as_log([changes]) for changes in month]
    reference = Evaluation()
    for change in as_log(month):
        reference.add(change)
    rng = random.Random(7)
    for _ in range(20):
        queues = [list(q) for q in per_order]
        ev = Evaluation()
        while any(queues):
            q = rng.choice([q for q in queues if q])
            change = q.pop(0)
            ev.add(change)
            if rng.random() < 0.2:
                ev.add(change)        # at-least-once: seen twice
        assert ev.figures("2026-11") == reference.figures("2026-11")


def test_other_periods(month):
    ev = Evaluation()
    for change in as_log(month):
        ev.add(change)
    dec = ev.figures("2026-12")
    assert dec["water"]["closed"] == 1 and dec["water"]["dispatches"] == 0
    assert ev.figures("2026-10")["water"] == {**ev.figures("2026-10")["water"], "closed": 0, "dispatches": 1}
    assert ev.figures("2026-11-05")["city_mgmt"]["closed"] == 1
    with pytest.raises(ValueError, match="YYYY-MM"):
        ev.figures("November")


def test_quantile_is_nearest_rank():
    assert quantile([], 0.5) is None
    assert quantile([1.0], 0.9) == 1.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert quantile([float(i) for i in range(1, 11)], 0.9) == 9.0


def test_a_checkpoint_anywhere_in_the_log_then_its_tail_gives_the_full_replay_figures(month):
    """The worker's restart: state exported at any point (through JSON, as the local copy
    holds it), restored, the rest folded — every period equals the full replay."""
    log = as_log(month)
    reference = Evaluation()
    for change in log:
        reference.add(change)
    periods = ["2026-10", "2026-11", "2026-12", "2026-11-02", "2026-12-01"]
    for cut in range(len(log) + 1):
        first = Evaluation()
        days: dict = {}
        for n, change in enumerate(log[:cut]):
            first.add(change)
            if n % 5 == 0:            # earlier exports: only the changed days each time
                days.update(orjson.loads(orjson.dumps(first.checkpoint_days())))
        days.update(orjson.loads(orjson.dumps(first.checkpoint_days())))
        restarted = Evaluation()
        restarted.restore(orjson.loads(orjson.dumps(first.checkpoint_meta())), days)
        for change in log[cut:]:
            restarted.add(change)
        assert [restarted.figures(p) for p in periods] == [reference.figures(p) for p in periods], cut
        assert restarted.orders == reference.orders


def test_closed_versions_are_forgotten_after_the_keep_time_not_before(month):
    ev = Evaluation(keep_closed_days=3)
    for change in sorted(as_log(month), key=lambda c: c["at"]):
        ev.add(change)
    # The log's last day is 1 December: F (cancelled 28 November) and G (closed that day)
    # are within 3 days; the rest are forgotten, and still counted.
    assert set(ev.closed_version) == {"F", "G"} and ev.orders == 8
    assert ev.figures("2026-11")["*"]["closed"] == 6


def test_assist_work_is_counted_apart_from_the_leads(config):
    t = lambda day, hh: datetime(2026, 11, day, hh, tzinfo=CN)  # noqa: E731
    log = as_log([
        # water leads, city_mgmt assists and handles its part
        script(config, "J1", t(3, 9), [(0.5, "dispatch", OP, d("water")), (0.6, "assist", OP, d("city_mgmt")),
                                       (1, "accept", CITY, {}), (2, "handle", CITY, {}),
                                       (2.5, "accept", WATER, {}), (4, "handle", WATER, {}), (5, "verify", OP, {})]),
        # city_mgmt is asked again on another order and returns its part (not theirs)
        script(config, "J2", t(4, 9), [(0.5, "dispatch", OP, d("water")), (0.6, "assist", OP, d("city_mgmt")),
                                       (1, "return", CITY, {"note": "非本部门 not ours"})]),
    ])
    ev = Evaluation()
    for change in log + log[:5]:          # redelivered changes count once
        ev.add(change)
    got = ev.figures("2026-11")
    assert {k: got["city_mgmt"][k] for k in ("closed", "dispatches", "returns", "assists", "assists_handled",
                                             "assists_returned")} == {
        "closed": 0, "dispatches": 0, "returns": 0, "assists": 2, "assists_handled": 1, "assists_returned": 1}
    assert (got["water"]["closed"], got["water"]["dispatches"], got["water"]["assists"]) == (1, 2, 0)
    restored = Evaluation()
    restored.restore(orjson.loads(orjson.dumps(ev.checkpoint_meta())),
                     orjson.loads(orjson.dumps(ev.checkpoint_days(everything=True))))
    assert restored.figures("2026-11") == got


def test_satisfaction_rate_counts_visits_after_closure_once(config):
    t = lambda day, hh: datetime(2026, 11, day, hh, tzinfo=CN)  # noqa: E731
    log = as_log([
        script(config, "V1", t(3, 9), [(0.5, "dispatch", OP, d("water")), (1, "accept", WATER, {}),
                                       (2, "handle", WATER, {}), (3, "verify", OP, {}),
                                       (20, "visit", OP, {"satisfaction": "basically_satisfied"})]),
        script(config, "V2", t(4, 9), [(0.5, "dispatch", OP, d("water")), (1, "accept", WATER, {}),
                                       (2, "handle", WATER, {}),
                                       (3, "visit", OP, {"satisfaction": "unsatisfied"}),    # → rework
                                       (5, "handle", WATER, {}), (6, "verify", OP, {}),
                                       (30, "visit", OP, {"satisfaction": "satisfied"})]),
    ])
    ev = Evaluation()
    for change in log + log[-3:]:
        ev.add(change)
    row = ev.figures("2026-11")["water"]
    assert (row["visits"], row["satisfaction_rate"], row["closed"], row["rework_rate"]) == (3, 0.6667, 2, 0.5)


def test_faulty_devices_are_the_finders_of_open_device_fault_orders():
    """完好率's faults (domain/device_health.py ``device_rates``): the finders of every
    open 设备故障 order, kept across a checkpoint."""
    def change(wo, version, status, source="iot", dept="gas_utility", finders=("GAS-1",)):
        return {"work_order_id": wo, "version": version, "type": "created", "at": "2026-11-03T09:00:00+08:00",
                "actor": {"id": "citybrain", "role": "system"},
                "snapshot": {"category": "device_fault", "status": status, "department": dept,
                             "finders": list(finders), "events": [{"source": source}]}}
    ev = Evaluation()
    for c in (change("F1", 1, "registered"), change("F2", 1, "dispatched", finders=("GAS-2",)),
              change("F3", 1, "registered", source="video", dept=None, finders=("CAM-1",)),
              change("F2", 2, "cancelled", finders=("GAS-2",))):
        ev.add(c)
    assert ev.faulty_devices() == {"GAS-1", "CAM-1"}
    restored = Evaluation()
    restored.restore(orjson.loads(orjson.dumps(ev.checkpoint_meta())), {})
    assert restored.faulty_devices() == {"GAS-1", "CAM-1"}
