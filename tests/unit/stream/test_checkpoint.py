"""The checkpoints against fake producers: what is committed after acknowledgements,
failures and refusals (issue 11: a failed produce must never let a later commit skip it,
and a failed batch's state must never reach the changelog)."""

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, ProducerFenced

from citybrain.stream.checkpoint import Checkpoint, ProduceFailed, TransactionalCheckpoint
from citybrain.stream.output import Output

TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)


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


def out(topic: str, offset: int, size: int = 10, partition: int = 0) -> Output:
    return Output(topic, b"k", b"x" * size, source=("in", partition, offset))


def changelog(partition: int = 0) -> Output:
    return Output("changelog", b"key", b"state", partition=partition)


async def settle_soon(cp: Checkpoint, limit: int) -> None:
    await asyncio.wait_for(cp.settle(limit), 1)


async def test_state_goes_out_only_after_the_batch_outputs_are_acknowledged():
    send = FakeSend()
    cp = Checkpoint(send)
    await cp.add({TP0: 11}, [out("events", 10)], [changelog()])
    await settle_soon(cp, 1)
    assert send.topics() == ["events"]            # no changelog write yet
    send.ack("events")
    await settle_soon(cp, 1)
    assert send.topics() == ["events", "changelog"] and cp.to_commit({TP0}) == {}
    send.ack("changelog")
    await settle_soon(cp, 0)
    assert cp.to_commit({TP0}) == {TP0: 11}


async def test_a_failed_produce_lets_no_later_batch_commit():
    send = FakeSend()
    cp = Checkpoint(send)
    await cp.add({TP0: 11}, [out("a", 10)], [changelog()])      # batch 1: will fail
    await cp.add({TP0: 12}, [out("b", 11)], [changelog()])      # batch 2: acknowledged
    await cp.add({TP0: 13}, [out("c", 12)], [changelog()])      # batch 3: acknowledged
    send.ack("b")
    send.ack("c")
    send.fail("a", KafkaTimeoutError())
    with pytest.raises(ProduceFailed) as failed:
        await settle_soon(cp, 0)
    assert failed.value.suspect is None           # not the record's fault: retry it
    assert cp.to_commit({TP0}) == {}
    # The failed batch's state never reached the changelog, and neither did later ones'.
    assert "changelog" not in send.topics()
    cp.abandon()
    assert cp.to_commit({TP0}) == {} and not cp.pending


async def test_commits_follow_batch_order_whatever_order_acks_come_in():
    send = FakeSend()
    cp = Checkpoint(send)
    await cp.add({TP0: 11}, [out("a", 10)], [])
    await cp.add({TP1: 5}, [out("b", 4, partition=1)], [])
    send.ack("b")
    await settle_soon(cp, 2)
    assert cp.to_commit({TP0, TP1}) == {}         # batch 2 done, batch 1 not: nothing yet
    send.ack("a")
    await settle_soon(cp, 0)
    assert cp.to_commit({TP0, TP1}) == {TP0: 11, TP1: 5}
    cp.committed_ok({TP0: 11, TP1: 5})
    assert cp.to_commit({TP0, TP1}) == {}         # committed once
    assert cp.to_commit({TP1}) == {}


async def test_a_failed_changelog_write_commits_nothing_of_its_batch():
    send = FakeSend()
    cp = Checkpoint(send)
    await cp.add({TP0: 11}, [out("a", 10)], [changelog()])
    send.ack("a")
    await settle_soon(cp, 1)
    send.fail("changelog", KafkaTimeoutError())
    with pytest.raises(ProduceFailed):
        await settle_soon(cp, 0)
    assert cp.to_commit({TP0}) == {}


async def test_a_record_the_broker_refuses_names_its_input():
    send = FakeSend()
    cp = Checkpoint(send)
    await cp.add({TP0: 13}, [out("a", 10, size=5), out("a", 11, size=900_000), out("a", 12, size=7)], [])
    send.fail("a", MessageSizeTooLargeError())    # a refused batch fails all its records
    with pytest.raises(ProduceFailed) as failed:
        await settle_soon(cp, 0)
    assert failed.value.suspect == ("in", 0, 11)  # the largest is blamed first


async def test_a_send_refused_before_it_leaves_names_its_input():
    async def send(o):
        if len(o.value) > 100:
            raise MessageSizeTooLargeError()
        return asyncio.get_running_loop().create_future()
    cp = Checkpoint(send)
    with pytest.raises(ProduceFailed) as failed:
        await cp.add({TP0: 3}, [out("a", 1), out("a", 2, size=1000)], [])
    assert failed.value.suspect == ("in", 0, 2) and not cp.pending


async def test_settle_waits_only_beyond_the_in_flight_limit():
    send = FakeSend()
    cp = Checkpoint(send)
    await cp.add({TP0: 1}, [out("a", 0)], [])
    await cp.add({TP0: 2}, [out("a", 1)], [])
    await settle_soon(cp, 2)                      # two in flight are allowed: returns at once
    waiter = asyncio.create_task(cp.settle(1))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    send.ack()
    await asyncio.wait_for(waiter, 1)
    assert len(cp.pending) <= 1


