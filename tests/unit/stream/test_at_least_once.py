"""at_least_once against fake producers and consumers: what is committed after
acknowledgements, failures and refusals (issue 11: a failed produce must never let a later commit skip it,
and a failed batch's state must never reach the changelog)."""

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError

from citybrain.stream.at_least_once import AckedBatches, AtLeastOnce
from citybrain.stream.checkpoint import ProduceFailed
from citybrain.stream.output import Output
from citybrain.stream.replayguard import HANDED_OVER
from citybrain.stream.stage import RunnerSettings
from citybrain.stream.wiring import stage_checkpoint

from .fakes import TP0, TP1, FakeConsumer, FakeProducer, FakeSend, FakeStage, changelog, out, record


async def settle_soon(cp: AckedBatches, limit: int) -> None:
    await asyncio.wait_for(cp.settle(limit), 1)


async def test_state_goes_out_only_after_the_batch_outputs_are_acknowledged():
    send = FakeSend()
    cp = AckedBatches(send)
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
    cp = AckedBatches(send)
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
    cp = AckedBatches(send)
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
    cp = AckedBatches(send)
    await cp.add({TP0: 11}, [out("a", 10)], [changelog()])
    send.ack("a")
    await settle_soon(cp, 1)
    send.fail("changelog", KafkaTimeoutError())
    with pytest.raises(ProduceFailed):
        await settle_soon(cp, 0)
    assert cp.to_commit({TP0}) == {}


async def test_a_record_the_broker_refuses_names_its_input():
    send = FakeSend()
    cp = AckedBatches(send)
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
    cp = AckedBatches(send)
    with pytest.raises(ProduceFailed) as failed:
        await cp.add({TP0: 3}, [out("a", 1), out("a", 2, size=1000)], [])
    assert failed.value.suspect == ("in", 0, 2) and not cp.pending


async def test_settle_waits_only_beyond_the_in_flight_limit():
    send = FakeSend()
    cp = AckedBatches(send)
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
    cp = AckedBatches(outputs, state)
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




# -- AtLeastOnce: the stage's checkpoint, its producers and its offset commits ----------

class SlowCommits:
    """A consumer whose commits wait until released (or fail)."""

    def __init__(self):
        self.release = asyncio.Event()
        self.calls: list[dict] = []
        self.fail: Exception | None = None

    def assignment(self):
        return {TP0}

    async def commit(self, offsets):
        self.calls.append(dict(offsets))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail


def producers(acks="now"):
    """A producer factory naming its producers p0, p1, …, with one send log for all."""
    made: list[FakeProducer] = []
    log: list[tuple[str, str, bytes | None]] = []

    def new(txn):
        assert txn is None   # at_least_once: never transactional
        made.append(FakeProducer(f"p{len(made)}", log, acks))
        return made[-1]
    return new, made, log


async def test_the_offset_commit_runs_beside_the_next_batches_one_at_a_time():
    consumer = SlowCommits()
    new, _, _ = producers()
    cp = AtLeastOnce(consumer, new, "normalise")
    cp.COMMIT_EVERY = 0
    await cp.start()
    await cp.add({TP0: 10}, [out("events", 9)], [])
    await asyncio.wait_for(cp.settle(fetched=False), 1)     # returns with the commit still in flight
    assert consumer.calls == [{TP0: 10}] and cp.batches.committed == {}
    await cp.add({TP0: 20}, [out("events", 19)], [])
    await cp.settle(fetched=False)                           # one at a time: nothing new is sent
    assert len(consumer.calls) == 1
    consumer.release.set()
    await asyncio.sleep(0)
    await cp.commit([])                                      # a hand-over: after the one in flight, awaited
    assert consumer.calls == [{TP0: 10}, {TP0: (20, HANDED_OVER)}] and cp.batches.committed == {TP0: 20}


async def test_a_failed_background_commit_surfaces_at_the_next_settle():
    consumer = SlowCommits()
    consumer.fail = KafkaConnectionError("broker gone")
    consumer.release.set()
    new, _, _ = producers()
    cp = AtLeastOnce(consumer, new, "normalise")
    cp.COMMIT_EVERY = 0
    await cp.start()
    await cp.add({TP0: 10}, [out("events", 9)], [])
    await cp.settle(fetched=False)
    await asyncio.sleep(0.01)
    with pytest.raises(KafkaConnectionError):
        await cp.settle(fetched=False)
    assert cp.batches.committed == {}


