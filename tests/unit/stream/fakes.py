"""Fakes for the stage runner and its checkpoints: a consumer over an in-memory log,
producers whose acknowledgements the test controls, a stage that echoes its input."""

from __future__ import annotations

import asyncio
import time

from aiokafka import ConsumerRecord, TopicPartition

from citybrain.stream.output import Output

TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)


def out(topic: str, offset: int, size: int = 10, partition: int = 0) -> Output:
    return Output(topic, b"k", b"x" * size, source=("in", partition, offset))


def changelog(partition: int = 0) -> Output:
    return Output("changelog", b"key", b"state", partition=partition)


def record(offset: int, value: bytes, partition: int = 0, timestamp_ms: int = 1_800_000_000_000) -> ConsumerRecord:
    return ConsumerRecord("in", partition, offset, timestamp_ms, 0, b"key", value, None, len(b"key"), len(value), [])


class FakeSend:
    """Records every send; the test decides when and how each one is acknowledged."""

    def __init__(self):
        self.sent: list[tuple[Output, asyncio.Future]] = []

    async def __call__(self, o: Output) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.sent.append((o, fut))
        return fut

    def topics(self) -> list[str]:
        return [o.topic for o, _ in self.sent]

    def ack(self, topic: str | None = None) -> None:
        for o, f in self.sent:
            if not f.done() and (topic is None or o.topic == topic):
                f.set_result(None)

    def fail(self, topic: str, error: Exception) -> None:
        for o, f in self.sent:
            if not f.done() and o.topic == topic:
                f.set_exception(error)


class FakeProducer:
    """A plain (at_least_once) producer.  ``acks``: "now" acknowledges each send at once,
    "hold" leaves it to ``ack()``, an exception refuses each send with it."""

    def __init__(self, name: str, log: list[tuple[str, str, bytes | None]], acks: str | Exception = "now"):
        self.name, self.log, self.acks = name, log, acks
        self.pending: list[asyncio.Future] = []
        self.started = self.stopped = False

    async def start(self):
        self.started = True

    async def stop(self):
        self.stopped = True

    async def flush(self):
        pass

    async def send(self, topic, value=None, key=None, partition=None):
        self.log.append((self.name, topic, value))
        fut = asyncio.get_running_loop().create_future()
        if isinstance(self.acks, Exception):
            fut.set_exception(self.acks)
        elif self.acks == "now":
            fut.set_result(None)
        else:
            self.pending.append(fut)
        return fut

    def ack(self) -> None:
        for f in self.pending:
            if not f.done():
                f.set_result(None)
        self.pending.clear()


class FakeTxnProducer:
    """A transactional producer; ``committed``: where a committed transaction's offsets
    land (the consumer group's, as the broker keeps them)."""

    def __init__(self, partition: int = 0, fail: Exception | None = None, refuse: Exception | None = None,
                 transactional_id: str | None = None, committed: dict | None = None, speaks_v2: bool = False):
        self.partition, self.fail, self.refuse, self.speaks_v2 = partition, fail, refuse, speaks_v2
        self.client = object()   # what a coordinator request goes through (stable offsets)
        self.transactional_id, self.committed = transactional_id, committed
        self.log: list[tuple] = []
        self.gate: asyncio.Event | None = None
        self.offsets: dict = {}
        self.committed_at: float | None = None

    async def start(self):
        self.log.append(("start",))

    async def stop(self):
        self.log.append(("stop",))

    async def begin_transaction(self):
        self.log.append(("begin",))
        self.offsets = {}

    async def send(self, topic, value=None, key=None, partition=None):
        self.log.append(("send", topic))
        fut = asyncio.get_running_loop().create_future()
        # Acknowledged a little later, as a broker would (or refused).
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: fut.set_exception(self.refuse) if self.refuse else fut.set_result(None))
        return fut

    async def send_offsets_to_transaction(self, offsets, group_id, member=None):
        self.log.append(("offsets", dict(offsets), group_id) + ((member,) if member is not None else ()))
        self.offsets.update(offsets)

    async def commit_transaction(self):
        if self.gate is not None:   # a commit that takes until the test lets it end
            await self.gate.wait()
        if self.fail:
            raise self.fail
        self.log.append(("commit",))
        self.committed_at = time.monotonic()
        if self.committed is not None:
            self.committed.update(self.offsets)

    async def abort_transaction(self):
        self.log.append(("abort",))


class FakeConsumer:
    """A stage's consumer over an in-memory log per partition: ``getmany`` hands out what
    lies past each partition's position, ``seek`` moves it, ``commit`` keeps the group's
    offsets (``committed``), and ``commits`` lists each commit made."""

    def __init__(self, logs: dict[TopicPartition, list[ConsumerRecord]]):
        self.logs = logs
        self.positions: dict[TopicPartition, int] = {}
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.commits: list[dict] = []
        self.marks: dict[TopicPartition, str] = {}
        self.asked: list[int | None] = []   # each getmany's max_records   # each partition's last commit metadata
        self.assigned: set[TopicPartition] = set()
        self.subscriptions = 0
        self.listener = None
        self.started = self.stopped = False

    def subscribe(self, topics, listener=None):
        self.subscriptions += 1
        self.listener = listener

    def unsubscribe(self):
        self.assigned = set()

    async def start(self):
        self.started = True

    async def stop(self):
        self.stopped = True

    def assignment(self):
        return set(self.assigned)

    async def getmany(self, timeout_ms=0, max_records=None):
        batch = {}
        room = max_records   # None: no limit
        self.asked.append(max_records)
        for tp in sorted(self.assigned, key=lambda tp: tp.partition):
            pos = self.positions.get(tp, self.committed_offsets.get(tp, 0))
            recs = [m for m in self.logs.get(tp, []) if m.offset >= pos][:room]
            if room is not None:
                room -= len(recs)
            if recs:
                batch[tp] = recs
                self.positions[tp] = recs[-1].offset + 1
        if not batch:
            await asyncio.sleep(0.005)
        return batch

    def seek(self, tp, offset):
        self.positions[tp] = offset

    async def beginning_offsets(self, tps):
        return {tp: 0 for tp in tps}

    async def committed(self, tp):
        return self.committed_offsets.get(tp)

    async def commit(self, offsets):
        """As aiokafka: each offset, or (offset, metadata); the metadata kept in ``marks``."""
        plain = {tp: off[0] if isinstance(off, tuple) else off for tp, off in offsets.items()}
        self.commits.append(plain)
        self.committed_offsets.update(plain)
        self.marks.update({tp: off[1] if isinstance(off, tuple) else "" for tp, off in offsets.items()})

    def highwater(self, tp):
        return None


class FakeStage:
    """The least a stage is (the Stage protocol): each record's value to ``events``, except
    ``boom`` (raises) and ``huge`` (an output over the limit); no state, no timers."""

    name, group_id, topics = "normalise", "grp", ["in"]
    states: list = []
    state_topic = None
    tick_seconds = 1.0
    clock = None

    def __init__(self):
        self.ready = asyncio.Event()
        self.revoked: list[set[int]] = []
        self.assigned: list[set[int]] = []

    def handle(self, m, out):
        if m.value == b"boom":
            out.append(Output("events", None, b"half-made"))   # taken back when the record fails
            raise KeyError("no such thing")
        if m.value == b"huge":
            out.append(Output("events", None, b"x" * 2_000_000))
            return
        out.append(Output("events", None, m.value))

    def source_of(self, m):
        return "iot"

    def on_assigned(self, partitions):
        self.assigned.append(set(partitions))

    def on_revoked(self, partitions):
        self.revoked.append(set(partitions))

    def tick(self):
        return []
