"""Joint handling (联动处置) and escalation through real Kafka and a real worker
(DESIGN §12): a gas leak worked by three departments to closure, and a rising gauge that
climbs blue → red, escalates its order and brings in emergency command."""

import asyncio
import time

import orjson
import pytest

from citybrain.promtext import samples
from citybrain.simulate.traffic import iso

from .kafka_helpers import consume, decode, produce, wait_for_metrics, worker_on_new_topics

pytestmark = pytest.mark.integration

GAS = {"id": "gas-1", "role": "department", "department": "gas_utility"}
FIRE = {"id": "fire-2", "role": "department", "department": "fire"}
POLICE = {"id": "police-3", "role": "department", "department": "police"}
EMERGENCY = {"id": "em-4", "role": "department", "department": "emergency"}
GRID = {"id": "GM-0107", "role": "grid", "grid_prefix": "370306"}


def command(cid, wo, action, actor, **extra):
    return orjson.dumps({"command_id": cid, "work_order_id": wo, "action": action, "actor": actor,
                         "ts": iso(time.time()), **extra})


def reading(device, value, at, seq):
    return orjson.dumps({"device_id": device, "sensor_type": "water_level", "value": value,
                         "ts": iso(at), "seq": seq})


async def changes_of(bootstrap, topic, wo, done, timeout=40.0) -> list[dict]:
    """The changes of one order on ``topic`` in version order, once ``done(changes)``."""
    deadline = time.monotonic() + timeout
    while True:
        mine = sorted((c for c in decode(await consume(bootstrap, topic, want=10**9, timeout=1.5, settle=0))
                       if c["work_order_id"] == wo), key=lambda c: c["version"])
        if done(mine) or time.monotonic() > deadline:
            return mine
        await asyncio.sleep(0.5)


@pytest.fixture
async def running(kafka_bootstrap, tmp_path, request):
    async with worker_on_new_topics(kafka_bootstrap, request.node.name, tmp_path) as running:
        yield running


async def test_a_gas_leak_worked_by_three_departments_to_closure(kafka_bootstrap, running):
    t, worker = running
    report = orjson.dumps({"report_id": "R-GAS-1", "reporter_id": "GM-0107", "category": "gas_leak",
                           "ts": iso(time.time() - 20), "lon": 117.8625, "lat": 36.7935,
                           "description": "小区门口闻到燃气味 smell of gas at the gate"})
    await produce(kafka_bootstrap, [(t.reports, b"GM-0107", report)])
    [lead] = decode(await consume(kafka_bootstrap, t.dispatch("gas_utility"), want=1, timeout=30, settle=0))
    wo = lead["work_order_id"]
    assert lead["role"] == "lead"
    for dept in ("fire", "police"):
        [part] = decode(await consume(kafka_bootstrap, t.dispatch(dept), want=1, timeout=20, settle=0))
        assert (part["work_order_id"], part["type"], part["role"], part["part"]) == (wo, "assist_added", "assist", dept)
    k = wo.encode()
    await produce(kafka_bootstrap, [
        (t.commands, k, command("g1", wo, "accept", GAS)),
        (t.commands, k, command("g2", wo, "handle", GAS, note="关阀 valve closed")),   # refused: assists open
        (t.commands, k, command("f1", wo, "accept", FIRE)),
        (t.commands, k, command("p1", wo, "accept", POLICE)),
        (t.commands, k, command("f2", wo, "handle", FIRE, note="已警戒疏散 cordoned and evacuated")),
        (t.commands, k, command("p2", wo, "handle", POLICE, note="交通管制 traffic held")),
        (t.commands, k, command("g3", wo, "handle", GAS, note="已关阀检修 valve closed, repaired")),
        (t.commands, k, command("v1", wo, "verify", GRID, note="现场无异味 no smell")),
    ])
    mine = await changes_of(kafka_bootstrap, t.workorder_events, wo, lambda cs: any(c["type"] == "verified" for c in cs))
    moves = [(c["type"], c.get("part")) for c in mine]
    assert moves == [("created", None), ("dispatched", None), ("assist_added", "fire"), ("assist_added", "police"),
                     ("accepted", None), ("assist_accepted", "fire"), ("assist_accepted", "police"),
                     ("assist_handled", "fire"), ("assist_handled", "police"), ("handled", None),
                     ("verified", None)]
    final = mine[-1]["snapshot"]
    assert final["status"] == "closed"
    assert [(a["department"], a["status"]) for a in final["assists"]] == [("fire", "handled"), ("police", "handled")]
    [refused] = [r for r in decode(await consume(kafka_bootstrap, t.rejected, want=1, timeout=20, settle=0))
                 if r["command"]["command_id"] == "g2"]
    assert refused["reason"] == "assist_open"
    text = await wait_for_metrics(worker, lambda s: "citybrain_workorder_transitions_total" in s, timeout=20)
    moved = {lab["action"]: v for lab, v in samples(text, "citybrain_workorder_transitions_total")}
    assert moved["assist_added"] == 2 and moved["assist_handled"] == 2
    print(f"\n  gas leak {wo}: lead gas_utility + assists fire, police, {len(mine)} changes to closure")


