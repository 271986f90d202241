"""区域预警 in the worker: every worker's copy of the compacted ``ingest.warnings`` (read
whole, no group, like the registry), its dead letters written once (a group of their own,
``<group>-warning-deadletters``), and the fuse stage's sweep that escalates the open
orders a warning meets when it starts to hold (or is raised).  The decisions are
domain/area_warnings.py's.

The sweep runs in the fuse stage's tick (every ``tick_seconds``): for each partition held
and each warning holding now that escalates open orders, once per (warning, its latest
record, the partition's assignment), the partition's open orders of the warning's
categories are looked at; ``escalate_open`` gives nothing for an order the warning raised
already, so a restart or a new owner sweeping again changes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from citybrain import metrics
from citybrain.config import Config
from citybrain.domain.area_warnings import (
    AreaShapes,
    Start,
    WarningBook,
    WarningEntry,
    escalate_open,
    internal_error,
    read_warning_record,
)
from citybrain.kafka.topics import Topics
from citybrain.stream.logreader import TopicReader
from citybrain.stream.output import Output
from citybrain.stream.registry import RegistryDeadLetters, dead_letter_sender
from citybrain.wire.enums import WARNING_LEVELS
from citybrain.wire.models import Location

if TYPE_CHECKING:
    from citybrain.stream.fuse_stage import FuseStage

log = logging.getLogger("citybrain.warnings")


class CountingBook(WarningBook):
    """The worker's book: a new order that starts under a warning counts once, for the
    warning whose level it takes (``AREA_WARNING_ORDERS`` way=new)."""

    def start(self, category: str, location: Location, at: datetime) -> Start | None:
        found = super().start(category, location, at)
        if found is not None:
            top = max((self.warnings[w] for w, level in found.levels.items() if level == found.level),
                      key=lambda w: w.warning_id)
            metrics.inc(metrics.AREA_WARNING_ORDERS, top.record.kind, "new")
        return found


class WarningFeed:
    """Every worker's copy of ``ingest.warnings``; ``loaded`` once read to the end seen at start."""

    def __init__(self, config: Config, bootstrap: str, topic: str, max_record_bytes: int = 65536):
        self.shapes = AreaShapes(config.city_map)
        self.book = CountingBook(config.warnings)
        self.bootstrap, self.topic, self.max_record_bytes = bootstrap, topic, max_record_bytes
        self.loaded = asyncio.Event()
        # The configured kinds' series at 0 from the start: the dashboard and the alert see
        # them, and a counter's first order is an increase, not its first sample.
        self.exported: set[tuple[str, str]] = {(k, lv) for k in config.warnings.kind for lv in WARNING_LEVELS}
        for kind in config.warnings.kind:
            for way in ("new", "open"):
                metrics.AREA_WARNING_ORDERS.labels(kind, way)
        self.export()

    def export(self, now: datetime | None = None) -> None:
        """``AREA_WARNINGS_ACTIVE`` as the book holds at ``now`` (at each scrape: a warning
        ends by itself at valid_to, with no record to say so)."""
        counts: dict[tuple[str, str], int] = {}
        for w in self.book.holding(now or datetime.now(UTC)):
            key = (w.record.kind, w.level)
            counts[key] = counts.get(key, 0) + 1
        self.exported |= set(counts)
        for kind, level in self.exported:
            metrics.AREA_WARNINGS_ACTIVE.labels(kind, level).set(counts.get((kind, level), 0))

    def judge(self, msg: Any) -> WarningEntry:
        try:
            return read_warning_record(msg.key, msg.value, self.max_record_bytes, self.shapes)
        except Exception as e:  # noqa: BLE001 - one record never stops a reader
            log.exception("预警记录内部错误 internal error on warning record %s[%d]@%d", msg.topic, msg.partition,
                          msg.offset)
            return internal_error(msg.key, e)

    def apply(self, records: list) -> None:
        for msg in records:
            entry = self.judge(msg)
            before = self.book.apply(entry)
            if entry.warning is not None:
                w = entry.warning
                log.info("区域预警 area warning %s: %s, %s → %s%s", w.warning_id, w.label(),
                         w.record.valid_from.isoformat(), w.record.valid_to.isoformat(),
                         " (已撤销 cancelled)" if w.record.cancelled else "")
            elif entry.dead and before is not None:
                log.warning("预警记录不可用 %s withdrawn: its latest record (%s[%d]@%d) is a dead letter (%s: %s)",
                            entry.key, msg.topic, msg.partition, msg.offset, entry.reason, entry.detail[:200])

    def _loaded(self) -> None:
        self.loaded.set()
        log.info("区域预警已加载 area warnings loaded: %d from %s", len(self.book.warnings), self.topic)

    async def run(self) -> None:
        # The city's outline, which a polygon warning must touch, made off the event loop
        # (measured ~0.27 s: the union of every grid), before the first record needs it.
        await asyncio.to_thread(self.shapes.city_outline)
        await TopicReader(self.bootstrap, self.topic, self.apply, "warnings", self._loaded).run()


