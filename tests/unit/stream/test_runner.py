"""The stage runner's loop against a fake consumer and fake producers, under each
guarantee's checkpoint: a batch's offsets are committed only once its outputs are safe, a
failed produce commits nothing and the stage replays from the last commit, a revocation
hands the partition over, exactly_once fences on recovery and yields when fenced."""

import asyncio
import time

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, ProducerFenced

from citybrain.domain.device_health import PartitionClock
from citybrain.stream.at_least_once import AtLeastOnce
from citybrain.stream.brokerwatch import BrokerWatch
from citybrain.stream.exactly_once import ExactlyOnce
from citybrain.stream.runner import StageRunner
from citybrain.stream.stage import RunnerSettings

from .fakes import TP0, TP1, FakeConsumer, FakeProducer, FakeStage, FakeTxnProducer, record

SETTINGS = RunnerSettings("127.0.0.1:1", deadletter_topic="dead", backoff_seconds=(0.01, 0.01))


def log_of(*values: bytes) -> dict:
    return {TP0: [record(i, v) for i, v in enumerate(values)]}


async def until(condition, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Plain:
    """at_least_once producers: the first ``failing`` made refuse every send."""

    def __init__(self, acks="now", failing: int = 0):
        self.acks, self.failing = acks, failing
        self.made: list[FakeProducer] = []
        self.log: list[tuple[str, str, bytes | None]] = []

    def __call__(self, txn):
        acks = KafkaConnectionError("broker gone") if len(self.made) < self.failing else self.acks
        self.made.append(FakeProducer(f"p{len(self.made)}", self.log, acks))
        return self.made[-1]

    def values(self, name: str) -> list[bytes | None]:
        return [v for n, t, v in self.log if n == name and t == "events"]


def at_least_once(consumer: FakeConsumer, producers: Plain, stage=None) -> StageRunner:
    cp = AtLeastOnce(consumer, producers, "normalise")
    cp.COMMIT_EVERY = 0
    return StageRunner(stage or FakeStage(), SETTINGS, consumer, cp)


async def joined(r: StageRunner, consumer: FakeConsumer, *tps: TopicPartition) -> None:
    consumer.assigned = set(tps)
    await r.assigned(set(tps))


async def running(r: StageRunner) -> asyncio.Task:
    task = asyncio.create_task(r.run())
    await asyncio.sleep(0)
    return task


async def stopped(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- at_least_once ---------------------------------------------------------------------

async def test_a_batch_is_committed_only_once_its_outputs_are_acknowledged():
    consumer, producers = FakeConsumer(log_of(b"a", b"b", b"c")), Plain(acks="hold")
    r = at_least_once(consumer, producers)
    await r.checkpoint.start()
    await joined(r, consumer, TP0)
    await r.turn()                                        # restored, fetched, handled, sent
    assert producers.values("p0") == [b"a", b"b", b"c"] and r.stage.ready.is_set()
    idle = asyncio.create_task(r.turn())                  # nothing new: waits for the acks
    await asyncio.sleep(0.02)
    assert not idle.done() and consumer.commits == []
    producers.made[0].ack()
    await asyncio.wait_for(idle, 1)
    await until(lambda: consumer.commits == [{TP0: 3}])


async def test_a_failed_produce_commits_nothing_and_the_stage_replays_on_fresh_producers():
    consumer, producers = FakeConsumer(log_of(b"a", b"b", b"c")), Plain(failing=2)
    r = at_least_once(consumer, producers)
    await joined(r, consumer, TP0)
    task = await running(r)
    await until(lambda: consumer.commits)
    await stopped(task)
    assert consumer.commits[0] == {TP0: 3} and consumer.committed_offsets == {TP0: 3}
    assert producers.values("p0") == [b"a", b"b", b"c"]   # refused …
    assert producers.values("p2") == [b"a", b"b", b"c"]   # … and sent again, from the last commit
    assert producers.made[0].stopped and producers.made[1].stopped and consumer.stopped


async def test_a_recovery_rewinds_each_partition_to_its_own_commit_asking_for_them_at_once():
    logs = {tp: [record(i, v, tp.partition) for i, v in enumerate([b"a", b"b", b"c", b"d"])] for tp in (TP0, TP1)}
    consumer, producers = FakeConsumer(logs), Plain(failing=2)
    consumer.committed_offsets = {TP0: 1, TP1: 3}
    group_offset, asking, most = consumer.committed, [0], [0]

    async def committed(tp):
        asking[0] += 1
        most[0] = max(most[0], asking[0])
        await asyncio.sleep(0.01)   # a round trip to the coordinator
        asking[0] -= 1
        return await group_offset(tp)

    consumer.committed = committed
    r = at_least_once(consumer, producers)
    await joined(r, consumer, TP0, TP1)
    task = await running(r)
    await until(lambda: consumer.commits)
    await stopped(task)
    assert sorted(producers.values("p0")) == [b"b", b"c", b"d", b"d"]   # refused …
    assert sorted(producers.values("p2")) == [b"b", b"c", b"d", b"d"]   # … and sent again from each one's commit
    assert consumer.commits[0] == {TP0: 4, TP1: 4}
    assert most[0] == 2   # both asked in one round trip, not one after the other


async def test_a_recovery_leaves_a_partition_where_the_claim_put_it():
    """exactly_once with one id per process seeks each claimed partition to its stable
    committed offset itself (the claim says which): the runner's rewind after a failure
    does not ask the group for those offsets again."""
    consumer, producers = FakeConsumer(log_of(b"a", b"b", b"c")), Plain(failing=2)
    asked: list[TopicPartition] = []
    group_offset = consumer.committed

    async def committed(tp):
        asked.append(tp)
        return await group_offset(tp)

    consumer.committed = committed

    class ClaimSeeks(AtLeastOnce):
        async def claim(self, partitions):
            await super().claim(partitions)
            consumer.seek(TP0, consumer.committed_offsets.get(TP0, 0))
            return {TP0}

    cp = ClaimSeeks(consumer, producers, "normalise")
    cp.COMMIT_EVERY = 0
    r = StageRunner(FakeStage(), SETTINGS, consumer, cp)
    await joined(r, consumer, TP0)
    task = await running(r)
    await until(lambda: consumer.commits)
    await stopped(task)
    assert producers.values("p2") == [b"a", b"b", b"c"]   # replayed from where the claim put it
    assert asked == []
    assert r.stage.assigned == [{0}, {0}]   # the stage told of its partition at the join and again after


async def test_a_revocation_with_a_batch_in_flight_hands_it_over_committed():
    consumer, producers = FakeConsumer(log_of(b"a", b"b", b"c")), Plain(acks="hold")
    r = at_least_once(consumer, producers)
    await r.checkpoint.start()
    await joined(r, consumer, TP0)
    await r.turn()
    revoking = asyncio.create_task(r.revoked({TP0}))
    await asyncio.sleep(0.02)
    assert not revoking.done() and consumer.commits == []   # waits for the acknowledgements
    producers.made[0].ack()
    await asyncio.wait_for(revoking, 1)
    assert consumer.commits == [{TP0: 3}]
    assert r.stage.revoked == [{0}] and not r.owned and not r.assigned_now


# -- exactly_once ----------------------------------------------------------------------

class Transactional:
    """exactly_once producers whose commits land in the consumer's committed offsets."""

    def __init__(self, consumer: FakeConsumer, fail: Exception | None = None):
        self.consumer, self.fail = consumer, fail
        self.made: list[FakeTxnProducer] = []

    def __call__(self, txn):
        fail = self.fail if not self.made else None   # the first one made fails its commit
        self.made.append(FakeTxnProducer(fail=fail, transactional_id=txn, committed=self.consumer.committed_offsets))
        return self.made[-1]


def exactly_once(consumer: FakeConsumer, producers: Transactional) -> StageRunner:
    return StageRunner(FakeStage(), SETTINGS, consumer, ExactlyOnce(producers, "grp", "normalise"))


async def test_exactly_once_commits_a_batch_in_its_partition_s_transaction():
    consumer = FakeConsumer(log_of(b"a", b"b", b"c"))
    producers = Transactional(consumer)
    r = exactly_once(consumer, producers)
    await joined(r, consumer, TP0)
    await r.turn()
    await until(lambda: consumer.committed_offsets == {TP0: 3})
    (p,) = producers.made
    assert p.transactional_id == "grp-0"
    assert p.log == [("start",), ("begin",), ("send", "events"), ("send", "events"), ("send", "events"),
                     ("offsets", {TP0: 3}, "grp"), ("commit",)]
    assert consumer.commits == []   # the offsets went with the transaction, not the consumer


async def exactly_once_running_to_fail(error: Exception):
    """An exactly_once runner over three records whose first transaction fails with ``error``."""
    consumer = FakeConsumer(log_of(b"a", b"b", b"c"))
    producers = Transactional(consumer, fail=error)
    r = exactly_once(consumer, producers)
    await joined(r, consumer, TP0)
    return consumer, producers, r, await running(r)


async def test_exactly_once_aborts_a_failed_transaction_and_fences_its_id_before_replaying():
    consumer, producers, r, task = await exactly_once_running_to_fail(KafkaTimeoutError())
    await until(lambda: consumer.committed_offsets == {TP0: 3})
    await stopped(task)
    first, second = producers.made[:2]
    assert first.log[-2:] == [("abort",), ("stop",)] and ("commit",) not in first.log
    # The same transactional id started again (fencing whatever was open) before the replay.
    assert second.transactional_id == "grp-0" and second.log[0] == ("start",)
    assert second.log.count(("send", "events")) == 3 and ("commit",) in second.log


async def test_a_fenced_stage_yields_the_partition_and_never_fences_back():
    consumer, producers, r, task = await exactly_once_running_to_fail(ProducerFenced())
    await until(lambda: consumer.subscriptions == 2)       # it asks the group again
    await asyncio.sleep(0.05)
    await stopped(task)
    assert len(producers.made) == 1 and ("abort",) not in producers.made[0].log
    assert consumer.committed_offsets == {} and r.stage.revoked == [{0}] and not r.owned


# -- what the loop observes ------------------------------------------------------------

async def test_the_wait_before_the_fetch_is_observed_per_partition_from_its_oldest_record():
    from prometheus_client import REGISTRY

    def observed() -> tuple[float, float]:
        labels = {"stage": "normalise"}
        return (REGISTRY.get_sample_value("citybrain_stage_wait_seconds_count", labels) or 0.0,
                REGISTRY.get_sample_value("citybrain_stage_wait_seconds_sum", labels) or 0.0)

    now_ms = int((time.time() - 0.4) * 1000)
    tps = [TopicPartition("in", p) for p in (0, 1)]
    consumer = FakeConsumer({tp: [record(o, b"ok", tp.partition, now_ms + 50 * o) for o in range(3)] for tp in tps})
    r = at_least_once(consumer, Plain())
    await r.checkpoint.start()
    await joined(r, consumer, *tps)
    count, total = observed()
    await r.turn()
    count2, total2 = observed()
    assert count2 - count == 2                     # one per partition, not one per record
    assert 0.4 <= (total2 - total) / 2 < 5.0       # the oldest record's age, not the newest's


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
    r = at_least_once(FetchedAhead(), Plain())
    tp = TopicPartition("in", 0)
    r.state_topic, r.assigned_now, r.owned = "in", {tp}, {0}
    clock = PartitionClock()
    # A restarted worker's first batch (offsets 30..45): not at the end, so silence is
    # judged on the records' own time, not on the fetch's wall clock.
    batch: dict[TopicPartition, list[ConsumerRecord]] = {tp: [record(o, b"r") for o in range(30, 46)]}
    r.report_progress(clock, batch)
    assert clock.reference(0) is None
    # Handled, nothing new fetched: at the end as of the last fetch.
    r.position[tp] = 46
    r.report_progress(clock, {})
    assert clock.reference(0) == 1_800_000_100.0


def test_a_fetch_answered_across_a_stall_of_the_loop_is_no_proof_of_being_at_the_end(monkeypatch):
    """aiokafka stamps a fetch when it reads the answer: one answered before a worker was
    frozen and read after it carries a stamp seconds later than the end it reports."""
    r = at_least_once(FetchedAhead(), Plain())
    tp = TopicPartition("in", 0)
    r.state_topic, r.assigned_now, r.owned = "in", {tp}, {0}
    r.position[tp] = 46
    monkeypatch.setattr(time, "time", lambda: 1_800_000_099.5)
    r.note_turn(100.0)
    r.note_turn(100.2)                  # the next turn 0.2 s later: no stall
    assert r.fetches_trusted_from == 0.0
    r.note_turn(108.2)                  # 8 s without a turn: stopped (SIGSTOP) or starved
    clock = PartitionClock()
    r.report_progress(clock, {})        # stamped 1_800_000_100.0, within a second of the stall
    assert clock.reference(0) is None   # judged on the records' own time instead
    monkeypatch.setattr(FetchedAhead, "last_poll_timestamp", lambda self, tp: 1_800_000_101_000)
    r.report_progress(clock, {})        # a fetch answered after that second: at the end
    assert clock.reference(0) == 1_800_000_101.0


# -- the batch size --------------------------------------------------------------------

class SlowStage(FakeStage):
    """Handling takes ``delay`` a record (5 ms: a loaded box)."""

    def __init__(self, delay: float = 0.005):
        super().__init__()
        self.delay = delay

    def handle(self, m, out):
        time.sleep(self.delay)
        super().handle(m, out)


@pytest.mark.parametrize("delay, asked", [(0.005, [50, 50]), (0.0005, [50, 100])])
async def test_a_stage_that_handles_slowly_takes_smaller_batches(delay, asked):
    """What a kill replays is what was handled and not yet committed: a batch is bounded by
    its handling time (0.25 s), not only by its count (stream/batchsize.py).  The first
    batch, nothing measured yet, is the smallest."""
    consumer, producers = FakeConsumer({TP0: [record(i, b"r%d" % i) for i in range(150)]}), Plain()
    r = StageRunner(SlowStage(delay), RunnerSettings("127.0.0.1:1", max_batch_records=100), consumer,
                    AtLeastOnce(consumer, producers, "normalise"))
    await r.checkpoint.start()
    await joined(r, consumer, TP0)
    await r.turn()                      # 50 records: 5 ms (0.5 ms) a record
    await r.turn()
    assert consumer.asked[:2] == asked  # 0.25 s of work, between the floor of 50 and the most, 100
    assert producers.values("p0") == [b"r%d" % i for i in range(sum(asked))]


async def test_the_broker_answering_again_cuts_a_stage_backoff_short():
    """Doubled through an outage, a stage's backoff once held it 28 s past the broker's
    return; the broker watch's word wakes it."""
    r = at_least_once(FakeConsumer({}), Plain())
    watch = BrokerWatch("127.0.0.1:1")
    watch.on_back.append(r.broker_back)
    sleeping = asyncio.create_task(r._back_off(30.0))
    await asyncio.sleep(0.05)
    watch._set(False)                   # down: nothing wakes
    await asyncio.sleep(0.05)
    assert not sleeping.done()
    watch._set(True)                    # back
    await asyncio.wait_for(sleeping, 1)
    started = asyncio.get_running_loop().time()
    await r._back_off(0.05)             # a later backoff runs its course
    assert asyncio.get_running_loop().time() - started >= 0.04
