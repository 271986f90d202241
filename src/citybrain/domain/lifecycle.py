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
| comment 备注 | any | (same) | operator, the order's department, grid member of its grid |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from citybrain.domain.deadlines import Deadlines
from citybrain.wire.models import Command, CommandRejection, WorkOrder, WorkOrderChange

OPEN = ("registered", "dispatched", "accepted", "handled")

# action -> (allowed from-states, target state or None for "unchanged", change type, roles)
RULES: dict[str, tuple[tuple[str, ...], str | None, str, frozenset[str]]] = {
    "dispatch": (("registered",), "dispatched", "dispatched", frozenset({"operator"})),
    "accept": (("dispatched",), "accepted", "accepted", frozenset({"department", "operator"})),
    "return": (("dispatched",), "registered", "returned", frozenset({"department", "operator"})),
    "handle": (("accepted",), "handled", "handled", frozenset({"department", "operator"})),
    "verify": (("handled",), "closed", "verified", frozenset({"grid", "operator", "system"})),
    "reject_verification": (("handled",), "accepted", "verification_rejected",
                            frozenset({"grid", "operator", "system"})),
    "cancel": (OPEN, "cancelled", "cancelled", frozenset({"operator"})),
    "extend": (OPEN, None, "extended", frozenset({"department", "operator"})),
    "supervise": (OPEN, None, "supervised", frozenset({"operator", "system"})),
    "comment": (OPEN + ("closed", "cancelled"), None, "commented",
                frozenset({"operator", "department", "grid"})),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    change: WorkOrderChange | None = None
    rejection: CommandRejection | None = None


def _refuse(order: WorkOrder | None, cmd: Command, reason: str, detail: str, now: datetime) -> Outcome:
    return Outcome(rejection=CommandRejection(command=cmd, reason=reason, detail=detail,
                                              status=order.status if order else None, at=now))


def _in_scope(order: WorkOrder, cmd: Command) -> str | None:
    """None when the actor may act on this order, else why not."""
    actor = cmd.actor
    if actor.role == "department" and actor.department != order.department:
        return (f"department {actor.department!r} acts only on its own orders; this one is "
                f"{order.department or 'not dispatched'}")
    if actor.role == "grid":
        if not actor.grid_prefix or not order.location.grid_code.startswith(actor.grid_prefix):
            return (f"grid member of {actor.grid_prefix or '?'} acts only within that grid prefix; "
                    f"this order is in {order.location.grid_code}")
    return None


def apply(order: WorkOrder | None, cmd: Command, departments: frozenset[str],
          now: datetime, deadlines: Deadlines) -> Outcome:
    if order is None:
        return _refuse(None, cmd, "unknown_work_order", f"no work order {cmd.work_order_id}", now)
    if cmd.command_id in order.applied_commands:
        return _refuse(order, cmd, "duplicate_command",
                       f"command {cmd.command_id} was applied already; applying it again changes nothing", now)
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

    update: dict = {"version": order.version + 1,
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
    new = order.model_copy(update=update)
    return Outcome(change=WorkOrderChange(work_order_id=order.work_order_id, version=new.version,
                                          type=change_type, at=now, actor=cmd.actor, snapshot=new))
