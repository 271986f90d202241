"""The per-record guard: no single record, however large or strange, stops a stage — each
gets exactly one outcome (issue 11) — and a long batch gives the event loop back."""

import asyncio
import base64
import time

import orjson

from citybrain.stream.guard import RecordGuard
from citybrain.stream.output import Output
from citybrain.stream.stage import RunnerSettings

from .fakes import FakeStage, record


def guard() -> RecordGuard:
    return RecordGuard(FakeStage(), RunnerSettings("127.0.0.1:1", deadletter_topic="dead"))


def dead(o: Output) -> dict:
    assert o.topic == "dead"
    return orjson.loads(o.value)


def test_each_record_has_exactly_one_outcome_and_the_stage_goes_on():
    out = guard().handle([record(0, b"ok-1"), record(1, b"boom"), record(2, b"huge"), record(3, b"ok-2")])
    assert [o.source for o in out] == [("in", 0, 0), ("in", 0, 1), ("in", 0, 2), ("in", 0, 3)]
    assert out[0].value == b"ok-1" and out[3].value == b"ok-2"
    boom = dead(out[1])
    assert boom["reason"] == "internal_error" and boom["exception_type"] == "KeyError"
    assert base64.b64decode(boom["original_b64"]) == b"boom" and boom["source_offset"] == 1
    huge = dead(out[2])
    assert huge["reason"] == "output_rejected" and "2000000 bytes" in huge["detail"]


def test_an_input_whose_output_the_broker_refused_is_dead_lettered_on_the_retry():
    g = guard()
    g.poison.add(("in", 0, 5))
    out = g.handle([record(5, b"fine-but-refused"), record(6, b"ok")])
    assert dead(out[0])["reason"] == "output_rejected" and out[1].value == b"ok"


async def test_a_long_batch_gives_the_event_loop_back_between_slices():
    """Handling a batch longer than a slice lets other tasks run in between (the other
    stage's fetches and acknowledgements), with each record's outcome as in one go."""
    g = guard()
    g.SLICE_SECONDS, g.SLICE_RECORDS = 0.002, 1
    slow = g.stage.handle

    def handle_slowly(m, out):
        until = time.perf_counter() + 0.001
        while time.perf_counter() < until:   # CPU-bound, as a stage's handling is
            pass
        slow(m, out)
    g.stage.handle = handle_slowly
    ran_between: list[int] = []
    handled: list[Output] = []

    async def other_task():
        while True:
            ran_between.append(len(handled))
            await asyncio.sleep(0)
    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    records = [record(i, b"boom" if i == 7 else f"ok-{i}".encode()) for i in range(40)]
    handled = await g.handle_in_slices(records)
    other.cancel()
    assert [o.source for o in handled] == [("in", 0, i) for i in range(40)]
    assert dead(handled[7])["reason"] == "internal_error"
    assert [o.value for o in handled if o.topic == "events"] == [f"ok-{i}".encode() for i in range(40) if i != 7]
    assert len(ran_between) >= 10   # 40 ms of work in 2 ms slices: the loop came back ~20 times


async def test_a_short_batch_is_handled_without_yielding():
    steps = []

    async def other_task():
        steps.append("other")
    other = asyncio.create_task(other_task())
    out = await guard().handle_in_slices([record(0, b"ok")])
    steps.append("handled")
    await other
    assert [o.value for o in out] == [b"ok"] and steps == ["handled", "other"]
