"""The project's Kafka consumers, made in one place: every reader of stage outputs reads
``read_committed`` (DESIGN §11) — under exactly_once a reader must never see a change
whose transaction a crash then aborted."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer


def kafka_consumer(*topics: str, **settings) -> AIOKafkaConsumer:
    settings.setdefault("isolation_level", "read_committed")
    return AIOKafkaConsumer(*topics, **settings)
