"""The closed loop (闭环) as a pure state machine: 立案 → 派遣 → 签收 → 处置 → 核查 → 结案.

``apply(order, command, departments)`` returns either the change (new snapshot, version
+1) or the refusal with its reason.  It checks, in order: the command was not applied
before (idempotency by ``command_id``), the action is allowed in the current state, the
actor's role may do it, and the actor's scope covers this order.

| action | from | to | who |
|---|---|---|---|
| dispatch 派遣 | registered | dispatched | operator |
| accept 签收 | dispatched | accepted | the order's department, operator |
| return 退回 | dispatched | registered | the order's department, operator |
| handle 处置反馈 | accepted | handled | the order's department, operator |
| verify 核查通过 | handled | closed | grid member of the order's grid, operator, system |
| reject_verification 核查不通过 | handled | accepted (+1 rework) | grid member, operator, system |
| cancel 作废 | any open | cancelled | operator |
| extend 延期 | any open | (same) order and running stage limits + extend_minutes, dues moved | the order's department, operator |
| supervise 督办 | any open | (same) level +1 (≤ 3) | operator, system |
| comment 备注 | any | (same) | operator, the order's department or an assist, the street desk of its street, grid member of its grid |

A street desk (属地, role ``street``) acts as the department ``street.<street_code>``.
| assist 协办 | any open | (same) + an assisting part (dispatched) | operator |
| release_assist 解除协办 | any open | (same), the part released | operator |
| set_emergency_level 应急响应 | any open | (same), emergency level set or ended | operator |
| visit 回访 | handled, closed | (same) + the reporter's satisfaction; unsatisfied on handled → accepted (+1 rework) | operator |

Joint handling (联动处置, DESIGN §12): an assisting department's ``accept`` / ``handle`` /
``return`` act on its own part (dispatched → accepted → handled; return releases it); an
operator names the part with ``department``.  The lead's ``handle`` is refused while any
part is still dispatched or accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from citybrain.domain.deadlines import Deadlines
from citybrain.domain.escalation import EMERGENCY_RANK, add_assist, describe
from citybrain.wire.models import (
    OPEN_STATUSES,
    Assist,
    Command,
    CommandRejection,
    Escalation,
    Visit,
    WorkOrder,
    WorkOrderChange,
)


class Rule(NamedTuple):
    """What a command may do to the order."""

    allowed_from: tuple[str, ...]   # the statuses it applies in
    target: str | None              # the status after it (None: unchanged)
    change: str                     # the change type it records
    roles: frozenset[str]           # who may send it


class PartRule(NamedTuple):
    """What an assisting department's command does to its part."""

    allowed_from: tuple[str, ...]   # the part states it applies in
    target: str                     # the part's state after it
    change: str                     # the change type it records


RULES: dict[str, Rule] = {
    "dispatch": Rule(("registered",), "dispatched", "dispatched", frozenset({"operator"})),
    "accept": Rule(("dispatched",), "accepted", "accepted", frozenset({"department", "street", "operator"})),
    "return": Rule(("dispatched",), "registered", "returned", frozenset({"department", "street", "operator"})),
    "handle": Rule(("accepted",), "handled", "handled", frozenset({"department", "street", "operator"})),
    "verify": Rule(("handled",), "closed", "verified", frozenset({"grid", "operator", "system"})),
    "reject_verification": Rule(("handled",), "accepted", "verification_rejected",
                                frozenset({"grid", "operator", "system"})),
    "cancel": Rule(OPEN_STATUSES, "cancelled", "cancelled", frozenset({"operator"})),
    "extend": Rule(OPEN_STATUSES, None, "extended", frozenset({"department", "street", "operator"})),
    "supervise": Rule(OPEN_STATUSES, None, "supervised", frozenset({"operator", "system"})),
    "comment": Rule(OPEN_STATUSES + ("closed", "cancelled"), None, "commented",
                    frozenset({"operator", "department", "street", "grid"})),
    "assist": Rule(OPEN_STATUSES, None, "assist_added", frozenset({"operator"})),
    "release_assist": Rule(OPEN_STATUSES, None, "assist_released", frozenset({"operator"})),
    "set_emergency_level": Rule(OPEN_STATUSES, None, "escalated", frozenset({"operator"})),
    "visit": Rule(("handled", "closed"), None, "visited", frozenset({"operator"})),
}

