"""at_least_once (``processing_guarantee``): a batch's outputs are sent at once; its
state-changelog writes only once every one of those outputs is acknowledged, so the
changelog never runs ahead of the outputs (a replay after a crash cannot take an input for
a duplicate whose outputs were lost); its input offsets become committable once its state
writes are acknowledged, batch after batch in order, and are committed on the stage's
consumer.  After a failed produce nothing later becomes committable: the stage rewinds to
what was committed, on fresh producers.

``AckedBatches`` is that bookkeeping over a ``send``; ``AtLeastOnce`` the stage's
``Checkpoint`` (stream/checkpoint.py): its producers and its offset commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from citybrain import metrics
from citybrain.kafka.clients import stop_quietly
from citybrain.stream import chaos
from citybrain.stream.checkpoint import (
    RECORD_ERRORS,
    Offsets,
    ProduceFailed,
    ProducerFactory,
    Send,
    check,
    quiet,
)
from citybrain.stream.output import Output
from citybrain.stream.replayguard import HANDED_OVER, ReplayGuard

log = logging.getLogger("citybrain.stage")


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


class AckedBatches:
    """What was sent, what is acknowledged, and what may be committed (the module doc)."""

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
                    quiet(f)
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
                check(b.outputs)
                b.state_sent = [(await self._send_state(o), o) for o in b.state]
            while self.pending and self.pending[0].state_done():
                b = self.pending.popleft()
                check(b.state_sent or [])
                self.committable.update(b.offsets)
            if len(self.pending) <= limit:
                return
            front = self.pending[0]
            waiting = [f for f, _ in (front.state_sent if front.state_sent is not None else front.outputs)
                       if not f.done()]
            if waiting:
                await asyncio.wait(waiting)

    def to_commit(self, assigned: set[TopicPartition], everything: bool = False) -> Offsets:
        """Offsets that may be committed and were not yet (``everything``: or were), of
        partitions still assigned."""
        return {tp: off for tp, off in self.committable.items()
                if tp in assigned and (everything or self.committed.get(tp) != off)}

    def committed_ok(self, offsets: Offsets) -> None:
        self.committed.update(offsets)

    def abandon(self) -> None:
        """After a failure: nothing pending will ever be committed."""
        for b in self.pending:
            for f, _ in b.outputs + (b.state_sent or []):
                quiet(f)
        self.pending.clear()
        self.committable.clear()
        self.committed.clear()

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.committable.pop(tp, None)
            self.committed.pop(tp, None)


class OffsetCommitter(Protocol):
    """What at_least_once needs of the stage's consumer (aiokafka's, or a test's fake)."""

    def assignment(self) -> set[TopicPartition]: ...
    async def commit(self, offsets: dict[TopicPartition, int] | dict[TopicPartition, tuple[int, str]]) -> None: ...
    async def committed(self, tp: TopicPartition) -> int | None: ...


_STOPPING: set[asyncio.Task] = set()   # producers replaced after a failure, stopping


