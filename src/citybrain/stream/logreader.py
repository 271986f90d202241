"""Read a whole topic (every partition, from the beginning, no consumer group) and keep
following it: for views every worker needs complete, such as the evaluation figures."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable

from aiokafka import ConsumerRecord, TopicPartition

from citybrain.kafka.clients import kafka_consumer
from citybrain.kafka.admin import partitions_of

log = logging.getLogger("citybrain.logreader")


class TopicReader:
    """``on_records`` may be a coroutine function; ``on_caught_up`` is called once, when the
    end offsets seen at start are reached (before that, after every batch too)."""

    def __init__(self, bootstrap: str, topic: str, on_records: Callable[[list[ConsumerRecord]], object],
                 name: str, on_caught_up: Callable[[], None] | None = None):
        self.bootstrap, self.topic, self.on_records, self.name = bootstrap, topic, on_records, name
        self.on_caught_up = on_caught_up
        self.caught_up = asyncio.Event()   # read up to the end offsets seen at start
        self.records = 0

    async def run(self) -> None:
        consumer = kafka_consumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    group_id=None, client_id=f"citybrain-{self.name}",
                                    fetch_max_wait_ms=200)
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
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    self.records += len(records)
                    done = self.on_records(records)
                    if inspect.isawaitable(done):
                        await done
                if not self.caught_up.is_set():
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= end[tp] for pos, tp in zip(positions, tps)):
                        self.caught_up.set()
                        log.info("%s: read %s to its end (%d records)", self.name, self.topic, self.records)
                        if self.on_caught_up:
                            self.on_caught_up()
        finally:
            await consumer.stop()
