"""Our partitioner puts every key where aiokafka's (and the Java client's) would."""

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from citybrain.kafka.clients import kafka_producer
from citybrain.kafka.partitioner import kafka_partition, murmur2


@given(st.binary(max_size=300))
def test_the_hash_is_aiokafkas_murmur2(key):
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.binary(max_size=80), st.integers(min_value=1, max_value=400))
def test_a_key_lands_on_the_partition_aiokafka_picks(key, n):
    partitions = list(range(n))
    assert kafka_partition(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


@pytest.mark.parametrize("key,partition", [
    (b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)])
def test_the_java_clients_partitions(key, partition):
    # Over 1,000 partitions, as org.apache.kafka.clients.producer.Partitioner places them
    # (the values aiokafka's and kafka-python's own tests check).
    partitions = list(range(1000))
    assert kafka_partition(key, partitions, partitions) == partition


def test_no_key_goes_to_an_available_partition():
    for _ in range(50):
        assert kafka_partition(None, [0, 1, 2, 3], [2, 3]) in (2, 3)
    assert kafka_partition(None, [0, 1], []) in (0, 1)


async def test_the_projects_producers_use_it():
    producer = kafka_producer(bootstrap_servers="127.0.0.1:1")   # made, never started
    assert producer._partitioner is kafka_partition
