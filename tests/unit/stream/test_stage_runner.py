"""The stage runner's per-record guard: no single record, however large or strange,
stops a stage — each gets exactly one outcome (issue 11); and its offset commits, which
never hold the loop up (issue 13)."""

import asyncio
import base64
import time

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from citybrain.stream.batch import RunnerSettings, StageRunner
from citybrain.stream.checkpoint import Checkpoint
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


class FakeStage:
    """The least a stage is (the Stage protocol): ``handle`` above, no state, no timers."""

    name, group_id, topics = "normalise", "grp", ["in"]
    states: list = []
    state_topic = None
    tick_seconds = 1.0
    clock = None

    def __init__(self):
        self.ready = asyncio.Event()

    def handle(self, m, out):
        handle(m, out)

    def source_of(self, m):
        return "iot"

    def on_assigned(self, partitions):
        pass

    def on_revoked(self, partitions):
        pass

    def tick(self):
        return []


def runner() -> StageRunner:
    return StageRunner(FakeStage(), RunnerSettings("127.0.0.1:1", deadletter_topic="dead"), lambda txn: None)


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


async def test_a_long_batch_gives_the_event_loop_back_between_slices():
    """Handling a batch longer than a slice lets other tasks run in between (the other
    stage's fetches and acknowledgements), with each record's outcome as in one go."""
    r = runner()
    r.SLICE_SECONDS, r.SLICE_RECORDS = 0.002, 1
    slow = r.stage.handle

    def handle_slowly(m, out):
        until = time.perf_counter() + 0.001
        while time.perf_counter() < until:   # CPU-bound, as a stage's handling is
            pass
        slow(m, out)
    r.stage.handle = handle_slowly
    ran_between: list[int] = []
    handled: list[Output] = []

    async def other_task():
        while True:
            ran_between.append(len(handled))
            await asyncio.sleep(0)
    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    records = [record(i, b"boom" if i == 7 else f"ok-{i}".encode()) for i in range(40)]
    handled = await r._handle_in_slices(records)
    other.cancel()
    assert [o.source for o in handled] == [("in", 0, i) for i in range(40)]
    assert dead(handled[7])["reason"] == "internal_error"
    assert [o.value for o in handled if o.topic == "events"] == [f"ok-{i}".encode() for i in range(40) if i != 7]
    assert len(ran_between) >= 10   # 40 ms of work in 2 ms slices: the loop came back ~20 times


async def test_a_short_batch_is_handled_without_yielding():
    r = runner()
    steps = []

    async def other_task():
        steps.append("other")
    other = asyncio.create_task(other_task())
    out = await r._handle_in_slices([record(0, b"ok")])
    steps.append("handled")
    await other
    assert [o.value for o in out] == [b"ok"] and steps == ["handled", "other"]


class SlowCommits:
    """A consumer whose commits wait until released (or fail)."""

    def __init__(self):
        self.release = asyncio.Event()
        self.calls: list[dict] = []
        self.fail: Exception | None = None

    def assignment(self):
        return {TopicPartition("in", 0)}

    async def commit(self, offsets):
        self.calls.append(dict(offsets))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail


async def test_the_offset_commit_runs_beside_the_next_batches_one_at_a_time():
    r = runner()
    r.consumer = SlowCommits()
    r.checkpoint = Checkpoint(send=None)
    tp = TopicPartition("in", 0)
    r.checkpoint.committable = {tp: 10}
    await asyncio.wait_for(r._commit(force=False), 1)      # returns with the commit still in flight
    assert r.consumer.calls == [{tp: 10}] and r.checkpoint.committed == {}
    r.checkpoint.committable = {tp: 20}
    r.last_commit = 0
    await r._commit(force=False)                            # one at a time: nothing new is sent
    assert len(r.consumer.calls) == 1
    r.consumer.release.set()
    await asyncio.sleep(0)
    await r._commit(force=True)                             # a hand-over: after the one in flight, awaited
    assert r.consumer.calls == [{tp: 10}, {tp: 20}] and r.checkpoint.committed == {tp: 20}


async def test_a_failed_background_commit_surfaces_at_the_next_call():
    r = runner()
    r.consumer = SlowCommits()
    r.consumer.fail = KafkaConnectionError("broker gone")
    r.consumer.release.set()
    r.checkpoint = Checkpoint(send=None)
    r.checkpoint.committable = {TopicPartition("in", 0): 10}
    await r._commit(force=False)
    await asyncio.sleep(0.01)
    r.last_commit = 0
    with pytest.raises(KafkaConnectionError):
        await r._commit(force=False)
    assert r.checkpoint.committed == {}