PART_RULES: dict[str, PartRule] = {
    "accept": PartRule(("dispatched",), "accepted", "assist_accepted"),
    "handle": PartRule(("accepted",), "handled", "assist_handled"),
    "return": PartRule(("dispatched",), "released", "assist_returned"),
}
OPEN_PARTS = ("dispatched", "accepted")


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    change: WorkOrderChange | None = None
    rejection: CommandRejection | None = None


def _refuse(order: WorkOrder | None, cmd: Command, reason: str, detail: str, now: datetime) -> CommandOutcome:
    return CommandOutcome(rejection=CommandRejection(command=cmd, reason=reason, detail=detail,
                                              status=order.status if order else None, at=now))


def _in_scope(order: WorkOrder, cmd: Command) -> str | None:
    """None when the actor may act on this order, else why not."""
    actor = cmd.actor
    if actor.role == "street" and cmd.action == "comment" and order.location.street_code == actor.street_code:
        return None   # a street desk (属地) may note on any order of its street
    if actor.role in ("department", "street") and actor.department != order.department \
            and not (cmd.action == "comment" and _part(order, actor.department) is not None):
        return (f"department {actor.department!r} acts only on its own orders and parts; this one is "
                f"{order.department or 'not dispatched'}"
                + (f", assisted by {', '.join(a.department for a in order.assists)}" if order.assists else ""))
    if actor.role == "grid":
        if not actor.grid_prefix or not order.location.grid_code.startswith(actor.grid_prefix):
            return (f"grid member of {actor.grid_prefix or '?'} acts only within that grid prefix; "
                    f"this order is in {order.location.grid_code}")
    return None


