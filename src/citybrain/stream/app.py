"""The Faust app: a thin shell moving records into the domain core and out.

Agents:
- ``normalize_iot``     ingest.iot.readings → events.normalized (+ fusion inbox) | deadletter
  (per-device alarm state in the ``sensor_state`` table, co-partitioned by device_id)
- ``normalize_video``   ingest.video.alerts → events.normalized (+ fusion inbox) | deadletter
- ``normalize_reports`` ingest.reports      → events.normalized (+ fusion inbox) | deadletter
- ``fuse_and_dispatch`` fusion inbox → workorders.events, dispatch.<department>
  (see stream/dispatch.py)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic_core import to_json

from citybrain import metrics
from citybrain.config import Config
from citybrain.domain.normalize import IngestLimits, Normalizer, RecordMeta, Result, dead_letter
from citybrain.kafka.topics import Topics
from citybrain.stream import dispatch
from citybrain.stream.device_states import DeviceStates
from citybrain.stream.registry import RegistryCache

log = logging.getLogger("citybrain.worker")


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


def _meta(event) -> RecordMeta:
    m = event.message
    return RecordMeta(topic=m.topic, partition=m.partition, offset=m.offset,
                      timestamp=m.timestamp, key=m.key)


class DeadLetterLog:
    """One log line per reason every 10 s at most, with the count: readable at 3 a.m."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self.last: dict[str, float] = {}
        self.pending: dict[str, int] = {}

    def note(self, source: str, reason: str, detail: str) -> None:
        key = f"{source}/{reason}"
        self.pending[key] = self.pending.get(key, 0) + 1
        now = time.monotonic()
        if now - self.last.get(key, 0.0) >= self.every:
            n = self.pending.pop(key)
            self.last[key] = now
            log.warning("死信 dead letter %s ×%d (e.g. %s)", key, n, detail)


def create_app(config: Config, bootstrap: str, data_dir: Path) -> faust.App:
    s = config.settings
    topics = Topics(s.kafka.topic_prefix)
    app = faust.App(
        f"{s.kafka.topic_prefix}{s.worker.app_id}",
        broker=_broker_urls(bootstrap),
        store=s.worker.store,
        datadir=str(data_dir),
        web_host=s.worker.web_host,
        web_bind=s.worker.web_host,
        web_port=s.worker.web_port,
        web_in_thread=False,
        topic_partitions=s.kafka.partitions,
        topic_replication_factor=s.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",  # a new group must not skip input
        key_serializer="raw",
        value_serializer="raw",
        producer_linger_ms=1,
        broker_session_timeout=s.worker.session_timeout_seconds,
        broker_heartbeat_interval=s.worker.heartbeat_interval_seconds,
    )

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    t_iot, t_video, t_reports = raw_topic(topics.iot), raw_topic(topics.video), raw_topic(topics.reports)

    dead_log = DeadLetterLog()

    async def emit(topic: str, key: bytes | None, value: bytes) -> None:
        # Straight to the app's producer: Faust's Topic.send machinery costs several
        # times more per record.  At-least-once still holds, since Faust flushes this
        # producer before it commits any offset.
        await app.producer.send(topic, key, value, partition=None, timestamp=None, headers=None)

    async def on_bad_registry(msg, detail: str, field: str | None) -> None:
        meta = RecordMeta(msg.topic, msg.partition, msg.offset, msg.timestamp / 1000.0, msg.key)
        dead = dead_letter("registry", msg.value, meta, "invalid_field", detail, field)
        dead_log.note("registry", "invalid_field", detail)
        await emit(topics.deadletter, msg.key, to_json(dead))

    router = config.router
    registry = RegistryCache(bootstrap, topics.registry, on_bad_registry)
    normalizer = Normalizer(
        taxonomy=config.taxonomy, sensor_rules=config.sensor_rules,
        video_thresholds=config.video_thresholds, city=config.city_map,
        registry=registry.get,
        limits=IngestLimits(s.ingest.max_record_bytes, s.ingest.max_future_seconds),
    )
    metrics.prime()

    sensor_state = app.Table(
        "sensor_state", default=None, partitions=s.kafka.partitions,
        schema=faust.Schema(key_type=str, value_type=dict, key_serializer="json",
                            value_serializer="json"),
        help="per-device alarm state (event time)")

    device_states = DeviceStates(sensor_state)

    @app.on_partitions_revoked.connect
    async def _forget_device_states(app, revoked, **kwargs) -> None:
        device_states.forget()

    async def publish(source: str, result: Result, meta: RecordMeta) -> None:
        metrics.count_outcome(source, result.outcome, result.reason)
        if result.event is not None:
            ev = result.event
            metrics.EVENTS.labels(source, ev.kind, ev.category).inc()
            body = to_json(ev)
            await emit(topics.events, ev.location.street_code.encode(), body)
            # Straight on to fusion, keyed by fusion group (one hop less on the hot path
            # than re-reading events.normalized).
            await emit(topics.fusion_inbox, router.group(ev.category).encode(), body)
        elif result.dead is not None:
            dead_log.note(source, result.dead.reason, result.dead.detail)
            await emit(topics.deadletter, meta.key, to_json(result.dead))

    @app.task
    async def load_registry() -> None:
        await registry.run()

    @app.agent(t_iot, name="normalize_iot")
    async def normalize_iot(stream):
        await registry.loaded.wait()
        async for event in stream.events():
            meta = _meta(event)
            result = normalizer.reading(event.value, meta, device_states.get)
            if result.state is not None:
                device_states.put(meta.partition, result.state_key, result.state)
            device_states.maybe_flush(meta.partition)
            await publish("iot", result, meta)

    @app.agent(t_video, name="normalize_video")
    async def normalize_video(stream):
        await registry.loaded.wait()
        async for event in stream.events():
            meta = _meta(event)
            await publish("video", normalizer.video(event.value, meta), meta)

    @app.agent(t_reports, name="normalize_reports")
    async def normalize_reports(stream):
        await registry.loaded.wait()
        async for event in stream.events():
            meta = _meta(event)
            await publish("report", normalizer.report(event.value, meta), meta)

    app.citybrain_orders = dispatch.install(app, config, topics, s.kafka.partitions, emit)

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web, request):
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web, request):
        ready = registry.loaded.is_set() and not app.rebalancing
        body = {"ready": ready, "registry_loaded": registry.loaded.is_set(),
                "registry_devices": len(registry.devices), "rebalancing": app.rebalancing}
        return web.json(body, status=200 if ready else 503)

    app.citybrain_registry = registry  # for tests and the CLI
    return app
