"""Normaliser throughput: a backlog of simulated traffic drained by one worker, beside a
plain aiokafka consume → orjson.loads → produce loop over the same backlog, on the same
broker, in the same run.  A measurement, never a test assertion."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from citybrain.config import Config
from citybrain.kafka.admin import create_topics, publish_registry
from citybrain.kafka.local_broker import free_port
from citybrain.kafka.topics import TopicSpec, Topics
from citybrain.progress import Progress
from citybrain.promtext import outcomes
from citybrain.sample.registry_builder import load
from citybrain.simulate.runner import run as run_simulation
from citybrain.simulate.traffic import CitySimulator


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


async def _baseline(bootstrap: str, topics: Topics, total: int, out_topic: str) -> dict:
    """The plainest correct loop: consume in a group, parse, produce, commit."""
    consumer = AIOKafkaConsumer(topics.iot, topics.video, topics.reports, bootstrap_servers=bootstrap,
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


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


async def bench(bootstrap: str, records: int, seed: int = 1, state_dir: Path | None = None) -> dict:
    cfg = Config()
    prefix = f"bench-{uuid.uuid4().hex[:6]}."
    topics = Topics(prefix)
    partitions = cfg.settings.kafka.partitions
    specs = topics.specs([d.code for d in cfg.taxonomy.departments], partitions)
    out_topic = f"{prefix}baseline.out"
    await create_topics(bootstrap, specs + [TopicSpec(out_topic, partitions)])
    await publish_registry(bootstrap, topics.registry, load(cfg.registry_path))

    # The backlog: `records` of simulated traffic that ended a minute ago.
    duration = 600.0
    sim = CitySimulator(load(cfg.registry_path), seed=seed, rate=records / duration,
                        duration=duration, start=time.time() - duration - 60)
    produced = await run_simulation(sim, bootstrap, topics, paced=False,
                                    progress=Progress("① 生成积压 producing the backlog", total=duration))
    total = produced["sent"]

    # One worker drains it.
    port = free_port()
    state = state_dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"citybrain-{prefix}"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CITYBRAIN_TOPIC_PREFIX=prefix,
               CITYBRAIN_WEB_PORT=str(port), CITYBRAIN_STATE_DIR=str(state))
    proc = subprocess.Popen([sys.executable, "-m", "citybrain", "worker", "--loglevel", "warn"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    progress = Progress("② 工作进程处理 worker draining", total=total)
    peak_rss = 0.0
    try:
        first = last = None
        received = 0
        while received < total:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            try:
                table = outcomes(_metrics(port))
                received = int(sum(row.get("received", 0) for row in table.values()))
            except OSError:
                received = 0
            now = time.monotonic()
            if received and first is None:
                first, first_count = now, received
            last = now
            peak_rss = max(peak_rss, _rss_mb(proc.pid))
            progress.update(received, f"{received:,}/{total:,}")
            await asyncio.sleep(0.25)
        progress.update(received, f"{received:,}/{total:,}", force=True)
        progress.close()
        # From the first record counted to the last; the first poll's count is excluded.
        elapsed = max(last - first, 1e-9)
        ours = {"records": received - first_count, "seconds": round(elapsed, 2),
                "rate": round((received - first_count) / elapsed, 1), "peak_rss_mb": round(peak_rss, 1),
                "outcomes": outcomes(_metrics(port))}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    print("③ 基线 plain aiokafka consume→parse→produce loop over the same backlog …",
          file=sys.stderr, flush=True)
    baseline = await _baseline(bootstrap, topics, total, out_topic)
    return {"records": total, "partitions": partitions, "worker": ours, "baseline": baseline,
            "ratio": round(ours["rate"] / baseline["rate"], 3), "prefix": prefix}


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