class AtLeastOnce:
    """The at_least_once ``Checkpoint``: the outputs' producer, the changelog's, and —
    where the stage names ``urgent`` topics (the fuse stage's dispatch records) — one of
    their own, sent first: aiokafka keeps one produce request in flight per producer and
    broker, and a dispatch sent behind a batch's order events and state snapshots (~27 KB a
    request, up to 0.5 MB) waited for that request's round trip before its own began
    (docs/performance.md, "The last hop")."""

    COMMIT_EVERY = 0.25  # seconds: a commit is a broker round trip; not one per batch
    IN_FLIGHT = 2        # batches whose acks may be awaited while the next is handled

    def __init__(self, consumer: OffsetCommitter, new_producer: ProducerFactory, name: str,
                 urgent: frozenset[str] = frozenset(), replay: ReplayGuard | None = None):
        """``replay``: what a replay must not send again (stream/replayguard.py)."""
        self.consumer, self.new_producer, self.name, self.urgent = consumer, new_producer, name, urgent
        self.replay = replay
        self.producer: Any = None          # the outputs'
        self.state_producer: Any = None    # the changelog writes'
        self.urgent_producer: Any = None   # the urgent outputs', where the stage names any
        self.batches = AckedBatches(self._send_one, self._send_state)
        self.committing: asyncio.Task | None = None   # the offset commit in flight
        self.last_commit = 0.0

    async def start(self) -> None:
        self.producer, self.state_producer = self.new_producer(None), self.new_producer(None)
        self.urgent_producer = self.new_producer(None) if self.urgent else None
        for p in self._producers():
            await p.start()

    def _producers(self) -> list:
        return [p for p in (self.producer, self.state_producer, self.urgent_producer) if p is not None]

    async def claim(self, partitions: set[int]) -> set[TopicPartition]:
        # The producers are the stage's, not a partition's; the replay guard reads back
        # what a previous owner already dispatched past the committed offsets.
        if self.replay is not None:
            self.replay.claim([tp for tp in self.consumer.assignment() if tp.partition in partitions],
                              self._unmark)
        return set()

    async def release(self, partitions: set[TopicPartition]) -> None:
        self.batches.forget(partitions)

    async def add(self, offsets: Offsets, outputs: list[Output], state: list[Output]) -> list[asyncio.Future]:
        if self.replay is not None:
            outputs = await self.replay.unsent(outputs)
        if self.urgent_producer is not None:   # first, so their request is built and sent first
            outputs = [o for o in outputs if o.topic in self.urgent] + [
                o for o in outputs if o.topic not in self.urgent]
        acked = await self.batches.add(offsets, outputs, state)
        chaos.point("after_produce")
        return acked

    async def settle(self, fetched: bool) -> None:
        # Nothing fetched (idle, or a timer's outputs): everything is acknowledged and
        # committed now, rather than when the next input comes.
        await self.batches.settle(self.IN_FLIGHT if fetched else 0)
        await self._commit(force=False)
        chaos.point("after_commit")

    async def commit(self, state: list[Output]) -> None:
        """A hand-over: everything acknowledged, then every assigned partition's offset
        committed marked ``HANDED_OVER`` (stream/replayguard.py: the next owner replays
        nothing of it, so it reads nothing back)."""
        if state:
            await self.batches.add({}, [], state)
        await self.batches.settle(0)
        await self._commit(force=True)

    async def recover(self) -> None:
        """Fresh producers (new producer ids): an idempotent producer whose sequence the
        broker refused (OutOfOrderSequenceNumber after a leader change) stops sending for
        good (aiokafka #1017); the replay from the last commit needs nothing of the old."""
        try:   # a commit in flight lands (or fails) before the runner reads the committed offsets
            await self._commit_settled()
        except Exception:  # noqa: BLE001 - whatever it did, the committed offsets are read next
            pass
        self.batches.abandon()
        old = self._producers()
        try:   # let what is still in the producers settle before the changelog is read
            await asyncio.wait_for(asyncio.gather(*(p.flush() for p in old)), 60)
        except Exception:  # noqa: BLE001 - failed sends are simply not committed
            pass
        # The old ones stop in the background: a broken one can take its 30 s to give up.
        for p in old:
            task = asyncio.create_task(stop_quietly(p))
            _STOPPING.add(task)
            task.add_done_callback(_STOPPING.discard)
        await self.start()

    async def close(self) -> None:
        try:   # after a failure the hand-over does not commit: let the one in flight end
            await self._commit_settled()
        except Exception:  # noqa: BLE001 - the next owner replays from the last commit
            pass
        for p in self._producers():
            await stop_quietly(p)

    async def _send_one(self, o: Output) -> asyncio.Future:
        producer = self.urgent_producer if o.topic in self.urgent else None
        return await (producer or self._started(self.producer)).send(
            o.topic, o.value, key=o.key, partition=o.partition)

    async def _send_state(self, o: Output) -> asyncio.Future:
        return await self._started(self.state_producer).send(o.topic, o.value, key=o.key, partition=o.partition)

    def _started(self, producer: Any) -> Any:
        if producer is None:
            raise RuntimeError(f"stage {self.name}: no producer before it starts")
        return producer

    async def _commit(self, force: bool) -> None:
        """Commit the offsets that became committable.  In the loop (not ``force``) the
        commit runs beside the next batches, one at a time: awaited inline, its round
        trip held up every record behind it (a dispatch-latency tail, issue 13); its
        failure surfaces at the next call and rewinds the stage like any other.
        ``force`` (a hand-over): after the one in flight, and awaited."""
        now = time.monotonic()
        if not force and (now - self.last_commit < self.COMMIT_EVERY or not self._commit_done()):
            return
        await self._commit_settled()
        self.last_commit = now
        if force:   # every partition's, changed or not: the mark is what is new
            offsets = self.batches.to_commit(self.consumer.assignment(), everything=True)
            if offsets:
                await self._commit_offsets(offsets, HANDED_OVER)
            return
        offsets = self.batches.to_commit(self.consumer.assignment())
        if offsets:
            self.committing = asyncio.create_task(self._commit_offsets(offsets))

    def _commit_done(self) -> bool:
        return self.committing is None or self.committing.done()

    async def _commit_settled(self) -> None:
        """Wait for the commit in flight; its error, if any, is raised here."""
        task, self.committing = self.committing, None
        if task is not None:
            await task

    async def _unmark(self, offsets: Offsets) -> None:
        """A hand-over's mark cleared before this owner sends anything (its failure stops
        the stage: stream/replayguard.py)."""
        await self.consumer.commit(offsets)
        self.batches.committed_ok(offsets)

    async def _commit_offsets(self, offsets: Offsets, metadata: str = "") -> None:
        t0 = time.monotonic()
        try:
            await self.consumer.commit({tp: (off, metadata) for tp, off in offsets.items()} if metadata else offsets)
        except CommitFailedError as e:   # a rebalance in flight: the next owner replays from the last commit
            log.warning("提交偏移失败 commit failed in %s: %r (will be retried)", self.name, e)
            return
        self.batches.committed_ok(offsets)
        metrics.child(metrics.COMMIT_LATENCY, self.name).observe(time.monotonic() - t0)