def install(app: Any, config: Config, topics: Topics, bootstrap: str, group: str, dead_log: Any,
            early: Any = None) -> WarningFeed:
    """The feed's reader and its dead-letter duty as tasks of the Faust app; the reader as
    one of ``early``'s (stream/early.py) when given: the fuse stage waits for it."""
    s = config.settings
    keep = s.ingest.max_record_bytes
    feed = WarningFeed(config, bootstrap, topics.warnings, keep)

    send_dead = dead_letter_sender(app, topics.deadletter, "warning", keep, s.ingest.dead_letter_original, dead_log)
    duty = RegistryDeadLetters(bootstrap, topics.warnings, f"{group}-warning-deadletters", send_dead,
                               max_record_bytes=keep, verdict=feed.judge, name="warning")

    @(early or app).task
    async def read_warnings() -> None:
        await feed.run()

    @app.task
    async def warning_dead_letters() -> None:
        await duty.run()

    return feed


class WarningSweep:
    """The fuse stage's side of it: per partition assignment, the orders each warning record
    still has to look at.  At most ``budget`` orders a tick: measured, escalating one costs
    ~0.9 ms (its changes, snapshot, timeline, emergency assist; 495 of 849 open orders in
    458 ms), so a red warning over a district would otherwise hold the fuse stage's loop
    for as long in one go."""

    def __init__(self, budget: int = 100) -> None:
        self.budget = budget
        # partition → (the FusionIndex of its assignment, warning record → ids still to look at)
        self.todo: dict[int, tuple[object, dict[str, list[str]]]] = {}

    def run(self, stage: FuseStage, book: WarningBook, now: datetime) -> list[Output]:
        for partition in set(self.todo) - set(stage.indexes):
            del self.todo[partition]
        escalating = book.escalating(now)
        if not escalating:
            return []
        keys = [w.record.model_dump_json() for w, _ in escalating]   # its latest record: an amendment is new
        out: list[Output] = []
        left = self.budget
        for partition, index in list(stage.indexes.items()):
            held, todo = self.todo.get(partition, (None, {}))
            if held is not index:            # a new assignment of the partition: sweep it again
                todo = {}
                self.todo[partition] = (index, todo)
            for gone in set(todo) - set(keys):   # ended, or amended since
                del todo[gone]
            for (warning, rule), key in zip(escalating, keys, strict=True):
                ids = todo.get(key)
                if ids is None:
                    ids = todo[key] = [o.work_order_id for o in index.orders.values()
                                       if o.category in rule.categories]
                raised = 0
                while ids and left > 0:
                    wo = ids.pop()
                    left -= 1
                    held = stage.open_held(partition, wo)
                    if held is None:
                        continue
                    record, order = held
                    changes = escalate_open(order, warning, rule, stage.rules.escalator.follow, now)
                    if not changes:
                        continue
                    mine: list[Output] = []
                    stage.store(partition, record, stage.publish_all(changes, order, mine, record), mine)
                    out += stage.of_partition(partition, mine)
                    raised += 1
                    metrics.inc(metrics.AREA_WARNING_ORDERS, warning.record.kind, "open")
                if raised:
                    log.info("区域预警升级 area warning %s raised %d open orders in partition %d%s",
                             warning.label(), raised, partition, f" ({len(ids)} to look at next)" if ids else "")
        return out
