"""The worker's registry reader (stream/registry.py): every copy applies the key rule of
domain/registry_records.py and writes no dead letter; the dead-letter duty sends a
partition's dead letters, each acknowledged, then commits past them, and gives a partition
up in a rebalance only with the batch in hand committed."""

import asyncio

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from citybrain.stream import registry as registry_module
from citybrain.stream.registry import RegistryCache, RegistryDeadLetters, judge

TOPIC = "registry.devices"


def device(device_id: str, **extra) -> bytes:
    return orjson.dumps({"device_id": device_id, "kind": "sensor", "sensor_type": "water_level",
                         "lon": 117.87, "lat": 36.81, **extra})


def msg(key: bytes | None, value: bytes | None, offset: int = 0, partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, partition, offset, 1_800_000_000_000, 0, key, value, None,
                          len(key or b""), len(value or b""), [])


def test_every_copy_obeys_the_key_and_writes_nothing():
    cache = RegistryCache("unused:9092", TOPIC)
    cache._apply_batch([msg(b"X", device("X"), 0), msg(b"OTHER-X", device("X"), 1), msg(b"Y", device("Y"), 2)])
    assert sorted(cache.devices) == ["X", "Y"]
    assert cache.apply(msg(b"OTHER-Y", device("Y", status="retired"), 3)).reason == "wrong_key"
    assert cache.get("Y").status == "active"              # not retired from another key
    cache.apply(msg(b"OTHER-X", None, 4))                 # the mismatched record's tombstone
    assert cache.get("X") is not None
    cache.apply(msg(b"X", None, 5))                       # X's own tombstone: gone at once
    assert cache.get("X") is None and sorted(cache.devices) == ["Y"]


def test_a_bad_record_under_a_registered_key_forgets_the_device_and_says_so(caplog):
    cache = RegistryCache("unused:9092", TOPIC)
    cache.apply(msg(b"X", device("X")))
    entry = cache.apply(msg(b"X", device("Z"), 1))
    assert entry.reason == "wrong_key" and cache.get("X") is None and cache.get("Z") is None
    assert "X forgotten" in caplog.text


def test_a_bug_while_reading_is_an_internal_error_verdict(monkeypatch):
    def boom(*_):
        raise RuntimeError("bug")
    monkeypatch.setattr(registry_module, "read_registry_record", boom)
    entry = judge(msg(b"X", device("X")), 65536)
    assert entry.reason == "internal_error" and entry.exception_type == "RuntimeError" and entry.key == "X"


class FakeConsumer:
    def __init__(self, fail_commit: bool = False):
        self.commits: list[dict] = []
        self.fail_commit = fail_commit

    async def commit(self, offsets):
        if self.fail_commit:
            raise CommitFailedError("rebalanced")
        self.commits.append(dict(offsets))


def duty(sent: list, fail_on: bytes | None = None) -> RegistryDeadLetters:
    async def on_dead(m, entry):
        if m.key == fail_on:
            raise ConnectionError("broker gone")
        sent.append((m.key, m.offset, entry.reason, entry.field))
    return RegistryDeadLetters("unused:9092", TOPIC, "grp-registry-deadletters", on_dead)


async def test_the_duty_sends_each_bad_records_dead_letter_then_commits_past_the_batch():
    sent: list = []
    consumer = FakeConsumer()
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    await duty(sent).handle({p0: [msg(b"X", device("X"), 10), msg(b"OTHER-X", device("X"), 11)],
                             p1: [msg(b"Y", b"not json", 7, 1), msg(b"Y", None, 8, 1)]}, consumer)
    assert sent == [(b"OTHER-X", 11, "wrong_key", "key"), (b"Y", 7, "not_json", None)]
    assert consumer.commits == [{p0: 12, p1: 9}]


