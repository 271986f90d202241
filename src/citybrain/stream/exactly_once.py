"""exactly_once (``processing_guarantee``): a batch's outputs, its changelog writes and its
input offsets commit in one Kafka transaction — on the stage process's one transactional
id where the cluster speaks the transaction protocol v2 (KIP-447: the group's generation
keeps a zombie out), else on each input partition number's own id (the worker that takes a
partition over fences the one that had it).  ``ExactlyOnce`` says which and how.

Pipelined: each lane (the process's one, or each partition number's) runs its
transactions in order on its producer, each taking every batch part handed to it meanwhile
(Kafka Streams' commit interval, with no fixed interval); the stage hands a batch over and
goes on fetching and handling while the lanes commit.  A record waits for the transaction
in progress and then its own: on the protocol v2 (kafka/transactions_v2.py) its sends, its
offsets and EndTxn, ~2 ms on an idle local broker, against ~7 ms for the first protocol's
four coordinator round trips (docs/performance.md).  Two producers a lane, one preparing
while the other committed, made more and smaller transactions and were slower on either
protocol, on a quiet box and a loaded one (docs/performance.md, 2026-12-05): removed.

``TransactionLanes`` is that over a producer lookup; ``ExactlyOnce`` the stage's
``Checkpoint`` (stream/checkpoint.py): the producers and the lanes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from citybrain import metrics
from citybrain.kafka.clients import stop_quietly
from citybrain.kafka.groups import static_members
from citybrain.kafka.reading import seek_to_committed
from citybrain.kafka.transactions_v2 import GroupMetadata, stable_offsets
from citybrain.stream import chaos
from citybrain.stream.checkpoint import (
    RECORD_ERRORS,
    Offsets,
    ProduceFailed,
    ProducerFactory,
    check,
    quiet,
    refusals,
    suspect,
)
from citybrain.stream.output import Output

log = logging.getLogger("citybrain.stage")


class TransactionalProducer(Protocol):
    """What exactly_once needs of a producer (aiokafka's, or a test's fake)."""

    async def begin_transaction(self) -> None: ...
    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future: ...
    async def send_offsets_to_transaction(self, offsets: Offsets, group_id: str,
                                          member: GroupMetadata | None = None) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...


@dataclass
class _Part:
    """A batch's share of one lane: its outputs and changelog writes, the offsets of its
    input partitions in that lane, and the future its transaction's outcome sets."""
    outputs: list[Output]
    offsets: Offsets
    done: asyncio.Future


