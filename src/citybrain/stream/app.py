"""The worker: a Faust app hosting the hot path's batch stages.

- Faust provides the worker lifecycle, the web server (/metrics, /healthz, /readyz) and
  the tasks beside the stages (registry, area warnings, read models).
- The hot path runs as batch stages (stream/runner.py; stream/normalise_stage.py, stream/fuse_stage.py): ``normalise``
  (ingest topics → events.normalized, fusion inbox | deadletter) and ``fuse``
  (fusion inbox → workorders.events, dispatch.<department>, workorders.rejected), each a
  member of its own consumer group, state in compacted changelog topics.  Why not Faust
  agents there: docs/performance.md (measured ~8× the throughput).
- Every worker reads the whole device registry (stream/registry.py).
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import signal
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from citybrain import metrics
from citybrain.config import Config, worker_instance_id
from citybrain.domain.normalize import IngestLimits, Normalizer
from citybrain.kafka.clients import HOT_PATH_PRODUCER, METADATA_MAX_AGE_MS, KafkaSecurity, kafka_producer, security
from citybrain.kafka.groups import leave_group
from citybrain.kafka.topics import Topics
from citybrain.reporterkey import reporter_pseudonymiser
from citybrain.startup import StartupPhases
from citybrain.stream import area_warnings as warning_stream
from citybrain.stream.brokerwatch import BrokerWatch
from citybrain.stream.collaborators import collaborators
from citybrain.stream.commands import CommandStage
from citybrain.stream.console import install_console, refer_to_console
from citybrain.stream.early import start_early, when_set
from citybrain.stream.fuse_stage import FuseStage
from citybrain.stream.normalise_stage import DeadLetterLog, NormaliseStage
from citybrain.stream.registry import RegistryCache, RegistryDeadLetters, dead_letter_sender
from citybrain.stream.registrycopy import RegistryCopy
from citybrain.stream.stage import RunnerSettings, Stage
from citybrain.stream.topology import group_id, topic_specs
from citybrain.stream.wiring import stage_runner
from citybrain.web.api import MAX_BODY

log = logging.getLogger("citybrain.worker")


def _faust_security(security: KafkaSecurity) -> dict[str, Any]:
    """faust.App's keyword arguments for the cluster's security (kafka/clients.py)."""
    if security.protocol == "PLAINTEXT":
        return {}
    if security.mechanism:
        return {"broker_credentials": faust.SASLCredentials(
            username=security.username, password=security.password, ssl_context=security.ssl_context(),
            mechanism=security.mechanism)}
    return {"broker_credentials": security.ssl_context()}


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


async def _warm_metadata(producer: AIOKafkaProducer, names: list[str]) -> None:
    """Fetch every output topic's metadata before the first batch.  Measured: a first
    send to a topic the producer has not seen waits for a metadata round trip, one topic
    after another, and the first batches that opened orders for many departments spent
    2-3 s in flush."""
    async def one(name: str) -> None:
        try:
            await asyncio.wait_for(producer.partitions_for(name), 10)
        except Exception as e:  # noqa: BLE001 - a missing topic fails later with a clear error
            log.warning("主题元数据 no metadata for topic %s yet: %r", name, e)
    await asyncio.gather(*(one(n) for n in names))


class StageProducers:
    """The stages' producers, all alike but for their transactional id
    (``HOT_PATH_PRODUCER``).  Measured: aiokafka keeps one produce request in flight per
    broker and producer, so stages never share one."""

    def __init__(self, bootstrap: str, client_id: str, warm: list[str]):
        self.bootstrap, self.client_id, self.warm = bootstrap, client_id, warm

    def __call__(self, transactional_id: str | None) -> AIOKafkaProducer:
        # retry_backoff_ms: a transaction begun right after the last one's commit is
        # answered CONCURRENT_TRANSACTIONS while the commit markers are written, and
        # aiokafka waits the retry backoff (100 ms by default) before asking again — the
        # Java client retries that case after 20 ms.
        producer = kafka_producer(bootstrap_servers=self.bootstrap, **HOT_PATH_PRODUCER,
                                    max_request_size=4 * 1024 * 1024,
                                    transactional_id=transactional_id,
                                    retry_backoff_ms=10 if transactional_id else 100,
                                    client_id=transactional_id or self.client_id)
        start = producer.start

        async def start_warm() -> None:
            await start()
            await _warm_metadata(producer, self.warm)
        producer.start = start_warm
        return producer


_FAUST_METRICS = None


def _faust_metrics():
    """Created once per process (the prometheus registry refuses a second set)."""
    global _FAUST_METRICS
    if _FAUST_METRICS is None:
        _FAUST_METRICS = FaustMetrics.create(REGISTRY, "citybrain_faust")
    return _FAUST_METRICS


def create_app(config: Config, bootstrap: str, data_dir: Path, phases: StartupPhases | None = None) -> faust.App:
    s = config.settings
    topics = Topics(s.kafka.topic_prefix)
    gid = group_id(config)
    app = faust.App(
        gid,
        broker=_broker_urls(bootstrap),
        store="memory://",
        datadir=str(data_dir),
        web_host=s.worker.web_host,
        web_bind=s.worker.web_host,
        web_port=s.worker.web_port,
        web_in_thread=False,
        topic_partitions=s.kafka.partitions,
        topic_replication_factor=config.topic_retention.replication.factor,
        consumer_auto_offset_reset="earliest",  # a new group must not skip input
        key_serializer="raw",
        value_serializer="raw",
        producer_linger_ms=1,
        web_application_options={"client_max_size": MAX_BODY},
        broker_session_timeout=s.worker.session_timeout_seconds,
        broker_heartbeat_interval=s.worker.heartbeat_interval_seconds,
        # Faust's own consumer (the command routing) a static member as the stages' are:
        # after a SIGKILL its group join no longer waits out the dead member's session,
        # and the order views and /readyz (app tasks, started once it joined) follow.
        consumer_group_instance_id=worker_instance_id(s.worker),
        # Faust's clients learn of moved leaders as every other client does (kafka/clients.py):
        # with Faust's 5 minutes a command sent after a node hung kept going to that node.
        # Their request timeouts stay Faust's: its producer's is also when a batch expires,
        # and a command must be retried through an outage, not dropped.
        producer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        **_faust_security(security()),   # TLS / SASL, as every other client
    )
    # Faust's own consumer and producer (the command routing) measured beside ours, in
    # the same registry: citybrain_faust_consumer_commit_latency, …_total_rebalances,
    # …_topic_partition_end_offset / _offset_commited (lag), …
    app.monitor = PrometheusMonitor(metrics=_faust_metrics())
    # The hot path (registry, warnings, stages) starts beside Faust, not behind it (stream/early.py).
    early = start_early(app)
    phases = phases or StartupPhases()
    if s.worker.leave_group_on_stop:
        @early.at_stop
        async def leave_faust_group() -> None:   # a static member sends no LeaveGroup (kafka/groups.py)
            await leave_group(bootstrap, gid, worker_instance_id(s.worker))
    dead_log = DeadLetterLog()
    keep = s.ingest.max_record_bytes

    dead_letter_registry = dead_letter_sender(app, topics.deadletter, "registry", keep,
                                              s.ingest.dead_letter_original, dead_log)

    # With local state (rocksdb://) a restart reads the registry's local copy and the topic's tail.
    registry = RegistryCache(bootstrap, topics.registry, max_record_bytes=keep,
                             copy=RegistryCopy(data_dir) if s.worker.store == "rocksdb://" else None)
    registry_dead = RegistryDeadLetters(bootstrap, topics.registry, f"{gid}-registry-deadletters",
                                        dead_letter_registry, max_record_bytes=keep)
    normalizer = Normalizer(
        taxonomy=config.taxonomy, sensor_rules=config.sensor_rules,
        video_thresholds=config.video_thresholds, city=config.city_map,
        registry=registry.get,
        limits=IngestLimits(s.ingest.max_record_bytes, s.ingest.max_future_seconds,
                            dead_letter_original=s.ingest.dead_letter_original,
                            keep_extra_fields=frozenset(s.ingest.keep_extra_fields)),
        gazetteer=config.gazetteer,
        pseudonym=reporter_pseudonymiser(config, "worker"),
    )
    broker = BrokerWatch(bootstrap)
    metrics.prime()
    # 区域预警: every worker reads ingest.warnings whole; its dead letters once (stream/area_warnings.py).
    warning_feed = warning_stream.install(app, config, topics, bootstrap, gid, dead_log, early)
    stages: list[Stage] = []   # the ones this process hosts (worker.stages)
    collab = collaborators(config, warnings=warning_feed.book)   # what the stages work with, not Config
    if "normalise" in s.worker.stages:
        stages.append(NormaliseStage(collab, topics, normalizer, gid, dead_log,
                                     registry=lambda: registry.devices.values()))
    if "fuse" in s.worker.stages:
        stages.append(FuseStage(collab, topics, gid))
        # The command routing feeds the fuse stage's inbox: hosted where that stage is.
        stages.append(CommandStage(topics, gid, keep_bytes=keep, keep_original=s.ingest.dead_letter_original))

    @early.task
    async def load_registry() -> None:
        await registry.run()

    @app.task
    async def registry_dead_letters() -> None:
        await registry_dead.run()

    # The console's read models and API (stream/console.py), unless this is a stage process.
    views = (install_console(app, config, topics, bootstrap, data_dir, gid, lambda: registry.devices.values(),
                             warning_feed) if s.worker.console else None)
    if views is None:
        refer_to_console(app.web.web_app)  # type: ignore[attr-defined]  # faust's aiohttp driver

    @app.task
    async def calendar_check() -> None:
        today = datetime.now(UTC).date()
        for year in sorted({today.year, (today + timedelta(days=60)).year}):
            if not config.deadlines.calendar.covers(date(year, 1, 1)):
                log.warning("工作日历缺少 %d 年节假日数据 the working calendar has no holiday file for %d: "
                            "working-hour limits count plain weekdays; add config/calendar/cn-%d.toml",
                            year, year, year)

    @app.task
    async def watch_event_loop() -> None:
        """The event loop's lag: how late a 10 ms sleep wakes (citybrain_event_loop_lag_seconds)."""
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            metrics.LOOP_LAG.observe(max(0.0, time.perf_counter() - t0 - 0.01))

    @app.task
    async def watch_broker() -> None:
        await broker.run()

    @app.task
    async def task_dump_on_sigusr1() -> None:
        """`kill -USR1 <pid>`: every asyncio task's stack in the log — for a stage that
        seems stuck, at 3 a.m., without stopping it."""
        def dump() -> None:
            out = io.StringIO()
            for task in asyncio.all_tasks():
                out.write(f"{task.get_name()}:\n")
                coro: Any = task.get_coro()
                while coro is not None:   # the whole await chain, not only the outer frame
                    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                    if frame is not None:
                        out.write(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
                    coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            log.warning("任务栈 asyncio tasks (SIGUSR1):\n%s", out.getvalue())
            if tracemalloc.is_tracing():   # started with PYTHONTRACEMALLOC=1: where memory is held
                top = tracemalloc.take_snapshot().statistics("lineno")[:15]
                log.warning("内存 largest allocations (SIGUSR1, tracemalloc):\n%s", "\n".join(map(str, top)))
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)

    @early.task
    async def run_stages() -> None:
        began = time.time()
        await registry.loaded.wait()  # never judge a device unknown while the registry loads
        phases.done("registry", since=began)
        await warning_feed.loaded.wait()   # nor open an order as if no warning held
        phases.done("warnings", since=began)
        outputs = [t.name for t in topic_specs(config, topics)]   # incl. the changelogs
        settings = RunnerSettings(
            bootstrap, guarantee=s.worker.processing_guarantee, deadletter_topic=topics.deadletter,
            max_output_bytes=s.ingest.max_output_bytes, keep_original_bytes=keep,
            keep_original=s.ingest.dead_letter_original,
            session_timeout_ms=int(s.worker.session_timeout_seconds * 1000),
            heartbeat_ms=int(s.worker.heartbeat_interval_seconds * 1000),
            group_instance_id=worker_instance_id(s.worker), leave_group_on_stop=s.worker.leave_group_on_stop,
            store_dir=data_dir / "stage-state" if s.worker.store == "rocksdb://" else None)
        runners = [stage_runner(st, settings, StageProducers(bootstrap, f"{gid}-{st.name}", outputs))
                   for st in stages]
        broker.on_back.extend(r.broker_back for r in runners)   # a stage backing off retries at once
        log.info("处理保证 processing guarantee: %s; 本进程阶段 stages hosted here: %s",
                 s.worker.processing_guarantee, ", ".join(st.name for st in stages) or "无 none (a console process)")
        # The city map, registry, configuration and libraries live as long as the worker:
        # out of the collector's sight, a full collection no longer walks them (measured:
        # ~30 ms per gen-2 pass over them alone — a dispatch-latency tail).
        gc.collect()
        gc.freeze()
        # Young passes short enough not to be a tail: the hot path's young objects die by
        # reference count, so a pass finds little whatever its size, but it walks all of
        # them.  Measured: 700 → 10,000 cut 610 passes (190 ms in all) to 22 at 2,000/s,
        # but each took 4–7 ms and a gen-1 pass ~50 ms; 2,000 (two alternating pairs at
        # 1,000/s): 60 passes ~1.4 ms, gen-1 ~6 ms, ours p99 25.3/29.7 → 18.1/17.7 ms
        # (docs/performance.md).
        gc.set_threshold(2_000, 20, 20)
        metrics.watch_gc()   # the pauses that remain, measured (citybrain_gc_pause_seconds)
        try:
            # A stage that fails for good (it retries every broker fault in place) takes
            # its siblings down with it, cleanly: the worker stops rather than run half.
            async with asyncio.TaskGroup() as group:
                started = time.time()
                for r in runners:
                    group.create_task(r.run(), name=f"stage-{r.stage.name}")
                    group.create_task(when_set(r.stage.ready, partial(phases.done, f"stage.{r.stage.name}",
                                                                       since=started)))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("批处理阶段失败 a batch stage failed for good; stopping the worker")
            raise

    def readiness() -> dict:
        stage_ready = {st.name: st.ready.is_set() for st in stages}
        view_caught_up = views.caught_up() if views is not None else None   # None: no console here
        ready = (registry.loaded.is_set() and all(stage_ready.values()) and (views is None or view_caught_up)
                 and broker.up)
        return {"ready": ready, "broker_up": broker.up, "registry_loaded": registry.loaded.is_set(),
                "order_view_caught_up": view_caught_up,
                "registry_devices": len(registry.devices), "stages": stage_ready}

    @early.task
    async def ready_at() -> None:   # the start's last phase: /readyz says 200 from here
        began = time.time()
        while not readiness()["ready"]:
            await asyncio.sleep(0.05)
        phases.done("ready", since=began)

    @app.page("/metrics")
    async def metrics_page(web, request):
        metrics.WORKER_READY.set(1 if readiness()["ready"] else 0)   # the alert's "not ready"
        warning_feed.export()   # 区域预警 holding now (they end by themselves)
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web, request):
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web, request):
        body = readiness()
        return web.json(body, status=200 if body["ready"] else 503)

    return app
