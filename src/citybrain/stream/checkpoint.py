"""What a stage consumed, what it produced, and what it may commit.

Two guarantees (``processing_guarantee``, docs/architecture.md):

- ``Checkpoint`` (at_least_once): a batch's outputs are sent at once; its state-changelog
  writes only once every one of those outputs is acknowledged, so the changelog never
  runs ahead of the outputs (a replay after a crash cannot take an input for a duplicate
  whose outputs were lost); its input offsets become committable once its state writes
  are acknowledged, batch after batch in order.  After a failed produce nothing later
  becomes committable: the stage rewinds to what was committed.
- ``TransactionalCheckpoint`` (exactly_once): a batch's outputs, its changelog writes
  and its input offsets commit in one Kafka transaction per input partition number,
  each partition with its own transactional id (``{group}-{stage}-{partition}``): the
  worker that takes a partition over fences the one that had it (aiokafka has no
  KIP-447 generation fencing, so one id per partition is what keeps a zombie out).
  Pipelined: each partition number is a *lane* that runs its transactions one after
  another, each taking every batch part handed to it meanwhile (Kafka Streams' commit
  interval, with no fixed interval: a lane commits as soon as the last commit is done);
  the stage hands a batch over and goes on fetching and handling while the lanes commit.
  A batch waited for the slowest of its partitions' transactions — four broker round
  trips each — before the next was even fetched (docs/performance.md, "The last hop").

Both are plain objects over a ``send`` / producer lookup, unit-tested against fakes.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiokafka.producer.sender as _aiokafka_sender
from aiokafka import TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordTooLargeError,
)

from citybrain.stream import chaos
from citybrain.stream.output import Output, Source

# A transaction begun right after the last one's commit is answered CONCURRENT_TRANSACTIONS
# while the broker still writes the last one's markers, and aiokafka asks again after a
# fixed 20 ms (``sender.BACKOFF_OVERRIDE``, KAFKA-5477's figure; the Java client's is the
# same).  A lane begins its next transaction at once after a commit; on a local broker the
# markers take a few ms, so each such retry cost ~15 ms of a dispatch's latency.
_aiokafka_sender.BACKOFF_OVERRIDE = 0.005

# Errors the broker gives for one record itself (not for the connection or the cluster):
# the input behind it becomes an ``output_rejected`` dead letter on the retry.
RECORD_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError, CorruptRecordException)


class ProduceFailed(Exception):
    """A produce or commit the broker did not acknowledge.  ``suspect``: the input whose
    output the broker refused for itself (too large, invalid), when that was the cause;
    ``fenced``: another worker has taken the partition over."""

    def __init__(self, cause: BaseException, suspect: Source | None = None):
        super().__init__(repr(cause))
        self.cause, self.suspect = cause, suspect
        self.fenced = isinstance(cause, ProducerFenced)


def _quiet(fut: asyncio.Future) -> None:
    """Abandoned futures: retrieve their exception so asyncio does not log it again."""
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())


def _suspect(failed: list[tuple[BaseException, Output]]) -> Source | None:
    """The input to blame for a record-level refusal: the largest refused output's
    (a refused batch fails every record in it; the largest one is the likely cause, and
    the next retry narrows it down if not)."""
    blamed = [(len(o.value or b""), o.source) for e, o in failed if isinstance(e, RECORD_ERRORS) and o.source]
    return max(blamed)[1] if blamed else None


def _refusals(sent: list[tuple[asyncio.Future, Output]]) -> list[tuple[BaseException, Output]]:
    """The finished sends the broker refused, with their outputs (unfinished and
    cancelled ones left out: the caller is already failing)."""
    return [(e, o) for f, o in sent
            if f.done() and not f.cancelled() and (e := f.exception()) is not None]


def _check(sent: list[tuple[asyncio.Future, Output]]) -> None:
    """Every send is finished; a refused one fails the batch (a cancelled one too:
    ``exception()`` raises CancelledError for it)."""
    failed = [(e, o) for f, o in sent if (e := f.exception()) is not None]
    if failed:
        raise ProduceFailed(failed[0][0], _suspect(failed))


Send = Callable[[Output], Awaitable[asyncio.Future]]


class TransactionalProducer(Protocol):
    """What exactly_once needs of a producer (aiokafka's, or a test's fake)."""

    async def begin_transaction(self) -> None: ...
    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future: ...
    async def send_offsets_to_transaction(self, offsets: Offsets, group_id: str) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...
Offsets = dict[TopicPartition, int]


@dataclass
class _Batch:
    offsets: Offsets                                  # next offset per input partition
    outputs: list[tuple[asyncio.Future, Output]]
    state: list[Output]                               # changelog writes, sent after the outputs
    state_sent: list[tuple[asyncio.Future, Output]] | None = None

    def outputs_done(self) -> bool:
        return all(f.done() for f, _ in self.outputs)

    def state_done(self) -> bool:
        return self.state_sent is not None and all(f.done() for f, _ in self.state_sent)


class Checkpoint:
    """at_least_once (see the module doc)."""

    def __init__(self, send: Send, send_state: Send | None = None):
        """``send_state``: where the changelog writes go (by default ``send``).  A stage
        gives them a producer of their own: aiokafka keeps one produce request in flight
        per producer and broker, and a batch's changelog request — sent once its outputs
        are acknowledged — held the next batch's outputs back for a round trip."""
        self._send = send
        self._send_state = send_state or send
        self.pending: deque[_Batch] = deque()
        self.committable: Offsets = {}
        self.committed: Offsets = {}

    async def add(self, offsets: Offsets, outputs: list[Output], state: list[Output]) -> list[asyncio.Future]:
        """Send a batch's outputs now; its state and offsets follow in ``settle``.
        Returns the outputs' acknowledgements."""
        sent = []
        for o in outputs:
            try:
                sent.append((await self._send(o), o))
            except Exception as e:   # refused before it left (too large for the producer, closed)
                for f, _ in sent:
                    _quiet(f)
                raise ProduceFailed(e, o.source if isinstance(e, RECORD_ERRORS) else None) from e
        self.pending.append(_Batch(offsets, sent, state))
        return [f for f, _ in sent]

    async def settle(self, limit: int) -> None:
        """Move acknowledged batches on (in order) until at most ``limit`` are pending.
        Raises ``ProduceFailed`` for the first batch with a refused record."""
        while True:
            for b in self.pending:   # state writes go out in batch order, after the outputs
                if b.state_sent is not None:
                    continue
                if not b.outputs_done():
                    break
                _check(b.outputs)
                b.state_sent = [(await self._send_state(o), o) for o in b.state]
            while self.pending and self.pending[0].state_done():
                b = self.pending.popleft()
                _check(b.state_sent or [])
                self.committable.update(b.offsets)
            if len(self.pending) <= limit:
                return
            front = self.pending[0]
            waiting = [f for f, _ in (front.state_sent if front.state_sent is not None else front.outputs)
                       if not f.done()]
            if waiting:
                await asyncio.wait(waiting)

    def to_commit(self, assigned: set[TopicPartition]) -> Offsets:
        """Offsets that may be committed and were not yet, of partitions still assigned."""
        return {tp: off for tp, off in self.committable.items()
                if tp in assigned and self.committed.get(tp) != off}

    def committed_ok(self, offsets: Offsets) -> None:
        self.committed.update(offsets)

    def abandon(self) -> None:
        """After a failure: nothing pending will ever be committed."""
        for b in self.pending:
            for f, _ in b.outputs + (b.state_sent or []):
                _quiet(f)
        self.pending.clear()
        self.committable.clear()
        self.committed.clear()

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.committable.pop(tp, None)
            self.committed.pop(tp, None)


@dataclass
class _Part:
    """A batch's share of one lane: its outputs and changelog writes, the offsets of its
    input partitions with that number, and the future its transaction's outcome sets."""
    outputs: list[Output]
    offsets: Offsets
    done: asyncio.Future


class TransactionalCheckpoint:
    """exactly_once (see the module doc).  ``producer(partition)`` gives the started
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
            _quiet(part.done)
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
            _check(sent)
            await producer.commit_transaction()
        except Exception as e:
            for f, _ in sent:
                _quiet(f)
            fenced = isinstance(e, ProducerFenced) or (isinstance(e, ProduceFailed) and e.fenced)
            if not fenced:   # a fenced producer may not even abort: the new owner did
                try:
                    await asyncio.wait_for(producer.abort_transaction(), 10)
                except Exception:  # noqa: BLE001 - the producer is replaced on recovery anyway
                    pass
            if isinstance(e, ProduceFailed):
                raise
            failed = _refusals(sent)
            refused = current.source if isinstance(e, RECORD_ERRORS) and current is not None else None
            raise ProduceFailed(e, _suspect(failed) or refused) from e
