"""The stage runner: the hot path's engine inside the worker.

Measured (docs/performance.md): Faust's per-event agent loop caps a stage near 3k
records/s here, while the same domain code in an aiokafka batch loop does ~24k/s.  A
stage therefore runs as its own consumer group member: ``getmany`` a batch, hand each
record to the stage's handler (stream/guard.py), then hand the outputs and each changed
state key to the checkpoint of the configured guarantee (stream/checkpoint.py), which
produces and commits as that guarantee says.  The runner is given its consumer and its
checkpoint (stream/wiring.py) and never asks which guarantee it runs under.

No record can stop a stage (stream/guard.py).  Any other failure (a produce or commit the
broker did not take, the broker gone) is fail-stop: nothing past it is committed, the
state is read back from the changelogs, the stage rewinds to its committed offsets and
retries with backoff — it never exits on its own.

State lives in memory per input partition and in a compacted changelog topic with the
same partition numbers (stream/state.py); a partition's state is read back from its
changelog when the partition is assigned, so a worker that restarts (or takes over)
carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from citybrain import metrics
from citybrain.kafka.groups import leave_group
from citybrain.kafka.reading import seek_to_committed
from citybrain.logfilter import ThrottledLog
from citybrain.stream.batchsize import BatchSize
from citybrain.stream.checkpoint import Checkpoint, ProduceFailed
from citybrain.stream.guard import RecordGuard
from citybrain.stream.localstore import LocalStore
from citybrain.stream.output import Output
from citybrain.stream.stage import RunnerSettings, Stage

log = logging.getLogger("citybrain.stage")

Batch = dict[TopicPartition, list[ConsumerRecord]]


# A gap between two turns of a stage's loop this long means the process was stopped or
# starved (a turn is at most a fetch wait and a bounded batch apart).
STALL_SECONDS = 1.0


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
    def __init__(self, stage: Stage, settings: RunnerSettings, consumer: Any, checkpoint: Checkpoint):
        """``consumer``: the stage's group member, not started (aiokafka's, or a fake);
        ``checkpoint``: the guarantee's (stream/checkpoint.py)."""
        self.stage, self.settings = stage, settings
        self.consumer, self.checkpoint = consumer, checkpoint
        self.bootstrap = settings.bootstrap
        self.state_topic = stage.state_topic
        self.guard = RecordGuard(stage, settings)
        self.assigned_now: set[TopicPartition] = set()
        self.owned: set[int] = set()       # partition numbers whose state is restored and ready
        self.unrestored: set[int] = set()  # assigned, state still to read back
        self.lock = asyncio.Lock()         # a batch, a recovery and a rebalance never interleave
        self.backoff = Backoff(*settings.backoff_seconds)
        self.wake = asyncio.Event()        # cuts a backoff short (the broker answers again)
        self.failed: BaseException | None = None
        self.joined = False                # an assignment (maybe empty) has come in
        self.last_tick = 0.0
        self.last_lag = 0.0
        self.last_turn: float | None = None     # monotonic: the loop's last _tick
        self.fetches_trusted_from = 0.0         # wall time: see report_progress
        self.position: dict[TopicPartition, int] = {}   # next offset to handle, per partition
        self.say = ThrottledLog(log)
        self.batch_size = BatchSize(settings.max_batch_records)   # records a batch: its handling time bounded
        if settings.store_dir is not None:
            for state in stage.states:
                state.store = LocalStore(settings.store_dir, state.topic)

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
            self._forget(numbers)
            self.unrestored -= numbers
            await self.checkpoint.release(partitions)
            self.assigned_now -= partitions
            for tp in [tp for tp in self.position if tp in partitions]:
                try:   # whatever this worker gave up stops being reported by it
                    metrics.CONSUMER_LAG.remove(self.stage.name, tp.topic, str(tp.partition))
                except KeyError:
                    pass
                del self.position[tp]

    async def _hand_over(self, numbers: set[int]) -> None:
        """Partitions leave cleanly (a revocation, a stop): everything handed over is
        committed first; then the state goes to the local copy.  After a failure nothing
        is saved: the state may be ahead of the commits."""
        if self.failed is not None:
            return
        try:
            # The lazy changes too: the next owner (here or elsewhere) starts from the changelog.
            await self.checkpoint.commit([o for st in self.stage.states for o in st.drain(everything=True)])
            for state in self.stage.states:
                await state.save_local(self.bootstrap, numbers)
        except Exception as e:  # noqa: BLE001 - the next owner replays from the last commit
            log.warning("交出分区失败 clean hand-over of partitions %s failed in %s: %r", sorted(numbers),
                        self.stage.name, e)

    def _forget(self, numbers: set[int]) -> None:
        """Drop the in-memory state of partitions."""
        for state in self.stage.states:
            state.drop(numbers)
        held = numbers & self.owned
        self.owned -= numbers
        if held:
            self.stage.on_revoked(held)

    async def _restore(self) -> set[TopicPartition]:
        """Read back the state of partitions assigned but not yet ready, once the
        checkpoint has claimed them (exactly_once: that fences a previous owner and aborts
        its open transaction, so the changelog read next is final).  Returns the input
        partitions the claim put on their committed offsets."""
        numbers = set(self.unrestored)
        started = time.monotonic()
        positioned = await self.checkpoint.claim(numbers)
        for state in self.stage.states:
            n, local = await state.restore(self.bootstrap, numbers)
            if n or local:
                log.info("状态已恢复 %s: %d keys from the local copy + %d changelog records for partitions %s "
                         "in %.2fs", state.name, local, n, sorted(numbers), time.monotonic() - started)
        self.owned |= numbers
        self.unrestored -= numbers
        self.stage.on_assigned(numbers)
        return positioned

    # -- failure and recovery ------------------------------------------------------

    async def _recover(self) -> None:
        """Fail-stop: nothing after the failure was committed.  Throw the in-memory state
        away (it may hold changes that never reached the changelog), read it back, and
        rewind every assigned partition to its committed offset."""
        await self.checkpoint.recover()
        if isinstance(self.failed, ProduceFailed) and self.failed.fenced:
            # Another worker owns these partitions now: never fence it back with a new
            # producer; wait for the group to tell us what is ours.
            self._forget(set(self.owned))
            self.consumer.unsubscribe()
            self.consumer.subscribe(self.stage.topics, listener=_Listener(self))
            return
        self.unrestored |= self.owned
        self._forget(set(self.owned))
        positioned = await self._restore()   # the claim read their stable offsets and seeked already
        rewound = sorted(self.consumer.assignment() - positioned)
        # Asked all at once: aiokafka asks the coordinator one partition a request.
        offsets = await asyncio.gather(*(self.consumer.committed(tp) for tp in rewound))
        await seek_to_committed(self.consumer, dict(zip(rewound, offsets, strict=True)))
        for tp in self.consumer.assignment():
            self.position.pop(tp, None)

    def broker_back(self) -> None:
        """The broker answers again (stream/brokerwatch.py): a stage sleeping out its
        backoff retries now — doubled through an outage, the backoff once held a stage 28 s
        past the broker's return (a 60 s outage in the chaos suite)."""
        self.wake.set()

    async def _back_off(self, delay: float) -> None:
        self.wake.clear()
        try:
            await asyncio.wait_for(self.wake.wait(), delay)
        except TimeoutError:
            pass

    def _failed(self, e: Exception) -> float:
        """Note a failure; the delay before the recovery."""
        self.failed = e
        self.stage.ready.clear()
        kind = "fenced" if isinstance(e, ProduceFailed) and e.fenced else type(
            e.cause if isinstance(e, ProduceFailed) else e).__name__
        metrics.child(metrics.STAGE_FAILURES, self.stage.name, kind).inc()
        if isinstance(e, ProduceFailed) and e.suspect:
            self.guard.poison.add(e.suspect)
        delay = self.backoff.next()
        self.say(logging.ERROR, f"fail/{kind}",
                 "阶段失败 stage %s failed (%s: %s); nothing past it is committed — "
                 "rewinding to the last committed offsets, retry in %.1fs",
                 self.stage.name, kind, str(e)[:300], delay)
        return delay

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        await self.checkpoint.start()
        self.consumer.subscribe(self.stage.topics, listener=_Listener(self))
        await self.consumer.start()
        try:
            while True:
                try:
                    await self.turn()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - a stage never stops: rewind and retry
                    await self._back_off(self._failed(e))
        finally:
            await self._stop()

    async def turn(self) -> None:
        """One turn of the loop: recover or restore where due, then a batch."""
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

    async def _stop(self) -> None:
        try:
            async with self.lock:
                await self._hand_over(set(self.owned))
        finally:
            for state in self.stage.states:
                if state.store is not None:
                    state.store.close()
            await self.checkpoint.close()
            await self.consumer.stop()
            if self.settings.group_instance_id and self.settings.leave_group_on_stop:
                # A static member sends no LeaveGroup of its own: its partitions would
                # wait out the session (kafka/groups.py).
                await leave_group(self.bootstrap, self.stage.group_id, self.settings.group_instance_id)

    async def _step(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=200, max_records=self.batch_size.records)
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
            began = time.monotonic()
            outputs = await self.guard.handle_in_slices(records)
            self.batch_size.handled(len(records), time.monotonic() - began)
            await self._complete(offsets, outputs, arrived, len(records))

    def _fetch_again(self, batch: Batch) -> None:
        assigned = self.consumer.assignment()
        for tp, recs in batch.items():
            if recs and tp in assigned:
                self.consumer.seek(tp, recs[0].offset)

    async def _complete(self, offsets: dict[TopicPartition, int], outputs: list[Output],
                        arrived: float | None = None, records: int = 0) -> None:
        """Hand the batch to the checkpoint, which bounds the batches in flight (the next
        is handled while this one's acknowledgements or transactions are on their way).
        ``arrived``: when the batch's ``records`` came out of the fetch (the stage latency
        is observed when their outputs are safe)."""
        state = [o for st in self.stage.states for o in st.drain()]
        if offsets or outputs or state:
            done = await self.checkpoint.add(offsets, outputs, state)
            if records and arrived is not None:
                latency, since = metrics.child(metrics.STAGE_LATENCY, self.stage.name), arrived
                when_all_done(done, lambda: metrics.observe_many(latency, time.monotonic() - since, records))
        await self.checkpoint.settle(fetched=bool(offsets))

    def _report_lag(self, pending: Batch) -> None:
        for tp, pos in self.position.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                metrics.child(metrics.CONSUMER_LAG, self.stage.name, tp.topic, str(tp.partition)).set(
                    max(0, high - pos))
        if self.stage.clock is not None:
            self.report_progress(self.stage.clock, pending)

    def note_turn(self, now: float) -> None:
        """A turn of the loop; after a gap of STALL_SECONDS or more, the fetches answered
        in the next STALL_SECONDS are not trusted to say where a partition ends."""
        if self.last_turn is not None and now - self.last_turn >= STALL_SECONDS:
            self.fetches_trusted_from = time.time() + STALL_SECONDS
        self.last_turn = now

    def report_progress(self, clock, pending: Batch) -> None:
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
            lag = end - pos
            if polled / 1000 < self.fetches_trusted_from:
                # Answered across a stall of this loop (the process stopped or starved): aiokafka
                # stamps a fetch when it reads the answer, so the stamp may be seconds later
                # than the partition end it reports — not proof of being at the end then (a
                # worker frozen 8 s found its live gauges silent on such a fetch).
                lag = max(lag, 1)
            clock.fetched(tp.partition, lag, polled / 1000)

    async def _tick(self, pending: Batch) -> None:
        now = time.monotonic()
        self.note_turn(now)
        if now - self.last_lag >= 1.0:
            self.last_lag = now
            self._report_lag(pending)
        if now - self.last_tick < self.stage.tick_seconds or not self.owned:
            return
        self.last_tick = now
        outputs = self.stage.tick()
        if outputs:
            await self._complete({}, outputs)


def when_all_done(futures: list[asyncio.Future], callback: Callable[[], None]) -> None:
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
