"""A real Apache Kafka on 127.0.0.1 for the demo, the tests and the benchmarks (no Docker
engine here): one KRaft node (``broker``) or three (``cluster``), from Maven Central's jars."""

from __future__ import annotations

from citybrain.paths import state_dir
from citybrain_tools.local_kafka.broker import LocalBroker
from citybrain_tools.local_kafka.cluster import LocalCluster


def local_broker() -> LocalBroker:
    """`citybrain kafka start`'s broker (its files under var/kafka)."""
    return LocalBroker(state_dir() / "kafka")


def local_cluster() -> LocalCluster:
    """`citybrain kafka start --nodes 3`'s cluster."""
    return LocalCluster(state_dir() / "kafka-cluster")
