"""Shared benchmark plumbing: a fresh topic prefix, a worker process, its metrics."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from citybrain.config import Config
from citybrain.kafka.admin import create_topics, delete_prefixed, publish_registry
from citybrain.kafka.topics import Topics, TopicSpec
from citybrain.progress import Progress
from citybrain.promtext import outcomes, samples
from citybrain.stream.topology import topic_specs
from citybrain.worker_process import WorkerProcess
from citybrain_tools.local_kafka.broker import free_port
from citybrain_tools.sample.registry_builder import load
from citybrain_tools.simulate.runner import run as run_simulation
from citybrain_tools.simulate.traffic import CitySimulator

_made: list[str] = []   # this run's prefixes whose topics are still on the broker


async def drop_bench_topics(bootstrap: str) -> None:
    """Delete the topics of this run's earlier phases (their workers have stopped)."""
    while _made:
        await delete_prefixed(bootstrap, _made.pop())


async def fresh_prefix(bootstrap: str, name: str) -> str:
    """A new topic prefix for this phase, the previous phase's topics deleted first; its
    own are deleted by the next ``drop_bench_topics``."""
    await drop_bench_topics(bootstrap)
    prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}."
    _made.append(prefix)
    return prefix


async def fresh_topics(bootstrap: str, name: str, extra: Sequence[str] = ()) -> tuple[Topics, list[str]]:
    """A new prefix with every topic created and the registry published; the previous
    phase's topics are deleted first, so the broker never carries more than one phase's
    partitions (a full dispatch run would otherwise leave ~1,800)."""
    prefix = await fresh_prefix(bootstrap, name)
    cfg = Config()
    topics = Topics(prefix)
    partitions = cfg.settings.kafka.partitions
    extra_names = [f"{prefix}{e}" for e in extra]
    await create_topics(bootstrap, topic_specs(cfg, topics, partitions)
                        + [TopicSpec(n, partitions) for n in extra_names], cfg.topic_retention.replication.factor)
    await publish_registry(bootstrap, topics.registry, load(cfg.registry_path))
    return topics, extra_names


async def produce_backlog(bootstrap: str, topics: Topics, records: int, seed: int, title: str) -> int:
    """``records`` of simulated traffic spanning ten minutes that ended a minute ago, sent
    as fast as possible (event time in the past: no record is "from the future").
    Returns how many were sent (scripted incidents add a few)."""
    duration = 600.0
    sim = CitySimulator(load(Config().registry_path), seed=seed, rate=records / duration,
                        duration=duration, start=time.time() - duration - 60)
    result = await run_simulation(sim, bootstrap, topics, paced=False,
                                  progress=Progress(title, total=duration))
    return result["sent"]


def outcome_total(pages: Sequence[str], column: str) -> int:
    """An ingest outcome column (received, event, …) summed over every source and page."""
    return int(sum(row.get(column, 0) for text in pages for row in outcomes(text).values()))


def series_total(pages: Sequence[str], name: str) -> int:
    """Every series of one metric, summed over the pages."""
    return int(sum(v for text in pages for _, v in samples(text, name)))


class PipelineReadings:
    """What the benchmarks read from the workers' /metrics, summed over each process's
    own page (``pages()``): every process primes the outcome series at 0, so one page
    may not stand for another."""

    def pages(self) -> list[str]:
        raise NotImplementedError

    def _pages(self) -> list[str]:
        try:
            return self.pages()
        except OSError:   # not answering (yet): nothing counted
            return []

    def received(self) -> int:
        return outcome_total(self._pages(), "received")

    def opened(self) -> int:
        return series_total(self._pages(), "citybrain_workorders_opened_total")

    def pipeline(self) -> int:
        """Records through both stages: the ingested count less the events the fusion
        stage has not decided on yet (one read of the pages for all three)."""
        pages = self._pages()
        fused = series_total(pages, "citybrain_fusion_outcome_total")
        return outcome_total(pages, "received") - max(0, outcome_total(pages, "event") - fused)

    def fused(self) -> int:
        """Events the fusion stage has decided on (open, join, duplicate, …)."""
        return series_total(self._pages(), "citybrain_fusion_outcome_total")


