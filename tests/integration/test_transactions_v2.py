"""Kafka 4's transaction protocol v2 against a real broker (kafka/transactions_v2.py): what a
read_committed reader and the group see after commits and aborts, the epoch bumped at every
end, a zombie fenced — and the first protocol where a cluster has not finalized v2."""

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from citybrain.kafka import transactions_v2
from citybrain.kafka.admin import create_topics
from citybrain.kafka.clients import kafka_admin, kafka_client, kafka_consumer, kafka_producer
from citybrain.kafka.topics import TopicSpec

from .kafka_helpers import consume, new_prefix


async def new_topic(bootstrap: str, name: str) -> str:
    topic = new_prefix(name) + "out"
    await create_topics(bootstrap, [TopicSpec(topic, partitions=2)])
    return topic


def transactional(bootstrap: str, txn_id: str, **settings):
    return kafka_producer(bootstrap_servers=bootstrap, transactional_id=txn_id, linger_ms=0, retry_backoff_ms=10,
                          **settings)


async def committed_values(bootstrap: str, topic: str, want: int) -> list[bytes]:
    """What a read_committed reader (kafka_consumer's default) finds on the topic."""
    return [r.value for r in await consume(bootstrap, topic, want)]


async def group_offsets(bootstrap: str, group: str) -> dict:
    admin = kafka_admin(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {tp: o.offset for tp, o in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


async def run_transactions(producer, topic: str, group: str, count: int, *, abort_last: bool = False) -> list[int]:
    """``count`` transactions of three records over both partitions and the group's
    offset; the producer epoch each one ran under."""
    epochs = []
    for i in range(count):
        await producer.begin_transaction()
        epochs.append(producer._txn_manager.producer_epoch)
        sent = [await producer.send(topic, f"t{i}-r{k}".encode(), partition=k % 2) for k in range(3)]
        await producer.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(i + 1, "")}, group)
        await asyncio.gather(*sent)
        if abort_last and i == count - 1:
            await producer.abort_transaction()
        else:
            await producer.commit_transaction()
    return epochs


async def test_commits_reach_a_read_committed_reader_and_the_group_an_abort_neither(kafka_bootstrap):
    topic = await new_topic(kafka_bootstrap, "txn-v2")
    group = topic + ".group"
    producer = transactional(kafka_bootstrap, topic + ".txn")
    await producer.start()
    try:
        assert producer._txn_manager.v2, "the test broker (Kafka 4.x, formatted fresh) finalizes transaction.version 2"
        epochs = await run_transactions(producer, topic, group, 20, abort_last=True)
    finally:
        await producer.stop()
    # v2 bumps the epoch at every end, abort included: the next transaction's is one higher
    assert epochs == list(range(epochs[0], epochs[0] + 20))
    got = await committed_values(kafka_bootstrap, topic, 57)
    assert sorted(got) == sorted(f"t{i}-r{k}".encode() for i in range(19) for k in range(3))
    assert await group_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 19}


async def test_a_new_producer_of_the_same_id_fences_the_old_one(kafka_bootstrap):
    topic = await new_topic(kafka_bootstrap, "txn-v2-fence")
    txn_id, group = topic + ".txn", topic + ".group"
    zombie = transactional(kafka_bootstrap, txn_id)
    await zombie.start()
    successor = None
    try:
        await run_transactions(zombie, topic, group, 2)
        await zombie.begin_transaction()
        late = await zombie.send(topic, b"zombie", partition=0)
        await late
        successor = transactional(kafka_bootstrap, txn_id)
        await successor.start()             # aborts the zombie's open transaction, fences its id
        await run_transactions(successor, topic, group, 1)
        with pytest.raises((ProducerFenced, KafkaError)):
            await zombie.commit_transaction()
    finally:
        await zombie.stop()
        if successor is not None:
            await successor.stop()
    got = await committed_values(kafka_bootstrap, topic, 9)
    assert b"zombie" not in got
    zombie_committed = [f"t{i}-r{k}".encode() for i in range(2) for k in range(3)]
    assert sorted(got) == sorted(zombie_committed + [f"t0-r{k}".encode() for k in range(3)])
    assert await group_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 1}


