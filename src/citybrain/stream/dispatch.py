"""The hot path's shell: fused events → work orders → ``dispatch.<department>``.

Reads the internal fusion inbox (CityEvents keyed by fusion group), asks the pure
FusionIndex which order an event belongs to, builds the changes with the work-order
domain, keeps each order's snapshot in the ``work_orders`` table and publishes every
change on ``workorders.events`` and each dispatch on its department's topic.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import faust
import orjson
from pydantic_core import to_json

from citybrain import metrics
from citybrain.config import Config
from citybrain.domain import lifecycle
from citybrain.domain.fusion import FusionEvent, FusionIndex, group_of, open_entry
from citybrain.domain.normalize import RecordMeta, dead_letter, field_path
from citybrain.domain.workorder import OPEN_STATUSES, attach, open_order
from citybrain.kafka.topics import Topics
from pydantic import ValidationError

from citybrain.wire.models import CityEvent, Command, CommandRejection, WorkOrder, WorkOrderChange

log = logging.getLogger("citybrain.dispatch")

Emit = Callable[[str, bytes | None, bytes], Awaitable[None]]


class OrderBook:
    """This worker's open orders: the FusionIndex, rebuilt from the table when the
    partitions it owns change, and the open-order gauge."""

    def __init__(self, table):
        self.table = table
        self.index: FusionIndex | None = None
        self.open_counts: Counter[tuple[str, str]] = Counter()

    def invalidate(self) -> None:
        self.index = None

    def ensure(self) -> FusionIndex:
        if self.index is None:
            started = time.monotonic()
            index = FusionIndex()
            counts: Counter[tuple[str, str]] = Counter()
            for _, data in self.table.items():
                snap = WorkOrder.model_validate(data)
                if snap.status in OPEN_STATUSES:
                    index.add(open_entry(snap))
                    counts[(snap.status, snap.department or "")] += 1
            self.index = index
            self._set_gauges(counts)
            log.info("工单索引已重建 open-order index rebuilt: %d open orders in %.2fs",
                     len(index), time.monotonic() - started)
        return self.index

    def _set_gauges(self, counts: Counter) -> None:
        for key in set(self.open_counts) | set(counts):
            metrics.WORKORDERS_OPEN.labels(*key).set(counts.get(key, 0))
        self.open_counts = counts

    def moved(self, old: WorkOrder | None, new: WorkOrder) -> None:
        counts = Counter(self.open_counts)
        if old is not None and old.status in OPEN_STATUSES:
            counts[(old.status, old.department or "")] -= 1
        if new.status in OPEN_STATUSES:
            counts[(new.status, new.department or "")] += 1
        self._set_gauges(counts)


def install(app: faust.App, config: Config, topics: Topics, partitions: int, emit: Emit) -> OrderBook:
    router = config.router
    inbox = app.topic(topics.fusion_inbox, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    work_orders = app.Table(
        "work_orders", default=None, partitions=partitions,
        schema=faust.Schema(key_type=str, value_type=dict, key_serializer="json",
                            value_serializer="json"),
        help="work-order snapshots, in the partition of their fusion group")
    book = OrderBook(work_orders)

    @app.on_partitions_revoked.connect
    async def _revoked(app, revoked, **kwargs) -> None:
        book.invalidate()

    @app.on_partitions_assigned.connect
    async def _assigned(app, assigned, **kwargs) -> None:
        book.invalidate()

    async def publish(change: WorkOrderChange, old: WorkOrder | None) -> None:
        """Every change on workorders.events; a dispatch also on the department's topic.
        The caller stores the final snapshot once per event."""
        body = to_json(change)
        key = change.work_order_id.encode()
        await emit(topics.workorder_events, key, body)
        metrics.TRANSITIONS.labels(change.type).inc()
        book.moved(old, change.snapshot)
        if change.type == "dispatched":
            snap = change.snapshot
            await emit(topics.dispatch(snap.department), key, body)
            if change.actor.role == "system":  # the hot path; a hand dispatch includes triage time
                metrics.DISPATCH_LATENCY.labels(snap.department, snap.priority).observe(
                    time.time() - snap.source_ingested_at.timestamp())

    commands = app.topic(topics.commands, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")
    departments = frozenset(d.code for d in config.taxonomy.departments)

    async def reject(rejection: CommandRejection) -> None:
        metrics.COMMANDS_REJECTED.labels(rejection.reason).inc()
        await emit(topics.rejected, rejection.command.work_order_id.encode(), to_json(rejection))

    @app.agent(commands, name="route_commands")
    async def route_commands(stream):
        """workorders.commands (keyed by order id) → the inbox partition of the order's group."""
        async for event in stream.events():
            m = event.message
            try:
                cmd = Command.model_validate_json(event.value or b"")
            except ValidationError as e:
                err = e.errors(include_url=False)[0]
                meta = RecordMeta(m.topic, m.partition, m.offset, m.timestamp, m.key)
                await emit(topics.deadletter, m.key, to_json(dead_letter(
                    "command", event.value, meta,
                    "missing_field" if err["type"] == "missing" else "invalid_field",
                    str(e).splitlines()[0], field_path(err["loc"]))))
                continue
            group = group_of(cmd.work_order_id)
            if group is None:
                await reject(CommandRejection(command=cmd, reason="unknown_work_order",
                                              detail=f"{cmd.work_order_id} is not a work-order id",
                                              at=datetime.now(UTC)))
                continue
            await emit(topics.fusion_inbox, group.encode(), event.value)

    async def on_command(cmd: Command) -> None:
        data = work_orders.get(cmd.work_order_id)
        old = WorkOrder.model_validate(data) if data else None
        outcome = lifecycle.apply(old, cmd, departments, datetime.now(UTC))
        if outcome.rejection is not None:
            await reject(outcome.rejection)
            return
        change = outcome.change
        await publish(change, old)
        work_orders[change.work_order_id] = change.snapshot.model_dump(mode="json")
        if change.snapshot.status not in OPEN_STATUSES:
            book.ensure().close(change.work_order_id)

    @app.agent(inbox, name="fuse_and_dispatch")
    async def fuse_and_dispatch(stream):
        async for raw in stream:
            doc = orjson.loads(raw)
            if "command_id" in doc:  # the inbox carries commands as well as events
                await on_command(Command.model_validate(doc))
                continue
            event = CityEvent.model_validate(doc)
            index = book.ensure()
            decision = index.fuse(FusionEvent.of(event), router)
            metrics.FUSION_OUTCOME.labels(decision.action).inc()
            now = datetime.now(UTC)
            if decision.action == "open":
                loc = event.location
                route = router.route(event.category, (loc.grid_code, loc.community_code,
                                                      loc.street_code, loc.district_code),
                                     event.asset_owner)
                group = router.group(event.category)
                changes = open_order(decision.work_order_id, group, event, route, now)
                metrics.WORKORDERS_OPENED.labels(event.category, route.department or "").inc()
                old = None
                for change in changes:
                    await publish(change, old)
                    old = change.snapshot
                work_orders[decision.work_order_id] = old.model_dump(mode="json")
            elif decision.action in ("join", "recovery"):
                old = WorkOrder.model_validate(work_orders[decision.work_order_id])
                metrics.EVIDENCE_ATTACHED.labels(event.category, event.kind).inc()
                change = attach(old, event, now)
                await publish(change, old)
                work_orders[decision.work_order_id] = change.snapshot.model_dump(mode="json")

    return book