@dataclass(frozen=True)
class WorkerShape:
    """How a bench runs the worker: the hot path's stages in one process or one each
    (``stage_processes`` 1 or 2, worker.stages), and the console's read models and API in
    those processes or in a process of their own (``console_apart``, worker.console)."""

    stage_processes: int = 1
    console_apart: bool = False

    SPLITS: ClassVar[dict[int, list[list[str]]]] = {1: [["normalise", "fuse"]], 2: [["normalise"], ["fuse"]]}

    def __post_init__(self) -> None:
        if self.stage_processes not in self.SPLITS:
            raise ValueError(f"stage processes: 1 or 2, not {self.stage_processes}")

    def processes(self) -> list[dict[str, str]]:
        """Each process's environment beside the bench's own."""
        console = {"CITYBRAIN_CONSOLE": "false"} if self.console_apart else {}
        stages = [{"CITYBRAIN_STAGES": ",".join(names), **console} for names in self.SPLITS[self.stage_processes]]
        return stages + ([{"CITYBRAIN_STAGES": "none"}] if self.console_apart else [])

    def describe(self) -> str:
        where = ("both stages in one worker process" if self.stage_processes == 1
                 else "normalise and fuse each in a worker process of its own")
        return where + ("; the console in a process of its own" if self.console_apart else "")


ONE_PROCESS = WorkerShape()   # the default: both stages and the console in one worker process


class BenchWorker(WorkerProcess, PipelineReadings):
    """A worker on a fresh prefix, in its own state dir (its log is kept there);
    ``env``: what this process hosts (CITYBRAIN_STAGES, CITYBRAIN_CONSOLE; all by default)."""

    def __init__(self, bootstrap: str, topics: Topics, env: Mapping[str, str] | None = None):
        port = free_port()
        state = Path(tempfile.mkdtemp(prefix="citybrain-bench-"))
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CITYBRAIN_TOPIC_PREFIX=topics.prefix,
                   CITYBRAIN_WEB_PORT=str(port), CITYBRAIN_STATE_DIR=str(state), **(env or {}))
        # CITYBRAIN_BENCH_WORKER_LOGLEVEL=info keeps the worker's start phases and
        # rebalances in its log (a failover run read phase by phase); warn by default.
        super().__init__(env, port, state / "worker.log",
                         loglevel=os.environ.get("CITYBRAIN_BENCH_WORKER_LOGLEVEL", "warn"))
        self.start()

    async def ready(self, timeout: float = 120.0) -> BenchWorker:
        await asyncio.to_thread(self.wait_ready, timeout)
        return self

    def pages(self) -> list[str]:
        return [self.metrics()]


class BenchWorkers(PipelineReadings):
    """The worker in the processes of a ``WorkerShape``, read as one: readings summed over
    the processes' pages, CPU and memory added, the first exit code."""

    def __init__(self, bootstrap: str, topics: Topics, shape: WorkerShape = ONE_PROCESS):
        self.workers = [BenchWorker(bootstrap, topics, env) for env in shape.processes()]
        self.log_path = " ".join(str(w.log_path) for w in self.workers)

    async def ready(self, timeout: float = 120.0) -> BenchWorkers:
        await asyncio.gather(*(w.ready(timeout) for w in self.workers))
        return self

    def pages(self) -> list[str]:
        return [w.metrics() for w in self.workers]

    def cpu_seconds(self) -> float:
        return sum(w.cpu_seconds() for w in self.workers)

    def rss_mb(self) -> float:
        return sum(w.rss_mb() for w in self.workers)

    def poll(self) -> int | None:
        return next((code for w in self.workers if (code := w.poll()) is not None), None)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