def apply(order: WorkOrder | None, cmd: Command, departments: frozenset[str],
          now: datetime, deadlines: Deadlines) -> CommandOutcome:
    if order is None:
        return _refuse(None, cmd, "unknown_work_order", f"no work order {cmd.work_order_id}", now)
    if cmd.command_id in order.applied_commands:
        return _refuse(order, cmd, "duplicate_command",
                       f"command {cmd.command_id} was applied already; applying it again changes nothing", now)
    part = _part_addressed(order, cmd)
    if part is not None:
        return _apply_part(order, cmd, part, now, deadlines)
    allowed_from, target, change_type, roles = RULES[cmd.action]
    if order.status not in allowed_from:
        return _refuse(order, cmd, "not_allowed_in_state",
                       f"{cmd.action} is not allowed when the order is {order.status}", now)
    if cmd.actor.role not in roles:
        return _refuse(order, cmd, "forbidden_role",
                       f"role {cmd.actor.role} may not {cmd.action} (allowed: {', '.join(sorted(roles))})", now)
    why = _in_scope(order, cmd)
    if why:
        return _refuse(order, cmd, "out_of_scope", why, now)

    update: dict[str, Any] = {"version": order.version + 1,
                    "applied_commands": [*order.applied_commands, cmd.command_id]}
    if target is not None:
        update["status"] = target
        if target != order.status:
            update.update(deadlines.enter(order, target, now))  # stage clocks (re)start or stop
    if cmd.note:
        update["notes"] = [*order.notes, f"{now.isoformat()} {cmd.actor.role}:{cmd.actor.id} {cmd.note}"]
    if cmd.evidence:
        update["evidence"] = order.evidence + [u for u in cmd.evidence if u not in order.evidence]

    action = cmd.action
    if action == "dispatch":
        if not cmd.department:
            return _refuse(order, cmd, "missing_field", "dispatch needs a department", now)
        if cmd.department not in departments:
            return _refuse(order, cmd, "unknown_department", f"no department {cmd.department!r}", now)
        update.update(department=cmd.department, dispatched_at=now,
                      route_rule=f"operator:{cmd.actor.id}")
    elif action == "accept":
        update["accepted_at"] = now
    elif action == "return":
        update.update(department=None, return_count=order.return_count + 1)
    elif action == "handle":
        still = [a.department for a in order.assists if a.status in OPEN_PARTS]
        if still:
            return _refuse(order, cmd, "assist_open",
                           f"协办未完成 assists still open: {', '.join(still)} — each must handle or be "
                           "released before the lead's handle", now)
        update["handled_at"] = now
    elif action == "verify":
        update["closed_at"] = now
    elif action == "reject_verification":
        update.update(rework_count=order.rework_count + 1, handled_at=None)
    elif action == "cancel":
        update["cancelled_at"] = now
    elif action == "extend":
        if not cmd.extend_minutes or not cmd.note:
            return _refuse(order, cmd, "missing_field", "extend needs extend_minutes and a note (the reason)", now)
        update.update(extension_count=order.extension_count + 1,
                      **deadlines.extend(order, cmd.extend_minutes))
    elif action == "supervise":
        if order.supervision_level >= 3:
            return _refuse(order, cmd, "not_allowed_in_state", "already supervised at city level", now)
        update["supervision_level"] = order.supervision_level + 1
    elif action == "assist":
        if not cmd.department:
            return _refuse(order, cmd, "missing_field", "assist needs a department", now)
        if cmd.department not in departments:
            return _refuse(order, cmd, "unknown_department", f"no department {cmd.department!r}", now)
        held = _part(order, cmd.department)
        if cmd.department == order.department or (held is not None and held.status in OPEN_PARTS):
            return _refuse(order, cmd, "not_allowed_in_state",
                           f"{cmd.department} already works this order", now)
        change = add_assist(order.model_copy(update={k: v for k, v in update.items() if k != "version"}),
                            cmd.department, f"operator:{cmd.actor.id}", now, deadlines, cmd.actor)
        return CommandOutcome(change=change)
    elif action == "release_assist":
        held = _part(order, cmd.department) if cmd.department else None
        if held is None or held.status not in OPEN_PARTS:
            return _refuse(order, cmd, "missing_field" if not cmd.department else "not_allowed_in_state",
                           f"release_assist needs the department of an open assist "
                           f"(open: {', '.join(a.department for a in order.assists if a.status in OPEN_PARTS) or 'none'})",
                           now)
        update["assists"] = _with_part(order, held.model_copy(update={
            "status": "released", "released_at": now, "accept_due_at": None, "handle_due_at": None}))
        new = order.model_copy(update=update)
        return CommandOutcome(change=WorkOrderChange(work_order_id=order.work_order_id, version=new.version,
                                              type=change_type, at=now, actor=cmd.actor, snapshot=new,
                                              part=held.department))
    elif action == "visit":
        if cmd.satisfaction is None:
            return _refuse(order, cmd, "missing_field", "visit needs satisfaction "
                           "(satisfied, basically_satisfied or unsatisfied)", now)
        update["visits"] = [*order.visits, Visit(satisfaction=cmd.satisfaction, at=now, by=cmd.actor.id,
                                                 report_id=cmd.report_id, note=cmd.note)]
        if cmd.satisfaction == "unsatisfied" and order.status == "handled":
            # 回访不满意 before 结案: the verification failed — back to the department (返工).
            update.update(status="accepted", rework_count=order.rework_count + 1, handled_at=None,
                          **deadlines.enter(order, "accepted", now))
    elif action == "set_emergency_level":
        if cmd.emergency_level is None:
            return _refuse(order, cmd, "missing_field", "set_emergency_level needs emergency_level "
                           "(IV, III, II, I or none)", now)
        level = None if cmd.emergency_level == "none" else cmd.emergency_level
        if level == order.emergency_level:
            return _refuse(order, cmd, "not_allowed_in_state", f"the emergency level is {level or 'none'} already", now)
        esc = Escalation(reason="operator", warning_from=order.warning_level, warning_to=order.warning_level,
                         priority_from=order.priority, priority_to=order.priority,
                         emergency_from=order.emergency_level, emergency_to=level)
        update.update(emergency_level=level, emergency_set_by=f"operator:{cmd.actor.id}" if level else None)
        update["notes"] = [*update.get("notes", order.notes),
                           f"{now.isoformat()} {cmd.actor.role}:{cmd.actor.id} {describe(esc)}"]
        new = order.model_copy(update=update)
        up = EMERGENCY_RANK[level] > EMERGENCY_RANK[order.emergency_level]
        return CommandOutcome(change=WorkOrderChange(work_order_id=order.work_order_id, version=new.version,
                                              type="escalated" if up else "deescalated", at=now,
                                              actor=cmd.actor, snapshot=new, escalation=esc))
    new = order.model_copy(update=update)
    return CommandOutcome(change=WorkOrderChange(work_order_id=order.work_order_id, version=new.version,
                                          type=change_type, at=now, actor=cmd.actor, snapshot=new,
                                          role="lead" if change_type == "dispatched" else None))


