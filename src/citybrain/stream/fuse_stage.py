"""The fuse stage (the runner's ``Stage`` protocol), a thin shell around the pure domain:
the fusion inbox (CityEvents, lifecycle commands and a merge's hops, keyed by fusion group)
→ workorders.events, workorders.state, dispatch.<department>, workorders.rejected, the
fusion inbox again (a merge's next hop); snapshots with their timelines in the
``work_orders`` changelog (``OrderRecord``), an in-memory FusionIndex per partition, the
clocks of stream/timers.py.  What a record, a tick or an assignment does to an order is
decided in domain/order_flow.py: this looks the order up, asks it and applies what it says."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime

import orjson
from aiokafka import ConsumerRecord
from pydantic_core import to_json

from citybrain import metrics
from citybrain.domain import followup, order_flow
from citybrain.domain.device_health import PartitionClock
from citybrain.domain.fusion import FusionEvent, FusionIndex, group_of, open_entry
from citybrain.domain.order_flow import MergeStep, Outlet
from citybrain.gauges import GaugeCounts, OpenOrderGauge, assist_keys, emergency_keys
from citybrain.kafka.topics import Topics
from citybrain.stream.area_warnings import WarningSweep
from citybrain.stream.collaborators import Collaborators
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


class FuseStage:
    """The fuse stage: fusion, routing and the lifecycle of the orders of its partitions."""

    def __init__(self, collab: Collaborators, topics: Topics, group_id: str):
        self.topic_names = topics
        # Wall-clock seconds: the lifecycle's clocks and the stamps of changes. A fake in the
        # functional tests (tests/functional) runs a month of deadlines in milliseconds.
        self.wall_clock = collab.clock
        self.rules = collab.rules
        # 区域预警: every worker's copy of ingest.warnings (stream/area_warnings.py).
        assert collab.rules.warnings is not None   # collaborators() always gives a book
        self.warnings = collab.rules.warnings
        self.warning_sweep = WarningSweep()
        self.router, self.deadlines = collab.rules.router, collab.rules.deadlines
        self.work_orders = ChangelogState("work_orders", changelogs(group_id)["work_orders"], compress=True)
        self.indexes: dict[int, FusionIndex] = {}
        self.gauges = [OpenOrderGauge(), OpenOrderGauge(metrics.WORKORDERS_EMERGENCY, emergency_keys),
                       OpenOrderGauge(metrics.ASSISTS_OPEN, assist_keys)]
        self.timers = OrderTimers()
        self.overdue_gauge = GaugeCounts(metrics.WORKORDERS_OVERDUE)
        self.closed_orders = ClosedOrders(collab.closed_state_seconds)
        self.refresh = StateRefresh(collab.refresh_seconds)
        self.last_overdue = 0.0   # when the overdue gauge and the eviction last ran
        # What the runner reads (the Stage protocol).
        self.name, self.group_id, self.topics = "fuse", f"{group_id}-fuse", [topics.fusion_inbox]
        self.states = [self.work_orders]
        self.state_topic: str | None = topics.fusion_inbox
        # Sent on a producer of their own, ahead of the order events and snapshots (stream/at_least_once.py).
        self.urgent_topics = frozenset(topics.dispatch(d) for d in collab.rules.departments)
        self.tick_seconds = collab.tick_seconds
        self.clock: PartitionClock | None = None
        self.ready = asyncio.Event()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_clock(), UTC)

    def on_assigned(self, partitions: set[int]) -> None:
        """The newly assigned partitions' orders as order_flow.restored says (indexed and
        timed if open, kept as duplicates until their retention if ended); the open orders
        recounted over all held partitions (the gauges follow what this worker holds)."""
        now = self.wall_clock()
        for p in partitions:
            self.indexes[p] = FusionIndex()
        counts: list[Counter] = [Counter() for _ in self.gauges]
        for p in self.indexes:
            for raw in self.work_orders.values(p):
                record = OrderRecord.unpack(raw)
                snap = record.summary()
                if snap["status"] in OPEN_STATUSES:
                    _count_open(snap, counts)
                if p in partitions:
                    self.restore(p, order_flow.restored(snap, now, self.deadlines), record.written_at)
        for gauge, counted in zip(self.gauges, counts, strict=True):
            gauge.set_all(counted)
        log.info("工单索引 open-order index: %d open orders in partitions %s",
                 sum(len(i) for i in self.indexes.values()), sorted(self.indexes))

    def restore(self, partition: int, r: order_flow.Restored, written_at: float) -> None:
        """One stored order put back on its partition's index and clocks."""
        index = self.indexes[partition]
        if r.order is None:   # ended: its events stay known (a replay of one is a duplicate)
            index.retire(r.work_order_id, r.event_ids)
            assert r.ended is not None   # restored() stamps every ended order
            self.closed_orders.closed(partition, r.work_order_id, r.ended)
            return
        assert r.clocks is not None   # and every open one's clocks
        index.add(open_entry(r.order))
        self.timers.schedule(partition, r.work_order_id, r.clocks)
        self.refresh.written(partition, r.work_order_id, written_at)

    def on_revoked(self, partitions: set[int]) -> None:
        for p in partitions:
            self.indexes.pop(p, None)
        self.timers.drop(partitions)
        self.closed_orders.drop(partitions)
        self.refresh.drop(partitions)

    def topic(self, outlet: Outlet) -> str:
        t = self.topic_names
        if outlet.kind == "supervision":
            assert outlet.member is not None
            return t.supervision(outlet.member)
        if outlet.kind == "dispatch":
            assert outlet.member is not None
            return t.dispatch(outlet.member)
        return t.emergency if outlet.kind == "emergency" else t.workorder_events

    def publish(self, change: WorkOrderChange, old: WorkOrder | None, out: list[Output], record: OrderRecord) -> None:
        """The change on the topics order_flow.outlets names (and to its reporters); it
        becomes the record's latest snapshot and a step of its timeline."""
        record.add(change, old)
        body = to_json(change)
        key = change.work_order_id.encode()
        for outlet in order_flow.outlets(change, old):
            out.append(Output(self.topic(outlet), key, body))
        for note in followup.notifications(change):   # 反馈: the reporters hear of it
            out.append(Output(self.topic_names.reporter_notifications, note.reporter_id.encode(), to_json(note)))
        self.count(change, old)

    def count(self, change: WorkOrderChange, old: WorkOrder | None) -> None:
        metrics.inc(metrics.TRANSITIONS, change.type)
        snap = change.snapshot
        for gauge in self.gauges:
            gauge.moved(old, snap)
        if change.type == "supervised" and change.supervision is not None:
            metrics.inc(metrics.SUPERVISION_STEPS, change.supervision.level, change.supervision.clock)
        elif change.type == "dispatched" and snap.department is not None and change.actor.role == "system":
            # the hot path; a hand dispatch includes triage time
            metrics.child(metrics.DISPATCH_LATENCY, snap.department, snap.priority).observe(
                self.wall_clock() - snap.source_ingested_at.timestamp())
        elif change.type == "escalated" and change.escalation is not None:
            metrics.inc(metrics.ESCALATED, snap.category, order_flow.reached(change.escalation) or "none")

    def publish_all(self, changes: list[WorkOrderChange] | tuple[WorkOrderChange, ...], old: WorkOrder | None,
                    out: list[Output], record: OrderRecord) -> WorkOrder:
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
            self.timers.schedule(partition, wo, order_flow.clocks(snap, self.deadlines))
        if snap.status not in OPEN_STATUSES:
            self.indexes[partition].close(snap.work_order_id)
            self.closed_orders.closed(partition, snap.work_order_id, order_flow.end_of(snap, self.now()).timestamp())

    def changed(self, partition: int, record: OrderRecord | None, old: WorkOrder | None,
                changes: tuple[WorkOrderChange, ...], out: list[Output], timed: bool = True,
                index: bool = False) -> WorkOrder:
        """One order's changes published and stored (``record`` None: a new order);
        ``index``: fusion (re)learns it while it is open."""
        record = record or OrderRecord(b"")
        new = self.publish_all(changes, old, out, record)
        self.store(partition, record, new, out, timed)
        if index and new.status in OPEN_STATUSES:
            self.indexes[partition].add(open_entry(new))
        return new

    def held(self, partition: int, work_order_id: str | None) -> tuple[OrderRecord | None, WorkOrder | None]:
        raw = self.work_orders.get(partition, work_order_id) if work_order_id else None
        record = OrderRecord.unpack(raw) if raw else None
        return record, record.order() if record else None

    def refuse(self, rejection: CommandRejection, out: list[Output]) -> None:
        metrics.inc(metrics.COMMANDS_REJECTED, rejection.reason)
        out.append(Output(self.topic_names.rejected, rejection.command.work_order_id.encode(), to_json(rejection)))

    def merge_step(self, step: MergeStep, out: list[Output]) -> None:
        """A merge hop's refusal or next hop, to the inbox partition of the order it names
        (its fusion group)."""
        if step.rejection is not None:
            self.refuse(step.rejection, out)
        if step.hop is not None:
            transfer, to = step.hop
            group = group_of(to)
            assert group is not None   # the command routing refused ids that are not work-order ids
            out.append(Output(self.topic_names.fusion_inbox, group.encode(), to_json(transfer)))

    def on_command(self, partition: int, cmd: Command, out: list[Output]) -> None:
        if cmd.action == "merge":   # 并单, hop 1, where the survivor lives (the command routing keys it by ``into``)
            _, survivor = self.held(partition, cmd.into)
            return self.merge_step(order_flow.merge_start(survivor, cmd, self.now()), out)
        self.apply(partition, cmd, out)

    def apply(self, partition: int, cmd: Command, out: list[Output]) -> WorkOrder | None:
        """A command on the order it names; returns the order as it was, if it changed."""
        record, old = self.held(partition, cmd.work_order_id)
        result = order_flow.on_command(old, cmd, self.now(), self.rules)
        if result.rejection is not None:
            self.refuse(result.rejection, out)
            return None
        self.changed(partition, record, old, result.changes, out, index=result.reindex)
        if result.opened:   # 拆单: the new order, on this partition (its id names the same group)
            self.opened(partition, result.opened, out)
        return old

    def opened(self, partition: int, changes: tuple[WorkOrderChange, ...], out: list[Output]) -> None:
        first = changes[0].snapshot
        metrics.inc(metrics.WORKORDERS_OPENED, first.category, first.department or "", first.location.district_code)
        self.changed(partition, None, None, changes, out, index=True)

    def on_transfer(self, partition: int, t: MergeTransfer, out: list[Output]) -> None:
        """并单, hops 2 and 3 (docs/lifecycle.md "Merge and split")."""
        cmd = t.command
        if t.transfer == "close":
            # Where the duplicate lives: it ends as merged (the usual checks: state, role,
            # reason, idempotency) and its findings go on to the survivor, in the same batch.
            before = self.apply(partition, cmd, out)
            if before is not None:
                self.merge_step(order_flow.merge_closed(before, cmd, self.now()), out)
            return
        target = t.visited[-1] if t.visited else cmd.into
        record, survivor = self.held(partition, target)
        step = order_flow.merge_absorb(survivor, t, self.now(), self.rules)
        if survivor is None:
            log.error("并单失败 merge of %s: %s is not held here any more; its findings are recorded on its "
                      "merged change", t.duplicate.work_order_id if t.duplicate else "?", target)
        if step.changes:   # the duplicate's finders and events lead here now
            self.changed(partition, record, survivor, step.changes, out, index=True)
        self.merge_step(step, out)

    def on_event(self, partition: int, event: CityEvent, out: list[Output]) -> None:
        decision = self.indexes[partition].fuse(FusionEvent.of(event), self.router)
        metrics.inc(metrics.FUSION_OUTCOME, decision.action)
        record, old = self.held(partition, decision.work_order_id) if decision.action in ("join", "recovery") \
            else (None, None)
        outcome = order_flow.on_event(decision, old, event, self.now(), self.rules)
        if outcome.opened:
            first = outcome.opened[0].snapshot
            metrics.inc(metrics.WORKORDERS_OPENED, event.category, first.department or "",
                        event.location.district_code)
            self.changed(partition, None, None, outcome.opened, out)
        elif outcome.changes:
            metrics.inc(metrics.EVIDENCE_ATTACHED, event.category, event.kind)
            self.changed(partition, record, old, outcome.changes, out, timed=outcome.timed)

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
            changes = order_flow.due_changes(order, now, self.deadlines)
            if not changes:   # nothing fell due after all: only the next look is scheduled
                self.timers.schedule(partition, wo, order_flow.clocks(order, self.deadlines))
                continue
            mine: list[Output] = []
            self.store(partition, record, self.publish_all(changes, order, mine, record), mine)
            out += self.of_partition(partition, mine)
        out += self.refreshed(now_ts)
        out += self.warning_sweep.run(self, self.warnings, now)   # 区域预警 escalates open orders
        if now_ts - self.last_overdue >= 5.0:
            self.last_overdue = now_ts
            self.overdue_gauge.set_all(self.timers.overdue_counts(now_ts))
            self.evict_closed(now_ts)
        return out

    def refreshed(self, now_ts: float) -> list[Output]:
        """The ``workorders.state`` records of open orders that grew older than the refresh
        period, written again (an order written since waits its period from then)."""
        out: list[Output] = []
        for partition, wo in self.refresh.due(now_ts):
            held = self.open_held(partition, wo)
            if held is None:
                continue
            record, order = held
            if not self.refresh.stale(record.written_at, now_ts):
                self.refresh.written(partition, wo, record.written_at)
                continue
            mine: list[Output] = []
            self.store(partition, record, order, mine, timed=False)
            out += self.of_partition(partition, mine)
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
            if not order_flow.leaves_hot_state(snap, now_ts, self.closed_orders.keep):
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


def _count_open(snap: dict, counts: list[Counter]) -> None:
    """An open order in the gauges' counts, by OpenOrderGauge's keys: (status, department,
    district), (emergency level,), each open assisting part's (department,)."""
    counts[0][(snap["status"], snap["department"] or "", snap["location"]["district_code"])] += 1
    if snap.get("emergency_level"):
        counts[1][(snap["emergency_level"],)] += 1
    for a in snap.get("assists") or ():
        if a["status"] in OPEN_PARTS:
            counts[2][(a["department"],)] += 1