class FetchedAhead:
    """A consumer whose fetcher has handed out records up to the partition's end (its
    own position counts them as read) before the stage has handled them."""

    class _State:
        position, has_valid_position = 46, True

    def __init__(self):
        class Assignment:
            state_value = staticmethod(lambda tp: FetchedAhead._State)
        self._subscription = type("S", (), {"subscription": type("Sub", (), {"assignment": Assignment})})

    def last_poll_timestamp(self, tp):
        return 1_800_000_100_000

    def last_stable_offset(self, tp):
        return 46

    def highwater(self, tp):
        return 46


async def test_a_partition_is_at_its_end_only_past_the_batch_not_yet_handled():
    from citybrain.domain.device_health import PartitionClock
    r = runner()
    r.consumer = FetchedAhead()
    tp = TopicPartition("in", 0)
    r.state_topic, r.assigned_now, r.owned = "in", {tp}, {0}
    clock = PartitionClock()
    # A restarted worker's first batch (offsets 30..45): not at the end, so silence is
    # judged on the records' own time, not on the fetch's wall clock.
    r._report_progress(clock, {tp: [record(o, b"r") for o in range(30, 46)]})
    assert clock.reference(0) is None
    # Handled, nothing new fetched: at the end as of the last fetch.
    r.position[tp] = 46
    r._report_progress(clock, {})
    assert clock.reference(0) == 1_800_000_100.0


class OneBatch:
    """A consumer whose one fetch holds records of two partitions, written ``age`` ago."""

    def __init__(self, age: float):
        now_ms = int((time.time() - age) * 1000)
        self.batch = {TopicPartition("in", p): [
            ConsumerRecord("in", p, o, now_ms + 50 * o, 0, b"k", b"ok", None, 1, 2, []) for o in range(3)]
            for p in (0, 1)}
        self.committed: list[dict] = []

    async def getmany(self, timeout_ms):
        batch, self.batch = self.batch, {}
        return batch

    def assignment(self):
        return {TopicPartition("in", 0), TopicPartition("in", 1)}

    async def commit(self, offsets):
        self.committed.append(dict(offsets))


async def test_the_wait_before_the_fetch_is_observed_per_partition_from_its_oldest_record():
    from prometheus_client import REGISTRY

    def observed() -> tuple[float, float]:
        labels = {"stage": "normalise"}
        return (REGISTRY.get_sample_value("citybrain_stage_wait_seconds_count", labels) or 0.0,
                REGISTRY.get_sample_value("citybrain_stage_wait_seconds_sum", labels) or 0.0)

    async def acked(o):
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut
    r = runner()
    r.consumer = OneBatch(age=0.4)
    r.assigned_now = r.consumer.assignment()
    r.checkpoint = Checkpoint(acked)
    count, total = observed()
    await r._step()
    count2, total2 = observed()
    assert count2 - count == 2                     # one per partition, not one per record
    assert 0.4 <= (total2 - total) / 2 < 5.0       # the oldest record's age, not the newest's


class FakeProducer:
    """A started producer that acknowledges every send at once, noting it in ``sent``."""

    def __init__(self, name: str, sent: list[tuple[str, str]]):
        self.name, self.sent = name, sent

    async def start(self):
        pass

    async def send(self, topic, value, key=None, partition=None):
        self.sent.append((self.name, topic))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def test_dispatch_records_go_first_on_a_producer_of_their_own():
    """The last hop (issue 38): a dispatch behind a batch's order events and snapshots
    waited for their produce request's round trip (one in flight per producer)."""
    class Dispatching(FakeStage):
        urgent_topics = frozenset({"dispatch.d1"})

        def handle(self, m, out):
            out.append(Output("events", None, m.value))
            out.append(Output("dispatch.d1", None, m.value))

    sent: list[tuple[str, str]] = []
    names = iter(["outputs", "changelog", "urgent"])
    r = StageRunner(Dispatching(), RunnerSettings("127.0.0.1:1"), lambda txn: FakeProducer(next(names), sent))
    await r._start_producers()
    r.checkpoint = Checkpoint(r._send_one, r._send_state)
    r.consumer = OneBatch(age=0.0)
    r.assigned_now = r.consumer.assignment()
    await r._step()
    assert sent[:6] == [("urgent", "dispatch.d1")] * 6
    assert sent[6:] == [("outputs", "events")] * 6


async def test_a_stage_without_urgent_topics_has_no_third_producer():
    sent: list[tuple[str, str]] = []
    made: list[str] = []

    def new(txn):
        made.append("p")
        return FakeProducer("p", sent)
    r = StageRunner(FakeStage(), RunnerSettings("127.0.0.1:1"), new)
    await r._start_producers()
    assert len(made) == 2 and r.urgent_producer is None
