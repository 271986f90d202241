"""The command routing stage driven record by record with no broker: each command's one
outcome — forwarded to its order's fusion group, refused, or a dead letter with its reason."""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord

from citybrain.kafka.topics import Topics
from citybrain.stream.commands import CommandStage, command_group
from citybrain.stream.output import Output
from citybrain.stream.stage import RunnerSettings
from citybrain.stream.wiring import stage_consumer

from .fakes import FakeStage

TOPICS = Topics("p.")


def route(value: bytes | None, key: bytes | None = b"WO-water-17-1") -> list[Output]:
    stage = CommandStage(TOPICS, "p.citybrain", keep_bytes=2048)
    m = ConsumerRecord(TOPICS.commands, 3, 41, 1_800_000_000_000, 0, key, value, None, len(key or b""),
                       len(value or b""), [])
    out: list[Output] = []
    stage.handle(m, out)
    return out


def command(**fields) -> bytes:
    return orjson.dumps({"command_id": "c-1", "work_order_id": "WO-water-17-1", "action": "comment",
                         "note": "现场已围挡", "actor": {"id": "op-1", "role": "operator"},
                         "ts": "2026-12-06T03:00:00Z", **fields})


def test_it_is_a_stage_of_its_own_group_reading_the_commands():
    stage = CommandStage(TOPICS, "p.citybrain")
    assert (stage.name, stage.group_id, stage.topics) == ("commands", "p.citybrain-commands", ["p.workorders.commands"])
    assert command_group("p.citybrain") == stage.group_id
    assert stage.states == [] and stage.state_topic is None and stage.tick() == []


def test_a_command_goes_to_the_fusion_inbox_keyed_by_its_orders_group_unchanged():
    value = command()
    [out] = route(value)
    assert (out.topic, out.key, out.value) == (TOPICS.fusion_inbox, b"water-17", value)


def test_a_merge_goes_first_where_the_surviving_order_lives():
    [out] = route(command(action="merge", into="WO-road-3-9"))
    assert (out.topic, out.key) == (TOPICS.fusion_inbox, b"road-3")


def test_an_id_that_is_not_a_work_orders_is_refused_on_rejected():
    [out] = route(command(work_order_id="ORDER-17"))
    assert (out.topic, out.key) == (TOPICS.rejected, b"ORDER-17")
    assert orjson.loads(out.value)["reason"] == "unknown_work_order"


def test_unusable_bytes_become_one_dead_letter_each_with_the_reason():
    cases = {b"{not json": "not_json", None: "not_json", b"x" * 4096: "too_large",
             command(action="teleport"): "invalid_field"}
    for value, reason in cases.items():
        [out] = route(value)
        dead = orjson.loads(out.value)
        assert (out.topic, dead["source"], dead["reason"]) == (TOPICS.deadletter, "command", reason), value
        assert (dead["source_partition"], dead["source_offset"], dead["source_timestamp"]) == (
            3, 41, "2027-01-15T08:00:00Z"), dead


async def test_its_consumer_waits_longer_for_a_fetch_than_the_hot_paths():
    """A click is a low rate: the idle consumer asks each broker 10 times a second, not 50."""
    settings = RunnerSettings("127.0.0.1:1")
    waits = {stage.name: stage_consumer(stage, settings)._fetch_max_wait_ms
             for stage in (CommandStage(TOPICS, "p.citybrain"), FakeStage())}
    assert waits == {"commands": 100, FakeStage().name: 20}
