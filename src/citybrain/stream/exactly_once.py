"""exactly_once (``processing_guarantee``): a batch's outputs, its changelog writes and its
input offsets commit in one Kafka transaction per input partition number, on that
partition's own transactional id (``{group}-{partition}``, and ``….1`` with two producers):
the worker that takes a partition over fences the one that had it (aiokafka has no
KIP-447 generation fencing, so ids per partition are what keep a zombie out).

Pipelined: each partition number is a *lane* that runs its transactions in order, each
taking every batch part handed to it meanwhile (Kafka Streams' commit interval, with no
fixed interval); the stage hands a batch over and goes on fetching and handling while the
lanes commit.  A lane may have two producers taken in turn (``ExactlyOnce(producers=2)``):
the next transaction is begun, sent and given its offsets on one while the last one's
EndTxn and markers are on their way on the other, and commits once that one has.  On one producer a transaction begun right
after a commit waited for the broker to write the last one's markers
(``CONCURRENT_TRANSACTIONS``) and then took four coordinator round trips one after
another — AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn —, each record
waiting for the one in progress and then its own (docs/performance.md, "The last hop").

``TransactionLanes`` is that over a producer lookup; ``ExactlyOnce`` the stage's
``Checkpoint`` (stream/checkpoint.py): the per-partition producers and the lanes.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
    """The lanes (see the module doc).  ``producers(partition)`` gives the started
    transactional producers of an input partition number — one, or two taken in turn
    (one transaction prepared while the other commits); ``on_commit(seconds)`` is told
    how long each transaction took, begin to commit."""

    def __init__(self, producers: Callable[[int], Sequence[TransactionalProducer]], group_id: str,
                 on_commit: Callable[[float], None] = lambda seconds: None):
        self.producers, self.group_id, self.on_commit = producers, group_id, on_commit
        self.pending: dict[int, list[_Part]] = defaultdict(list)   # per lane, not yet in a transaction
        self.lanes: dict[int, asyncio.Task] = {}
        self.wakeups: dict[int, asyncio.Future] = {}               # a lane waiting for a part or a commit
        self.commits: set[asyncio.Task] = set()                    # every lane's commits in flight
        self.unsettled: deque[list[asyncio.Future]] = deque()     # per batch handed over, oldest first
        self.turns: dict[int, int] = defaultdict(int)              # per lane, the producer to take next
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
            wakeup = self.wakeups.pop(p, None)
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)
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
        """After a failure: stop the lanes and their commits; nothing pending will be
        committed.  A transaction cut off mid-way is aborted (or completed) by the next
        producer of its transactional id, which the recovery starts before it reads
        anything back."""
        tasks = [*self.lanes.values(), *self.commits]
        self.lanes, self.commits, self.wakeups = {}, set(), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for futures in self.unsettled:
            for f in futures:
                if not f.done():
                    f.cancel()
        self.pending.clear()
        self.unsettled.clear()
        self.turns.clear()
        self.failure = None

    async def _lane(self, partition: int) -> None:
        """One partition number's transactions, in order, each with every part handed
        over since the last began (outputs, then offsets, which only move forward).  With
        two producers the next transaction is begun, sent and given its offsets on one
        while the last commits on the other, and commits only once that one has: its
        begin waits for no commit markers, and its offsets are recorded after the last
        one's (the group coordinator keeps the later record, whatever order the markers
        land in).  A failed transaction fails every part after it in the lane."""
        queue = self.pending[partition]
        producers = self.producers(partition)
        last: list[asyncio.Task | None] = [None] * len(producers)   # each producer's last commit
        previous = None
        loop = asyncio.get_running_loop()
        try:
            while self.failure is None:
                if not queue:
                    running = [c for c in last if c is not None and not c.done()]
                    if not running:
                        return
                    wakeup = self.wakeups[partition] = loop.create_future()
                    await asyncio.wait([*running, wakeup], return_when=asyncio.FIRST_COMPLETED)
                    continue
                turn = self.turns[partition] % len(producers)
                producer, mine = producers[turn], last[turn]
                if mine is not None and not await mine:   # the producer is free once its commit ended
                    return
                parts = list(queue)
                queue.clear()
                t0 = time.monotonic()
                try:
                    await self._prepare(producer, [o for part in parts for o in part.outputs],
                                        {tp: off for part in parts for tp, off in part.offsets.items()})
                except Exception as e:  # noqa: BLE001 - surfaces in the stage at its next hand-over
                    self._fail(e, parts)
                    return
                task = asyncio.create_task(self._commit(producer, previous, parts, t0))
                self.commits.add(task)
                task.add_done_callback(self.commits.discard)
                last[turn] = previous = task
                self.turns[partition] = turn + 1   # the other one, which committed longest ago
        finally:
            if self.failure is not None:
                self._fail(self.failure, [])

    def _fail(self, e: BaseException, parts: list[_Part]) -> None:
        """A transaction failed: it and every part after it in its lane fail with it."""
        if self.failure is None or (isinstance(e, ProduceFailed) and e.fenced):
            self.failure = e
        for part in parts + [p for queue in self.pending.values() for p in queue]:
            if not part.done.done():
                part.done.set_exception(e)
        for queue in self.pending.values():
            queue.clear()

    async def _commit(self, producer: TransactionalProducer, previous: asyncio.Task | None,
                      parts: list[_Part], t0: float) -> bool:
        """Commit a prepared transaction once the lane's last one has committed (abort it
        if that one failed).  True when committed."""
        if previous is not None and not await previous:
            await self._abort(producer)
            for part in parts:
                if not part.done.done():
                    part.done.set_exception(self.failure or RuntimeError("an earlier transaction failed"))
            return False
        try:
            try:
                await producer.commit_transaction()
            except Exception as e:
                await self._abort(producer, e)
                raise ProduceFailed(e) from e
        except ProduceFailed as e:
            self._fail(e, parts)
            return False
        self.on_commit(time.monotonic() - t0)
        chaos.point("after_commit")
        for part in parts:
            if not part.done.done():
                part.done.set_result(None)
        return True

    @staticmethod
    async def _abort(producer: TransactionalProducer, cause: BaseException | None = None) -> None:
        fenced = isinstance(cause, ProducerFenced) or (isinstance(cause, ProduceFailed) and cause.fenced)
        if fenced:   # a fenced producer may not even abort: the new owner did
            return
        try:
            await asyncio.wait_for(producer.abort_transaction(), 10)
        except Exception:  # noqa: BLE001 - the producer is replaced on recovery anyway
            pass

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

    async def _prepare(self, producer: TransactionalProducer, outputs: list[Output], offsets: Offsets) -> None:
        """Begin a transaction with its outputs and offsets, every send acknowledged (the
        transaction aborted if not)."""
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
        except Exception as e:
            for f, _ in sent:
                quiet(f)
            await self._abort(producer, e)
            if isinstance(e, ProduceFailed):
                raise
            failed = refusals(sent)
            refused = current.source if isinstance(e, RECORD_ERRORS) and current is not None else None
            raise ProduceFailed(e, suspect(failed) or refused) from e


class ExactlyOnce:
    """The exactly_once ``Checkpoint``: ``producers`` transactional producers per input
    partition number (ids ``{group}-{n}``, and ``{group}-{n}.1`` with two), started when
    the partition is claimed — that fences its previous owner's producers of those ids
    and aborts (or completes) their open transactions, so the changelog read next is
    final — and the lanes that commit on them.  Range assignment gives partition n of
    every input topic to the same member, so one set of ids per number covers all its
    inputs.

    One producer a lane by default: two (one transaction prepared while the other
    commits) make about a third more, smaller transactions for the same records, and on
    a loaded box the runs with two were not faster (docs/performance.md, 2026-12-05);
    every worker of a group must use the same count, or a takeover would not fence the
    ``.1`` id."""

    IN_FLIGHT = 2   # batches handed over and not yet committed while the next is handled

    def __init__(self, new_producer: ProducerFactory, group_id: str, name: str, producers: int = 1):
        self.new_producer, self.group_id, self.count = new_producer, group_id, producers
        self.producers: dict[int, list[Any]] = {}
        self.lanes = TransactionLanes(lambda p: self.producers[p], group_id,
                                      on_commit=metrics.child(metrics.COMMIT_LATENCY, name).observe)

    def ids(self, partition: int) -> list[str]:
        return [f"{self.group_id}-{partition}" + (f".{i}" if i else "") for i in range(self.count)]

    async def start(self) -> None:
        pass   # the producers are the partitions': started as each is claimed

    async def claim(self, partitions: set[int]) -> None:
        """Every id of every partition claimed starts at once (each start is a
        coordinator lookup and an InitProducerId round trip, or a wait while a previous
        owner's transaction is aborted)."""
        claimed = {p: [self.new_producer(txn) for txn in self.ids(p)]
                   for p in sorted(partitions - set(self.producers))}
        made = [producer for producers in claimed.values() for producer in producers]
        results = await asyncio.gather(*(producer.start() for producer in made), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:   # none is kept: the claim is retried with new ones after the recovery
            await asyncio.gather(*(stop_quietly(producer) for producer in made))
            raise failed[0]
        self.producers.update(claimed)

    async def release(self, partitions: set[TopicPartition]) -> None:
        for p in sorted({tp.partition for tp in partitions}):
            for producer in self.producers.pop(p, []):
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
        await self.close()

    async def close(self) -> None:
        producers, self.producers = [p for ps in self.producers.values() for p in ps], {}
        for producer in producers:
            await stop_quietly(producer)
