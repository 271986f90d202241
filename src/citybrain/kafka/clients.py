"""The project's Kafka consumers, made in one place: every reader of stage outputs reads
``read_committed`` (DESIGN §11) — under exactly_once a reader must never see a change
whose transaction a crash then aborted — and a reader with no position starts at the
beginning unless it asks for ``latest``: aiokafka's own default (``latest``) also applies
on assignment, where it could overtake a ``seek_to_beginning`` and skip a partition whole
(a state restore once read 35 of 44 changelog records)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer


def kafka_consumer(*topics: str, **settings) -> AIOKafkaConsumer:
    settings.setdefault("isolation_level", "read_committed")
    settings.setdefault("auto_offset_reset", "earliest")
    return AIOKafkaConsumer(*topics, **settings)
