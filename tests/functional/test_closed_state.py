"""Closed orders in the fuse stage's hot state, on the fake clock (the decisions of
tests/integration/test_closed_state.py, which waits out a 25 s retention against a real
worker; the changelog's tombstone and the restart stay there): until closed_state_days a
replay of the order's findings is a duplicate, after it the order leaves hot state."""

import orjson

from citybrain import metrics
from citybrain_tools.simulate.traffic import iso

from .city import PARTITION, City

OPERATOR = {"id": "op-1", "role": "operator"}


def alert(city: City) -> bytes:
    return orjson.dumps({"alert_id": "VA-E1", "camera_id": "CAM-UP-01", "algorithm": "road_ponding",
                         "confidence": 0.9, "ts": iso(city.clock() - 60)})


def test_a_closed_order_stays_a_duplicate_until_closed_state_days_then_leaves_hot_state(city):
    keep_days = city.config.settings.worker.closed_state_days
    city.put(city.topics.video, b"CAM-UP-01", alert(city))
    [dispatched] = city.on(city.topics.dispatch("water"))
    wo = dispatched["work_order_id"]
    for i, action in enumerate(["accept", "handle", "verify"]):
        city.put(city.topics.commands, wo.encode(), orjson.dumps(
            {"command_id": f"c{i}", "work_order_id": wo, "action": action, "actor": OPERATOR,
             "ts": iso(city.clock())}))
    assert city.on(city.topics.workorder_events)[-1]["snapshot"]["status"] == "closed"
    created = len([c for c in city.on(city.topics.workorder_events) if c["type"] == "created"])
    evicted = metrics.STATE_EVICTED._value.get()

    city.advance(hours=(keep_days - 1) * 24, step_minutes=60)
    city.put(city.topics.video, b"CAM-UP-01", alert(city))   # a replay of the same alert
    assert city.on(city.topics.deadletter) == [] and len(city.on(city.topics.events)) == 2
    assert len([c for c in city.on(city.topics.workorder_events) if c["type"] == "created"]) == created
    assert city.fuse.work_orders.get(PARTITION, wo) is not None   # kept: still a duplicate

    city.advance(hours=24 + 1, step_minutes=60)
    assert city.fuse.work_orders.get(PARTITION, wo) is None
    assert metrics.STATE_EVICTED._value.get() == evicted + 1
    assert wo not in city.fuse.indexes[PARTITION].orders