def _part(order: WorkOrder, department: str | None) -> Assist | None:
    return next((a for a in order.assists if a.department == department), None)


def _with_part(order: WorkOrder, part: Assist) -> list[Assist]:
    return [part if a.department == part.department else a for a in order.assists]


def _part_addressed(order: WorkOrder, cmd: Command) -> Assist | None:
    """The assisting part an accept / handle / return acts on: the actor's own (a
    department that is not the lead), or the one an operator names."""
    if cmd.action not in PART_RULES:
        return None
    if cmd.actor.role in ("department", "street") and cmd.actor.department != order.department:
        return _part(order, cmd.actor.department)
    if cmd.actor.role == "operator" and cmd.department and cmd.department != order.department:
        return _part(order, cmd.department)
    return None


def _apply_part(order: WorkOrder, cmd: Command, part: Assist, now: datetime,
                deadlines: Deadlines) -> CommandOutcome:
    allowed_from, target, change_type = PART_RULES[cmd.action]
    if order.status not in OPEN_STATUSES:
        return _refuse(order, cmd, "not_allowed_in_state",
                       f"{cmd.action} is not allowed when the order is {order.status}", now)
    if part.status not in allowed_from:
        return _refuse(order, cmd, "not_allowed_in_state",
                       f"协办 {part.department}: {cmd.action} is not allowed when its part is {part.status}", now)
    moved: dict[str, Any] = {"status": target, "accept_due_at": None, "handle_due_at": None, "stage_started_at": None}
    if target == "accepted":
        moved.update(accepted_at=now, stage_started_at=now,
                     handle_due_at=deadlines.add(now, order.handle_limit_hours, order.time_limit_basis))
    elif target == "handled":
        moved["handled_at"] = now
    else:
        moved["released_at"] = now
    update: dict[str, Any] = {"version": order.version + 1, "applied_commands": [*order.applied_commands, cmd.command_id],
                    "assists": _with_part(order, part.model_copy(update=moved))}
    if cmd.note:
        update["notes"] = [*order.notes, f"{now.isoformat()} {cmd.actor.role}:{cmd.actor.id} "
                                         f"[协办 {part.department}] {cmd.note}"]
    if cmd.evidence:
        update["evidence"] = order.evidence + [u for u in cmd.evidence if u not in order.evidence]
    new = order.model_copy(update=update)
    return CommandOutcome(change=WorkOrderChange(work_order_id=order.work_order_id, version=new.version,
                                          type=change_type, at=now, actor=cmd.actor, snapshot=new,
                                          part=part.department))
