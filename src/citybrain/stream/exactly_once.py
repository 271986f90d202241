"""exactly_once (``processing_guarantee``): a batch's outputs, its changelog writes and its
input offsets commit in one Kafka transaction per input partition number, each partition
with its own transactional id (``{group}-{stage}-{partition}``): the worker that takes a
partition over fences the one that had it (aiokafka has no KIP-447 generation fencing, so
one id per partition is what keeps a zombie out).

Pipelined: each partition number is a *lane* that runs its transactions one after
another, each taking every batch part handed to it meanwhile (Kafka Streams' commit
interval, with no fixed interval: a lane commits as soon as the last commit is done); the
stage hands a batch over and goes on fetching and handling while the lanes commit.  A
batch waited for the slowest of its partitions' transactions — four broker round trips
each — before the next was even fetched (docs/performance.md, "The last hop").

``TransactionLanes`` is that over a producer lookup; ``ExactlyOnce`` the stage's
``Checkpoint`` (stream/checkpoint.py): the per-partition producers and the lanes.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiokafka.producer.sender as _aiokafka_sender
from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from citybrain import metrics
from citybrain.stream import chaos
from citybrain.stream.checkpoint import (
    RECORD_ERRORS,
    Offsets,
    ProduceFailed,
    ProducerFactory,
    check,
    quiet,
    refusals,
    stop_quietly,
    suspect,
)
from citybrain.stream.output import Output

# A transaction begun right after the last one's commit is answered CONCURRENT_TRANSACTIONS
# while the broker still writes the last one's markers, and aiokafka asks again after a
# fixed 20 ms (``sender.BACKOFF_OVERRIDE``, KAFKA-5477's figure; the Java client's is the
# same).  A lane begins its next transaction at once after a commit; on a local broker the
# markers take a few ms, so each such retry cost ~15 ms of a dispatch's latency.
_aiokafka_sender.BACKOFF_OVERRIDE = 0.005


class TransactionalProducer(Protocol):
    """What exactly_once needs of a producer (aiokafka's, or a test's fake)."""

    async def begin_transaction(self) -> None: ...
    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future: ...
    async def send_offsets_to_transaction(self, offsets: Offsets, group_id: str) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...


@dataclass
class _Part:
    """A batch's share of one lane: its outputs and changelog writes, the offsets of its
    input partitions with that number, and the future its transaction's outcome sets."""
    outputs: list[Output]
    offsets: Offsets
    done: asyncio.Future


