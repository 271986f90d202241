"""Batch stages: the hot path's engine inside the worker.

Measured (docs/performance.md): Faust's per-event agent loop caps a stage near 3k
records/s here, while the same domain code in an aiokafka batch loop does ~24k/s.  A
stage therefore runs as its own consumer group member: ``getmany`` a batch, hand each
record to the stage's handler, then produce the outputs and each changed state key once
and commit — as the checkpoint of the configured guarantee says (stream/checkpoint.py).

No record can stop a stage: an exception while handling one record makes that record
an ``internal_error`` dead letter, an output over the size limit or refused by the
broker an ``output_rejected`` one.  Any other failure (a produce or commit the broker
did not take, the broker gone) is fail-stop: nothing past it is committed, the state is
read back from the changelogs, the stage rewinds to its committed offsets and retries
with backoff — it never exits on its own.

State lives in memory per input partition and in a compacted changelog topic with the
same partition numbers; a partition's state is read back from its changelog when the
partition is assigned, so a worker that restarts (or takes over) carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError
from pydantic_core import to_json

from citybrain import metrics
from citybrain.domain.device_health import PartitionClock
from citybrain.domain.normalize import OriginalKept, dead_letter, dead_letter_key
from citybrain.kafka.clients import kafka_consumer
from citybrain.kafka.groups import leave_group
from citybrain.logfilter import ThrottledLog
from citybrain.stream import chaos
from citybrain.stream.checkpoint import Checkpoint, ProduceFailed, TransactionalCheckpoint
from citybrain.stream.localstore import LocalStore
from citybrain.stream.output import Output
from citybrain.stream.records import record_meta
from citybrain.stream.state import ChangelogState

log = logging.getLogger("citybrain.stage")


class Stage(Protocol):
    """A batch stage as the runner drives it (stages.NormaliseStage, stages.FuseStage)."""

    name: str
    group_id: str                        # its consumer group
    topics: list[str]                    # its inputs
    states: list[ChangelogState]
    state_topic: str | None              # the input topic whose partitions the states follow
    tick_seconds: float
    # Told what the stage has read of each partition of ``state_topic`` and how far behind
    # it is (a ``device_health.PartitionClock``), for timers judged on the stream's time.
    clock: PartitionClock | None
    ready: asyncio.Event                 # set while it runs with its partitions restored
    # Optional (read with getattr): output topics a person waits on, given a producer of
    # their own under at_least_once (the fuse stage's dispatch topics).
    # urgent_topics: frozenset[str]

    def handle(self, m: ConsumerRecord, out: list[Output]) -> None:
        """One call per record, appending its outputs."""

    def source_of(self, m: ConsumerRecord) -> str:
        """The dead-letter ``source`` of an input record."""

    def on_assigned(self, partitions: set[int]) -> None:
        """Partitions whose state is restored and now this stage's."""

    def on_revoked(self, partitions: set[int]) -> None:
        """Partitions no longer this stage's (their state is dropped)."""

    def tick(self) -> list[Output]:
        """About every ``tick_seconds`` (between batches, and when idle): outputs that
        time rather than an input causes (supervision, automatic verification); each
        output's ``source`` names the partition it belongs to."""


@dataclass(frozen=True)
class RunnerSettings:
    bootstrap: str
    guarantee: str = "at_least_once"         # | exactly_once
    deadletter_topic: str = "deadletter"
    max_output_bytes: int = 1_000_000       # an output past this is refused before it is sent
    keep_original_bytes: int = 65536        # a dead letter's copy of the original
    keep_original: OriginalKept = "masked"  # … masked, full or none (IngestSettings.dead_letter_original)
    session_timeout_ms: int = 10000
    heartbeat_ms: int = 3000
    group_instance_id: str | None = None     # static membership (worker.instance_id); None: dynamic
    leave_group_on_stop: bool = True         # … and on a stop, leave at once (kafka/groups.py)
    backoff_seconds: tuple[float, float] = (0.5, 30.0)
    store_dir: Path | None = None            # local copies of the stage state (None: memory://)


ProducerFactory = Callable[[str | None], AIOKafkaProducer]   # transactional id → a new, unstarted producer


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: StageRunner):
        self.runner = runner

    async def on_partitions_revoked(self, revoked):
        await self.runner.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned):
        await self.runner.assigned(set(assigned))


