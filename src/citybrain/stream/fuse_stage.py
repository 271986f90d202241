"""The fuse stage (the runner's ``Stage`` protocol), a thin shell around the pure domain:
the fusion inbox (CityEvents, lifecycle commands and a merge's hops, keyed by fusion group)
→ workorders.events, workorders.state, dispatch.<department>, workorders.rejected, the
fusion inbox again (a merge's next hop); snapshots with their timelines in the
``work_orders`` changelog (``OrderRecord``), an in-memory FusionIndex per partition, the
clocks of stream/timers.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from aiokafka import ConsumerRecord
from pydantic_core import to_json

from citybrain import metrics
from citybrain.config import Config
from citybrain.domain import followup, lifecycle
from citybrain.domain.area_warnings import WarningBook, start_route
from citybrain.domain.device_health import (
    PartitionClock,
)
from citybrain.domain.fusion import FusionEvent, FusionIndex, group_of, open_entry
from citybrain.domain.routing import Route
from citybrain.domain.workorder import attach, open_order
from citybrain.gauges import GaugeCounts, OpenOrderGauge, assist_keys, emergency_keys
from citybrain.kafka.topics import Topics
from citybrain.stream.area_warnings import WarningSweep
from citybrain.stream.orderstate import OrderRecord
from citybrain.stream.output import Output
from citybrain.stream.state import ChangelogState
from citybrain.stream.timers import ClosedOrders, OrderTimers, StateRefresh
from citybrain.stream.topology import changelogs
from citybrain.wire.enums import OPEN_PARTS
from citybrain.wire.models import (
    OPEN_STATUSES,
    CityEvent,
    Command,
    CommandRejection,
    MergeTransfer,
    WorkOrder,
    WorkOrderChange,
)

log = logging.getLogger("citybrain.stages")


def _closed_ts(snap: dict) -> float:
    return datetime.fromisoformat(snap.get("closed_at") or snap.get("cancelled_at") or snap["merged_at"]).timestamp()


class FuseStage:
    """The fuse stage: fusion, routing and the lifecycle of the orders of its partitions."""

    def __init__(self, config: Config, topics: Topics, group_id: str, warnings: WarningBook | None = None,
                 clock: Callable[[], float] = time.time):
        self.config, self.topic_names = config, topics
        # Wall-clock seconds: the lifecycle's clocks and the stamps of changes. A fake in the
        # functional tests (tests/functional) runs a month of deadlines in milliseconds.
        self.wall_clock = clock
        # 区域预警: every worker's copy of ingest.warnings (stream/area_warnings.py).
        self.warnings = warnings if warnings is not None else WarningBook(config.warnings)
        self.warning_sweep = WarningSweep()
        self.router = self.config.router
        self.deadlines = self.config.deadlines
        self.departments = frozenset(self.config.desks)
        self.locate = self.config.city_map.locate   # a split's new order: the area of its first finding
        self.work_orders = ChangelogState("work_orders", changelogs(group_id)["work_orders"], compress=True)
        self.indexes: dict[int, FusionIndex] = {}
        self.escalator = self.config.escalator
        self.gauges = [OpenOrderGauge(), OpenOrderGauge(metrics.WORKORDERS_EMERGENCY, emergency_keys),
                       OpenOrderGauge(metrics.ASSISTS_OPEN, assist_keys)]
        self.timers = OrderTimers()
        self.overdue_gauge = GaugeCounts(metrics.WORKORDERS_OVERDUE)
        self.closed_orders = ClosedOrders(self.config.settings.worker.closed_state_days * 86400)
        self.refresh = StateRefresh()
        self.last_overdue = 0.0   # when the overdue gauge and the eviction last ran
        # What the runner reads (the Stage protocol).
        self.name, self.group_id, self.topics = "fuse", f"{group_id}-fuse", [topics.fusion_inbox]
        self.states = [self.work_orders]
        self.state_topic: str | None = topics.fusion_inbox
        # Sent on a producer of their own, ahead of the order events and snapshots (batch.py).
        self.urgent_topics = frozenset(topics.dispatch(d) for d in self.departments)
        self.tick_seconds = config.lifecycle.timers.tick_seconds
        self.clock: PartitionClock | None = None
        self.ready = asyncio.Event()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_clock(), UTC)

    def on_assigned(self, partitions: set[int]) -> None:
        """Index the newly assigned partitions; recount open orders over all held ones
        (the gauge follows whatever this worker holds now)."""
        for p in partitions:
            self.indexes[p] = FusionIndex()
        counts: list[Counter] = [Counter() for _ in self.gauges]
        for p, index in self.indexes.items():
            for raw in self.work_orders.values(p):
                record = OrderRecord.unpack(raw)
                snap = record.summary()
                if snap["status"] not in OPEN_STATUSES:
                    if p in partitions:   # its events stay known: a replay of one is a duplicate
                        index.retire(snap["work_order_id"], (e["event_id"] for e in snap["events"]))
                        self.closed_orders.closed(p, snap["work_order_id"], _closed_ts(snap))
                    continue
                # The same keys as OpenOrderGauge's (status, department, district).
                counts[0][(snap["status"], snap["department"] or "", snap["location"]["district_code"])] += 1
                if snap.get("emergency_level"):
                    counts[1][(snap["emergency_level"],)] += 1
                for a in snap.get("assists") or ():
                    if a["status"] in OPEN_PARTS:
                        counts[2][(a["department"],)] += 1
                if p in partitions:
                    order = WorkOrder.model_validate(snap)
                    index.add(open_entry(order))
                    self.timers.schedule(p, order, self.deadlines)  # what fell due while away fires next tick
                    self.refresh.written(p, order.work_order_id, record.written_at)
        for gauge, counted in zip(self.gauges, counts, strict=True):
            gauge.set_all(counted)
        log.info("工单索引 open-order index: %d open orders in partitions %s",
                 sum(len(i) for i in self.indexes.values()), sorted(self.indexes))

    def on_revoked(self, partitions: set[int]) -> None:
        for p in partitions:
            self.indexes.pop(p, None)
        self.timers.drop(partitions)
        self.closed_orders.drop(partitions)
        self.refresh.drop(partitions)

    def publish(self, change: WorkOrderChange, old: WorkOrder | None, out: list[Output], record: OrderRecord) -> None:
        """The change on workorders.events (and dispatch / supervision topics); it becomes
        the record's latest snapshot and a step of its timeline."""
        record.add(change, old)
        body = to_json(change)
        key = change.work_order_id.encode()
        out.append(Output(self.topic_names.workorder_events, key, body))
        metrics.inc(metrics.TRANSITIONS, change.type)
        snap = change.snapshot
        for gauge in self.gauges:
            gauge.moved(old, snap)
        if change.type == "supervised" and change.supervision is not None:
            out.append(Output(self.topic_names.supervision(change.supervision.level), key, body))
            metrics.inc(metrics.SUPERVISION_STEPS, change.supervision.level, change.supervision.clock)
        if change.type == "dispatched" and snap.department is not None:
            out.append(Output(self.topic_names.dispatch(snap.department), key, body))
            if change.actor.role == "system":  # the hot path; a hand dispatch includes triage time
                metrics.child(metrics.DISPATCH_LATENCY, snap.department, snap.priority).observe(
                    time.time() - snap.source_ingested_at.timestamp())
        elif change.type == "assist_added" and change.part is not None:
            out.append(Output(self.topic_names.dispatch(change.part), key, body))
        elif change.type == "escalated" and change.escalation is not None:
            esc = change.escalation
            reached = (esc.warning_to if esc.warning_to != esc.warning_from
                       else esc.emergency_to if esc.emergency_to != esc.emergency_from else esc.priority_to)
            metrics.inc(metrics.ESCALATED, snap.category, reached or "none")
        for note in followup.notifications(change):   # 反馈: the reporters hear of it
            out.append(Output(self.topic_names.reporter_notifications, note.reporter_id.encode(), to_json(note)))
        # 应急指挥 follows every change while the order is under emergency response.
        if snap.emergency_level is not None or (old is not None and old.emergency_level is not None):
            out.append(Output(self.topic_names.emergency, key, body))

    def publish_all(self, changes: list[WorkOrderChange], old: WorkOrder | None, out: list[Output],
                    record: OrderRecord) -> WorkOrder:
        """Publish consecutive changes of one order (at least one); returns the latest snapshot."""
        for change in changes:
            self.publish(change, old, out, record)
            old = change.snapshot
        return changes[-1].snapshot

    def store(self, partition: int, record: OrderRecord, snap: WorkOrder, out: list[Output], timed: bool = True) -> None:
        """Hot state and ``workorders.state`` after an order's changes.  ``timed``: the
        change may have moved a clock (every change but new evidence)."""
        wo = snap.work_order_id
        record.written_at = self.wall_clock()
        self.work_orders.set(partition, wo, record.pack())
        out.append(Output(self.topic_names.workorder_state, wo.encode(), record.state_record(wo, snap.version)))
        if snap.status in OPEN_STATUSES:
            self.refresh.written(partition, wo, record.written_at)
        if timed:
            self.timers.schedule(partition, snap, self.deadlines)
        if snap.status not in OPEN_STATUSES:
            self.indexes[partition].close(snap.work_order_id)
            ended = snap.closed_at or snap.cancelled_at or snap.merged_at or self.now()   # one is set
            self.closed_orders.closed(partition, snap.work_order_id, ended.timestamp())

    def refuse(self, rejection: CommandRejection, out: list[Output]) -> None:
        metrics.inc(metrics.COMMANDS_REJECTED, rejection.reason)
        out.append(Output(self.topic_names.rejected, rejection.command.work_order_id.encode(), to_json(rejection)))

    def hop(self, transfer: MergeTransfer, to: str, out: list[Output]) -> None:
        """A merge's next hop, to the inbox partition of the order ``to`` (its fusion group)."""
        group = group_of(to)
        assert group is not None   # route_commands refused ids that are not work-order ids
        out.append(Output(self.topic_names.fusion_inbox, group.encode(), to_json(transfer)))

    def on_command(self, partition: int, cmd: Command, out: list[Output]) -> None:
        if cmd.action == "merge":
            # 并单, hop 1, where the survivor lives (route_commands keys a merge by its
            # ``into``): only an open survivor takes a duplicate.
            raw = self.work_orders.get(partition, cmd.into) if cmd.into else None
            now = self.now()
            refused = lifecycle.merge_check(OrderRecord.unpack(raw).order() if raw else None, cmd, now)
            if refused is not None:
                return self.refuse(refused, out)
            return self.hop(MergeTransfer(transfer="close", command=cmd, at=now), cmd.work_order_id, out)
        self.apply(partition, cmd, out)

    def apply(self, partition: int, cmd: Command, out: list[Output]) -> WorkOrder | None:
        """A command on the order it names; returns the order as it was, if it changed."""
        raw = self.work_orders.get(partition, cmd.work_order_id)
        record = OrderRecord.unpack(raw) if raw else None
        old = record.order() if record else None
        outcome = lifecycle.apply(old, cmd, self.departments, self.now(), self.deadlines,
                                  router=self.router, locate=self.locate)
        if outcome.rejection is not None:
            self.refuse(outcome.rejection, out)
            return None
        change = outcome.change
        assert change is not None   # lifecycle.apply gives a rejection or a change
        record = record or OrderRecord(b"")
        changes = [change, *outcome.followups]
        changes += self.escalator.follow(changes[-1].snapshot, change.at)
        new = self.publish_all(changes, old, out, record)
        self.store(partition, record, new, out)
        if new.status in OPEN_STATUSES and cmd.action in ("recategorise", "split"):
            self.indexes[partition].add(open_entry(new))   # fusion follows its category / the findings left
        if outcome.opened:   # 拆单: the new order, on this partition (its id names the same group)
            self.open_changes(partition, list(outcome.opened), out)
        return old

    def open_changes(self, partition: int, changes: list[WorkOrderChange], out: list[Output]) -> None:
        first = changes[0].snapshot
        metrics.inc(metrics.WORKORDERS_OPENED, first.category, first.department or "", first.location.district_code)
        changes += self.escalator.follow(changes[-1].snapshot, changes[-1].at)
        record = OrderRecord(b"")
        new = self.publish_all(changes, None, out, record)
        self.store(partition, record, new, out)
        if new.status in OPEN_STATUSES:
            self.indexes[partition].add(open_entry(new))

    def on_transfer(self, partition: int, t: MergeTransfer, out: list[Output]) -> None:
        """并单, hops 2 and 3 (docs/lifecycle.md "Merge and split")."""
        cmd = t.command
        assert cmd.into is not None   # merge_check refused a merge without one
        if t.transfer == "close":
            # Where the duplicate lives: it ends as merged (the usual checks: state, role,
            # reason, idempotency) and its findings go on to the survivor, in the same batch.
            before = self.apply(partition, cmd, out)
            if before is not None:
                self.hop(MergeTransfer(transfer="absorb", command=cmd, duplicate=before, visited=[cmd.into],
                                       at=self.now()), cmd.into, out)
            return
        duplicate = t.duplicate
        assert duplicate is not None   # an absorb carries the duplicate
        target = t.visited[-1] if t.visited else cmd.into
        raw = self.work_orders.get(partition, target)
        now = self.now()
        if raw is None:   # gone from hot state between the hops: only an eviction does that
            log.error("并单失败 merge of %s: %s is not held here any more; its findings are recorded on its "
                      "merged change", duplicate.work_order_id, target)
            return self.refuse(CommandRejection(
                command=cmd, reason="unknown_work_order", status="merged", at=now,
                detail=f"merge into {target}: the order is gone; the findings stay recorded on the merged change"),
                out)
        record = OrderRecord.unpack(raw)
        survivor = record.order()
        onward = survivor.merged_into
        if onward is not None and onward not in t.visited and onward != duplicate.work_order_id:
            # The survivor was merged on meanwhile: its own survivor takes the findings.
            return self.hop(t.model_copy(update={"visited": [*t.visited, onward]}), onward, out)
        change = lifecycle.absorb(survivor, duplicate, cmd, now)
        if change is None:   # absorbed already (a replay)
            return
        changes = [change, *self.escalator.follow(change.snapshot, now)]
        new = self.publish_all(changes, survivor, out, record)
        self.store(partition, record, new, out)
        if new.status in OPEN_STATUSES:
            self.indexes[partition].add(open_entry(new))   # the duplicate's finders and events lead here now

    def on_event(self, partition: int, event: CityEvent, out: list[Output]) -> None:
        index = self.indexes[partition]
        decision = index.fuse(FusionEvent.of(event), self.router)
        metrics.inc(metrics.FUSION_OUTCOME, decision.action)
        now = self.now()
        wo = decision.work_order_id
        if decision.action == "open" and wo is not None:
            loc = event.location
            route = self.router.route(event.category, (loc.grid_code, loc.community_code,
                                                  loc.street_code, loc.district_code), event.asset_owner)
            if event.needs_location:   # a placeholder point routes nowhere: it waits in triage
                route = Route(None, route.priority, "needs_location")
            # 区域预警: a new order in a warning's area starts at its level (domain/area_warnings.py).
            start = None if event.needs_location else self.warnings.start(event.category, loc, now)
            route = start_route(route, start, self.escalator.config.warning_priority)
            changes = open_order(wo, self.router.group(event.category), event, route, now,
                                 self.deadlines, start)
            changes += self.escalator.follow(changes[-1].snapshot, now)
            metrics.inc(metrics.WORKORDERS_OPENED, event.category, route.department or "", loc.district_code)
            record = OrderRecord(b"")
            self.store(partition, record, self.publish_all(changes, None, out, record), out)
        elif decision.action in ("join", "recovery") and wo is not None:
            raw = self.work_orders.get(partition, wo)
            if raw is None:
                raise LookupError(f"{wo} is in the fusion index but has no stored record")
            record = OrderRecord.unpack(raw)
            old = record.order()
            metrics.inc(metrics.EVIDENCE_ATTACHED, event.category, event.kind)
            change = attach(old, event, now)
            self.publish(change, old, out, record)
            new = change.snapshot
            # Only an alarm after the device's recovery "came back"; a level move is the
            # same alarm, graded.
            device = event.device_id
            came_back = (event.source == "iot" and event.kind == "alarm" and device is not None
                         and device in old.recovered_finders)
            rework = self.deadlines.alarm_returned(new, device, now) if came_back and device is not None else None
            if rework is not None:  # the alarm came back before verification: 返工
                self.publish(rework, new, out, record)
                new = rework.snapshot
            escalated = self.escalator.follow(new, now)
            new = self.publish_all(escalated, new, out, record) if escalated else new
            self.store(partition, record, new, out,
                  timed=change.type == "recovery_recorded" or rework is not None or bool(escalated))

    def of_partition(self, partition: int, outputs: list[Output]) -> list[Output]:
        """Outputs a timer caused, not an input: they belong to the partition of their order."""
        for o in outputs:
            o.source = (self.topic_names.fusion_inbox, partition, -1)
        return outputs

    def tick(self) -> list[Output]:
        """Supervision steps and automatic verifications that have fallen due."""
        out: list[Output] = []
        now_ts = self.wall_clock()
        now = datetime.fromtimestamp(now_ts, UTC)
        for partition, wo in self.timers.due(now_ts):
            raw = self.work_orders.get(partition, wo)
            if raw is None:
                continue
            record = OrderRecord.unpack(raw)
            order = record.order()
            changes = self.deadlines.supervise_due(order, now)
            latest = changes[-1].snapshot if changes else order
            verified = self.deadlines.auto_verify(latest, now)
            if verified is not None:
                changes.append(verified)
            if not changes:   # nothing fell due after all: only the next look is scheduled
                self.timers.schedule(partition, order, self.deadlines)
                continue
            mine: list[Output] = []
            self.store(partition, record, self.publish_all(changes, order, mine, record), mine)
            out += self.of_partition(partition, mine)
        for partition, wo in self.refresh.due(now_ts):
            held = self.open_held(partition, wo)
            if held is None:
                continue
            record, order = held
            if now_ts - record.written_at < self.refresh.every:   # written since: look again later
                self.refresh.written(partition, wo, record.written_at)
                continue
            mine = []
            self.store(partition, record, order, mine, timed=False)
            out += self.of_partition(partition, mine)
        out += self.warning_sweep.run(self, self.warnings, now)   # 区域预警 escalates open orders
        if now_ts - self.last_overdue >= 5.0:
            self.last_overdue = now_ts
            self.overdue_gauge.set_all(self.timers.overdue_counts(now_ts))
            self.evict_closed(now_ts)
        return out

    def open_held(self, partition: int, wo: str) -> tuple[OrderRecord, WorkOrder] | None:
        """The order's record and snapshot while this worker holds it open: a timer or a
        sweep may name an order that has since closed, left hot state or moved away."""
        raw = self.work_orders.get(partition, wo) if partition in self.indexes else None
        if raw is None:
            return None
        record = OrderRecord.unpack(raw)
        order = record.order()
        return (record, order) if order.status in OPEN_STATUSES else None

    def evict_closed(self, now_ts: float) -> None:
        """Closed orders past ``closed_state_days`` leave hot state: a tombstone on the
        changelog (the next batch carries it), and fusion forgets their events."""
        for partition, wo in self.closed_orders.due(now_ts):
            raw = self.work_orders.get(partition, wo)
            if raw is None or partition not in self.indexes:
                continue
            snap = OrderRecord.unpack(raw).summary()
            if snap["status"] in OPEN_STATUSES:
                continue
            self.indexes[partition].forget_retired(wo, [e["event_id"] for e in snap["events"]])
            self.work_orders.delete(partition, wo)
            metrics.STATE_EVICTED.inc()

    def handle(self, m: ConsumerRecord, out: list[Output]) -> None:
        doc = orjson.loads(m.value)
        if "transfer" in doc:    # a merge's next hop
            self.on_transfer(m.partition, MergeTransfer.model_validate(doc), out)
        elif "command_id" in doc:  # the inbox carries commands as well as events
            self.on_command(m.partition, Command.model_validate(doc), out)
        else:
            self.on_event(m.partition, CityEvent.model_validate(doc), out)

    def source_of(self, m: ConsumerRecord) -> str:
        return "command" if m.value is not None and b'"command_id"' in m.value else "event"
