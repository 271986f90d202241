"""Shared benchmark plumbing: a fresh topic prefix, a worker process, its metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from citybrain.config import Config
from citybrain.kafka.admin import create_topics, publish_registry
from citybrain.kafka.local_broker import free_port
from citybrain.kafka.topics import TopicSpec, Topics
from citybrain.promtext import outcomes, samples
from citybrain.sample.registry_builder import load


async def fresh_topics(bootstrap: str, name: str, extra: list[str] = ()) -> tuple[Topics, list[str]]:
    """A new prefix with every topic created and the registry published."""
    cfg = Config()
    prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}."
    topics = Topics(prefix)
    partitions = cfg.settings.kafka.partitions
    extra_names = [f"{prefix}{e}" for e in extra]
    await create_topics(bootstrap, topics.specs([d.code for d in cfg.taxonomy.departments], partitions)
                        + [TopicSpec(n, partitions) for n in extra_names])
    await publish_registry(bootstrap, topics.registry, load(cfg.registry_path))
    return topics, extra_names


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class BenchWorker:
    """`python -m citybrain worker` on a prefix, in its own process and state dir."""

    def __init__(self, bootstrap: str, topics: Topics):
        self.port = free_port()
        self.state = Path(tempfile.mkdtemp(prefix="citybrain-bench-"))
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CITYBRAIN_TOPIC_PREFIX=topics.prefix,
                   CITYBRAIN_WEB_PORT=str(self.port), CITYBRAIN_STATE_DIR=str(self.state))
        self.log_path = self.state / "worker.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "citybrain", "worker", "--loglevel", "warn"], env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    async def ready(self, timeout: float = 120.0) -> "BenchWorker":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(f"worker exited with {self.proc.returncode}; {self.log_path}:\n"
                                   + "\n".join(tail))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            await asyncio.sleep(0.3)
        raise RuntimeError("worker not ready in time")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def received(self) -> int:
        try:
            return int(sum(row.get("received", 0) for row in outcomes(self.metrics()).values()))
        except OSError:
            return 0

    def opened(self) -> int:
        try:
            return int(sum(v for _, v in samples(self.metrics(), "citybrain_workorders_opened_total")))
        except OSError:
            return 0

    def fused(self) -> int:
        """Events the fusion stage has decided on (open, join, duplicate, …)."""
        try:
            return int(sum(v for _, v in samples(self.metrics(), "citybrain_fusion_outcome_total")))
        except OSError:
            return 0

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return round(v[min(len(v) - 1, int(p * len(v)))] * 1000, 2)

    return {"n": len(v), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            "max_ms": round(v[-1] * 1000, 2)}
