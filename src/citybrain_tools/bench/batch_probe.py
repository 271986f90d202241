"""A design probe, not the product: the same normaliser run in a plain aiokafka batch loop
(getmany → normalise each → produce → flush → commit), state in a dict.  It bounds what the
hot path could reach without Faust's per-event machinery (docs/performance.md)."""

from __future__ import annotations

import asyncio
import time

from pydantic_core import to_json

from citybrain.config import Config
from citybrain.domain.normalize import Normalizer
from citybrain.domain.registry import Device
from citybrain.domain.sensor_rules import DeviceState
from citybrain.kafka.clients import kafka_consumer, kafka_producer
from citybrain.stream.records import record_meta
from citybrain.wire.models import RegistryRecord
from citybrain_tools.bench.common import fresh_topics, produce_backlog
from citybrain_tools.sample.registry_builder import load


async def bench(bootstrap: str, records: int, seed: int = 1) -> dict:
    cfg = Config()
    topics, _ = await fresh_topics(bootstrap, "batch")
    total = await produce_backlog(bootstrap, topics, records, seed, "① backlog")
    registry = {d["device_id"]: Device.of(RegistryRecord.model_validate(d)) for d in load(cfg.registry_path)}
    normalizer = Normalizer(taxonomy=cfg.taxonomy, sensor_rules=cfg.sensor_rules,
                            video_thresholds=cfg.video_thresholds, city=cfg.city_map,
                            registry=registry.get)
    states: dict[str, DeviceState] = {}
    consumer = kafka_consumer(*topics.ingest, bootstrap_servers=bootstrap,
                                group_id=f"{topics.prefix}probe", auto_offset_reset="earliest",
                                enable_auto_commit=False, max_poll_records=2000)
    producer = kafka_producer(bootstrap_servers=bootstrap, linger_ms=1, acks="all")
    await consumer.start()
    await producer.start()
    seen, started = 0, time.monotonic()
    fetched = False
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500)
            if batch and not fetched:
                started, fetched = time.monotonic(), True
            futures = []
            for fetched_records in batch.values():
                for m in fetched_records:
                    meta = record_meta(m)
                    if m.topic == topics.iot:
                        res = normalizer.reading(m.value, meta, lambda d: states.get(d, DeviceState()))
                        if res.state is not None and res.state_key is not None:
                            states[res.state_key] = res.state
                    elif m.topic == topics.video:
                        res = normalizer.video(m.value, meta)
                    else:
                        res = normalizer.report(m.value, meta)
                    if res.event is not None:
                        futures.append(await producer.send(
                            topics.events, to_json(res.event), key=res.event.location.street_code.encode()))
                    elif res.dead is not None:
                        futures.append(await producer.send(topics.deadletter, to_json(res.dead), key=m.key))
                    seen += 1
            await asyncio.gather(*futures)
            await consumer.commit()
        elapsed = time.monotonic() - started
    finally:
        await producer.stop()
        await consumer.stop()
    return {"records": seen, "seconds": round(elapsed, 2), "rate": round(seen / elapsed, 1)}
