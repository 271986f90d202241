"""Where the API's records go: a report, an operator's command, a photo.

The API answers 202 only once its record is in Kafka, so it awaits each send. It takes a
``RecordSink`` rather than owning a producer: the worker gives it ``KafkaSink``; the
functional tests (tests/functional) give it a list, and drive every route with no broker."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from citybrain.kafka.clients import kafka_producer


class RecordSink(Protocol):
    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Return once the record is stored (acks=all), or raise."""

    async def close(self) -> None: ...


class KafkaSink:
    """A producer made on the first send (a worker that is never asked to write opens no
    connection for it), shared by every request."""

    def __init__(self, bootstrap: str, client_id: str, **options: Any):
        self.bootstrap, self.client_id, self.options = bootstrap, client_id, options
        self.producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        async with self._lock:
            if self.producer is None:
                producer = kafka_producer(bootstrap_servers=self.bootstrap, acks="all",
                                          client_id=self.client_id, **self.options)
                await producer.start()
                self.producer = producer
        await self.producer.send_and_wait(topic, value, key=key)

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
