"""The order workflow's decisions (issue 39): what a fused event, a command, a merge's hop
or the clock does to an order, what an order held in hot state needs when its partition
is assigned, and where each change goes.  Pure: the fuse stage
(stream/fuse_stage.py) looks the order up, calls one of these and emits what it says.

Every function takes the configured collaborators as ``OrderRules`` — built once from the
configuration (stream/collaborators.py), never read from it here — and the time as an
argument, so a month of deadlines runs in a unit test without a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from citybrain.domain import lifecycle
from citybrain.domain.area_warnings import Start, WarningBook, start_route
from citybrain.domain.deadlines import Deadlines
from citybrain.domain.escalation import Escalator
from citybrain.domain.fusion import Decision
from citybrain.domain.lifecycle import Locate
from citybrain.domain.routing import Route, Router
from citybrain.domain.workorder import attach, open_order
from citybrain.wire.models import (
    OPEN_STATUSES,
    CityEvent,
    Command,
    CommandRejection,
    Escalation,
    Location,
    MergeTransfer,
    WorkOrder,
    WorkOrderChange,
)


@dataclass(frozen=True, slots=True)
class OrderRules:
    """What the workflow decides with.  ``warnings``: the area warnings a new order may
    start under (区域预警; None: none are read); ``locate``: a split's new order takes the
    area of its first finding."""

    router: Router
    deadlines: Deadlines
    escalator: Escalator
    departments: frozenset[str]
    locate: Locate | None = None
    warnings: WarningBook | None = None


def area_codes(loc: Location) -> tuple[str, str, str, str]:
    """The router's area tuple: grid, community, street, district (longest code first)."""
    return loc.grid_code, loc.community_code, loc.street_code, loc.district_code


# -- an event ------------------------------------------------------------------------------


def route_new(event: CityEvent, now: datetime, rules: OrderRules) -> tuple[Route, Start | None]:
    """A new order's route and the area warnings it starts under.  A placeholder point
    (``needs_location``) routes nowhere and starts under none: it waits in triage."""
    route = rules.router.route(event.category, area_codes(event.location), event.asset_owner)
    if event.needs_location:
        return Route(None, route.priority, "needs_location"), None
    start = rules.warnings.start(event.category, event.location, now) if rules.warnings is not None else None
    return start_route(route, start, rules.escalator.config.warning_priority), start


def open_changes(work_order_id: str, event: CityEvent, now: datetime, rules: OrderRules) -> list[WorkOrderChange]:
    """立案 (and 派遣 when routed), its levels and assists brought up to date at once."""
    route, start = route_new(event, now, rules)
    changes = open_order(work_order_id, rules.router.group(event.category), event, route, now,
                         rules.deadlines, start)
    return changes + rules.escalator.follow(changes[-1].snapshot, now)


IgnoredWhy = Literal["duplicate", "orphan_recovery", "ended"]


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What one event does: ``opened`` (a new order's changes), or ``changes`` to the order
    it joined — ``timed``: whether they may move its clocks (more evidence alone does
    not) — or nothing, ``ignored`` saying why."""

    opened: tuple[WorkOrderChange, ...] = ()
    changes: tuple[WorkOrderChange, ...] = ()
    timed: bool = False
    ignored: IgnoredWhy | None = None


def on_event(decision: Decision, order: WorkOrder | None, event: CityEvent, now: datetime,
             rules: OrderRules) -> EventOutcome:
    """Fusion's ``decision`` for the event, carried out on ``order`` (the one it names, as
    stored; None when it names none).  An event of an ended order changes nothing: fusion
    keeps a closed order's events as duplicates while the order is kept (closed_state_days)
    and a later finding opens a new order."""
    if decision.action == "open":
        assert decision.work_order_id is not None   # fusion names the new order
        return EventOutcome(opened=tuple(open_changes(decision.work_order_id, event, now, rules)))
    if decision.action in ("duplicate", "orphan_recovery"):
        return EventOutcome(ignored=decision.action)
    if order is None:
        raise LookupError(f"{decision.work_order_id} is in the fusion index but has no stored record")
    if order.status not in OPEN_STATUSES:
        return EventOutcome(ignored="ended")
    return joined(order, event, now, rules)


def joined(order: WorkOrder, event: CityEvent, now: datetime, rules: OrderRules) -> EventOutcome:
    """Another finding (or a recovery) on an open order: the evidence, 返工 when one of its
    sensors' alarms came back while it waited for verification, and the escalation that
    follows."""
    change = attach(order, event, now)
    changes = [change]
    rework = rework_after_return(order, change.snapshot, event, now, rules.deadlines)
    if rework is not None:
        changes.append(rework)
    escalated = rules.escalator.follow(changes[-1].snapshot, now)
    return EventOutcome(changes=(*changes, *escalated),
                        timed=change.type == "recovery_recorded" or rework is not None or bool(escalated))


def rework_after_return(before: WorkOrder, attached: WorkOrder, event: CityEvent, now: datetime,
                        deadlines: Deadlines) -> WorkOrderChange | None:
    """返工: an IoT alarm from a device that had recovered on this order (``before``) came
    back.  Only an alarm after the device's recovery counts; a level move is the same
    alarm, graded."""
    device = event.device_id
    if event.source != "iot" or event.kind != "alarm" or device is None or device not in before.recovered_finders:
        return None
    return deadlines.alarm_returned(attached, device, now)


# -- a command -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A refusal, or the order's ``changes`` (escalation followed); ``reindex``: fusion
    follows its new category or the findings left; ``opened``: a split's new order."""

    rejection: CommandRejection | None = None
    changes: tuple[WorkOrderChange, ...] = ()
    reindex: bool = False
    opened: tuple[WorkOrderChange, ...] = ()


