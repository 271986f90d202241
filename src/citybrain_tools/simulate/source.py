"""A field source's producer (a gateway, an app's backend): what fails for a reason that
passes is sent again, as a real source would, never given up — so a bench's figures around
a broker fault are the worker's, not records its source dropped.

- No room for a partition while its leader is being replaced (aiokafka's accumulator
  raises ``KafkaTimeoutError``): tried again at once.
- A batch expired unsent (no leader within the request timeout) or refused for a reason
  that passes (aiokafka's retriable errors: a leader being elected): sent again.
- The idempotent producer's sequence state broken — a leader lost with batches only it
  had: aiokafka does not reset its sequences as the Java client does (KIP-360) — a producer
  anew, and what failed is sent again (an earlier copy may be on the topic: at least once).
- Anything else (a record the broker refuses for good) is raised by ``settle``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
)

from citybrain.kafka.clients import stop_quietly

PRODUCER_STATE_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch)

Record = tuple[str, bytes | None, bytes]   # topic, key, value


def again(error: BaseException | None) -> bool:
    """Whether a record whose send failed with ``error`` is worth sending again."""
    return isinstance(error, KafkaTimeoutError) or (isinstance(error, KafkaError) and error.retriable)


class FieldSource:
    """``new_producer()`` makes an unstarted aiokafka producer; ``on_ack`` (optional) is
    called with each delivery's future."""

    def __init__(self, new_producer: Callable[[], Any], on_ack: Callable[[asyncio.Future], None] | None = None):
        self.new_producer, self.on_ack = new_producer, on_ack
        self.producer: Any = None
        # each delivery with the producer it went through: only the current one is replaced
        self.pending: list[tuple[asyncio.Future, Record, Any]] = []
        self.retried = 0

    async def start(self) -> FieldSource:
        self.producer = self.new_producer()
        await self.producer.start()
        return self

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Hand one record over (its delivery is followed up by ``settle``)."""
        while True:
            try:
                future = await self.producer.send(topic, value, key=key, timestamp_ms=None)
                break
            except KafkaTimeoutError:
                self.retried += 1
        if self.on_ack is not None:
            future.add_done_callback(self.on_ack)
        self.pending.append((future, (topic, key, value), self.producer))

    async def settle(self) -> None:
        """Every record handed over so far acknowledged, those that failed sent again."""
        while self.pending:
            batch, self.pending = self.pending, []
            await asyncio.gather(*(f for f, _, _ in batch), return_exceptions=True)
            failed: list[tuple[BaseException, Record, Any]] = []
            for f, record, producer in batch:
                if (error := f.exception()) is not None:
                    failed.append((error, record, producer))
            for error, _, _ in failed:
                if not (again(error) or isinstance(error, PRODUCER_STATE_ERRORS)):
                    raise error
            # (a delivery of a producer already replaced — sent while a settle was running —
            # fails the same way and must not replace the new one)
            if any(isinstance(error, PRODUCER_STATE_ERRORS) and producer is self.producer
                   for error, _, producer in failed):
                await stop_quietly(self.producer, 5.0)
                await self.start()
            for _, (topic, key, value), _ in failed:
                self.retried += 1
                await self.send(topic, value, key)

    async def stop(self) -> None:
        """The producer stopped (``settle`` first for everything to be delivered)."""
        await self.producer.stop()
