"""Normaliser throughput: a backlog of simulated traffic drained by one worker, beside a
plain aiokafka consume → orjson.loads → produce loop over the same backlog, on the same
broker, in the same run.  A measurement, never a test assertion."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from datetime import UTC, datetime

import orjson

from citybrain.config import Config
from citybrain.kafka.admin import publish_registry
from citybrain.kafka.clients import kafka_consumer, kafka_producer
from citybrain.kafka.topics import Topics
from citybrain.progress import Progress
from citybrain.promtext import outcomes
from citybrain_tools.bench.common import BenchWorker, fresh_topics, produce_backlog
from citybrain_tools.sample.registry_builder import load


async def _baseline(bootstrap: str, topics: Topics, total: int, out_topic: str) -> dict:
    """The plainest correct loop: consume in a group, parse, produce, commit."""
    consumer = kafka_consumer(*topics.ingest, bootstrap_servers=bootstrap,
                                group_id=f"baseline-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=1000)
    producer = kafka_producer(bootstrap_servers=bootstrap, linger_ms=1, acks="all",
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


def city_scale_registry(sensors: int, cameras: int, seed: int = 7) -> list[dict]:
    """A generated registry of a Liaocheng-sized city on the sample map (SAMPLE: random
    points inside the grids, sensor types in the sample's proportions), for sizing only."""
    cfg = Config()
    city, rng = cfg.city_map, random.Random(seed)
    sample = load(cfg.registry_path)
    types = [d["sensor_type"] for d in sample if d["kind"] == "sensor"]
    owners = [d.get("owner_department") for d in sample]
    lons = [d["lon"] for d in sample]
    lats = [d["lat"] for d in sample]
    box = (min(lons), min(lats), max(lons), max(lats))
    out: list[dict] = []
    for kind, n, prefix in (("sensor", sensors, "GS"), ("camera", cameras, "GC")):
        made = 0
        while made < n:
            lon, lat = rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])
            if city.locate(round(lon, 6), round(lat, 6)) is None:
                continue
            made += 1
            d = {"device_id": f"{prefix}-{made:06d}", "kind": kind, "lon": round(lon, 6), "lat": round(lat, 6),
                 "name": f"SAMPLE generated {kind} {made}", "status": "active"}
            if kind == "sensor":
                d["sensor_type"] = rng.choice(types)
            owner = rng.choice(owners)
            if owner:
                d["owner_department"] = owner
            out.append(d)
    return out


async def _hear_every_sensor(bootstrap: str, topics: Topics, devices: list[dict], rules) -> int:
    """One normal reading from each generated sensor (so each is watched for silence)."""
    producer = kafka_producer(bootstrap_servers=bootstrap, linger_ms=20, acks="all",
                                client_id="citybrain-bench-registry")
    await producer.start()
    ts = datetime.fromtimestamp(time.time() - 30, UTC).isoformat()
    sent = 0
    try:
        futures = []
        for d in devices:
            if d["kind"] != "sensor":
                continue
            rule = rules[d["sensor_type"]]
            lo, hi = rule.valid_range
            value = lo if not rule.alarm.holds(lo) else hi
            body = {"device_id": d["device_id"], "sensor_type": d["sensor_type"], "value": value, "ts": ts, "seq": 1}
            futures.append(await producer.send(topics.iot, orjson.dumps(body), key=d["device_id"].encode()))
            sent += 1
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def bench(bootstrap: str, records: int, seed: int = 1, sensors: int = 0, cameras: int = 0) -> dict:
    """``sensors`` / ``cameras``: a generated city-scale registry on top of the sample's
    (published before the worker starts; every generated sensor is heard once, so the
    worker holds its health and its silence timer)."""
    topics, (out_topic,) = await fresh_topics(bootstrap, "norm", ["baseline.out"])
    cfg = Config()
    partitions = cfg.settings.kafka.partitions
    extra: list[dict] = []
    if sensors or cameras:
        print(f"⓪ 生成台账 generating a registry of {sensors:,} sensors and {cameras:,} cameras …",
              file=sys.stderr, flush=True)
        extra = city_scale_registry(sensors, cameras)
        await publish_registry(bootstrap, topics.registry, extra)

    total = await produce_backlog(bootstrap, topics, records, seed, "① 生成积压 producing the backlog")
    if extra:
        total += await _hear_every_sensor(bootstrap, topics, extra, cfg.sensor_rules)

    # One worker drains it.
    worker = await BenchWorker(bootstrap, topics).ready()
    progress = Progress("② 工作进程处理 worker draining", total=total)
    peak_rss = 0.0
    try:
        first: float | None = None
        last = 0.0
        first_count = 0
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
        if first is None:
            raise RuntimeError("工作进程未处理任何记录 the worker handled no record")
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
            "ratio": round(ours["rate"] / baseline["rate"], 3), "prefix": topics.prefix,
            "registry": {"sample": len(load(cfg.registry_path)), "generated_sensors": sensors,
                         "generated_cameras": cameras}}


def report(result: dict) -> str:
    w, b = result["worker"], result["baseline"]
    reg = result.get("registry") or {}
    return "\n".join([
        f"标准化吞吐 normaliser throughput — {result['records']:,} simulated records, "
        f"{result['partitions']} partitions, one process each; registry {reg.get('sample', 0):,} sample + "
        f"{reg.get('generated_sensors', 0):,} sensors + {reg.get('generated_cameras', 0):,} cameras generated",
        f"  citybrain worker : {w['rate']:>10,.0f} records/s  ({w['records']:,} in {w['seconds']}s, "
        f"peak RSS {w['peak_rss_mb']} MB)",
        f"  aiokafka baseline: {b['rate']:>10,.0f} records/s  ({b['records']:,} in {b['seconds']}s)",
        f"  ratio ours/baseline: {result['ratio']:.2f}",
    ])
