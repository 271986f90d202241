"""Every worker's whole-log views: the order view behind the API and console, and the
evaluation figures.  No consumer group: each worker reads every partition, so any worker
answers for any order.

Start-up does not replay history (DESIGN §11): the order view reads ``workorders.state``
and ``workorders.rejected`` from the console's retention back (every open order has a
state record within its last day, ``orderstate.REFRESH_SECONDS``); the evaluation starts
from its local checkpoint and folds ``workorders.events`` from the offsets it reflects
(no checkpoint: from the beginning, once)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faust
import orjson

from citybrain import metrics
from citybrain.config import Config
from citybrain.domain.device_health import Liveness, device_rates, registered_devices
from citybrain.domain.evaluation import STAGES, Evaluation
from citybrain.domain.registry import Device
from citybrain.gauges import GaugeCounts
from citybrain.kafka.topics import Topics
from citybrain.memory import release_free_memory
from citybrain.readmodels.orders import OrderView
from citybrain.stream.evalcheckpoint import EvaluationCheckpoint
from citybrain.stream.historyreader import HistoryFeed
from citybrain.stream.logreader import TopicReader
from citybrain.stream.orderstate import REFRESH_SECONDS

log = logging.getLogger("citybrain.views")
_SKIPPABLE = (orjson.JSONDecodeError, KeyError, TypeError, ValueError)
CHECKPOINT_SECONDS = 60.0


class OrderLogViews:
    def __init__(self, config: Config, topics: Topics, bootstrap: str, data_dir: Path | None = None):
        self.config = config
        self.events_topic = topics.workorder_events
        self.evaluation = config.new_evaluation()
        self.view = OrderView()
        self.lookback = max(config.settings.console.closed_retention_days * 86400, 2 * REFRESH_SECONDS)
        since = self._since_ms
        self.state_log = TopicReader(bootstrap, topics.workorder_state, self._fold_states, "order-state",
                                     since_ms=since)
        self.rejection_log = TopicReader(bootstrap, topics.rejected, self._fold_rejections, "rejection-log",
                                         since_ms=since)
        self.checkpoint = EvaluationCheckpoint(data_dir) if data_dir is not None else None
        self.change_log = TopicReader(bootstrap, topics.workorder_events, self._fold_changes, "order-log",
                                      start_offsets=self._from_checkpoint, on_start_rejected=self._start_over)
        self.saved_positions: dict[int, int] = {}
        # 联网率: devices.liveness, folded whole (domain/device_health.py).
        self.liveness = Liveness()
        self.liveness_log = TopicReader(bootstrap, topics.liveness, self._fold_liveness, "device-liveness")
        self.devices: Callable[[], Iterable[Device]] = lambda: ()   # the registry's devices (set by the worker)
        self.device_places: dict[str, tuple[float, float, str]] = {}
        self.intact_gauge = GaugeCounts(metrics.DEVICE_INTACT_RATIO)
        self.networked_gauge = GaugeCounts(metrics.DEVICE_NETWORKED_RATIO)
        # The history read model (search and "same place" over a year): only with a data dir.
        self.history = HistoryFeed(bootstrap, topics.workorder_state, data_dir) if data_dir is not None else None

    def _since_ms(self) -> int:
        return int((time.time() - self.lookback) * 1000)

    def caught_up(self) -> bool:
        return all(r.caught_up.is_set() for r in (self.state_log, self.rejection_log, self.change_log))

    # -- folding -------------------------------------------------------------------

    def _fold_states(self, records) -> None:
        _fold(records, self.view.add_state, "工单状态")

    def _fold_changes(self, records) -> None:
        _fold(records, self.evaluation.add, "工单日志")

    def _fold_liveness(self, records) -> None:
        for m in records:
            if m.value is None and m.key is not None:
                self.liveness.forget(m.key.decode(errors="replace"))
        _fold(records, self.liveness.add, "设备联网")

    def device_health(self) -> dict[str, dict[str, dict]]:
        """完好率 and 联网率 now (domain/device_health.py ``device_rates``): the registry's
        active devices, the evaluation's open device faults, devices.liveness."""
        devices = registered_devices(self.devices(), self.config.city_map.locate, self.device_places)
        return device_rates(devices, self.evaluation.faulty_devices(), self.liveness.heard())

    def export_device_health(self) -> None:
        rows = self.device_health()["kind_district"]
        self.intact_gauge.set_all(Counter({(r["kind"], r["district"]): r["intact_rate"]
                                           for r in rows.values() if r["intact_rate"] is not None}))
        self.networked_gauge.set_all(Counter({(r["kind"], r["district"]): r["networked_rate"]
                                              for r in rows.values() if r["networked_rate"] is not None}))

    def _fold_rejections(self, records) -> None:
        _fold(records, self.view.add_rejection, "拒绝日志")

    # -- the evaluation checkpoint -------------------------------------------------

    def _from_checkpoint(self) -> dict[int, int]:
        loaded = self.checkpoint.load(self.events_topic) if self.checkpoint is not None else None
        if loaded is None:
            log.info("评价无检查点 no evaluation checkpoint: folding %s from the beginning", self.events_topic)
            return {}
        meta, days, offsets = loaded
        if not Evaluation.current(meta):
            log.info("评价检查点格式较旧 the evaluation checkpoint predates category rows: folding %s from the "
                     "beginning", self.events_topic)
            if self.checkpoint is not None:
                self.checkpoint.clear()
            return {}
        self.evaluation.restore(meta, days)
        self.saved_positions = dict(offsets)
        log.info("评价检查点 evaluation checkpoint: %d days of figures, %d open orders; %s from offsets %s",
                 len(days), len(self.evaluation.open), self.events_topic, offsets)
        return offsets

    def _start_over(self) -> None:
        log.warning("评价检查点不符 the evaluation checkpoint is ahead of %s (a re-created topic?): "
                    "folding it from the beginning", self.events_topic)
        self.evaluation.clear()
        self.saved_positions = {}
        if self.checkpoint is not None:
            self.checkpoint.clear()

    def save_checkpoint(self, everything: bool = False) -> bool:
        """The evaluation as it stands after the batches folded so far (the reader folds a
        batch without awaiting, so positions and state are one cut)."""
        positions = dict(self.change_log.positions)
        if self.checkpoint is None or not self.change_log.caught_up.is_set() or (
                positions == self.saved_positions and not everything):
            return False
        started = time.monotonic()
        days = self.evaluation.checkpoint_days(everything=everything)
        self.checkpoint.save(self.events_topic, self.evaluation.checkpoint_meta(), days, positions)
        self.saved_positions = positions
        log.debug("评价检查点已存 evaluation checkpoint saved: %d days in %.2fs", len(days),
                  time.monotonic() - started)
        return True

    def install(self, app: faust.App) -> None:
        """The readers as tasks, and the view's and the evaluation's upkeep as timers."""
        retention = self.config.settings.console.closed_retention_days

        @app.task
        async def read_order_state() -> None:
            await self.state_log.run()

        @app.task
        async def read_order_log() -> None:
            await self.change_log.run()

        @app.task
        async def read_rejections() -> None:
            await self.rejection_log.run()

        @app.task
        async def read_liveness() -> None:
            await self.liveness_log.run()

        @app.timer(interval=10.0)
        async def export_device_health() -> None:
            self.export_device_health()

        if self.history is not None:
            history = self.history

            @app.task
            async def read_history() -> None:
                await history.run()

        @app.timer(interval=2.0)
        async def compact_view() -> None:
            self.view.compact()

        @app.timer(interval=CHECKPOINT_SECONDS)
        async def checkpoint_evaluation() -> None:
            self.save_checkpoint()
            release_free_memory()

        @app.task
        async def trim_after_catching_up() -> None:
            for reader in (self.state_log, self.change_log, self.rejection_log):
                await reader.caught_up.wait()
            release_free_memory()   # the start's transient parsing, back to the system

        @app.timer(interval=600.0)
        async def evict_old_closed() -> None:
            gone = self.view.evict_closed((datetime.now(UTC) - timedelta(days=retention)).isoformat())
            if gone:
                log.info("控制台视图 order view: forgot %d orders closed more than %g days ago", gone, retention)

        @app.timer(interval=self.config.lifecycle.timers.evaluation_seconds)
        async def export_evaluation() -> None:
            export_figures(self.evaluation.figures(self.evaluation.period_of(datetime.now(UTC))))