class TransactionLanes:
    """The lanes (see the module doc).  ``producer(lane)`` gives a lane's started
    transactional producer; ``on_commit(seconds)`` is told how long each transaction took,
    begin to commit."""

    def __init__(self, producer: Callable[[int], TransactionalProducer], group_id: str,
                 on_commit: Callable[[float], None] = lambda seconds: None,
                 lane_of: Callable[[int], int] = lambda partition: partition,
                 member: Callable[[], GroupMetadata | None] = lambda: None):
        """``lane_of(partition)``: the lane of an input partition number (``producer`` is
        asked for lanes); ``member()``: the group member whose offsets a transaction
        commits, when the coordinator is to check its generation (KIP-447)."""
        self.producer, self.group_id, self.on_commit = producer, group_id, on_commit
        self.lane_of, self.member = lane_of, member
        self.pending: dict[int, list[_Part]] = defaultdict(list)   # per lane, not yet in a transaction
        self.lanes: dict[int, asyncio.Task] = {}
        self.unsettled: deque[list[asyncio.Future]] = deque()     # per batch handed over, oldest first
        self.failure: BaseException | None = None

    def submit(self, offsets: Offsets, outputs: list[Output], state: list[Output]) -> list[asyncio.Future]:
        """Hand a batch over: each partition number's part joins its lane's next
        transaction.  Returns one future per part, done when its transaction committed.
        Raises the failure of an earlier transaction (nothing past it may commit)."""
        self.check()
        parts = self._split(offsets, outputs, state)
        loop = asyncio.get_running_loop()
        futures = []
        for lane, (outs, offs) in parts.items():
            part = _Part(outs, offs, loop.create_future())
            quiet(part.done)
            self.pending[lane].append(part)
            futures.append(part.done)
            if lane not in self.lanes or self.lanes[lane].done():
                self.lanes[lane] = asyncio.create_task(self._lane(lane))
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
        """After a failure: stop the lanes, a commit in flight with them; nothing pending
        will be committed.  A transaction cut off mid-way is aborted (or completed) by the
        next producer of its transactional id, which the recovery starts before it reads
        anything back."""
        tasks = list(self.lanes.values())
        self.lanes = {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for futures in self.unsettled:
            for f in futures:
                if not f.done():
                    f.cancel()
        self.pending.clear()
        self.unsettled.clear()
        self.failure = None

    async def _lane(self, lane: int) -> None:
        """One lane's transactions, in order, each with every part handed over since the
        last began (outputs, then offsets, which only move forward); done when none is
        left (the next hand-over starts it again).  A failed transaction fails every part
        after it in the lane."""
        queue = self.pending[lane]
        producer = self.producer(lane)
        try:
            while self.failure is None and queue:
                parts = list(queue)
                queue.clear()
                t0 = time.monotonic()
                try:
                    await self._prepare(producer, [o for part in parts for o in part.outputs],
                                        {tp: off for part in parts for tp, off in part.offsets.items()})
                except Exception as e:  # noqa: BLE001 - surfaces in the stage at its next hand-over
                    self._fail(e, parts)
                    return
                if not await self._commit(producer, parts, t0):
                    return
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

    async def _commit(self, producer: TransactionalProducer, parts: list[_Part], t0: float) -> bool:
        """Commit a prepared transaction.  True when committed."""
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

    def _split(self, offsets: Offsets, outputs: list[Output], state: list[Output]) -> dict[int, tuple[list[Output], Offsets]]:
        """A batch by lane (outputs by their input's partition number, changelog writes
        by their own: the same number)."""
        parts: dict[int, tuple[list[Output], Offsets]] = defaultdict(lambda: ([], {}))
        for o in outputs:
            if o.source is None:
                raise ValueError(f"an output to {o.topic} names no input: it cannot join a transaction")
            parts[self.lane_of(o.source[1])][0].append(o)     # every stage output names its input
        for o in state:
            if o.partition is None:
                raise ValueError(f"a changelog write to {o.topic} names no partition")
            parts[self.lane_of(o.partition)][0].append(o)     # changelog partition = input partition
        for tp, off in offsets.items():
            parts[self.lane_of(tp.partition)][1][tp] = off
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
                member = self.member()
                if member is None:
                    await producer.send_offsets_to_transaction(offsets, self.group_id)
                else:
                    await producer.send_offsets_to_transaction(offsets, self.group_id, member=member)
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
    """The exactly_once ``Checkpoint``, in one of two shapes chosen at start:

    - *one transactional id per process* (``{group}@{instance}``, KIP-447), where the
      cluster speaks the transaction protocol v2 and the worker has a stable instance id:
      one lane, one producer, every partition's work in its transactions.  The offsets
      carry the consumer's generation, so the group coordinator refuses a zombie's (a
      member the group moved past); a restarted worker's producer fences its previous
      incarnation's at start; a partition claimed is read from only once no transaction
      still open holds its offsets (OffsetFetch require_stable) — a lost worker's times
      out.  Twelve lanes (six partitions, two stages) ran ~400 transactions a second at
      1,000 records/s; one lane a stage runs fewer and larger (docs/performance.md).
    - *one id per input partition number* (``{group}-{n}``), otherwise: a producer per
      partition, started when the partition is claimed — that fences its previous owner's
      producer of that id and aborts (or completes) its open transaction, so the
      changelog read next is final.

    Range assignment gives partition n of every input topic to the same member, so one
    id per number covers all its inputs."""

    IN_FLIGHT = 2   # batches handed over and not yet committed while the next is handled
    PROCESS_LANE = 0

    def __init__(self, new_producer: ProducerFactory, group_id: str, name: str,
                 consumer: Any = None, instance_id: str | None = None):
        """``consumer``/``instance_id``: the stage's group member and its static id — both
        needed for one transactional id per process."""
        self.new_producer, self.group_id = new_producer, group_id
        self.consumer, self.instance_id = consumer, instance_id
        self.per_process = False
        self.producers: dict[int, Any] = {}   # by lane
        self.members_seen: set[str] = set()   # the group's static members at earlier claims
        self.lanes = TransactionLanes(lambda lane: self.producers[lane], group_id,
                                      on_commit=metrics.child(metrics.COMMIT_LATENCY, name).observe,
                                      lane_of=self._lane_of, member=self._member)

    def transactional_id(self, partition: int) -> str:
        if self.per_process:
            return self._process_id(self.instance_id)
        return f"{self.group_id}-{partition}"

    def _process_id(self, instance_id: str | None) -> str:
        return f"{self.group_id}@{instance_id}"

    def _lane_of(self, partition: int) -> int:
        return self.PROCESS_LANE if self.per_process else partition

    def _member(self) -> GroupMetadata | None:
        if not self.per_process:
            return None
        coordinator = self.consumer._coordinator
        return coordinator.generation, coordinator.member_id, self.instance_id

    async def start(self) -> None:
        """One id per process where the cluster speaks v2 (the producer started here is
        that id's: it fences a previous incarnation of this worker and ends its open
        transaction); otherwise the partitions' producers start as each is claimed."""
        if self.consumer is None or not self.instance_id:
            return
        self.per_process = True
        producer = await self._process_producer()
        if not getattr(producer, "speaks_v2", False):
            self.per_process = False
            await stop_quietly(self.producers.pop(self.PROCESS_LANE))

    async def _process_producer(self) -> Any:
        """The process's one producer, started if it is not (at start, after a recovery)."""
        if self.PROCESS_LANE not in self.producers:
            self.producers[self.PROCESS_LANE] = await self._started(self.transactional_id(self.PROCESS_LANE))
        return self.producers[self.PROCESS_LANE]

    async def _started(self, transactional_id: str) -> Any:
        producer = self.new_producer(transactional_id)
        try:
            await producer.start()
        except BaseException:
            await stop_quietly(producer)
            raise
        return producer

    async def claim(self, partitions: set[int]) -> set[TopicPartition]:
        """Every partition claimed starts its producer at once (each start is a
        coordinator lookup and an InitProducerId round trip, or a wait while a previous
        owner's transaction is aborted).  One id per process: its producer (again, after
        a recovery), then the claimed partitions' stable offsets, from which the consumer
        reads on."""
        if self.per_process:
            client = (await self._process_producer()).client
            await self._end_gone_members_transactions(client)
            return await self._read_from_stable(client, partitions)
        claimed = {p: self.new_producer(self.transactional_id(p)) for p in sorted(partitions - set(self.producers))}
        made = list(claimed.values())
        results = await asyncio.gather(*(producer.start() for producer in made), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:   # none is kept: the claim is retried with new ones after the recovery
            await asyncio.gather(*(stop_quietly(producer) for producer in made))
            raise failed[0]
        self.producers.update(claimed)
        return set()

    async def _end_gone_members_transactions(self, client: Any) -> None:
        """A worker lost for good leaves its last transaction open: the offsets in it hold
        its partitions here (and its outputs a read_committed reader) until the broker
        aborts it (TRANSACTION_TIMEOUT_MS, then the broker's scan for such).  Each member
        seen at an earlier claim and gone from the group now has its id started here,
        which aborts that transaction at once — and fences the worker should it live on
        (it then rejoins, as after any fencing).  Best effort: the timeout is the fallback."""
        try:
            members = await static_members(client, self.group_id)
        except Exception as e:  # noqa: BLE001 - the transaction times out instead
            log.warning("组成员未知 members of %s unknown (%r): a lost worker's open transaction "
                        "ends when it times out", self.group_id, e)
            return
        gone = self.members_seen - members - {self.instance_id}
        self.members_seen = (self.members_seen | members) - gone
        for instance in sorted(gone):
            transactional_id = self._process_id(instance)
            try:
                await stop_quietly(await self._started(transactional_id))
                log.info("已结束离组成员事务 %s: member %s left the group; its open transaction "
                         "(if any) aborted, its id fenced", self.group_id, instance)
            except Exception as e:  # noqa: BLE001 - the transaction times out instead
                log.warning("结束离组成员事务失败 %s: %r", transactional_id, e)

    async def _read_from_stable(self, client: Any, partitions: set[int]) -> set[TopicPartition]:
        """The consumer's position on each claimed input partition: its committed offset
        once no open transaction holds it (the offset aiokafka fetched at assignment may
        be one a zombie's transaction was still changing)."""
        tps = {tp for tp in self.consumer.assignment() if tp.partition in partitions}
        if not tps:
            return set()
        offsets = await stable_offsets(client, self.group_id, tps)
        await seek_to_committed(self.consumer, {tp: offsets.get(tp) for tp in tps})
        return tps

    async def release(self, partitions: set[TopicPartition]) -> None:
        if self.per_process:
            return   # the hand-over committed their work; the producer serves the rest
        for p in sorted({tp.partition for tp in partitions}):
            if p in self.producers:
                await stop_quietly(self.producers.pop(p))

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
        producers, self.producers = list(self.producers.values()), {}
        for producer in producers:
            await stop_quietly(producer)
