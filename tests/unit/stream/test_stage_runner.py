"""The stage runner's per-record guard: no single record, however large or strange,
stops a stage — each gets exactly one outcome (issue 11)."""

import base64

import orjson
from aiokafka import ConsumerRecord

from citybrain.stream.batch import RunnerSettings, Stage, StageRunner
from citybrain.stream.output import Output


def record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord("in", 0, offset, 1_800_000_000_000, 0, b"key", value, None, len(b"key"),
                          len(value), [])


def handle(m, out):
    if m.value == b"boom":
        out.append(Output("events", None, b"half-made"))   # taken back when the record fails
        raise KeyError("no such thing")
    if m.value == b"huge":
        out.append(Output("events", None, b"x" * 2_000_000))
        return
    out.append(Output("events", None, m.value))


def runner() -> StageRunner:
    stage = Stage("normalise", "grp", ["in"], handle, lambda m: "iot")
    return StageRunner(stage, RunnerSettings("127.0.0.1:1", deadletter_topic="dead"), lambda txn: None)


def dead(o: Output) -> dict:
    assert o.topic == "dead"
    return orjson.loads(o.value)


async def test_each_record_has_exactly_one_outcome_and_the_stage_goes_on():
    r = runner()
    out = r._handle([record(0, b"ok-1"), record(1, b"boom"), record(2, b"huge"), record(3, b"ok-2")])
    assert [o.source for o in out] == [("in", 0, 0), ("in", 0, 1), ("in", 0, 2), ("in", 0, 3)]
    assert out[0].value == b"ok-1" and out[3].value == b"ok-2"
    boom = dead(out[1])
    assert boom["reason"] == "internal_error" and boom["exception_type"] == "KeyError"
    assert base64.b64decode(boom["original_b64"]) == b"boom" and boom["source_offset"] == 1
    huge = dead(out[2])
    assert huge["reason"] == "output_rejected" and "2000000 bytes" in huge["detail"]


async def test_an_input_whose_output_the_broker_refused_is_dead_lettered_on_the_retry():
    r = runner()
    r.poison.add(("in", 0, 5))
    out = r._handle([record(5, b"fine-but-refused"), record(6, b"ok")])
    assert dead(out[0])["reason"] == "output_rejected" and out[1].value == b"ok"
