"""What the fuse stage keeps per order and publishes on workorders.state."""

from datetime import UTC, datetime, timedelta

import orjson
from pydantic_core import to_json

from citybrain.stream import orderstate
from citybrain.stream.orderstate import OrderRecord
from citybrain.stream.timers import StateRefresh
from citybrain.wire.models import Actor, EventRef, Location, OrderState, WorkOrder, WorkOrderChange

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)
LOC = Location(lon=117.86, lat=36.79, district_code="370306", street_code="370306002",
               community_code="370306002001", grid_code="370306002001016")
SYSTEM = Actor(id="citybrain", role="system")


def order(version: int, status: str = "registered", notes=()) -> WorkOrder:
    return WorkOrder(work_order_id="WO-1", version=version, status=status, category="waterlogging",
                     category_name="路面积水", fusion_group="flooding", priority="high", route_rule="none",
                     location=LOC, opened_at=T0, created_at=T0, source_ingested_at=T0, time_limit_hours=12,
                     due_at=T0 + timedelta(hours=12), notes=list(notes),
                     events=[EventRef(event_id="ev-1", source="report", kind="report", category="waterlogging",
                                      occurred_at=T0, lon=LOC.lon, lat=LOC.lat)])


def change(version: int, kind: str, status: str, notes=()) -> WorkOrderChange:
    return WorkOrderChange(work_order_id="WO-1", version=version, type=kind, at=T0 + timedelta(minutes=version),
                           actor=SYSTEM, snapshot=order(version, status, notes))


def test_steps_accumulate_through_pack_and_the_state_record_is_the_wire_model():
    record = OrderRecord(b"")
    record.add(change(1, "created", "registered"), None)
    record.add(change(2, "dispatched", "dispatched"), order(1))
    record = OrderRecord.unpack(record.pack())
    record.add(change(3, "commented", "dispatched", notes=["电话已联系"]), order(2))
    state = OrderState.model_validate_json(record.state_record("WO-1", 3))
    assert [(s.version, s.type, s.status, s.note) for s in state.steps] == [
        (1, "created", "registered", None), (2, "dispatched", "dispatched", None),
        (3, "commented", "dispatched", "电话已联系")]
    assert state.snapshot.version == 3 and state.at == T0 + timedelta(minutes=3)
    assert record.order() == order(3, "dispatched", ["电话已联系"])


def test_beyond_the_bound_evidence_steps_go_first_then_the_oldest(monkeypatch):
    monkeypatch.setattr(orderstate, "MAX_STEPS", 5)
    monkeypatch.setattr(orderstate, "TRIM_TO", 5)
    record = OrderRecord(b"")
    kinds = ["created", "dispatched"] + ["evidence_added"] * 6 + ["accepted", "handled"]
    for v, kind in enumerate(kinds, 1):
        record.add(change(v, kind, "dispatched"), order(v - 1) if v > 1 else None)
    state = orjson.loads(record.state_record("WO-1", len(kinds)))
    assert [(s["version"], s["type"]) for s in state["steps"]] == [
        (1, "created"), (2, "dispatched"), (8, "evidence_added"), (9, "accepted"), (10, "handled")]
    assert state["steps_omitted"] == 5
    for v in range(11, 14):                                   # no evidence left to drop: the oldest go
        record.add(change(v, "supervised", "dispatched"), order(v - 1))
    state = orjson.loads(record.state_record("WO-1", 13))
    assert [s["version"] for s in state["steps"]] == [9, 10, 11, 12, 13] and state["steps_omitted"] == 8


def test_a_value_from_before_the_steps_reads_as_an_order_without_steps():
    record = OrderRecord.unpack(to_json(order(4, "accepted")))
    assert record.order().version == 4 and record.count == 0
    state = OrderState.model_validate_json(record.state_record("WO-1", 4))
    assert state.steps == [] and state.at == T0


def test_an_open_order_is_refreshed_once_a_period_and_a_dropped_partition_forgets():
    refresh = StateRefresh(every=100.0)
    refresh.written(0, "WO-1", 1000.0)
    refresh.written(0, "WO-1", 1050.0)          # already scheduled: one entry per order
    refresh.written(1, "WO-2", 1000.0)
    assert refresh.due(1099.0) == []
    assert sorted(refresh.due(1100.0)) == [(0, "WO-1"), (1, "WO-2")]
    refresh.written(0, "WO-1", 1100.0)
    refresh.drop({0})
    assert refresh.due(10_000.0) == []


def test_a_record_is_stale_once_a_whole_period_old():
    refresh = StateRefresh(every=100.0)
    assert not refresh.stale(1000.0, 1099.9)   # written since its entry was scheduled: not yet
    assert refresh.stale(1000.0, 1100.0) and refresh.stale(1000.0, 5000.0)


def test_trimming_happens_in_one_go_down_to_the_lower_mark(monkeypatch):
    monkeypatch.setattr(orderstate, "MAX_STEPS", 6)
    monkeypatch.setattr(orderstate, "TRIM_TO", 3)
    record = OrderRecord(b"")
    counts = []
    for v in range(1, 12):
        record.add(change(v, "created" if v == 1 else "evidence_added", "registered"), order(v - 1) if v > 1 else None)
        counts.append(record.count)
    assert counts == [1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 3]
    state = orjson.loads(record.state_record("WO-1", 11))
    assert state["steps"][0]["type"] == "created" and state["steps_omitted"] == 8
    assert [s["version"] for s in state["steps"]] == [1, 10, 11]