class TransactionLanes:
    """The lanes (see the module doc).  ``producer(partition)`` gives the started
    transactional producer of an input partition number; ``on_commit(seconds)`` is told
    how long each transaction took."""

    def __init__(self, producer: Callable[[int], TransactionalProducer], group_id: str,
                 on_commit: Callable[[float], None] = lambda seconds: None):
        self.producer, self.group_id, self.on_commit = producer, group_id, on_commit
        self.pending: dict[int, list[_Part]] = defaultdict(list)   # per lane, not yet in a transaction
        self.lanes: dict[int, asyncio.Task] = {}
        self.unsettled: deque[list[asyncio.Future]] = deque()     # per batch handed over, oldest first
        self.failure: BaseException | None = None

    def submit(self, offsets: Offsets, outputs: list[Output], state: list[Output]) -> list[asyncio.Future]:
        """Hand a batch over: each partition number's part joins that lane's next
        transaction.  Returns one future per part, done when its transaction committed.
        Raises the failure of an earlier transaction (nothing past it may commit)."""
        self.check()
        parts = self._split(offsets, outputs, state)
        loop = asyncio.get_running_loop()
        futures = []
        for p, (outs, offs) in parts.items():
            part = _Part(outs, offs, loop.create_future())
            quiet(part.done)
            self.pending[p].append(part)
            futures.append(part.done)
            if p not in self.lanes or self.lanes[p].done():
                self.lanes[p] = asyncio.create_task(self._lane(p))
        if futures:
            self.unsettled.append(futures)
        return futures

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def settle(self, limit: int) -> None:
        """Wait until at most ``limit`` batches handed over are not yet committed; raises
        a transaction's failure."""
        while True:
            while self.unsettled and all(f.done() for f in self.unsettled[0]):
                self.unsettled.popleft()
            self.check()
            if len(self.unsettled) <= limit:
                return
            await asyncio.wait([f for f in self.unsettled[0] if not f.done()],
                               return_when=asyncio.FIRST_EXCEPTION)

    async def commit(self, offsets: Offsets, outputs: list[Output], state: list[Output]) -> None:
        """A batch committed, and every batch handed over before it (a hand-over)."""
        self.submit(offsets, outputs, state)
        await self.settle(0)

    async def abandon(self) -> None:
        """After a failure: stop the lanes; nothing pending will be committed.  A
        transaction cut off mid-way is aborted (or completed) by the next producer of its
        transactional id, which the recovery starts before it reads anything back."""
        lanes, self.lanes = list(self.lanes.values()), {}
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        for futures in self.unsettled:
            for f in futures:
                if not f.done():
                    f.cancel()
        self.pending.clear()
        self.unsettled.clear()
        self.failure = None

    async def _lane(self, partition: int) -> None:
        """One partition number's transactions, one after another, each with every part
        handed over since the last began (in order: outputs, then offsets, which only move
        forward)."""
        queue = self.pending[partition]
        while queue and self.failure is None:
            parts = list(queue)
            queue.clear()
            outputs = [o for part in parts for o in part.outputs]
            offsets: Offsets = {}
            for part in parts:
                offsets.update(part.offsets)
            t0 = time.monotonic()
            try:
                await self._one(partition, outputs, offsets)
            except Exception as e:  # noqa: BLE001 - surfaces in the stage at its next hand-over
                if self.failure is None or (isinstance(e, ProduceFailed) and e.fenced):
                    self.failure = e
                for part in parts + queue:
                    if not part.done.done():
                        part.done.set_exception(e)
                queue.clear()
                return
            self.on_commit(time.monotonic() - t0)
            chaos.point("after_commit")
            for part in parts:
                if not part.done.done():
                    part.done.set_result(None)

    @staticmethod
    def _split(offsets: Offsets, outputs: list[Output], state: list[Output]) -> dict[int, tuple[list[Output], Offsets]]:
        """A batch by input partition number (outputs by their input's, changelog writes
        by their own: the same number)."""
        parts: dict[int, tuple[list[Output], Offsets]] = defaultdict(lambda: ([], {}))
        for o in outputs:
            if o.source is None:
                raise ValueError(f"an output to {o.topic} names no input: it cannot join a transaction")
            parts[o.source[1]][0].append(o)     # every stage output names its input
        for o in state:
            if o.partition is None:
                raise ValueError(f"a changelog write to {o.topic} names no partition")
            parts[o.partition][0].append(o)     # changelog partition = input partition
        for tp, off in offsets.items():
            parts[tp.partition][1][tp] = off
        return parts

    async def _one(self, partition: int, outputs: list[Output], offsets: Offsets) -> None:
        producer = self.producer(partition)
        await producer.begin_transaction()
        sent: list[tuple[asyncio.Future, Output]] = []
        current: Output | None = None
        try:
            for current in outputs:
                sent.append((await producer.send(current.topic, current.value, key=current.key,
                                                 partition=current.partition), current))
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group_id)
            chaos.point("after_produce")   # sent, not committed: a reader must never see these
            # aiokafka's commit_transaction does not wait for sends still in flight (the
            # Java client flushes first): a produce being retried could miss the commit
            # while the offsets in it commit — found by the chaos suite as lost records.
            # Every send is acknowledged (or the transaction aborted) before the commit.
            if sent:
                await asyncio.wait([f for f, _ in sent])
            check(sent)
            await producer.commit_transaction()
        except Exception as e:
            for f, _ in sent:
                quiet(f)
            fenced = isinstance(e, ProducerFenced) or (isinstance(e, ProduceFailed) and e.fenced)
            if not fenced:   # a fenced producer may not even abort: the new owner did
                try:
                    await asyncio.wait_for(producer.abort_transaction(), 10)
                except Exception:  # noqa: BLE001 - the producer is replaced on recovery anyway
                    pass
            if isinstance(e, ProduceFailed):
                raise
            failed = refusals(sent)
            refused = current.source if isinstance(e, RECORD_ERRORS) and current is not None else None
            raise ProduceFailed(e, suspect(failed) or refused) from e


class ExactlyOnce:
    """The exactly_once ``Checkpoint``: a transactional producer per input partition
    number, started when the partition is claimed (fencing its previous owner and
    aborting that owner's open transaction, so the changelog read next is final), and
    the lanes that commit on them.  Range assignment gives partition n of every input
    topic to the same member, so one transactional id per number covers all its inputs."""

    IN_FLIGHT = 2   # batches handed over and not yet committed while the next is handled

    def __init__(self, new_producer: ProducerFactory, group_id: str, name: str):
        self.new_producer, self.group_id = new_producer, group_id
        self.producers: dict[int, Any] = {}
        self.lanes = TransactionLanes(lambda p: self.producers[p], group_id,
                                      on_commit=metrics.child(metrics.COMMIT_LATENCY, name).observe)

    async def start(self) -> None:
        pass   # the producers are the partitions': started as each is claimed

    async def claim(self, partitions: set[int]) -> None:
        for p in sorted(partitions - set(self.producers)):
            producer = self.new_producer(f"{self.group_id}-{p}")
            await producer.start()
            self.producers[p] = producer

    async def release(self, partitions: set[TopicPartition]) -> None:
        for p in sorted({tp.partition for tp in partitions}):
            producer = self.producers.pop(p, None)
            if producer is not None:
                await stop_quietly(producer)

    async def add(self, offsets: Offsets, outputs: list[Output], state: list[Output]) -> list[asyncio.Future]:
        return self.lanes.submit(offsets, outputs, state)

    async def settle(self, fetched: bool) -> None:
        # The lanes commit without being waited for: this bounds the batches held and
        # raises a failed transaction's error here.
        await self.lanes.settle(self.IN_FLIGHT)

    async def commit(self, state: list[Output]) -> None:
        await self.lanes.commit({}, [], state)

    async def recover(self) -> None:
        """The lanes stop; so do the producers — a claim starts new ones under the same
        ids, which aborts (or completes) a transaction cut off mid-way before the state
        is read back.  A fenced one stays stopped: the partition is another worker's."""
        await self.lanes.abandon()
        producers, self.producers = list(self.producers.values()), {}
        for producer in producers:
            await stop_quietly(producer)

    async def close(self) -> None:
        producers, self.producers = list(self.producers.values()), {}
        for producer in producers:
            await stop_quietly(producer)