class Backoff:
    def __init__(self, first: float, most: float):
        self.first, self.most, self.next_delay = first, most, first

    def next(self) -> float:
        delay, self.next_delay = self.next_delay, min(self.most, self.next_delay * 2)
        return delay

    def reset(self) -> None:
        self.next_delay = self.first


class StageRunner:
    COMMIT_EVERY = 0.25  # seconds: a commit is a broker round trip; not one per batch
    IN_FLIGHT = 2        # at_least_once: batches whose acks may be awaited while the next is handled
    SLICE_SECONDS = 0.005   # handling gives the event loop back this often (_handle_in_slices)
    SLICE_RECORDS = 16      # … looking at the clock after this many records

    def __init__(self, stage: Stage, settings: RunnerSettings, new_producer: ProducerFactory):
        self.stage, self.settings, self.new_producer = stage, settings, new_producer
        self.bootstrap = settings.bootstrap
        self.state_topic = stage.state_topic
        self.exactly_once = settings.guarantee == "exactly_once"
        # Range assignment: partition n of every input topic goes to the same member,
        # so one transactional id per partition number covers all its inputs.
        self.consumer = kafka_consumer(
            bootstrap_servers=self.bootstrap, group_id=stage.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=2000, fetch_max_wait_ms=20,
            session_timeout_ms=settings.session_timeout_ms, heartbeat_interval_ms=settings.heartbeat_ms,
            isolation_level="read_committed", partition_assignment_strategy=(RangePartitionAssignor,),
            group_instance_id=settings.group_instance_id, client_id=f"citybrain-{stage.name}")
        self.producer: AIOKafkaProducer | None = None          # at_least_once: the stage's outputs
        self.state_producer: AIOKafkaProducer | None = None    # … and its changelog writes (Checkpoint)
        # … and the outputs a person waits for (``stage.urgent_topics``: the fuse stage's
        # dispatch records), on a producer of their own: aiokafka keeps one produce request
        # in flight per producer and broker, and a dispatch sent behind a batch's order
        # events and state snapshots (~27 KB a request, up to 0.5 MB) waited for that
        # request's round trip before its own began (docs/performance.md, "The last hop").
        self.urgent: frozenset[str] = frozenset(getattr(stage, "urgent_topics", ()))
        self.urgent_producer: AIOKafkaProducer | None = None
        self.producers: dict[int, AIOKafkaProducer] = {}       # exactly_once: one per partition number
        self.checkpoint: Checkpoint | None = None
        self.committing: asyncio.Task | None = None             # at_least_once: the offset commit in flight
        self.transactions = TransactionalCheckpoint(
            lambda p: self.producers[p], stage.group_id,
            on_commit=metrics.child(metrics.COMMIT_LATENCY, stage.name).observe)
        self.assigned_now: set[TopicPartition] = set()
        self.owned: set[int] = set()       # partition numbers whose state is restored and ready
        self.unrestored: set[int] = set()  # assigned, state still to read back
        self.poison: set[tuple[str, int, int]] = set()   # inputs whose outputs the broker refused
        self.lock = asyncio.Lock()         # a batch, a recovery and a rebalance never interleave
        self.backoff = Backoff(*settings.backoff_seconds)
        self.failed: BaseException | None = None
        self.joined = False                # an assignment (maybe empty) has come in
        self.last_commit = 0.0
        self.last_tick = 0.0
        self.last_lag = 0.0
        self.position: dict[TopicPartition, int] = {}   # next offset to handle, per partition
        self.say = ThrottledLog(log)
        if settings.store_dir is not None:
            for state in stage.states:
                state.store = LocalStore(settings.store_dir, state.topic)

    def _checkpoint(self) -> Checkpoint:
        """at_least_once's checkpoint (made when the stage starts or recovers)."""
        if self.checkpoint is None:
            raise RuntimeError(f"stage {self.stage.name}: no checkpoint before it starts")
        return self.checkpoint

    def _producer(self, state: bool = False) -> AIOKafkaProducer:
        producer = self.state_producer if state else self.producer
        if producer is None:
            raise RuntimeError(f"stage {self.stage.name}: no producer before it starts")
        return producer

    # -- partitions come and go ----------------------------------------------------

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        metrics.child(metrics.REBALANCES, self.stage.name).inc()
        async with self.lock:
            self.joined = True
            self.assigned_now = set(self.consumer.assignment())
            self.unrestored |= {tp.partition for tp in partitions}   # read back by the loop
            if self.unrestored:
                self.stage.ready.clear()

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        async with self.lock:
            numbers = {tp.partition for tp in partitions}
            await self._hand_over(numbers & self.owned)
            await self._forget(numbers)
            self.unrestored -= numbers
            if self.checkpoint is not None:
                self.checkpoint.forget(partitions)
            self.assigned_now -= partitions
            for tp in [tp for tp in self.position if tp in partitions]:
                try:   # whatever this worker gave up stops being reported by it
                    metrics.CONSUMER_LAG.remove(self.stage.name, tp.topic, str(tp.partition))
                except KeyError:
                    pass
                del self.position[tp]

    async def _hand_over(self, numbers: set[int]) -> None:
        """Partitions leave cleanly (a revocation, a stop): at_least_once, what was
        processed is acknowledged and committed first; then the state goes to the local
        copy.  After a failure nothing is saved: the state may be ahead of the commits."""
        if self.failed is not None:
            return
        try:
            # The lazy changes too: the next owner (here or elsewhere) starts from the changelog.
            unwritten = [o for st in self.stage.states for o in st.drain(everything=True)]
            if self.exactly_once:   # every batch handed over commits first, then the lazy changes
                await self.transactions.commit({}, [], unwritten)
            else:
                if unwritten:
                    await self._checkpoint().add({}, [], unwritten)
                await self._checkpoint().settle(0)
                await self._commit(force=True)
            for state in self.stage.states:
                await state.save_local(self.bootstrap, numbers)
        except Exception as e:  # noqa: BLE001 - the next owner replays from the last commit
            log.warning("交出分区失败 clean hand-over of partitions %s failed in %s: %r", sorted(numbers),
                        self.stage.name, e)

    async def _forget(self, numbers: set[int]) -> None:
        """Drop the in-memory state (and, exactly_once, the producers) of partitions."""
        for state in self.stage.states:
            state.drop(numbers)
        held = numbers & self.owned
        self.owned -= numbers
        if held:
            self.stage.on_revoked(held)
        for p in numbers:
            producer = self.producers.pop(p, None)
            if producer is not None:
                await _stop_quietly(producer)

    async def _restore(self) -> None:
        """Read back the state of partitions assigned but not yet ready.  exactly_once:
        each partition's transactional producer starts first — that fences a previous
        owner and aborts its open transaction, so the changelog read next is final."""
        numbers = set(self.unrestored)
        started = time.monotonic()
        if self.exactly_once:
            for p in sorted(numbers - set(self.producers)):
                producer = self.new_producer(f"{self.stage.group_id}-{p}")
                await producer.start()
                self.producers[p] = producer
        for state in self.stage.states:
            n, local = await state.restore(self.bootstrap, numbers)
            if n or local:
                log.info("状态已恢复 %s: %d keys from the local copy + %d changelog records for partitions %s "
                         "in %.2fs", state.name, local, n, sorted(numbers), time.monotonic() - started)
        self.owned |= numbers
        self.unrestored -= numbers
        self.stage.on_assigned(numbers)

    # -- failure and recovery ------------------------------------------------------

    async def _recover(self) -> None:
        """Fail-stop: nothing after the failure was committed.  Throw the in-memory state
        away (it may hold changes that never reached the changelog), read it back, and
        rewind every assigned partition to its committed offset."""
        try:   # a commit in flight lands (or fails) before the committed offsets are read
            await self._commit_settled()
        except Exception:  # noqa: BLE001 - whatever it did, the committed offsets are read below
            pass
        await self.transactions.abandon()   # exactly_once: the lanes stop; _restore fences their ids
        if self.checkpoint is not None:
            self.checkpoint.abandon()
            try:   # let what is still in the producer settle before the changelog is read
                await asyncio.wait_for(asyncio.gather(*(p.flush() for p in (
                    self.producer, self.state_producer, self.urgent_producer) if p is not None)), 60)
            except Exception:  # noqa: BLE001 - failed sends are simply not committed
                pass
            await self._new_producers()
        if isinstance(self.failed, ProduceFailed) and self.failed.fenced:
            # Another worker owns these partitions now: never fence it back with a new
            # producer; wait for the group to tell us what is ours.
            await self._forget(set(self.owned))
            self.consumer.unsubscribe()
            self.consumer.subscribe(self.stage.topics, listener=_Listener(self))
            return
        self.unrestored |= self.owned
        await self._forget(set(self.owned))
        await self._restore()
        for tp in self.consumer.assignment():
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
            self.position.pop(tp, None)

    async def _new_producers(self) -> None:
        """at_least_once: a fresh pair after a failure (new producer ids).  An idempotent
        producer whose sequence the broker refused (OutOfOrderSequenceNumber after a
        leader change) stops sending for good (aiokafka #1017); the replay from the last
        commit needs nothing of the old pair."""
        old = [p for p in (self.producer, self.state_producer, self.urgent_producer) if p is not None]
        # The old pair stops in the background: a broken one can take its 30 s to give up.
        for p in old:
            task = asyncio.create_task(_stop_quietly(p))
            _STOPPING.add(task)
            task.add_done_callback(_STOPPING.discard)
        await self._start_producers()

    async def _start_producers(self) -> None:
        """at_least_once: the outputs' and the changelog's producers, and the urgent
        outputs' where the stage names any."""
        self.producer, self.state_producer = self.new_producer(None), self.new_producer(None)
        self.urgent_producer = self.new_producer(None) if self.urgent else None
        await self.producer.start()
        await self.state_producer.start()
        if self.urgent_producer is not None:
            await self.urgent_producer.start()

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        if not self.exactly_once:
            await self._start_producers()
            self.checkpoint = Checkpoint(self._send_one, self._send_state)
        self.consumer.subscribe(self.stage.topics, listener=_Listener(self))
        await self.consumer.start()
        try:
            while True:
                try:
                    if self.failed is not None:
                        async with self.lock:
                            await self._recover()
                            self.failed = None
                    if self.unrestored:
                        async with self.lock:
                            await self._restore()
                    await self._step()
                    if self.joined and not self.unrestored and self.failed is None:
                        self.stage.ready.set()
                    self.backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - a stage never stops: rewind and retry
                    self.failed = e
                    self.stage.ready.clear()
                    kind = "fenced" if isinstance(e, ProduceFailed) and e.fenced else type(
                        e.cause if isinstance(e, ProduceFailed) else e).__name__
                    metrics.child(metrics.STAGE_FAILURES, self.stage.name, kind).inc()
                    if isinstance(e, ProduceFailed) and e.suspect:
                        self.poison.add(e.suspect)
                    delay = self.backoff.next()
                    self.say(logging.ERROR, f"fail/{kind}",
                             "阶段失败 stage %s failed (%s: %s); nothing past it is committed — "
                             "rewinding to the last committed offsets, retry in %.1fs",
                             self.stage.name, kind, str(e)[:300], delay)
                    await asyncio.sleep(delay)
        finally:
            try:
                async with self.lock:
                    await self._hand_over(set(self.owned))
            finally:
                for state in self.stage.states:
                    if state.store is not None:
                        state.store.close()
                try:   # after a failure the hand-over does not commit: let the one in flight end
                    await self._commit_settled()
                except Exception:  # noqa: BLE001 - the next owner replays from the last commit
                    pass
                await self.consumer.stop()
                for producer in [self.producer, self.state_producer, self.urgent_producer,
                                 *self.producers.values()]:
                    if producer is not None:
                        await _stop_quietly(producer)
                if self.settings.group_instance_id and self.settings.leave_group_on_stop:
                    # A static member sends no LeaveGroup of its own: its partitions would
                    # wait out the session (kafka/groups.py).
                    await leave_group(self.bootstrap, self.stage.group_id, self.settings.group_instance_id)

    async def _step(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=200)
        arrived, fetched_at = time.monotonic(), time.time()
        async with self.lock:
            if self.failed is not None or self.unrestored:
                # A rebalance or a failure came in between: the loop restores first, and
                # these records are fetched again (without the seek back the position
                # stays past them and a later commit skips them — the chaos suite found
                # that as lost records after a rebalance).
                self._fetch_again(batch)
                return
            await self._tick(batch)
            records, offsets = [], {}
            clock = self.stage.clock
            waited = metrics.child(metrics.STAGE_WAIT, self.stage.name)
            for tp in sorted(batch, key=lambda tp: (tp.topic, tp.partition)):
                recs = batch[tp]
                if tp not in self.assigned_now or (tp.topic == self.state_topic and tp.partition not in self.owned):
                    self._fetch_again({tp: recs})   # its state is not restored yet
                    continue
                records.extend(recs)
                # The partition's oldest record: a skewed producer clock reads as no wait.
                waited.observe(max(0.0, fetched_at - recs[0].timestamp / 1000))
                offsets[tp] = recs[-1].offset + 1
                self.position[tp] = recs[-1].offset + 1
                if clock is not None and tp.topic == self.state_topic:
                    clock.read(tp.partition, recs[-1].timestamp / 1000)
            if batch and not records:
                await asyncio.sleep(0.05)
                return
            if records:
                metrics.child(metrics.STAGE_RECORDS, self.stage.name).inc(len(records))
            outputs = await self._handle_in_slices(records)
            await self._complete(offsets, outputs, arrived, len(records))

    def _fetch_again(self, batch) -> None:
        assigned = self.consumer.assignment()
        for tp, recs in batch.items():
            if recs and tp in assigned:
                self.consumer.seek(tp, recs[0].offset)

    async def _complete(self, offsets, outputs: list[Output], arrived: float | None = None,
                        records: int = 0) -> None:
        """Hand the batch to the checkpoint, pipelined: at_least_once the next batch is
        handled while this one's acks are on their way, exactly_once while its partitions'
        transactions commit (at most ``IN_FLIGHT`` batches not yet committed either way).
        ``arrived``: when the batch's ``records`` came out of the fetch (the stage latency
        is observed when their outputs are acknowledged, or committed)."""
        state = [o for st in self.stage.states for o in st.drain()]
        latency = metrics.child(metrics.STAGE_LATENCY, self.stage.name)
        if self.exactly_once:
            if offsets or outputs or state:
                committed = self.transactions.submit(offsets, outputs, state)
                if records and arrived is not None:
                    since = arrived
                    _when_all_done(committed, lambda: metrics.observe_many(latency, time.monotonic() - since,
                                                                           records))
            # The lanes commit without being waited for: this bounds the batches held
            # and raises a failed transaction's error here.
            await self.transactions.settle(self.IN_FLIGHT)
            return
        if offsets or outputs or state:
            if self.urgent_producer is not None:   # first, so their request is built and sent first
                outputs = [o for o in outputs if o.topic in self.urgent] + [
                    o for o in outputs if o.topic not in self.urgent]
            acked = await self._checkpoint().add(offsets, outputs, state)
            if records and arrived is not None:
                since = arrived
                _when_all_done(acked, lambda: metrics.observe_many(latency, time.monotonic() - since, records))
            chaos.point("after_produce")
        await self._checkpoint().settle(self.IN_FLIGHT if offsets else 0)
        await self._commit(force=False)
        chaos.point("after_commit")

    async def _handle_in_slices(self, records: list[ConsumerRecord]) -> list[Output]:
        """``_handle`` the batch, giving the event loop back every ``SLICE_SECONDS`` of
        work: the worker's stages, readers and clients share one loop, and a full batch
        (2,000 records, 30–60 ms) held the other stage's fetches and acknowledgements —
        a dispatch waiting behind a normalise batch — for all of it.  The runner's lock
        stays held: a rebalance still waits for the whole batch."""
        out: list[Output] = []
        i, n = 0, len(records)
        while True:
            deadline = time.perf_counter() + self.SLICE_SECONDS
            with metrics.batched():   # a slice's counts added once, not per record
                while i < n:
                    out += self._handle(records[i:i + self.SLICE_RECORDS])
                    i += self.SLICE_RECORDS
                    if time.perf_counter() >= deadline:
                        break
            if i >= n:
                return out
            await asyncio.sleep(0)

    def _handle(self, records: list[ConsumerRecord]) -> list[Output]:
        out: list[Output] = []
        limit = self.settings.max_output_bytes
        for m in records:
            source = (m.topic, m.partition, m.offset)
            mark = len(out)
            if source in self.poison:
                out.append(self._dead(m, "output_rejected", "the broker refused an output of this record"))
            else:
                try:
                    self.stage.handle(m, out)
                    big = next((o for o in out[mark:] if len(o.value or b"") + len(o.key or b"") > limit), None)
                    if big is not None:
                        del out[mark:]
                        out.append(self._dead(m, "output_rejected", f"its output to {big.topic} would be "
                                              f"{len(big.value or b'')} bytes; the limit is {limit}"))
                except Exception as e:  # noqa: BLE001 - one record never stops a stage
                    del out[mark:]
                    self.say(logging.ERROR, f"internal/{type(e).__name__}",
                             "内部错误 internal error in %s on %s[%d]@%d, record dead-lettered: %r",
                             self.stage.name, m.topic, m.partition, m.offset, e, exc_info=e)
                    out.append(self._dead(m, "internal_error", f"{type(e).__name__}: {e}",
                                          exception_type=type(e).__name__))
            for o in out[mark:]:
                o.source = source
        return out

    def _dead(self, m: ConsumerRecord, reason: str, detail: str, exception_type: str | None = None) -> Output:
        source = self.stage.source_of(m)
        dead = dead_letter(source, m.value, record_meta(m), reason, detail,
                           keep_bytes=self.settings.keep_original_bytes, exception_type=exception_type,
                           keep_original=self.settings.keep_original)
        metrics.count_dead(source, reason)
        return Output(self.settings.deadletter_topic, dead_letter_key(m.key), to_json(dead))

    async def _send_one(self, o: Output) -> asyncio.Future:
        producer = self.urgent_producer if o.topic in self.urgent else None
        return await (producer or self._producer()).send(o.topic, o.value, key=o.key, partition=o.partition)

    async def _send_state(self, o: Output) -> asyncio.Future:
        return await self._producer(state=True).send(o.topic, o.value, key=o.key, partition=o.partition)

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
        offsets = self._checkpoint().to_commit(self.consumer.assignment())
        if not offsets:
            return
        if force:
            await self._commit_offsets(offsets)
        else:
            self.committing = asyncio.create_task(self._commit_offsets(offsets))

    def _commit_done(self) -> bool:
        return self.committing is None or self.committing.done()

    async def _commit_settled(self) -> None:
        """Wait for the commit in flight; its error, if any, is raised here."""
        task, self.committing = self.committing, None
        if task is not None:
            await task

    async def _commit_offsets(self, offsets) -> None:
        t0 = time.monotonic()
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as e:   # a rebalance in flight: the next owner replays from the last commit
            log.warning("提交偏移失败 commit failed in %s: %r (will be retried)", self.stage.name, e)
            return
        self._checkpoint().committed_ok(offsets)
        metrics.child(metrics.COMMIT_LATENCY, self.stage.name).observe(time.monotonic() - t0)

    def _report_lag(self, pending: dict) -> None:
        for tp, pos in self.position.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                metrics.child(metrics.CONSUMER_LAG, self.stage.name, tp.topic, str(tp.partition)).set(
                    max(0, high - pos))
        if self.stage.clock is not None:
            self._report_progress(self.stage.clock, pending)

    def _report_progress(self, clock, pending: dict) -> None:
        """How far behind the state topic's partitions are, as of the last fetch of each
        (the stage judges device silence against it: domain/device_health.py).
        ``pending``: the batch just fetched and not yet handled — the fetcher's position
        already counts it as read, so a partition is at its end only past it (a restarted
        worker reading its first batch once found every device silent)."""
        for tp in self.assigned_now:
            if tp.topic != self.state_topic or tp.partition not in self.owned:
                continue
            try:
                polled = self.consumer.last_poll_timestamp(tp)
                end = self.consumer.last_stable_offset(tp)
                if end is None or end < 0:
                    end = self.consumer.highwater(tp)
                recs = pending.get(tp)
                pos = recs[0].offset if recs else self.position.get(tp)
                if pos is None:   # nothing read since assignment: where the fetcher stands
                    state = self.consumer._subscription.subscription.assignment.state_value(tp)
                    pos = state.position if state.has_valid_position else None
            except (AssertionError, AttributeError):   # revoked meanwhile, or an aiokafka without these
                continue
            if polled is None or end is None or pos is None:
                continue
            clock.fetched(tp.partition, end - pos, polled / 1000)

    async def _tick(self, pending: dict) -> None:
        now = time.monotonic()
        if now - self.last_lag >= 1.0:
            self.last_lag = now
            self._report_lag(pending)
        if now - self.last_tick < self.stage.tick_seconds or not self.owned:
            return
        self.last_tick = now
        outputs = self.stage.tick()
        if outputs:
            await self._complete({}, outputs)


def _when_all_done(futures: list[asyncio.Future], callback: Callable[[], None]) -> None:
    """``callback`` once every future is done (at once when there are none)."""
    if not futures:
        callback()
        return
    remaining = [len(futures)]

    def one_done(_: asyncio.Future) -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            callback()
    for f in futures:
        f.add_done_callback(one_done)


_STOPPING: set[asyncio.Task] = set()   # producers replaced after a failure, stopping


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 30)
    except Exception as e:  # noqa: BLE001 - a producer that cannot flush while stopping
        log.warning("生产者停止失败 producer stop failed: %r", e)
