"""The replay guard (stream/replayguard.py): a replay after a crash drops the dispatch
records its previous owner already put on their topics — and nothing else."""

import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from citybrain.stream.at_least_once import AtLeastOnce
from citybrain.stream.output import Output
from citybrain.stream.replayguard import HANDED_OVER, MarkNotCleared, ReplayGuard, change_key

from .fakes import TP0, TP1, FakeConsumer
from .test_at_least_once import producers

D1, D2 = "dispatch.d1", "dispatch.d2"


def change(topic: str, wo: str, version: int, at: str = "2026-12-05T05:00:00Z") -> Output:
    return Output(topic, wo.encode(), orjson.dumps({"work_order_id": wo, "version": version, "at": at}))


def guard_holding(*keys) -> ReplayGuard:
    clock = [0.0]
    g = ReplayGuard("127.0.0.1:1", frozenset({D1, D2}), "grp", clock=lambda: clock[0])
    g.seen = set(keys)
    g.clock_value = clock   # type: ignore[attr-defined]
    return g


def test_the_dedupe_key_is_topic_order_and_version():
    assert change_key(D1, b"WO-1", change(D1, "WO-1", 3).value) == (D1, b"WO-1", 3)
    assert change_key(D1, b"WO-1", b"not json") is None
    assert change_key(D1, None, change(D1, "WO-1", 3).value) is None
    assert change_key(D1, b"WO-1", orjson.dumps({"version": "3"})) is None


async def test_a_rebuilt_change_already_on_its_topic_is_not_sent_again():
    """Re-created by the replay: same order and version, another ``at`` (other bytes)."""
    g = guard_holding((D1, b"WO-1", 2))
    rebuilt = change(D1, "WO-1", 2, at="2026-12-05T05:00:09Z")
    keep = [change(D1, "WO-1", 3), change(D2, "WO-1", 2), change(D1, "WO-2", 2),
            Output("workorders.events", b"WO-1", rebuilt.value)]
    assert await g.unsent([rebuilt, *keep]) == keep
    assert g.dropped == 1


@given(st.lists(st.tuples(st.sampled_from([D1, D2, "workorders.events"]), st.sampled_from(["WO-1", "WO-2"]),
                          st.integers(1, 4)), max_size=12),
       st.sets(st.tuples(st.sampled_from([D1, D2]), st.sampled_from([b"WO-1", b"WO-2"]), st.integers(1, 4))))
def test_only_what_is_already_on_a_guarded_topic_is_dropped(sent, landed):
    g = guard_holding(*landed)
    outputs = [change(t, wo, v) for t, wo, v in sent]
    kept = asyncio.run(g.unsent(outputs))
    dropped = [o for o in outputs if o not in kept]
    assert all(change_key(o.topic, o.key, o.value) in landed and o.topic in (D1, D2) for o in dropped)
    assert all(not (change_key(o.topic, o.key, o.value) in landed and o.topic in (D1, D2)) for o in kept)


async def test_a_read_back_is_forgotten_after_keep_seconds():
    g = guard_holding((D1, b"WO-1", 2))
    g.clock_value[0] = ReplayGuard.KEEP + 1   # type: ignore[attr-defined]
    o = change(D1, "WO-1", 2)
    assert await g.unsent([o]) == [o] and not g.seen


async def test_outputs_wait_for_the_read_back_in_flight():
    g = guard_holding()
    gate = asyncio.Event()

    async def read_back():
        await gate.wait()
        g.seen = g.seen | {(D1, b"WO-1", 2)}
    g.reading = asyncio.create_task(read_back())
    sending = asyncio.create_task(g.unsent([change(D1, "WO-1", 2), change(D1, "WO-1", 3)]))
    await asyncio.sleep(0.01)
    assert not sending.done()
    gate.set()
    assert [o.value for o in await sending] == [change(D1, "WO-1", 3).value]


