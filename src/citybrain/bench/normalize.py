"""Normaliser throughput: a backlog of simulated traffic drained by one worker, beside a
plain aiokafka consume → orjson.loads → produce loop over the same backlog, on the same
broker, in the same run.  A measurement, never a test assertion."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

from citybrain.kafka.clients import kafka_consumer
import orjson
from aiokafka import AIOKafkaProducer

from citybrain.bench.common import BenchWorker, fresh_topics, produce_backlog
from citybrain.config import Config
from citybrain.kafka.topics import Topics
from citybrain.progress import Progress
from citybrain.promtext import outcomes


async def _baseline(bootstrap: str, topics: Topics, total: int, out_topic: str) -> dict:
    """The plainest correct loop: consume in a group, parse, produce, commit."""
    consumer = kafka_consumer(topics.iot, topics.video, topics.reports, bootstrap_servers=bootstrap,
                                group_id=f"baseline-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks="all",
                                max_request_size=2 * 1024 * 1024)
    await consumer.start()
    await producer.start()
    seen = 0
    started = None
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000)
            if started is None and batch:
                started = time.monotonic()
            futures = []
            for records in batch.values():
                for m in records:
                    try:
                        value = orjson.dumps(orjson.loads(m.value))
                    except orjson.JSONDecodeError:
                        value = m.value
                    futures.append(await producer.send(out_topic, value, key=m.key))
                    seen += 1
            await asyncio.gather(*futures)
            await consumer.commit()
        elapsed = time.monotonic() - (started or time.monotonic())
    finally:
        await producer.stop()
        await consumer.stop()
    return {"records": seen, "seconds": round(elapsed, 2), "rate": round(seen / max(elapsed, 1e-9), 1)}


async def bench(bootstrap: str, records: int, seed: int = 1) -> dict:
    topics, (out_topic,) = await fresh_topics(bootstrap, "norm", ["baseline.out"])
    partitions = Config().settings.kafka.partitions

    total = await produce_backlog(bootstrap, topics, records, seed, "① 生成积压 producing the backlog")

    # One worker drains it.
    worker = await BenchWorker(bootstrap, topics).ready()
    progress = Progress("② 工作进程处理 worker draining", total=total)
    peak_rss = 0.0
    try:
        first = last = None
        received = 0
        while received < total:
            received = worker.received()
            now = time.monotonic()
            if received and first is None:
                first, first_count = now, received
            last = now
            peak_rss = max(peak_rss, worker.rss_mb())
            progress.update(received, f"{received:,}/{total:,}")
            await asyncio.sleep(0.25)
        progress.update(received, f"{received:,}/{total:,}", force=True)
        progress.close()
        # From the first record counted to the last; the first poll's count is excluded.
        elapsed = max(last - first, 1e-9)
        ours = {"records": received - first_count, "seconds": round(elapsed, 2),
                "rate": round((received - first_count) / elapsed, 1), "peak_rss_mb": round(peak_rss, 1),
                "outcomes": outcomes(worker.metrics())}
    finally:
        worker.stop()

    print("③ 基线 plain aiokafka consume→parse→produce loop over the same backlog …",
          file=sys.stderr, flush=True)
    baseline = await _baseline(bootstrap, topics, total, out_topic)
    return {"records": total, "partitions": partitions, "worker": ours, "baseline": baseline,
            "ratio": round(ours["rate"] / baseline["rate"], 3), "prefix": topics.prefix}


def report(result: dict) -> str:
    w, b = result["worker"], result["baseline"]
    return "\n".join([
        f"标准化吞吐 normaliser throughput — {result['records']:,} simulated records, "
        f"{result['partitions']} partitions, one process each",
        f"  citybrain worker : {w['rate']:>10,.0f} records/s  ({w['records']:,} in {w['seconds']}s, "
        f"peak RSS {w['peak_rss_mb']} MB)",
        f"  aiokafka baseline: {b['rate']:>10,.0f} records/s  ({b['records']:,} in {b['seconds']}s)",
        f"  ratio ours/baseline: {result['ratio']:.2f}",
    ])
