"""Running a stream worker."""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from citybrain.cli.common import broker_address, load_config
from citybrain.cli.setup import ensure_topics
from citybrain.paths import state_dir


def cmd_worker(args) -> int:
    from citybrain.startup import StartupPhases
    phases = StartupPhases()   # from the process's start: one log line per phase (citybrain/startup.py)
    phases.done("cli")

    from citybrain.kafka.admin import TopicMismatch
    from citybrain.stream.topology import topic_specs
    if args.web_port:
        os.environ["CITYBRAIN_WEB_PORT"] = str(args.web_port)
    cfg = load_config()
    s = cfg.settings
    bootstrap = broker_address()
    try:
        cfg.check_closed_state_days()
    except ValueError as e:
        print(f"错误 error: {e}", file=sys.stderr, flush=True)
        return 2
    phases.done("config")
    # The broker's part of the start (topics reconciled, the cluster's id) in a thread of its
    # own while this one imports Faust and the app: mostly waiting on the broker, it hides
    # behind the imports' CPU (issue 38: start to ready).
    pool = ThreadPoolExecutor(1, thread_name_prefix="start")
    broker_checks = pool.submit(asyncio.run, _broker_checks(cfg, bootstrap, topic_specs(cfg)))
    pool.shutdown(wait=False)   # the thread ends with its one job

    from faust.worker import Worker

    from citybrain import logfilter
    from citybrain.stream.app import create_app
    phases.done("imports")
    try:
        cluster = broker_checks.result()
    except (TopicMismatch, ValueError) as e:
        print(f"错误 error: {e}", file=sys.stderr, flush=True)
        return 2
    phases.done("topics")
    # One state directory per consumer group (prefix + app id) and worker port: two
    # groups must never share table files, nor two workers on one machine.
    data_dir = (Path(args.data_dir) if args.data_dir else
                state_dir() / f"worker-{s.kafka.topic_prefix}{s.worker.app_id}-{s.worker.web_port}")
    claim_state_dir(data_dir, cluster)
    phases.done("cluster")
    app = create_app(cfg, bootstrap, data_dir, phases)
    phases.done("app")
    print(f"citybrain worker: Kafka {bootstrap}, group {app.conf.id}, "
          f"http://{s.worker.web_host}:{s.worker.web_port}/metrics, state {data_dir}", flush=True)
    class CitybrainWorker(Worker):
        def on_setup_root_logger(self, logger, level: int) -> None:
            # Faust's terminal spinner sets the root logger to DEBUG so that it spins on
            # every record; then every debug call in the Kafka client builds a LogRecord
            # (measured: ~6 % of the worker's time).  No spinner, root at the asked level.
            self.spinner = None
            super().on_setup_root_logger(logger, level)
            logger.setLevel(level)
            logfilter.install()   # a broker outage: one line per kind of client error, with a count
            phases.attach()

        async def on_startup_finished(self) -> None:   # Faust's own start done (its group joined)
            phases.done("faust", since=phases.last)
            await super().on_startup_finished()

    worker = CitybrainWorker(app, loglevel=args.loglevel, quiet=not sys.stdout.isatty())
    worker.execute_from_commandline()   # runs until the worker stops, then exits the process


async def _broker_checks(cfg, bootstrap: str, specs) -> str:
    """Create and reconcile the topics (a mismatch raises), then the cluster's id."""
    from citybrain.kafka.admin import cluster_id
    await ensure_topics(cfg, bootstrap, specs)
    return await cluster_id(bootstrap)


def claim_state_dir(data_dir: Path, cluster: str) -> None:
    """Local table state is a cache of changelog topics in *one* cluster.  State left by
    another cluster (a re-created demo broker) would not match its changelogs, so it
    is discarded and rebuilt from the changelogs."""
    import shutil
    marker = data_dir / "kafka-cluster-id"
    owner = marker.read_text().strip() if marker.exists() else None
    if owner != cluster and data_dir.exists() and any(data_dir.iterdir()):
        print(f"注意 notice: {data_dir} holds state of another Kafka cluster ({owner or 'unknown'}); "
              "discarding it — it is rebuilt from the changelog topics", flush=True)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(cluster)
