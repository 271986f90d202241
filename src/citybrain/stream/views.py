"""Every worker's whole-log views: the order view behind the API and console, and the
evaluation figures.  Each worker reads all of ``workorders.events`` and
``workorders.rejected`` (no consumer group), so any worker answers for any order."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import faust
import orjson

from citybrain import metrics
from citybrain.config import Config
from citybrain.domain.evaluation import STAGES, Evaluation
from citybrain.kafka.topics import Topics
from citybrain.stream.logreader import TopicReader
from citybrain.web.view import OrderView

log = logging.getLogger("citybrain.views")
_SKIPPABLE = (orjson.JSONDecodeError, KeyError, TypeError, ValueError)


class OrderLogViews:
    def __init__(self, config: Config, topics: Topics, bootstrap: str):
        self.config = config
        self.evaluation = Evaluation(config.lifecycle.calendar.timezone)
        self.view = OrderView()
        self.order_log = TopicReader(bootstrap, topics.workorder_events, self._fold, "order-log")
        self.rejection_log = TopicReader(bootstrap, topics.rejected, self._fold_rejections, "rejection-log")

    def caught_up(self) -> bool:
        return self.order_log.caught_up.is_set() and self.rejection_log.caught_up.is_set()

    def _fold(self, records) -> None:
        for m in records:
            try:
                change = orjson.loads(m.value)
                self.evaluation.add(change)
                self.view.add_change(change, m.value)
            except _SKIPPABLE as e:
                log.warning("工单日志跳过 work-order log record skipped %s@%d/%d: %r", m.topic, m.partition,
                            m.offset, e)

    def _fold_rejections(self, records) -> None:
        for m in records:
            try:
                self.view.add_rejection(orjson.loads(m.value))
            except _SKIPPABLE as e:
                log.warning("拒绝日志跳过 rejection skipped %s@%d/%d: %r", m.topic, m.partition, m.offset, e)

    def install(self, app: faust.App) -> None:
        """The readers as tasks, and the view's and the evaluation's upkeep as timers."""
        retention = self.config.settings.console.closed_retention_days

        @app.task
        async def read_order_log() -> None:
            await self.order_log.run()

        @app.task
        async def read_rejections() -> None:
            await self.rejection_log.run()

        @app.timer(interval=2.0)
        async def compact_view() -> None:
            self.view.compact()

        @app.timer(interval=600.0)
        async def evict_old_closed() -> None:
            gone = self.view.evict_closed((datetime.now(UTC) - timedelta(days=retention)).isoformat())
            if gone:
                log.info("控制台视图 order view: forgot %d orders closed more than %g days ago", gone, retention)

        @app.timer(interval=self.config.lifecycle.timers.evaluation_seconds)
        async def export_evaluation() -> None:
            export_figures(self.evaluation.figures(self.evaluation.period_of(datetime.now(UTC))))


def export_figures(figures: dict[str, dict]) -> None:
    """This month's evaluation figures as gauges (NaN where nothing was closed)."""
    for dept, row in figures.items():
        for rate in ("on_time_closure", "rework", "return", "extension"):
            value = row[f"{rate}_rate"]
            metrics.child(metrics.EVALUATION_RATE, dept, rate).set(float("nan") if value is None else value)
        metrics.child(metrics.EVALUATION_CLOSED, dept).set(row["closed"])
        for stage in STAGES:
            for q, key in (("0.5", "p50"), ("0.9", "p90")):
                value = row[f"{stage}_hours_{key}"]
                metrics.child(metrics.EVALUATION_HOURS, dept, stage, q).set(
                    float("nan") if value is None else value)