@pytest.mark.parametrize("why", ["the cluster finalizes v1", "v1 asked for"])
async def test_the_first_protocol_where_the_cluster_has_no_v2_or_it_is_asked_for(kafka_bootstrap, monkeypatch, why):
    settings = {}
    if why == "v1 asked for":
        settings["transaction_protocol"] = 1
    else:
        async def finalized_v1(client):
            return 1
        monkeypatch.setattr(transactions_v2, "transaction_version", finalized_v1)
    topic = await new_topic(kafka_bootstrap, "txn-v1")
    group = topic + ".group"
    producer = transactional(kafka_bootstrap, topic + ".txn", **settings)
    await producer.start()
    try:
        assert not producer._txn_manager.v2
        epochs = await run_transactions(producer, topic, group, 5)
    finally:
        await producer.stop()
    assert len(set(epochs)) == 1            # the first protocol keeps its epoch
    got = await committed_values(kafka_bootstrap, topic, 15)
    assert sorted(got) == sorted(f"t{i}-r{k}".encode() for i in range(5) for k in range(3))
    assert await group_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 5}


# --- one transactional id per process (KIP-447): the group's generation and stable offsets ---

async def joined_member(bootstrap: str, topic: str, group: str):
    """A started group member of ``group`` holding the topic's partitions."""
    consumer = kafka_consumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    return consumer


async def test_the_offsets_of_a_member_the_group_moved_past_are_refused_and_its_transaction_aborted(kafka_bootstrap):
    topic = await new_topic(kafka_bootstrap, "txn-v2-generation")
    group = topic + ".group"
    consumer = await joined_member(kafka_bootstrap, topic, group)
    producer = transactional(kafka_bootstrap, topic + ".txn")
    await producer.start()
    try:
        coordinator = consumer._coordinator
        member = (coordinator.generation, coordinator.member_id, None)
        stale = (coordinator.generation - 1, coordinator.member_id, None)
        tp = TopicPartition(topic, 0)
        await producer.begin_transaction()
        await (await producer.send(topic, b"current", partition=0))
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(1, "")}, group, member=member)
        await producer.commit_transaction()

        await producer.begin_transaction()
        await (await producer.send(topic, b"stale", partition=0))
        with pytest.raises(CommitFailedError):
            await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(7, "")}, group, member=stale)
        await producer.abort_transaction()
    finally:
        await producer.stop()
        await consumer.stop()
    assert await committed_values(kafka_bootstrap, topic, 1) == [b"current"]
    assert await group_offsets(kafka_bootstrap, group) == {TopicPartition(topic, 0): 1}


async def test_stable_offsets_wait_for_the_open_transaction_that_holds_them(kafka_bootstrap):
    topic = await new_topic(kafka_bootstrap, "txn-v2-stable")
    txn_id, group = topic + ".txn", topic + ".group"
    tp = TopicPartition(topic, 0)
    client = kafka_client(bootstrap_servers=kafka_bootstrap)
    await client.bootstrap()
    owner = transactional(kafka_bootstrap, txn_id)
    await owner.start()
    successor = None
    try:
        assert await transactions_v2.stable_offsets(client, group, {tp}) == {tp: None}

        async def offsets_held_open(offset: int) -> asyncio.Task:
            await owner.begin_transaction()
            await owner.send_offsets_to_transaction({tp: OffsetAndMetadata(offset, "")}, group)
            waiting = asyncio.create_task(transactions_v2.stable_offsets(client, group, {tp}))
            await asyncio.sleep(1.0)
            assert not waiting.done(), "answered while a transaction still held the offsets"
            return waiting

        waiting = await offsets_held_open(5)
        await owner.commit_transaction()
        assert await asyncio.wait_for(waiting, 10) == {tp: 5}

        waiting = await offsets_held_open(9)
        successor = transactional(kafka_bootstrap, txn_id)
        await successor.start()            # the owner's next incarnation: its open transaction aborted
        assert await asyncio.wait_for(waiting, 10) == {tp: 5}
    finally:
        await owner.stop()
        if successor is not None:
            await successor.stop()
        await client.close()
