"""exactly_once's transaction lanes against fake transactional producers: one transaction
per partition number with its outputs, changelog writes and offsets; aborted, or fenced,
never committed past a failure; pipelined lanes."""

import asyncio
import time
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaTimeoutError, ProducerFenced

from citybrain.stream import exactly_once
from citybrain.stream.checkpoint import ProduceFailed
from citybrain.stream.exactly_once import ExactlyOnce, TransactionLanes
from citybrain.stream.stage import RunnerSettings
from citybrain.stream.wiring import stage_checkpoint

from .fakes import TP0, TP1, FakeConsumer, FakeStage, FakeTxnProducer, changelog, out


async def until(condition, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def one_each(producers: dict[int, FakeTxnProducer]):
    """A producer per partition number: its lane's transactions one after another."""
    return lambda p: producers[p]


# -- exactly_once ------------------------------------------------------------------

async def test_one_transaction_per_partition_with_its_outputs_state_and_offsets():
    producers = {0: FakeTxnProducer(0), 1: FakeTxnProducer(1)}
    tc = TransactionLanes(one_each(producers), "grp")
    await tc.commit({TP0: 11, TP1: 7}, [out("events", 10), out("events", 6, partition=1)],
                    [changelog(0), changelog(1)])
    for p, tp, off in ((0, TP0, 11), (1, TP1, 7)):
        assert producers[p].log == [("begin",), ("send", "events"), ("send", "changelog"),
                                    ("offsets", {tp: off}, "grp"), ("commit",)]


async def test_a_failed_transaction_is_aborted_and_reported():
    producers = {0: FakeTxnProducer(0, fail=KafkaTimeoutError()), 1: FakeTxnProducer(1)}
    tc = TransactionLanes(one_each(producers), "grp")
    with pytest.raises(ProduceFailed) as failed:
        await tc.commit({TP0: 11, TP1: 7}, [out("events", 10), out("events", 6, partition=1)], [])
    assert not failed.value.fenced
    # The failure surfaces as soon as lane 0 fails; lane 1 goes on to its own commit.
    await asyncio.wait_for(asyncio.gather(*tc.lanes.values(), return_exceptions=True), 1)
    assert producers[0].log[-1] == ("abort",) and producers[1].log[-1] == ("commit",)


async def test_a_fenced_producer_is_reported_as_fenced_and_not_aborted():
    producers = {0: FakeTxnProducer(0, fail=ProducerFenced())}
    tc = TransactionLanes(one_each(producers), "grp")
    with pytest.raises(ProduceFailed) as failed:
        await tc.commit({TP0: 11}, [out("events", 10)], [])
    assert failed.value.fenced and ("abort",) not in producers[0].log


async def test_no_commit_before_every_send_of_the_transaction_is_acknowledged():
    """aiokafka's commit_transaction does not wait for sends in flight: a produce still
    being retried could miss the commit while the offsets commit (found by the chaos
    suite).  A refused send aborts the transaction; its offsets never commit."""
    producers = {0: FakeTxnProducer(0, refuse=KafkaTimeoutError())}
    tc = TransactionLanes(one_each(producers), "grp")
    with pytest.raises(ProduceFailed):
        await tc.commit({TP0: 11}, [out("events", 10)], [])
    assert ("commit",) not in producers[0].log and producers[0].log[-1] == ("abort",)


# -- exactly_once, pipelined: a lane per partition number ------------------------------

def commits(p: FakeTxnProducer) -> int:
    return p.log.count(("commit",))


async def test_a_batch_handed_over_while_its_lane_commits_joins_the_next_transaction():
    """The stage goes on while a transaction commits; what it hands over meanwhile is one
    transaction, whose offsets are the latest."""
    producers = {0: FakeTxnProducer(0)}
    producers[0].gate = asyncio.Event()
    tc = TransactionLanes(one_each(producers), "grp")
    first = tc.submit({TP0: 11}, [out("events", 10)], [])
    await until(lambda: ("offsets", {TP0: 11}, "grp") in producers[0].log)   # sent, acknowledged, commit waiting
    assert not first[0].done()
    tc.submit({TP0: 12}, [out("events", 11)], [])
    tc.submit({TP0: 13}, [out("events", 12)], [changelog(0)])
    producers[0].gate.set()
    await asyncio.wait_for(tc.settle(0), 1)
    assert producers[0].log == [("begin",), ("send", "events"), ("offsets", {TP0: 11}, "grp"), ("commit",),
                                ("begin",), ("send", "events"), ("send", "events"), ("send", "changelog"),
                                ("offsets", {TP0: 13}, "grp"), ("commit",)]


async def test_lanes_commit_apart_a_slow_partition_holds_no_other():
    producers = {0: FakeTxnProducer(0), 1: FakeTxnProducer(1)}
    producers[0].gate = asyncio.Event()
    tc = TransactionLanes(one_each(producers), "grp")
    parts = tc.submit({TP0: 11, TP1: 7}, [out("events", 10), out("events", 6, partition=1)], [])
    await until(lambda: commits(producers[1]) == 1)   # not a fixed 50 ms: a loaded box missed it
    assert commits(producers[0]) == 0
    assert sum(f.done() for f in parts) == 1
    await asyncio.wait_for(tc.settle(1), 1)        # one batch may stay unsettled
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(tc.settle(0), 0.05)
    producers[0].gate.set()
    await asyncio.wait_for(tc.settle(0), 1)
    assert all(f.done() for f in parts)


async def test_after_a_failed_transaction_nothing_later_commits_and_the_stage_hears_of_it():
    producers = {0: FakeTxnProducer(0, fail=KafkaTimeoutError())}
    producers[0].gate = asyncio.Event()
    tc = TransactionLanes(one_each(producers), "grp")
    tc.submit({TP0: 11}, [out("events", 10)], [])
    await asyncio.sleep(0.02)
    tc.submit({TP0: 12}, [out("events", 11)], [])    # waits behind the failing one
    producers[0].gate.set()
    with pytest.raises(ProduceFailed):
        await asyncio.wait_for(tc.settle(0), 1)
    with pytest.raises(ProduceFailed):
        tc.submit({TP0: 13}, [out("events", 12)], [])
    assert commits(producers[0]) == 0 and producers[0].log.count(("begin",)) == 1
    await tc.abandon()                               # the recovery starts afresh
    producers[0].fail = None
    await asyncio.wait_for(tc.commit({TP0: 12}, [out("events", 11)], []), 1)
    assert commits(producers[0]) == 1


# -- ExactlyOnce: the stage's checkpoint, a transactional producer per partition number --

class Made:
    def __init__(self):
        self.made: list[FakeTxnProducer] = []

    def __call__(self, txn):
        self.made.append(FakeTxnProducer(transactional_id=txn))
        return self.made[-1]

    def ids(self) -> list[str | None]:
        return [p.transactional_id for p in self.made]


async def test_a_claimed_partition_gets_its_own_transactional_producer_once():
    made = Made()
    cp = ExactlyOnce(made, "grp-fuse", "fuse")
    await cp.start()
    assert made.made == []                         # none before a partition is claimed
    await cp.claim({1, 0})
    await cp.claim({0})                            # already held: not started (fenced) again
    assert made.ids() == ["grp-fuse-0", "grp-fuse-1"]
    assert all(p.log == [("start",)] for p in made.made)
    await cp.add({TP0: 11, TP1: 7}, [out("events", 10), out("events", 6, partition=1)], [changelog(1)])
    await asyncio.wait_for(cp.commit([]), 1)
    assert made.made[1].log[-3:] == [("send", "changelog"), ("offsets", {TP1: 7}, "grp-fuse"), ("commit",)]
    await cp.release({TP1})
    assert made.made[1].log[-1] == ("stop",)
    assert made.made[0].log[-1] == ("commit",)


async def failed_and_recovered(cp: ExactlyOnce, producer: FakeTxnProducer) -> None:
    """Partition 0's transaction fails: aborted, the stage's recovery stops the producer,
    and partition 0 is claimed again."""
    producer.fail = KafkaTimeoutError()
    await cp.add({TP0: 11}, [out("events", 10)], [])
    with pytest.raises(ProduceFailed):
        await asyncio.wait_for(cp.commit([]), 1)
    await cp.recover()
    assert producer.log[-2:] == [("abort",), ("stop",)]
    await cp.claim({0})


async def test_recover_stops_every_producer_and_the_next_claim_fences_the_id():
    made = Made()
    cp = ExactlyOnce(made, "grp-fuse", "fuse")
    await cp.claim({0})
    await failed_and_recovered(cp, made.made[0])
    # The id started again (an open transaction is aborted or completed by the broker)
    # before anything of the replay is sent.
    assert made.ids() == ["grp-fuse-0"] * 2 and made.made[1].log == [("start",)]
    await cp.add({TP0: 11}, [out("events", 10)], [])
    await asyncio.wait_for(cp.commit([]), 1)
    assert ("commit",) in made.made[1].log


class RefusingSecond(Made):
    """Partition 1's producer fails to start (its coordinator unreachable)."""

    def __call__(self, txn):
        producer = super().__call__(txn)
        if txn.endswith("-1"):
            async def refuse():
                raise KafkaTimeoutError()
            producer.start = refuse
        return producer


async def test_a_failed_start_keeps_no_producer_of_the_claim():
    made = RefusingSecond()
    cp = ExactlyOnce(made, "grp-fuse", "fuse")
    with pytest.raises(KafkaTimeoutError):
        await cp.claim({0, 1})
    assert cp.producers == {} and made.made[0].log == [("start",), ("stop",)]


async def test_abandon_cuts_off_a_commit_in_flight():
    a = FakeTxnProducer(0)
    a.gate = asyncio.Event()
    tc = TransactionLanes(lambda p: a, "grp")
    parts = tc.submit({TP0: 11}, [out("events", 10)], [])
    await until(lambda: ("offsets", {TP0: 11}, "grp") in a.log)   # prepared; its commit waits on the gate
    await asyncio.sleep(0.01)
    await asyncio.wait_for(tc.abandon(), 1)
    assert parts[0].cancelled() and not tc.lanes
    a.gate.set()
    await asyncio.sleep(0.02)
    assert ("commit",) not in a.log


# -- ExactlyOnce: one transactional id per process (KIP-447) -------------------------

class MadeV2(Made):
    def __init__(self, v2: bool = True):
        super().__init__()
        self.v2 = v2

    def __call__(self, txn):
        producer = super().__call__(txn)
        producer.speaks_v2 = self.v2
        return producer


@pytest.fixture
def member(monkeypatch):
    """A stage's group member (generation 3) whose group keeps TP0 at 40 and nothing of TP1."""
    consumer = FakeConsumer({})
    consumer.assigned = {TP0, TP1}
    consumer._coordinator = SimpleNamespace(generation=3, member_id="member-a")
    asked = []

    async def stable_offsets(client, group_id, partitions):
        asked.append((group_id, set(partitions)))
        return {TP0: 40, TP1: None}
    monkeypatch.setattr(exactly_once, "stable_offsets", stable_offsets)
    consumer.asked_stable = asked
    consumer.group_members = {"worker-a"}   # the group's static members, as the coordinator says

    async def static_members(client, group_id):
        return set(consumer.group_members)
    monkeypatch.setattr(exactly_once, "static_members", static_members)
    return consumer


async def test_one_producer_per_process_where_the_cluster_speaks_v2(member):
    made = MadeV2()
    cp = ExactlyOnce(made, "grp-fuse", "fuse", consumer=member, instance_id="worker-a")
    await cp.start()
    assert made.ids() == ["grp-fuse@worker-a"] and made.made[0].log == [("start",)]
    await cp.claim({0, 1})
    assert made.ids() == ["grp-fuse@worker-a"]              # no producer per partition
    # Read on from the offsets no open transaction holds (none committed: the beginning).
    assert member.asked_stable == [("grp-fuse", {TP0, TP1})]
    assert member.positions == {TP0: 40, TP1: 0}
    await cp.add({TP0: 41, TP1: 7}, [out("events", 40), out("events", 6, partition=1)], [changelog(1)])
    await asyncio.wait_for(cp.commit([]), 1)
    # Both partitions' work in one transaction, its offsets checked against generation 3.
    assert made.made[0].log[1:] == [("begin",), ("send", "events"), ("send", "events"), ("send", "changelog"),
                                    ("offsets", {TP0: 41, TP1: 7}, "grp-fuse", (3, "member-a", "worker-a")),
                                    ("commit",)]
    await cp.release({TP1})
    assert made.made[0].log[-1] == ("commit",)               # still serving partition 0


async def test_one_producer_per_partition_where_the_cluster_does_not_speak_v2(member):
    made = MadeV2(v2=False)
    cp = ExactlyOnce(made, "grp-fuse", "fuse", consumer=member, instance_id="worker-a")
    await cp.start()
    assert made.made[0].log == [("start",), ("stop",)]
    await cp.claim({0})
    assert made.ids() == ["grp-fuse@worker-a", "grp-fuse-0"] and member.asked_stable == []
    await cp.add({TP0: 11}, [out("events", 10)], [])
    await asyncio.wait_for(cp.commit([]), 1)
    assert made.made[1].log[-2:] == [("offsets", {TP0: 11}, "grp-fuse"), ("commit",)]


async def test_after_a_recovery_the_process_id_starts_again_before_the_replay(member):
    made = MadeV2()
    cp = ExactlyOnce(made, "grp-fuse", "fuse", consumer=member, instance_id="worker-a")
    await cp.start()
    await cp.claim({0})
    await failed_and_recovered(cp, made.made[0])
    assert made.ids() == ["grp-fuse@worker-a"] * 2 and made.made[1].log == [("start",)]
    assert len(member.asked_stable) == 2


async def test_a_member_gone_from_the_group_has_its_open_transaction_ended_at_the_next_claim(member):
    """A worker lost for good leaves a transaction open that holds its partitions' offsets
    until it times out: the survivor starts that worker's id, which aborts it at once."""
    made = MadeV2()
    cp = ExactlyOnce(made, "grp-fuse", "fuse", consumer=member, instance_id="worker-a")
    await cp.start()
    member.group_members = {"worker-a", "worker-b"}
    await cp.claim({0})
    assert made.ids() == ["grp-fuse@worker-a"]
    member.group_members = {"worker-a"}                       # worker-b lost; its partitions come here
    await cp.claim({1})
    assert made.ids() == ["grp-fuse@worker-a", "grp-fuse@worker-b"]
    assert made.made[1].log == [("start",), ("stop",)]
    await cp.claim({1})                                       # once
    assert len(made.made) == 2


async def test_a_stage_under_exactly_once_checks_out_with_its_consumer_and_static_id():
    """The wiring gives the checkpoint what one id per process needs; without a static id
    it stays with an id per partition."""
    settings = RunnerSettings("127.0.0.1:1", guarantee="exactly_once", group_instance_id="w-3")
    consumer = FakeConsumer({})
    cp = stage_checkpoint(FakeStage(), settings, consumer, MadeV2())
    assert isinstance(cp, ExactlyOnce) and cp.consumer is consumer and cp.instance_id == "w-3"
    await cp.start()
    assert cp.per_process and cp.transactional_id(0) == "grp@w-3"
    dynamic = stage_checkpoint(FakeStage(), RunnerSettings("127.0.0.1:1", guarantee="exactly_once"), consumer,
                               MadeV2())
    await dynamic.start()
    assert not dynamic.per_process and dynamic.transactional_id(2) == "grp-2"
