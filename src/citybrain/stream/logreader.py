"""Read a whole topic (every partition, no consumer group) and keep following it: for
views every worker needs complete, such as the order view and the evaluation figures.
It starts at the beginning, at a time (``since_ms``: the first record at or after it),
or at offsets a checkpoint gives (``start_offsets``; partitions it does not name start
at the beginning)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable

from aiokafka import ConsumerRecord, TopicPartition

from citybrain.kafka.admin import partitions_of
from citybrain.kafka.clients import kafka_consumer
from citybrain.kafka.reading import seek_to_first
from citybrain.memory import release_free_memory

log = logging.getLogger("citybrain.logreader")
TRIM_EVERY = 50_000   # records read while catching up between giving freed memory back


class TopicReader:
    """``on_records`` may be a coroutine function; ``on_caught_up`` is called once, when the
    end offsets seen at start are reached (before that, after every batch too)."""

    def __init__(self, bootstrap: str, topic: str, on_records: Callable[[list[ConsumerRecord]], object],
                 name: str, on_caught_up: Callable[[], None] | None = None, *,
                 since_ms: Callable[[], int] | None = None,
                 start_offsets: Callable[[], dict[int, int]] | None = None,
                 on_start_rejected: Callable[[], None] | None = None, consumer_options: dict | None = None):
        self.bootstrap, self.topic, self.on_records, self.name = bootstrap, topic, on_records, name
        self.on_caught_up = on_caught_up
        self.since_ms, self.start_offsets, self.on_start_rejected = since_ms, start_offsets, on_start_rejected
        self.positions: dict[int, int] = {}   # partition → next offset, after each batch handled
        self.caught_up = asyncio.Event()   # read up to the end offsets seen at start
        self.records = 0
        self.consumer_options = consumer_options or {}   # e.g. a fetch size for large records

    async def run(self) -> None:
        consumer = kafka_consumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    group_id=None, client_id=f"citybrain-{self.name}",
                                    fetch_max_wait_ms=200, **self.consumer_options)
        await consumer.start()
        try:
            partitions: list[int] = []
            while not partitions:
                partitions = await partitions_of(self.bootstrap, self.topic)
                if not partitions:
                    log.warning("等待主题 waiting for topic %s to exist", self.topic)
                    await asyncio.sleep(1.0)
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            await self._seek_start(consumer, tps, end)
            trimmed_at = 0
            while True:
                # Checked before each fetch, the first too: a topic empty or read to its end
                # is caught up at once, not after a fetch's 500 ms wait for records (measured:
                # the registry's and the warnings' readers held a start ~0.5 s each).
                if not self.caught_up.is_set():
                    if self.records - trimmed_at >= TRIM_EVERY:   # catching up parses a lot, briefly
                        trimmed_at = self.records
                        release_free_memory()
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                        self.caught_up.set()
                        log.info("%s: read %s to its end (%d records)", self.name, self.topic, self.records)
                        if self.on_caught_up:
                            self.on_caught_up()
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    self.records += len(records)
                    done = self.on_records(records)
                    if inspect.isawaitable(done):
                        await done
                    self.positions[tp.partition] = records[-1].offset + 1
        finally:
            await consumer.stop()

    async def _seek_start(self, consumer, tps: list[TopicPartition], end: dict) -> None:
        first = await seek_to_first(consumer, tps)
        if self.start_offsets is not None:
            offsets = self.start_offsets()
            if any(offsets.get(tp.partition, 0) > end[tp] for tp in tps) or set(offsets) - {
                    tp.partition for tp in tps}:
                offsets = {}   # offsets this topic never had: the start does not belong to it
                if self.on_start_rejected is not None:
                    self.on_start_rejected()
            for tp in tps:
                if tp.partition in offsets:   # below the log start (retention): from the start
                    consumer.seek(tp, max(offsets[tp.partition], first[tp]))
        elif self.since_ms is not None:
            found = await consumer.offsets_for_times({tp: self.since_ms() for tp in tps})
            for tp in tps:
                consumer.seek(tp, found[tp].offset if found.get(tp) is not None else end[tp])
        for tp in tps:
            self.positions[tp.partition] = await consumer.position(tp)
