"""The closed loop's clocks in one process on the city's own time limits (moved from
tests/integration/test_lifecycle_clocks.py, where a config of seconds-long limits was
waited out against a real worker): a sensor order verified automatically once its gauge
has stayed normal, and an alarm back before closure sending the order back for rework —
and never closing itself after that."""

import time

import orjson

from citybrain_tools.simulate.traffic import iso

from .city import City

WATER = {"id": "water-7", "role": "department", "department": "water"}


def reading(device, value, at, seq):
    return orjson.dumps({"device_id": device, "sensor_type": "water_level", "value": value,
                         "ts": iso(at), "seq": seq})


def command(city: City, cid, wo, action, actor, **extra):
    city.put(city.topics.commands, wo.encode(), orjson.dumps(
        {"command_id": cid, "work_order_id": wo, "action": action, "actor": actor, "ts": iso(city.clock()),
         **extra}))


def changes(city: City, wo: str) -> list[dict]:
    mine = [c for c in city.on(city.topics.workorder_events) if c["work_order_id"] == wo]
    assert [c["version"] for c in mine] == list(range(1, len(mine) + 1))    # each change once, in order
    return mine


def moves(city: City, wo: str) -> list[str]:
    return [c["type"] for c in changes(city, wo) if c["type"] != "supervised"]


def handled_gauge_order(city: City, device: str, alarm_at: float) -> str:
    """Water over 0.15 m held 70 s from ``alarm_at``: an alarm, an order to the water
    department, which accepts and handles it."""
    city.put(city.topics.iot, device.encode(), reading(device, 0.3, alarm_at, 1))
    city.put(city.topics.iot, device.encode(), reading(device, 0.32, alarm_at + 70, 2))
    [first] = city.on(city.topics.dispatch("water"))
    wo = first["work_order_id"]
    command(city, f"{wo}-a", wo, "accept", WATER)
    command(city, f"{wo}-h", wo, "handle", WATER, note="已抽排")
    assert moves(city, wo)[-1] == "handled"
    return wo


def test_a_sensor_order_is_verified_automatically(city):
    now = time.time()   # readings carry event time; the city's clock starts now
    wo = handled_gauge_order(city, "WLV-EP-01", now - 700)
    # The gauge reads under 0.05 m for 310 s (event time): recovered.
    city.put(city.topics.iot, b"WLV-EP-01", reading("WLV-EP-01", 0.02, now - 400, 3))
    city.put(city.topics.iot, b"WLV-EP-01", reading("WLV-EP-01", 0.01, now - 90, 4))
    limit = city.config.lifecycle.auto_verify.normal_minutes
    city.advance(minutes=limit - 1, step_minutes=1)
    assert "verified" not in moves(city, wo)                     # not before its time
    city.advance(minutes=2, step_minutes=1)
    # The gauge alarmed (at blue, the lowest level); its recovery takes the level away (recorded).
    assert moves(city, wo) == ["created", "dispatched", "accepted", "handled", "recovery_recorded",
                               "deescalated", "verified"]
    verified = changes(city, wo)[-1]
    assert verified["actor"]["role"] == "system" and verified["snapshot"]["status"] == "closed"
    assert "自动核查通过" in verified["snapshot"]["notes"][-1]


def test_an_alarm_back_before_closure_sends_the_order_back_for_rework(city):
    now = time.time()
    wo = handled_gauge_order(city, "WLV-UP-01", now - 900)
    # Recovered (310 s under 0.05 m) … and the water is back (70 s over 0.15 m) before the
    # normal time automatic verification waits for.
    for seq, (value, ago) in enumerate([(0.02, 600), (0.01, 280), (0.30, 200), (0.31, 120)], start=3):
        city.put(city.topics.iot, b"WLV-UP-01", reading("WLV-UP-01", value, now - ago, seq))
    # The returning alarm sends it back for rework and raises the warning level (blue) again.
    assert moves(city, wo) == ["created", "dispatched", "accepted", "handled", "recovery_recorded", "deescalated",
                               "evidence_added", "verification_rejected", "escalated"]
    back = next(c for c in changes(city, wo) if c["type"] == "verification_rejected")
    assert back["actor"]["role"] == "system"
    assert (back["snapshot"]["status"], back["snapshot"]["rework_count"]) == ("accepted", 1)
    city.advance(hours=3, step_minutes=5)    # far past the normal time: it must not close itself now
    assert "verified" not in moves(city, wo)
