"""联网率's input (docs/lifecycle.md, device health): the normalise stage's DeviceHealth
writes a device's devices.liveness record when its liveness changes — once per device and
process, then on each transition — never per reading."""

from __future__ import annotations

import orjson

from citybrain.domain.normalize import RecordMeta
from citybrain.kafka.topics import Topics
from citybrain.stream.health import DeviceHealth
from citybrain.wire.models import DeviceStatus


def liveness(out):
    return [(o.key.decode(), orjson.loads(o.value)["networked"]) for o in out]


def test_liveness_is_written_on_change_only(config, normalizer):
    topics = Topics("t.")
    health = DeviceHealth(config.sensor_rules, topics, normalizer, "t.device_health-changelog", lambda: ())
    health.assigned({0})
    out: list = []

    def read(device, at):
        health.heard(0, device, RecordMeta(topics.iot, 0, 0, at, device.encode()))
        health.drain(out)
    read("WLV-UP-01", 100.0)
    read("WLV-UP-01", 101.0)                 # heard again: nothing new to say
    read("CAM-UP-01", 101.0)                 # a camera heard by an alert
    assert liveness(out) == [("WLV-UP-01", True), ("CAM-UP-01", True)]
    assert all(o.topic == "t.devices.liveness" for o in out)
    out.clear()
    health.clock.read(0, 10_000.0)           # long past WLV-UP-01's limit: silent
    found = health.due()
    assert [(p, e is not None, liveness(live)) for p, e, _, live in found] == [(0, True, [("WLV-UP-01", False)])]
    read("WLV-UP-01", 10_001.0)              # heard again
    assert liveness(out) == [("WLV-UP-01", True)]
    out.clear()
    health.stated(0, DeviceStatus.model_validate({"device_id": "CAM-UP-01", "status": "offline",
                                                  "ts": "2026-12-04T10:00:00Z"}),
                  RecordMeta(topics.device_status, 0, 1, 10_002.0, b"CAM-UP-01"))
    health.drain(out)
    assert liveness(out) == [("CAM-UP-01", False)]