async def test_a_rising_gauge_escalates_its_order_and_brings_in_emergency_command(kafka_bootstrap, running):
    t, worker = running
    now = time.time()
    dev, t0 = "WLV-UP-01", now - 600
    # 0.2 m for 60 s: alarm at blue; then yellow, orange and red, each held (60/60/30 s).
    climb = [(0, 0.2), (60, 0.2), (70, 0.4), (130, 0.4), (140, 0.6), (200, 0.6), (210, 0.9), (240, 0.9)]
    await produce(kafka_bootstrap, [(t.iot, dev.encode(), reading(dev, v, t0 + dt, i + 1))
                                    for i, (dt, v) in enumerate(climb)])
    [lead] = decode(await consume(kafka_bootstrap, t.dispatch("water"), want=1, timeout=30, settle=0))
    wo = lead["work_order_id"]
    mine = await changes_of(kafka_bootstrap, t.workorder_events, wo,
                            lambda cs: any((c.get("escalation") or {}).get("warning_to") == "red" for c in cs))
    escalations = [c["escalation"] for c in mine if c["type"] == "escalated"]
    assert [(e["warning_from"], e["warning_to"]) for e in escalations] == [
        ("blue", "yellow"), ("yellow", "orange"), ("orange", "red")]
    assert [e["emergency_to"] for e in escalations] == [None, "IV", "III"]
    assert escalations[-1]["priority_to"] == "urgent"
    parts = [c["part"] for c in mine if c["type"] == "assist_added"]
    assert parts == ["traffic", "emergency"]
    final = mine[-1]["snapshot"]
    assert (final["warning_level"], final["emergency_level"], final["priority"]) == ("red", "III", "urgent")
    [joined] = decode(await consume(kafka_bootstrap, t.dispatch("emergency"), want=1, timeout=20, settle=0))
    assert (joined["work_order_id"], joined["role"]) == (wo, "assist")
    command_centre = await changes_of(kafka_bootstrap, t.emergency, wo,
                                      lambda cs: any(c["snapshot"]["emergency_level"] == "III" for c in cs))
    assert command_centre and command_centre[0]["snapshot"]["emergency_level"] == "IV"
    assert {c["snapshot"]["emergency_level"] for c in command_centre} == {"IV", "III"}

    def escalated(text):
        return {lab["to_level"]: v for lab, v in samples(text, "citybrain_workorders_escalated_total")
                if lab["category"] == "waterlogging"}
    text = await wait_for_metrics(worker, lambda s: escalated(s).get("red") == 1.0, timeout=20)
    assert escalated(text) == {"yellow": 1.0, "orange": 1.0, "red": 1.0}
    open_em = {lab["emergency_level"]: v for lab, v in samples(text, "citybrain_workorders_emergency_open")}
    assert open_em.get("III") == 1.0 and open_em.get("IV", 0.0) == 0.0

    # The gauge recovers (under 0.05 m for 300 s): the level and the emergency level fall,
    # recorded; the priority stays.
    await produce(kafka_bootstrap, [(t.iot, dev.encode(), reading(dev, 0.02, t0 + 250, 20)),
                                    (t.iot, dev.encode(), reading(dev, 0.01, t0 + 560, 21))])
    mine = await changes_of(kafka_bootstrap, t.workorder_events, wo,
                            lambda cs: any(c["type"] == "deescalated" for c in cs))
    down = [c for c in mine if c["type"] == "deescalated"]
    assert down and down[-1]["escalation"]["reason"] == "alarm_cleared"
    snap = down[-1]["snapshot"]
    assert (snap["warning_level"], snap["emergency_level"], snap["priority"]) == (None, None, "urgent")
    print(f"\n  rising gauge {wo}: {len(escalations)} escalations blue→red, emergency IV→III→none, "
          f"assists {parts}")
