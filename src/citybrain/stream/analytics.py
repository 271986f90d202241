"""The 研判 windows and 高发 hotspots as stream jobs (DESIGN §15): every worker folds the whole of
``workorders.events`` (no consumer group, like the evaluation) with domain/aggregates.py
into its window store (readmodels/windows.py, SQLite, a year), and one worker publishes
the windows that changed on the compacted ``analytics.windows``.

Why not a batch stage in a consumer group: a window (category × district × street) sums
orders of every partition — orders are keyed by id — so a stage's member would hold only
partial counts and need a second, repartitioned stage to add them up. Every worker
already reads the whole log for the evaluation; reading it once more off the hot path
gives each worker complete windows (its API answers from them) for no stage work.

Who publishes: the member of group ``<group>-analytics`` (on ``analytics.windows``) that
is assigned its partition 0 — one at a time, another when it goes. It sends every window
its store marks changed and not yet published by it (all of them on taking over, so a
new publisher catches up what the last one may not have sent). Values are whole counts,
not deltas: a record sent twice, or by two workers during a rebalance, says the same.

The same publisher writes 高发 hotspots on ``analytics.hotspots`` (``HotspotPublisher``),
found over the worker's history store every ``hotspot_seconds``.

Parsing and folding run in a thread with the SQLite writes, so the event loop (the hot
path's stages share it) only awaits them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faust
import orjson
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from citybrain.domain.aggregates import Aggregates, key_text
from citybrain.domain.analytics import AnalyticsConfig
from citybrain.domain.hotspots import HotspotConfig, Point, find_all
from citybrain.kafka.admin import partitions_of
from citybrain.kafka.clients import kafka_consumer, kafka_producer
from citybrain.kafka.reading import read_until, seek_to_first
from citybrain.kafka.topics import Topics
from citybrain.readmodels.history import HistoryStore
from citybrain.readmodels.windows import WindowStore, row_dict
from citybrain.stream.logreader import TopicReader

log = logging.getLogger("citybrain.analytics")
_SKIPPABLE = (orjson.JSONDecodeError, KeyError, TypeError, ValueError)
FILE_NAME = "analytics.sqlite3"
PUBLISH_CHUNK = 5000


def window_record(row: tuple) -> tuple[bytes, bytes]:
    """A store row → (key, value) on ``analytics.windows``."""
    item = row_dict(row)
    return key_text(tuple(row[:5])).encode(), orjson.dumps(item)


class HotspotPublisher:
    """高发 on ``analytics.hotspots`` (compacted, key hotspot_id): the hotspots found over the
    history store (domain/hotspots.py), each written when it appears or changes, a tombstone
    when it is found no more. What the topic holds is read back when this worker takes the
    publishing over, so a hotspot that ended meanwhile gets its tombstone too."""

    def __init__(self, bootstrap: str, topic: str, store: HistoryStore | None, config: HotspotConfig,
                 timezone: str):
        self.bootstrap, self.topic, self.store, self.config, self.timezone = bootstrap, topic, store, config, timezone
        self.sent: dict[str, bytes] | None = None    # hotspot_id → the record on the topic; None: not read yet

    def current(self, now: float) -> dict[str, bytes]:
        if self.store is None:
            return {}
        longest = max([self.config.default.days, *(r.days for r in self.config.categories.values())])
        by_category: dict[str, list[Point]] = {}
        for wo, category, lon, lat, created, street in self.store.points(now - longest * 86400):
            by_category.setdefault(category, []).append(Point(wo, lon, lat, created, street or ""))
        return {h.hotspot_id: orjson.dumps(h.record(self.timezone)) for h in find_all(by_category, self.config, now)}

    async def read_topic(self) -> dict[str, bytes]:
        consumer = kafka_consumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                  client_id="citybrain-analytics-hotspots")
        await consumer.start()
        held: dict[str, bytes] = {}

        def take(_tp, records) -> None:
            for m in records:
                if m.key is None:
                    continue
                if m.value is None:
                    held.pop(m.key.decode(), None)
                else:
                    held[m.key.decode()] = m.value
        try:
            tps = [TopicPartition(self.topic, p) for p in await partitions_of(self.bootstrap, self.topic)]
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            await seek_to_first(consumer, tps)
            await read_until(consumer, end, take)
        finally:
            await consumer.stop()
        return held

    async def publish(self, producer: AIOKafkaProducer) -> int:
        """The hotspots that appeared, changed or ended since the last call; returns how many."""
        if self.sent is None:
            self.sent = await self.read_topic()
        now = await asyncio.to_thread(self.current, time.time())
        changes: dict[str, bytes | None] = {k: v for k, v in now.items() if self.sent.get(k) != v}
        changes.update({k: None for k in self.sent if k not in now})
        sends = [await producer.send(self.topic, v, key=k.encode()) for k, v in sorted(changes.items())]
        await asyncio.gather(*sends)
        self.sent = now
        if changes:
            log.info("高发发布 hotspots published: %d new or changed, %d ended (%d now)",
                     sum(v is not None for v in changes.values()), sum(v is None for v in changes.values()), len(now))
        return len(changes)


class WindowsFeed:
    def __init__(self, bootstrap: str, topics: Topics, group: str, data_dir: Path, config: AnalyticsConfig,
                 history: HistoryStore | None = None):
        data_dir.mkdir(parents=True, exist_ok=True)
        settings = config.windows
        events_topic = topics.workorder_events
        self.bootstrap, self.windows_topic, self.group, self.settings = (bootstrap, topics.analytics_windows,
                                                                         group, settings)
        self.hotspots = HotspotPublisher(bootstrap, topics.analytics_hotspots, history, config.hotspots,
                                         settings.timezone)
        self.store = WindowStore(data_dir / FILE_NAME)
        self.fold = Aggregates(settings.timezone, settings.keep_ended_days)
        self.fold.restore(*self.store.dedupe_entries())
        self.reader = TopicReader(bootstrap, events_topic, self._fold, "analytics-windows",
                                  start_offsets=self.store.positions, on_start_rejected=self._start_over)
        self.publishing = False     # this worker holds partition 0 of the publishers' group
        self.history_caught_up: Callable[[], bool] = lambda: history is not None   # set by the worker
        self.published = 0

    # -- folding -------------------------------------------------------------------

    def _apply(self, records) -> None:
        positions: dict[int, int] = {}
        for m in records:
            positions[m.partition] = m.offset + 1
            if m.value is None:
                continue
            try:
                self.fold.add(orjson.loads(m.value))
            except _SKIPPABLE as e:
                log.warning("研判跳过 record skipped %s@%d/%d: %r", m.topic, m.partition, m.offset, e)
        deltas, dedupe, forgotten = self.fold.drain()
        self.store.apply(deltas, dedupe, forgotten, positions, self.fold.latest_day)

    async def _fold(self, records) -> None:
        await asyncio.to_thread(self._apply, records)

    def _start_over(self) -> None:
        log.warning("研判窗口不符 the window store is ahead of %s (a re-created topic?): rebuilding it",
                    self.reader.topic)
        self.store.clear()
        self.fold.restore([], 0)

    def caught_up(self) -> bool:
        return self.reader.caught_up.is_set()

    async def run(self) -> None:
        await self.reader.run()

    # -- publishing ----------------------------------------------------------------

    def _publish_batch(self) -> list[tuple]:
        return self.store.dirty(PUBLISH_CHUNK)

    async def publish(self) -> None:
        """Elected by the publishers' group; while elected and caught up, every
        ``publish_seconds`` the changed windows go out."""
        feed = self

        class Elected(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                if any(tp.partition == 0 for tp in revoked):
                    feed.publishing = False
                    feed.hotspots.sent = None   # read the topic again if it comes back

            async def on_partitions_assigned(self, assigned):
                if any(tp.partition == 0 for tp in assigned):
                    feed.publishing = True
                    log.info("研判发布 this worker publishes %s", feed.windows_topic)

        consumer = kafka_consumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                  enable_auto_commit=False, auto_offset_reset="latest",
                                  client_id="citybrain-analytics-publisher")
        producer = kafka_producer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                  client_id="citybrain-analytics-windows")
        await consumer.start()
        await producer.start()
        consumer.subscribe([self.windows_topic], listener=Elected())
        last = last_hotspots = 0.0
        try:
            while True:
                await consumer.getmany(timeout_ms=500, max_records=100)   # stays in the group; read nothing of use
                if not (self.publishing and self.caught_up()) or time.monotonic() - last < self.settings.publish_seconds:
                    continue
                last = time.monotonic()
                try:
                    if last - last_hotspots >= self.settings.hotspot_seconds and self.history_caught_up():
                        last_hotspots = last
                        await self.hotspots.publish(producer)
                    await self._publish_windows(producer)
                except KafkaError as e:   # the broker away: what was not sent stays dirty for the next round
                    log.warning("研判发布失败 publishing analytics failed (retried in %g s): %r",
                                self.settings.publish_seconds, e)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _publish_windows(self, producer: AIOKafkaProducer) -> None:
        while self.publishing:
            rows = await asyncio.to_thread(self._publish_batch)
            if not rows:
                return
            sends = [await producer.send(self.windows_topic, value, key=key) for key, value in map(window_record, rows)]
            await asyncio.gather(*sends)
            await asyncio.to_thread(self.store.published, rows)   # only once the broker has them all
            self.published += len(rows)

    async def prune(self) -> int:
        """Windows older than ``keep_days`` leave the store."""
        before = (datetime.now(UTC) - timedelta(days=self.settings.keep_days)).timestamp()
        gone = await asyncio.to_thread(self.store.prune, before)
        if gone:
            log.info("研判窗口 forgot %d windows older than %d days", gone, self.settings.keep_days)
        return gone


    def install(self, app: faust.App) -> None:
        """The reader, the publisher and the year's trim as the worker's tasks (none when
        ``[windows] enabled = false``)."""
        if not self.settings.enabled:
            log.info("研判窗口已关闭 analytics windows disabled ([windows] enabled = false)")
            return

        @app.task
        async def read_analytics_windows() -> None:
            await self.run()

        @app.task
        async def publish_analytics_windows() -> None:
            await self.publish()

        @app.timer(interval=3600.0)
        async def prune_analytics_windows() -> None:
            await self.prune()