def _fold(records, add, label: str) -> None:
    """Each record's JSON into ``add``; a record that is not what the contract says is
    logged and skipped — a view never stops on one."""
    for m in records:
        if m.value is None:
            continue
        try:
            add(orjson.loads(m.value))
        except _SKIPPABLE as e:
            log.warning("%s跳过 record skipped %s@%d/%d: %r", label, m.topic, m.partition, m.offset, e)


def export_figures(figures: dict[str, dict]) -> None:
    """This month's evaluation figures as gauges (NaN where nothing was closed)."""
    for dept, row in figures.items():
        for rate in ("on_time_closure", "rework", "return", "extension", "satisfaction"):
            value = row[f"{rate}_rate"]
            metrics.child(metrics.EVALUATION_RATE, dept, rate).set(float("nan") if value is None else value)
        metrics.child(metrics.EVALUATION_CLOSED, dept).set(row["closed"])
        for work in ("assists", "assists_handled", "assists_returned"):
            metrics.child(metrics.EVALUATION_ASSISTS, dept, work.removeprefix("assists_") if work != "assists"
                          else "received").set(row[work])
        for stage in STAGES:
            for q, key in (("0.5", "p50"), ("0.9", "p90")):
                value = row[f"{stage}_hours_{key}"]
                metrics.child(metrics.EVALUATION_HOURS, dept, stage, q).set(
                    float("nan") if value is None else value)