async def test_a_commit_refused_by_a_rebalance_is_not_an_error():
    sent: list = []
    await duty(sent).handle({TopicPartition(TOPIC, 0): [msg(b"OTHER-X", device("X"), 3)]},
                            FakeConsumer(fail_commit=True))
    assert sent == [(b"OTHER-X", 3, "wrong_key", "key")]


async def test_nothing_is_committed_past_a_dead_letter_that_was_not_acknowledged():
    sent: list = []
    consumer = FakeConsumer()
    with pytest.raises(ConnectionError):
        await duty(sent, fail_on=b"OTHER-Y").handle(
            {TopicPartition(TOPIC, 0): [msg(b"OTHER-X", device("X"), 0), msg(b"OTHER-Y", device("Y"), 1)]},
            consumer)
    assert consumer.commits == []   # the duty rejoins and reads from the last commit (at least once)


class FetchingConsumer(FakeConsumer):
    """getmany hands out ``batches`` in turn; ``during_fetch`` runs inside the fetch (a
    rebalance while it is out); ``seek`` moves a position of ``assigned`` partitions only."""

    def __init__(self, batches: list[dict], during_fetch=None, assigned=()):
        super().__init__()
        self.batches, self.during_fetch = list(batches), during_fetch
        self.assigned, self.seeks = set(assigned), []

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict:
        if self.during_fetch is not None:
            await self.during_fetch()
        return self.batches.pop(0) if self.batches else {}

    def seek(self, tp, offset):
        if tp not in self.assigned:
            raise IllegalStateError(f"{tp} not assigned")
        self.seeks.append((tp, offset))


async def test_a_revocation_waits_until_the_batch_in_hand_is_sent_and_committed():
    sent: list = []
    release = asyncio.Event()
    p0 = TopicPartition(TOPIC, 0)

    async def slow_on_dead(m, entry):
        await release.wait()
        sent.append(m.key)
    d = RegistryDeadLetters("unused:9092", TOPIC, "grp-registry-deadletters", slow_on_dead)
    consumer = FetchingConsumer([{p0: [msg(b"OTHER-X", device("X"), 4)]}])
    stepping = asyncio.create_task(d.step(consumer))
    await asyncio.sleep(0)   # the batch is in hand, its dead letter waiting for its ack
    revoking = asyncio.create_task(d.revoked())
    await asyncio.sleep(0.01)
    assert not revoking.done() and consumer.commits == []
    release.set()
    await asyncio.gather(stepping, revoking)
    assert sent == [b"OTHER-X"] and consumer.commits == [{p0: 5}]


async def test_a_batch_fetched_between_a_revocation_and_the_next_assignment_is_handed_back():
    sent: list = []
    d = duty(sent)
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    consumer = FetchingConsumer([{p0: [msg(b"OTHER-X", device("X"), 4), msg(b"OTHER-Y", device("Y"), 5)],
                                  p1: [msg(b"OTHER-Z", device("Z"), 9, 1)]}],
                                during_fetch=d.revoked, assigned={p0})
    await d.step(consumer)   # the old assignment's records, returned while the group rebalances
    assert sent == [] and consumer.commits == []
    assert consumer.seeks == [(p0, 4)] and d.handed_back == 1   # p1 is its next owner's


async def test_a_batch_fetched_after_the_next_assignment_is_sent_once():
    """The stall 6531938 had: a batch of the new assignment, returned by a fetch that began
    before the revocation, was dropped with its position already past it."""
    sent: list = []
    d = duty(sent)
    p0 = TopicPartition(TOPIC, 0)

    async def rebalanced():
        await d.revoked()
        d.assigned()
    consumer = FetchingConsumer([{p0: [msg(b"OTHER-X", device("X"), 4)]}], during_fetch=rebalanced,
                                assigned={p0})
    await d.step(consumer)
    assert sent == [(b"OTHER-X", 4, "wrong_key", "key")] and consumer.commits == [{p0: 5}]
    assert consumer.seeks == [] and d.handed_back == 0