def on_command(order: WorkOrder | None, cmd: Command, now: datetime, rules: OrderRules) -> CommandResult:
    """A lifecycle command on the order it names (None: not held)."""
    outcome = lifecycle.apply(order, cmd, rules.departments, now, rules.deadlines,
                              router=rules.router, locate=rules.locate)
    if outcome.rejection is not None:
        return CommandResult(rejection=outcome.rejection)
    assert outcome.change is not None   # lifecycle.apply gives a rejection or a change
    changes = [outcome.change, *outcome.followups]
    changes += rules.escalator.follow(changes[-1].snapshot, outcome.change.at)
    opened = list(outcome.opened)
    if opened:
        opened += rules.escalator.follow(opened[-1].snapshot, opened[-1].at)
    return CommandResult(changes=tuple(changes), opened=tuple(opened),
                         reindex=cmd.action in ("recategorise", "split")
                         and changes[-1].snapshot.status in OPEN_STATUSES)


# -- a merge's hops (docs/lifecycle.md "Merge and split") ---------------------------------------


@dataclass(frozen=True, slots=True)
class MergeStep:
    """One hop's outcome: a refusal, the next hop (the transfer and the order whose fusion
    group's partition takes it), or the survivor's changes — or none of them (a replay)."""

    rejection: CommandRejection | None = None
    hop: tuple[MergeTransfer, str] | None = None
    changes: tuple[WorkOrderChange, ...] = ()


def merge_start(survivor: WorkOrder | None, cmd: Command, now: datetime) -> MergeStep:
    """Hop 1, where the survivor lives: only an open survivor takes a duplicate; then on to
    the duplicate."""
    refused = lifecycle.merge_check(survivor, cmd, now)
    if refused is not None:
        return MergeStep(rejection=refused)
    return MergeStep(hop=(MergeTransfer(transfer="close", command=cmd, at=now), cmd.work_order_id))


def merge_closed(duplicate_before: WorkOrder, cmd: Command, now: datetime) -> MergeStep:
    """Hop 2's onward hop, once the duplicate ended as merged: its findings go to the survivor."""
    assert cmd.into is not None   # merge_check refused a merge without one
    return MergeStep(hop=(MergeTransfer(transfer="absorb", command=cmd, duplicate=duplicate_before,
                                        visited=[cmd.into], at=now), cmd.into))


def merge_absorb(survivor: WorkOrder | None, t: MergeTransfer, now: datetime, rules: OrderRules) -> MergeStep:
    """Hop 3, where the survivor (``t.visited[-1]``) lives: its findings join it — or go on to
    the order it was merged into meanwhile."""
    cmd, duplicate = t.command, t.duplicate
    assert duplicate is not None and cmd.into is not None   # an absorb carries the duplicate
    target = t.visited[-1] if t.visited else cmd.into
    if survivor is None:   # gone from hot state between the hops: only an eviction does that
        return MergeStep(rejection=CommandRejection(
            command=cmd, reason="unknown_work_order", status="merged", at=now,
            detail=f"merge into {target}: the order is gone; the findings stay recorded on the merged change"))
    onward = survivor.merged_into
    if onward is not None and onward not in t.visited and onward != duplicate.work_order_id:
        return MergeStep(hop=(t.model_copy(update={"visited": [*t.visited, onward]}), onward))
    change = lifecycle.absorb(survivor, duplicate, cmd, now)
    if change is None:   # absorbed already (a replay)
        return MergeStep()
    return MergeStep(changes=(change, *rules.escalator.follow(change.snapshot, now)))


# -- the clock -------------------------------------------------------------------------------


