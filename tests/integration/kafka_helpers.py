"""Test helpers that talk to the real broker and run real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import TopicPartition

from citybrain import worker_process as citybrain_worker
from citybrain.config import Config
from citybrain.kafka.admin import create_topics, partitions_of, publish_registry
from citybrain.kafka.clients import kafka_consumer, kafka_producer, stop_quietly
from citybrain.kafka.topics import Topics
from citybrain.paths import PROJECT_ROOT
from citybrain.stream.topology import topic_specs
from citybrain_tools.local_kafka.broker import free_port
from citybrain_tools.sample.registry_builder import load

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
PARTITIONS = 3


def new_prefix(name: str) -> str:
    return f"it-{name}-{uuid.uuid4().hex[:6]}."


async def prepare(bootstrap: str, prefix: str) -> Topics:
    """Topics + the sample registry, as `citybrain topics` and `registry publish` do."""
    topics = Topics(prefix)
    cfg = Config()
    await create_topics(bootstrap, topic_specs(cfg, topics, PARTITIONS))
    await publish_registry(bootstrap, topics.registry, load(cfg.registry_path))
    return topics


def input_producer(bootstrap: str):
    """The tests' input producer (acks=all, idempotent)."""
    # 30 s, not the hot path's 5 s: the tests' input must arrive even when the shared broker
    # is slow to answer at the suite's busiest minutes (a fresh clone's run once failed here
    # to bootstrap, with four fault files starting brokers and workers on two cores).
    return kafka_producer(bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024,
                          acks="all", linger_ms=5, request_timeout_ms=30_000)


async def send_acknowledged(producer, records: list[tuple], timeout: float = 180.0) -> list:
    """Send (topic, key, value[, timestamp_ms]) records in order on a started producer;
    return their RecordMetadata.  An acknowledgement not in within ``timeout`` seconds fails
    the test: an idempotent aiokafka producer retries a batch no leader takes for ever, its
    ``stop`` too (aiokafka#1101)."""
    futures = [await producer.send(r[0], r[2], key=r[1], timestamp_ms=r[3] if len(r) > 3 else None)
               for r in records]
    try:
        return list(await asyncio.wait_for(asyncio.gather(*futures), timeout))
    except TimeoutError:
        raise AssertionError(f"{len(records)} input records not acknowledged within {timeout:.0f} s") from None


async def produce(bootstrap: str, records: list[tuple], timeout: float = 180.0) -> list:
    """``send_acknowledged`` on a producer of its own."""
    producer = input_producer(bootstrap)
    await producer.start()
    try:
        return await send_acknowledged(producer, records, timeout)
    finally:
        await stop_quietly(producer)


async def consume(bootstrap: str, topic: str, want: int, timeout: float = 60.0,
                  settle: float = 1.5) -> list:
    """Read a topic from the beginning until ``want`` records (then ``settle`` more
    seconds to catch any extra), or the timeout."""
    consumer = kafka_consumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(records)
            if len(out) >= want:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
        return out
    finally:
        await consumer.stop()


async def consume_all(bootstrap: str, topic: str, quiet: float = 1.0, timeout: float = 60.0) -> list:
    """Everything on ``topic`` once it has stopped growing: read from the beginning to the
    end offsets until they have not moved for ``quiet`` seconds (for a caller that has
    already seen the cause of those records handled — instead of reading for a fixed time)."""
    consumer = kafka_consumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list = []
        end, moved = await consumer.end_offsets(tps), time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
            now = await consumer.end_offsets(tps)
            if now != end:
                end, moved = now, time.monotonic()
            elif time.monotonic() - moved >= quiet and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                break
        return out
    finally:
        await consumer.stop()


def decode(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records]


class WorkerProcess(citybrain_worker.WorkerProcess):
    """A worker on a test prefix, its log kept in test-artifacts/."""

    def __init__(self, bootstrap: str, prefix: str, state_dir: Path, name: str = "worker",
                 config_dir: Path | None = None, env: dict[str, str] | None = None):
        port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CITYBRAIN_TOPIC_PREFIX=prefix,
                   CITYBRAIN_WEB_PORT=str(port), CITYBRAIN_PARTITIONS=str(PARTITIONS),
                   CITYBRAIN_STATE_DIR=str(state_dir), **(env or {}))
        if config_dir is not None:
            env["CITYBRAIN_CONFIG_DIR"] = str(config_dir)
        super().__init__(env, port, ARTIFACTS / f"{prefix.rstrip('.')}-{name}.log",
                         data_dir=state_dir / f"{name}-data")

    def start(self, timeout: float = 90.0, wait: bool = True) -> WorkerProcess:
        super().start()
        return self.wait_ready(timeout) if wait else self


@contextlib.asynccontextmanager
async def worker_on_new_topics(bootstrap: str, test_name: str, state_dir: Path, config_dir: Path | None = None):
    """Fresh topics named after the test and one worker on them: (topics, worker)."""
    prefix = new_prefix(test_name[5:25].replace("_", "-"))
    topics = await prepare(bootstrap, prefix)
    worker = WorkerProcess(bootstrap, prefix, state_dir, config_dir=config_dir).start()
    try:
        yield topics, worker
    finally:
        worker.stop()


async def wait_for_metrics(worker: WorkerProcess, predicate, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(worker.metrics)
        if predicate(text):
            return text
        await asyncio.sleep(0.5)
    return text


def config_with(tmp: Path, lifecycle_toml: str) -> Path:
    """A copy of config/ whose lifecycle.toml is replaced (short clocks for tests)."""
    target = tmp / "config"
    shutil.copytree(PROJECT_ROOT / "config", target)
    (target / "lifecycle.toml").write_text(lifecycle_toml, encoding="utf-8")
    _ = Config(target).deadlines   # fails here, not in the worker, if the text is wrong
    return target
