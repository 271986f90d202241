"""Joint handling (联动处置) and escalation in one process (DESIGN §12; moved from
tests/integration/test_joint_handling.py): a gas leak worked by three departments to
closure, and a rising gauge that climbs blue → red, escalates its order and brings in
emergency command — then recovers."""

import time

import orjson

from citybrain_tools.simulate.traffic import iso

from .city import City
from .metrics import Deltas, total

GAS = {"id": "gas-1", "role": "department", "department": "gas_utility"}
FIRE = {"id": "fire-2", "role": "department", "department": "fire"}
POLICE = {"id": "police-3", "role": "department", "department": "police"}
GRID = {"id": "GM-0107", "role": "grid", "grid_prefix": "370306"}


def command(city: City, cid, wo, action, actor, **extra):
    city.put(city.topics.commands, wo.encode(), orjson.dumps(
        {"command_id": cid, "work_order_id": wo, "action": action, "actor": actor, "ts": iso(city.clock()),
         **extra}))


def reading(device, value, at, seq):
    return orjson.dumps({"device_id": device, "sensor_type": "water_level", "value": value,
                         "ts": iso(at), "seq": seq})


def changes(city: City, topic: str, wo: str) -> list[dict]:
    return sorted((c for c in city.on(topic) if c["work_order_id"] == wo), key=lambda c: c["version"])


def test_a_gas_leak_worked_by_three_departments_to_closure(city):
    moved = Deltas()
    city.put(city.topics.reports, b"GM-0107", orjson.dumps(
        {"report_id": "R-GAS-1", "reporter_id": "GM-0107", "category": "gas_leak", "ts": iso(time.time() - 20),
         "lon": 117.8625, "lat": 36.7935, "description": "小区门口闻到燃气味 smell of gas at the gate"}))
    [lead] = city.on(city.topics.dispatch("gas_utility"))
    wo = lead["work_order_id"]
    assert lead["role"] == "lead"
    for dept in ("fire", "police"):
        [part] = city.on(city.topics.dispatch(dept))
        assert (part["work_order_id"], part["type"], part["role"], part["part"]) == (wo, "assist_added", "assist", dept)
    command(city, "g1", wo, "accept", GAS)
    command(city, "g2", wo, "handle", GAS, note="关阀 valve closed")       # refused: assists open
    command(city, "f1", wo, "accept", FIRE)
    command(city, "p1", wo, "accept", POLICE)
    command(city, "f2", wo, "handle", FIRE, note="已警戒疏散 cordoned and evacuated")
    command(city, "p2", wo, "handle", POLICE, note="交通管制 traffic held")
    command(city, "g3", wo, "handle", GAS, note="已关阀检修 valve closed, repaired")
    command(city, "v1", wo, "verify", GRID, note="现场无异味 no smell")
    mine = changes(city, city.topics.workorder_events, wo)
    assert [(c["type"], c.get("part")) for c in mine] == [
        ("created", None), ("dispatched", None), ("assist_added", "fire"), ("assist_added", "police"),
        ("accepted", None), ("assist_accepted", "fire"), ("assist_accepted", "police"),
        ("assist_handled", "fire"), ("assist_handled", "police"), ("handled", None), ("verified", None)]
    final = mine[-1]["snapshot"]
    assert final["status"] == "closed"
    assert [(a["department"], a["status"]) for a in final["assists"]] == [("fire", "handled"), ("police", "handled")]
    [refused] = [r for r in city.on(city.topics.rejected) if r["command"]["command_id"] == "g2"]
    assert refused["reason"] == "assist_open"
    assert moved("citybrain_workorder_transitions_total", action="assist_added") == 2
    assert moved("citybrain_workorder_transitions_total", action="assist_handled") == 2


def test_a_rising_gauge_escalates_its_order_and_brings_in_emergency_command(city):
    moved = Deltas()
    dev, t0 = "WLV-UP-01", time.time() - 600
    # 0.2 m for 60 s: alarm at blue; then yellow, orange and red, each held (60/60/30 s).
    climb = [(0, 0.2), (60, 0.2), (70, 0.4), (130, 0.4), (140, 0.6), (200, 0.6), (210, 0.9), (240, 0.9)]
    for i, (dt, v) in enumerate(climb):
        city.put(city.topics.iot, dev.encode(), reading(dev, v, t0 + dt, i + 1))
    [lead] = city.on(city.topics.dispatch("water"))
    wo = lead["work_order_id"]
    mine = changes(city, city.topics.workorder_events, wo)
    escalations = [c["escalation"] for c in mine if c["type"] == "escalated"]
    assert [(e["warning_from"], e["warning_to"]) for e in escalations] == [
        ("blue", "yellow"), ("yellow", "orange"), ("orange", "red")]
    assert [e["emergency_to"] for e in escalations] == [None, "IV", "III"]
    assert escalations[-1]["priority_to"] == "urgent"
    parts = [c["part"] for c in mine if c["type"] == "assist_added"]
    assert parts == ["traffic", "emergency"]
    final = mine[-1]["snapshot"]
    assert (final["warning_level"], final["emergency_level"], final["priority"]) == ("red", "III", "urgent")
    [joined] = city.on(city.topics.dispatch("emergency"))
    assert (joined["work_order_id"], joined["role"]) == (wo, "assist")
    command_centre = changes(city, city.topics.emergency, wo)
    assert command_centre[0]["snapshot"]["emergency_level"] == "IV"
    assert {c["snapshot"]["emergency_level"] for c in command_centre} == {"IV", "III"}
    assert {lv: moved("citybrain_workorders_escalated_total", category="waterlogging", to_level=lv)
            for lv in ("yellow", "orange", "red")} == {"yellow": 1.0, "orange": 1.0, "red": 1.0}
    # A gauge is set, not added to: this city's stage wrote it last (another test's stage
    # in this process may have written it before, so no difference is taken).
    assert total("citybrain_workorders_emergency_open", emergency_level="III") == 1.0
    assert total("citybrain_workorders_emergency_open", emergency_level="IV") == 0.0

    # The gauge recovers (under 0.05 m for 300 s): the level and the emergency level fall,
    # recorded; the priority stays.
    city.put(city.topics.iot, dev.encode(), reading(dev, 0.02, t0 + 250, 20))
    city.put(city.topics.iot, dev.encode(), reading(dev, 0.01, t0 + 560, 21))
    down = [c for c in changes(city, city.topics.workorder_events, wo) if c["type"] == "deescalated"]
    assert down and down[-1]["escalation"]["reason"] == "alarm_cleared"
    snap = down[-1]["snapshot"]
    assert (snap["warning_level"], snap["emergency_level"], snap["priority"]) == (None, None, "urgent")
