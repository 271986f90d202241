"""The worker's registry reader (stream/registry.py): every copy applies the key rule of
domain/registry_records.py and writes no dead letter; the dead-letter duty sends a
partition's dead letters, each acknowledged, then commits past them."""

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

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
