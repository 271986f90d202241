"""The replay guard against a real broker (stream/replayguard.py): what it reads back when a
stage claims partitions with records past their committed offsets, and what it then keeps
from being dispatched twice."""

import time

import orjson
from aiokafka import TopicPartition

from citybrain.config import Config
from citybrain.kafka.admin import partitions_of
from citybrain.kafka.clients import kafka_admin, kafka_consumer
from citybrain.stream.output import Output
from citybrain.stream.replayguard import HANDED_OVER, ReplayGuard

from .kafka_helpers import new_prefix, prepare, produce


async def no_marks(offsets):
    raise AssertionError(f"nothing was handed over, yet marks of {offsets} were cleared")


def change(wo: str, version: int, at: str = "2026-12-05T05:00:00Z") -> bytes:
    return orjson.dumps({"work_order_id": wo, "version": version, "at": at})


async def test_a_replay_does_not_dispatch_again_what_is_on_the_topic_since_its_first_uncommitted_input(kafka_bootstrap):
    t = await prepare(kafka_bootstrap, new_prefix("replay-guard"))
    dept = Config().taxonomy.departments[0].code
    d = t.dispatch(dept)
    now = int(time.time() * 1000)
    await produce(kafka_bootstrap, [
        (t.fusion_inbox, b"g1", b"{}", now - 10_000),          # the first input past the commit
        (d, b"WO-old", change("WO-old", 1), now - 60_000),      # long before it: not read back
        (d, b"WO-1", change("WO-1", 1), now - 9_000),
        (d, b"WO-1", change("WO-1", 2), now - 8_000),
        (d, b"WO-2", change("WO-2", 1), now - 7_000),
    ])
    inbox = [TopicPartition(t.fusion_inbox, p) for p in await partitions_of(kafka_bootstrap, t.fusion_inbox)]

    async def nothing_committed(tps):
        return {tp: (None, "") for tp in tps}
    guard = ReplayGuard(kafka_bootstrap, frozenset({d}), commits=nothing_committed)
    guard.claim(inbox, unmark=no_marks)
    replayed = [Output(d, b"WO-1", change("WO-1", 1, at="2026-12-05T05:00:09Z")),   # rebuilt: same version
                Output(d, b"WO-1", change("WO-1", 2)), Output(d, b"WO-1", change("WO-1", 3)),
                Output(d, b"WO-old", change("WO-old", 1)), Output(t.workorder_events, b"WO-2", change("WO-2", 1))]
    kept = await guard.unsent(replayed)
    assert [(o.topic, o.key, orjson.loads(o.value)["version"]) for o in kept] == [
        (d, b"WO-1", 3), (d, b"WO-old", 1), (t.workorder_events, b"WO-2", 1)]
    assert guard.seen == {(d, b"WO-1", 1), (d, b"WO-1", 2), (d, b"WO-2", 1)}


async def test_nothing_past_the_commit_reads_nothing_back(kafka_bootstrap):
    t = await prepare(kafka_bootstrap, new_prefix("replay-guard-none"))
    d = t.dispatch(Config().taxonomy.departments[0].code)
    await produce(kafka_bootstrap, [(t.fusion_inbox, b"g1", b"{}"), (d, b"WO-1", change("WO-1", 1))])
    inbox = [TopicPartition(t.fusion_inbox, p) for p in await partitions_of(kafka_bootstrap, t.fusion_inbox)]

    async def all_committed(tps):
        return {tp: (1_000_000, "") for tp in tps}   # past the end of every partition
    guard = ReplayGuard(kafka_bootstrap, frozenset({d}), commits=all_committed)
    guard.claim(inbox, unmark=no_marks)
    o = Output(d, b"WO-1", change("WO-1", 1))
    assert await guard.unsent([o]) == [o] and guard.seen == set()


async def test_a_clean_hand_over_is_read_from_the_group_and_its_mark_cleared_before_anything_is_sent(kafka_bootstrap):
    """The real group's commit metadata: the previous owner's hand-over commit carries the
    mark; the next owner reads nothing back for it (though dispatch records lie past it)
    and commits the same offsets without the mark before it sends."""
    t = await prepare(kafka_bootstrap, new_prefix("replay-guard-handover"))
    d = t.dispatch(Config().taxonomy.departments[0].code)
    await produce(kafka_bootstrap, [(t.fusion_inbox, b"g1", b"{}"), (t.fusion_inbox, b"g2", b"{}"),
                                    (d, b"WO-1", change("WO-1", 1))])
    group = f"{t.prefix}fuse"
    tp = TopicPartition(t.fusion_inbox, 0)
    owner = kafka_consumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await owner.start()
    try:
        owner.assign([tp])
        await owner.commit({tp: (1, HANDED_OVER)})   # one of two handled, handed over
        guard = ReplayGuard(kafka_bootstrap, frozenset({d}), group)
        cleared: list = []

        async def unmark(offsets):
            cleared.append(offsets)
            await owner.commit(offsets)
        guard.claim([tp], unmark)
        o = Output(d, b"WO-1", change("WO-1", 1))
        assert await guard.unsent([o]) == [o] and guard.seen == set()
        assert cleared == [{tp: 1}]
        admin = kafka_admin(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            now = await admin.list_consumer_group_offsets(group, partitions=[tp])
        finally:
            await admin.close()
        assert (now[tp].offset, now[tp].metadata) == (1, "")
    finally:
        await owner.stop()