def due_changes(order: WorkOrder, now: datetime, deadlines: Deadlines) -> list[WorkOrderChange]:
    """What has fallen due on the order by ``now``: each supervision step missed (oldest
    first), then the automatic verification of what they leave."""
    changes = deadlines.supervise_due(order, now)
    verified = deadlines.auto_verify(changes[-1].snapshot if changes else order, now)
    return [*changes, verified] if verified is not None else changes


def ended_at(snapshot: Mapping[str, Any]) -> float | None:
    """When an ended order ended (epoch seconds; None: no end is stamped), from its snapshot
    as stored (a dict: read for every held order at an assignment, not validated)."""
    ended = snapshot.get("closed_at") or snapshot.get("cancelled_at") or snapshot.get("merged_at")
    return datetime.fromisoformat(ended).timestamp() if ended else None


def leaves_hot_state(snapshot: Mapping[str, Any], now: float, keep_seconds: float) -> bool:
    """An ended order leaves hot state ``keep_seconds`` after it ended (at once if no end
    was stamped); an open one never."""
    if snapshot["status"] in OPEN_STATUSES:
        return False
    ended = ended_at(snapshot)
    return ended is None or now >= ended + keep_seconds


def end_of(order: WorkOrder, now: datetime) -> datetime:
    """When the ended ``order`` ended (``now`` if no end time was stamped)."""
    return order.closed_at or order.cancelled_at or order.merged_at or now


@dataclass(frozen=True, slots=True)
class Clocks:
    """What an order's timers wait for (epoch seconds): ``check_at``, the first moment a
    change may fall due (supervision step, automatic verification; None: nothing will),
    and ``overdue_at`` (None: ended) for the overdue gauge, counted by ``department``."""

    check_at: float | None
    overdue_at: float | None
    department: str = ""


def clocks(order: WorkOrder, deadlines: Deadlines) -> Clocks:
    """The order's timers after a change.  An ended order waits for nothing."""
    overdue = deadlines.overdue_at(order)
    if overdue is None:
        return Clocks(None, None)
    check = deadlines.next_check(order)
    return Clocks(check.timestamp() if check is not None else None, overdue.timestamp(), order.department or "")


@dataclass(frozen=True, slots=True)
class Restored:
    """What an order found in hot state needs when its partition is assigned.  Open:
    ``order`` (fusion indexes it) and its ``clocks`` — a check already past is what fell
    due while no worker held it, emitted at the next tick.  Ended: no clocks; the
    ``event_ids`` fusion keeps as duplicates and when it ``ended`` (its retention runs
    from there; the assignment's time if no end was stamped)."""

    work_order_id: str
    order: WorkOrder | None = None
    clocks: Clocks | None = None
    event_ids: tuple[str, ...] = ()
    ended: float | None = None


def restored(snapshot: Mapping[str, Any], now: float, deadlines: Deadlines) -> Restored:
    """An order's snapshot as stored (a dict: an ended one, most of hot state, is never
    validated) at an assignment at ``now``."""
    wo = snapshot["work_order_id"]
    if snapshot["status"] not in OPEN_STATUSES:
        ended = ended_at(snapshot)
        return Restored(wo, event_ids=tuple(e["event_id"] for e in snapshot["events"]),
                        ended=now if ended is None else ended)
    order = WorkOrder.model_validate(snapshot)
    return Restored(wo, order=order, clocks=clocks(order, deadlines))


# -- where a change goes ------------------------------------------------------------------------

OutletKind = Literal["events", "supervision", "dispatch", "emergency"]


@dataclass(frozen=True, slots=True)
class Outlet:
    """A topic a change's body goes to: its family, and the member (supervision level,
    department) where the family has several.  Reporters' notifications are followup's."""

    kind: OutletKind
    member: str | None = None


def outlets(change: WorkOrderChange, old: WorkOrder | None) -> list[Outlet]:
    """Every change goes on workorders.events; a supervision step to its level's desk; a
    dispatch (lead or assist) to the department; under emergency response (before or
    after the change) to 应急指挥 as well."""
    found = [Outlet("events")]
    snap = change.snapshot
    if change.type == "supervised" and change.supervision is not None:
        found.append(Outlet("supervision", change.supervision.level))
    if change.type == "dispatched" and snap.department is not None:
        found.append(Outlet("dispatch", snap.department))
    elif change.type == "assist_added" and change.part is not None:
        found.append(Outlet("dispatch", change.part))
    if snap.emergency_level is not None or (old is not None and old.emergency_level is not None):
        found.append(Outlet("emergency"))
    return found


def reached(esc: Escalation) -> str | None:
    """What an escalation raised, for its count: the warning level if it moved, else the
    emergency level if that moved, else the priority."""
    if esc.warning_to != esc.warning_from:
        return esc.warning_to
    if esc.emergency_to != esc.emergency_from:
        return esc.emergency_to
    return esc.priority_to