async def test_a_failed_read_back_sends_everything():
    """Without the read-back a replay may dispatch some twice; it never drops one."""
    g = guard_holding()

    async def broken():
        raise ConnectionError("broker gone")
    g.reading = asyncio.create_task(broken())
    outputs = [change(D1, "WO-1", 2)]
    assert await g.unsent(outputs) == outputs and g.reading is None


class Recording(ReplayGuard):
    def __init__(self):
        super().__init__("127.0.0.1:1", frozenset({D1}), "grp")
        self.claims: list = []

    def claim(self, inputs, unmark):
        self.claims.append(sorted(inputs, key=lambda tp: tp.partition))


async def test_at_least_once_claims_the_assigned_inputs_and_filters_what_it_sends():
    consumer = FakeConsumer({})
    consumer.assigned = {TP0, TP1}
    new, _, log = producers()
    guard = Recording()
    guard.seen, guard.read_at = {(D1, b"WO-1", 1)}, guard.clock()
    cp = AtLeastOnce(consumer, new, "fuse", urgent=frozenset({D1}), replay=guard)
    await cp.start()
    await cp.claim({1})
    assert guard.claims == [[TP1]]
    await cp.add({TP1: 5}, [change(D1, "WO-1", 1), change(D1, "WO-1", 2), change("events", "WO-1", 1)], [])
    assert [(t, orjson.loads(v)["version"]) for _, t, v in log] == [(D1, 2), ("events", 1)]


@pytest.mark.parametrize("partitions", [set(), {0}])
async def test_a_stage_without_a_guard_claims_nothing(partitions):
    consumer = FakeConsumer({})
    new, _, log = producers()
    cp = AtLeastOnce(consumer, new, "normalise")
    await cp.start()
    await cp.claim(partitions)
    await cp.add({TP0: 1}, [change(D1, "WO-1", 1)], [])
    assert len(log) == 1


def committed_as(marks: dict):
    async def commits(tps):
        return {tp: marks[tp] for tp in tps}
    return commits


def test_a_guard_asks_the_commits_of_a_named_group():
    with pytest.raises(ValueError, match="group_id"):
        ReplayGuard("127.0.0.1:1", frozenset({D1}))
    assert ReplayGuard("127.0.0.1:1", frozenset({D1}), "grp").group_id == "grp"


async def test_partitions_handed_over_cleanly_read_nothing_back_and_their_mark_is_cleared_first():
    """No broker at 127.0.0.1:1: a read-back would fail — none is tried."""
    cleared: list = []

    async def unmark(offsets):
        cleared.append(offsets)
    g = ReplayGuard("127.0.0.1:1", frozenset({D1}), "grp",
                    commits=committed_as({TP0: (10, HANDED_OVER), TP1: (4, HANDED_OVER)}))
    g.claim([TP0, TP1], unmark)
    o = change(D1, "WO-1", 1)
    assert await g.unsent([o]) == [o]
    assert cleared == [{TP0: 10, TP1: 4}] and g.seen == set()


async def test_a_mark_not_cleared_stops_the_stage_before_it_sends():
    async def refused(offsets):
        raise RuntimeError("rebalance in progress")
    g = ReplayGuard("127.0.0.1:1", frozenset({D1}), "grp", commits=committed_as({TP0: (10, HANDED_OVER)}))
    g.claim([TP0], refused)
    with pytest.raises(MarkNotCleared):
        await g.unsent([change(D1, "WO-1", 1)])


async def test_a_partition_without_the_mark_is_read_back():
    """One unmarked partition (a kill's last loop commit): the read-back is tried — here it
    fails (no broker), which sends everything rather than lose any; the marked one's mark
    is cleared all the same."""
    cleared: list = []

    async def unmark(offsets):
        cleared.append(offsets)
    g = ReplayGuard("127.0.0.1:1", frozenset({D1}), "grp",
                    commits=committed_as({TP0: (10, HANDED_OVER), TP1: (4, "")}))
    g.TIMEOUT = 2.0
    g.claim([TP0, TP1], unmark)
    o = change(D1, "WO-1", 1)
    assert await g.unsent([o]) == [o]
    assert cleared == [{TP0: 10}]