async def test_changelog_writes_go_to_their_own_sender_and_still_follow_the_outputs():
    """The stage's outputs and its changelog writes on two producers (one produce request
    in flight each): the next batch's outputs leave while the last batch's changelog write
    is unacknowledged, and still no offset is committable before its state is written."""
    outputs, state = FakeSend(), FakeSend()
    cp = Checkpoint(outputs, state)
    await cp.add({TP0: 11}, [out("events", 10)], [changelog()])
    await settle_soon(cp, 1)
    assert outputs.topics() == ["events"] and state.topics() == []   # state only after the acks
    outputs.ack()
    await settle_soon(cp, 1)
    assert outputs.topics() == ["events"] and state.topics() == ["changelog"]
    await cp.add({TP0: 12}, [out("events", 11)], [changelog()])      # batch 1's state still unacknowledged
    assert outputs.topics() == ["events", "events"]
    outputs.ack()
    await settle_soon(cp, 2)
    assert cp.to_commit({TP0}) == {}              # batch 1's changelog write is not acknowledged
    state.ack()
    await settle_soon(cp, 1)
    assert state.topics() == ["changelog", "changelog"]
    state.ack()
    await settle_soon(cp, 0)
    assert cp.to_commit({TP0}) == {TP0: 12}


# -- exactly_once ------------------------------------------------------------------

class FakeTxnProducer:
    def __init__(self, partition: int, fail: Exception | None = None, refuse: Exception | None = None):
        self.partition, self.fail, self.refuse = partition, fail, refuse
        self.log: list[tuple] = []
        self.gate: asyncio.Event | None = None

    async def begin_transaction(self):
        self.log.append(("begin",))

    async def send(self, topic, value, key=None, partition=None):
        self.log.append(("send", topic))
        fut = asyncio.get_running_loop().create_future()
        # Acknowledged a little later, as a broker would (or refused).
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: fut.set_exception(self.refuse) if self.refuse else fut.set_result(None))
        return fut

    async def send_offsets_to_transaction(self, offsets, group_id):
        self.log.append(("offsets", dict(offsets), group_id))

    async def commit_transaction(self):
        if self.gate is not None:   # a commit that takes until the test lets it end
            await self.gate.wait()
        if self.fail:
            raise self.fail
        self.log.append(("commit",))

    async def abort_transaction(self):
        self.log.append(("abort",))


async def test_one_transaction_per_partition_with_its_outputs_state_and_offsets():
    producers = {0: FakeTxnProducer(0), 1: FakeTxnProducer(1)}
    tc = TransactionalCheckpoint(producers.__getitem__, "grp")
    await tc.commit({TP0: 11, TP1: 7}, [out("events", 10), out("events", 6, partition=1)],
                    [changelog(0), changelog(1)])
    for p, tp, off in ((0, TP0, 11), (1, TP1, 7)):
        assert producers[p].log == [("begin",), ("send", "events"), ("send", "changelog"),
                                    ("offsets", {tp: off}, "grp"), ("commit",)]


async def test_a_failed_transaction_is_aborted_and_reported():
    producers = {0: FakeTxnProducer(0, fail=KafkaTimeoutError()), 1: FakeTxnProducer(1)}
    tc = TransactionalCheckpoint(producers.__getitem__, "grp")
    with pytest.raises(ProduceFailed) as failed:
        await tc.commit({TP0: 11, TP1: 7}, [out("events", 10), out("events", 6, partition=1)], [])
    assert not failed.value.fenced
    assert producers[0].log[-1] == ("abort",) and producers[1].log[-1] == ("commit",)


async def test_a_fenced_producer_is_reported_as_fenced_and_not_aborted():
    producers = {0: FakeTxnProducer(0, fail=ProducerFenced())}
    tc = TransactionalCheckpoint(producers.__getitem__, "grp")
    with pytest.raises(ProduceFailed) as failed:
        await tc.commit({TP0: 11}, [out("events", 10)], [])
    assert failed.value.fenced and ("abort",) not in producers[0].log


async def test_no_commit_before_every_send_of_the_transaction_is_acknowledged():
    """aiokafka's commit_transaction does not wait for sends in flight: a produce still
    being retried could miss the commit while the offsets commit (found by the chaos
    suite).  A refused send aborts the transaction; its offsets never commit."""
    producers = {0: FakeTxnProducer(0, refuse=KafkaTimeoutError())}
    tc = TransactionalCheckpoint(producers.__getitem__, "grp")
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
    tc = TransactionalCheckpoint(producers.__getitem__, "grp")
    first = tc.submit({TP0: 11}, [out("events", 10)], [])
    await asyncio.sleep(0.05)                      # sent, acknowledged, commit waiting
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
    tc = TransactionalCheckpoint(producers.__getitem__, "grp")
    parts = tc.submit({TP0: 11, TP1: 7}, [out("events", 10), out("events", 6, partition=1)], [])
    await asyncio.sleep(0.05)
    assert commits(producers[1]) == 1 and commits(producers[0]) == 0
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
    tc = TransactionalCheckpoint(producers.__getitem__, "grp")
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


async def test_abandon_stops_a_lane_mid_transaction():
    producers = {0: FakeTxnProducer(0)}
    producers[0].gate = asyncio.Event()
    tc = TransactionalCheckpoint(producers.__getitem__, "grp")
    parts = tc.submit({TP0: 11}, [out("events", 10)], [])
    await asyncio.sleep(0.05)
    await asyncio.wait_for(tc.abandon(), 1)
    assert parts[0].cancelled() and commits(producers[0]) == 0 and not tc.lanes