async def test_a_hand_over_marks_every_assigned_partition_and_the_loop_does_not():
    """The mark (stream/replayguard.py) says nothing past the offset was handled: only a
    hand-over's commit, made after every output is acknowledged, may carry it — also for a
    partition whose offset the loop already committed."""
    consumer = FakeConsumer({})
    consumer.assigned = {TP0, TP1}
    new, _, _ = producers()
    cp = AtLeastOnce(consumer, new, "fuse")
    cp.COMMIT_EVERY = 0
    await cp.start()
    await cp.add({TP0: 10, TP1: 3}, [out("events", 9)], [])
    await cp.settle(fetched=False)
    await cp._commit_settled()
    assert consumer.committed_offsets == {TP0: 10, TP1: 3} and set(consumer.marks.values()) == {""}
    await cp.add({TP0: 12}, [out("events", 11)], [])
    await cp.commit([])
    assert consumer.commits[-1] == {TP0: 12, TP1: 3}
    assert consumer.marks == {TP0: HANDED_OVER, TP1: HANDED_OVER}


async def test_offsets_are_committed_only_once_the_outputs_and_state_are_acknowledged():
    consumer = SlowCommits()
    consumer.release.set()
    new, made, log = producers(acks="hold")
    cp = AtLeastOnce(consumer, new, "normalise")
    cp.COMMIT_EVERY = 0
    await cp.start()
    await cp.add({TP0: 3}, [out("events", 2)], [changelog()])
    await cp.settle(fetched=True)             # in flight: the next batch may be handled
    assert consumer.calls == [] and [n for n, _, _ in log] == ["p0"]
    made[0].ack()                             # outputs acknowledged: the state goes out, on its own producer
    await cp.settle(fetched=True)
    assert consumer.calls == [] and [(n, t) for n, t, _ in log] == [("p0", "events"), ("p1", "changelog")]
    made[1].ack()
    await cp.settle(fetched=False)
    await asyncio.sleep(0)
    assert consumer.calls == [{TP0: 3}]


async def test_after_a_failure_the_checkpoint_starts_afresh_on_new_producers():
    """aiokafka #1017: a producer whose sequence the broker refused never sends again."""
    consumer = SlowCommits()
    new, made, _ = producers(acks=KafkaConnectionError("gone"))
    cp = AtLeastOnce(consumer, new, "normalise")
    await cp.start()
    await cp.add({TP0: 3}, [out("events", 2)], [])
    with pytest.raises(ProduceFailed):
        await cp.settle(fetched=False)
    await cp.recover()
    await asyncio.sleep(0.01)   # the old ones stop in the background
    assert len(made) == 4 and made[0].stopped and made[1].stopped and made[2].started and made[3].started
    assert not cp.batches.pending and cp.batches.to_commit({TP0}) == {} and consumer.calls == []
    await cp.close()
    assert made[2].stopped and made[3].stopped


async def test_release_forgets_the_offsets_of_partitions_given_up():
    consumer = SlowCommits()
    consumer.release.set()
    new, _, _ = producers()
    cp = AtLeastOnce(consumer, new, "normalise")
    await cp.start()
    await cp.add({TP0: 3, TP1: 4}, [out("events", 2)], [])
    await cp.batches.settle(0)
    await cp.release({TP1})
    assert cp.batches.to_commit({TP0, TP1}) == {TP0: 3}


class Dispatching(FakeStage):
    urgent_topics = frozenset({"dispatch.d1"})

    def handle(self, m, out):
        out.append(Output("events", None, m.value))
        out.append(Output("dispatch.d1", None, m.value))


async def test_dispatch_records_go_first_on_a_producer_of_their_own():
    """The last hop (issue 38): a dispatch behind a batch's order events and snapshots
    waited for their produce request's round trip (one in flight per producer)."""
    new, made, log = producers()
    cp = stage_checkpoint(Dispatching(), RunnerSettings("127.0.0.1:1"), SlowCommits(), new)
    await cp.start()
    outputs: list[Output] = []
    for i in range(3):
        Dispatching().handle(record(i, b"v"), outputs)
    await cp.add({TP0: 3}, outputs, [])
    assert [(n, t) for n, t, _ in log] == [("p2", "dispatch.d1")] * 3 + [("p0", "events")] * 3


async def test_a_stage_without_urgent_topics_has_no_third_producer():
    new, made, _ = producers()
    cp = stage_checkpoint(FakeStage(), RunnerSettings("127.0.0.1:1"), SlowCommits(), new)
    await cp.start()
    assert len(made) == 2
