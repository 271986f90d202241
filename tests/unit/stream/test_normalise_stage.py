"""The normalise stage driven record by record with no broker (issue 39): records in as the
runner hands them over, outputs per topic; its tick from its collaborators."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import ConsumerRecord

from citybrain.kafka.topics import Topics
from citybrain.stream.collaborators import collaborators
from citybrain.stream.normalise_stage import DeadLetterLog, NormaliseStage
from citybrain.stream.output import Output

TOPICS = Topics("")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp()
GAUGE = "WLV-00001"   # a water-level gauge of the sample registry


@pytest.fixture
def stage(config, normalizer) -> NormaliseStage:
    s = NormaliseStage(collaborators(config, clock=lambda: T0), TOPICS, normalizer, "unit", DeadLetterLog())
    s.on_assigned({0})
    return s


def feed(stage: NormaliseStage, topic: str, key: bytes | None, value: bytes, at: float, offset: int = 0
         ) -> list[Output]:
    m = ConsumerRecord(topic, 0, offset, int(at * 1000), 0, key, value, None, len(key or b""), len(value), [])
    out: list[Output] = []
    stage.handle(m, out)
    return out


def reading(value: float, at: float, seq: int) -> bytes:
    return orjson.dumps({"device_id": GAUGE, "sensor_type": "water_level", "value": value,
                         "ts": datetime.fromtimestamp(at, UTC).isoformat(), "seq": seq})


def test_a_held_alarm_becomes_one_event_for_the_log_and_for_fusion(stage, config):
    first = feed(stage, TOPICS.iot, GAUGE.encode(), reading(0.5, T0, 1), T0)
    assert [o.topic for o in first] == [TOPICS.liveness]   # heard; the alarm holds 60 s first
    assert orjson.loads(first[0].value)["networked"] is True
    out = feed(stage, TOPICS.iot, GAUGE.encode(), reading(0.5, T0 + 61, 2), T0 + 61, offset=1)
    assert sorted(o.topic for o in out) == sorted([TOPICS.events, TOPICS.fusion_inbox])
    logged, fused = (next(o for o in out if o.topic == t) for t in (TOPICS.events, TOPICS.fusion_inbox))
    event = orjson.loads(fused.value)
    assert (event["kind"], event["device_id"], event["source"]) == ("alarm", GAUGE, "iot")
    assert logged.value == fused.value and logged.key == event["location"]["street_code"].encode()
    assert fused.key == config.router.group(event["category"]).encode()   # keyed by fusion group
    assert stage.decoded[(0, GAUGE)].alarm   # the device's alarm state is kept


def test_a_record_that_is_not_json_is_a_dead_letter_with_its_reason(stage):
    out = feed(stage, TOPICS.reports, b"r-1", b"{not json", T0)
    assert [o.topic for o in out] == [TOPICS.deadletter]
    assert orjson.loads(out[0].value)["reason"] == "not_json"


def test_the_stage_ticks_as_often_as_its_collaborators_say(config, normalizer):
    collab = collaborators(config)
    assert collab.health_tick_seconds == config.lifecycle.timers.health_tick_seconds
    for every in (collab.health_tick_seconds, 7.5):
        given = dataclasses.replace(collab, health_tick_seconds=every)
        assert NormaliseStage(given, TOPICS, normalizer, "unit", DeadLetterLog()).tick_seconds == every
