"""Reading assigned partitions up to an end: the one loop behind a state restore, the
CLI's whole-log readers and the topic reader's catch-up.

Positions are set with explicit offsets (``seek_to_first``), never ``seek_to_beginning``:
that one is only a reset request, which the assignment's own reset could overtake — a
restore once read a partition from its end (35 of 44 changelog records, test_local_store).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

OnRecords = Callable[[TopicPartition, list[ConsumerRecord]], None]


async def seek_to_first(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """Each partition to its first retained offset; returns those offsets."""
    tps = list(tps)
    first: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
    for tp in tps:
        consumer.seek(tp, first[tp])
    return first


async def seek_to_committed(consumer: AIOKafkaConsumer, committed: dict[TopicPartition, int | None]) -> None:
    """Each partition to its committed offset, or to its first retained one where the
    group has none."""
    never = [tp for tp, offset in committed.items() if offset is None]
    if never:
        await seek_to_first(consumer, never)
    for tp, offset in committed.items():
        if offset is not None:
            consumer.seek(tp, offset)


async def remaining(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> int:
    """Records between each partition's position and its ``end``."""
    return sum([max(0, end[tp] - await consumer.position(tp)) for tp in end])


async def read_until(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int], on_records: OnRecords, *,
                     max_records: int = 5000, timeout_ms: int = 500,
                     after_batch: Callable[[int], Awaitable[None] | None] | None = None,
                     enough: Callable[[], bool] | None = None) -> int:
    """Fetch the partitions of ``end`` (assigned and positioned) until each reaches its end
    offset, or ``enough()``; ``on_records`` gets every batch of one partition in order,
    ``after_batch`` the running count after each fetch.  Returns the records read."""
    pending = {tp for tp in end if await consumer.position(tp) < end[tp]}
    n = 0
    while pending and not (enough is not None and enough()):
        batch = await consumer.getmany(*pending, timeout_ms=timeout_ms, max_records=max_records)
        for tp, records in batch.items():
            on_records(tp, records)
            n += len(records)
        for tp in list(pending):
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
        if after_batch is not None:
            done = after_batch(n)
            if done is not None:
                await done
    return n


def read_note(n: int, total: int, left: int) -> str:
    """The closing progress note: the records read against the offsets there were
    (transaction markers and compacted gaps take offsets but hold no record)."""
    if left > 0:
        return f"{n:,}/{total:,} (stopped early)"
    if n == total:
        return f"{n:,}/{total:,}"
    return f"{n:,} records in {total:,} offsets"


async def read_topic_to_end(bootstrap: str, topic: str, on_record: Callable[[ConsumerRecord], None], title: str,
                            start: dict[int, int] | None = None, enough: Callable[[], bool] | None = None) -> int:
    """Every partition of ``topic`` up to the end it has now, record by record, with
    progress (the CLI's readers, the demo's summary); -1 when the topic does not exist.
    ``start``: the offset to begin at per partition (else the first retained);
    ``enough()``: stop early once it says so."""
    from citybrain.kafka.admin import partitions_of
    from citybrain.kafka.clients import kafka_consumer
    from citybrain.progress import Progress

    tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    if not tps:
        print(f"主题不存在 topic {topic} does not exist yet (run the demo or `citybrain topics`)", file=sys.stderr)
        return -1
    consumer = kafka_consumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        first = await seek_to_first(consumer, tps)
        for tp in tps:
            if start and start.get(tp.partition, 0) > first[tp]:
                consumer.seek(tp, start[tp.partition])
        end = await consumer.end_offsets(tps)
        total = await remaining(consumer, end)
        progress = Progress(title, total=max(total, 1))

        def each(_tp: TopicPartition, records: list[ConsumerRecord]) -> None:
            for m in records:
                on_record(m)

        n = await read_until(consumer, end, each, timeout_ms=1000, enough=enough,
                             after_batch=lambda n: progress.update(n, f"{n:,}/{total:,}"))
        left = await remaining(consumer, end)
        progress.close(max(total - left, 0), read_note(n, total, left))
        return n
    finally:
        await consumer.stop()
