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
| recategorise 改类 | any open | (same) new category: routing and limits re-applied; another department → registered, then dispatched to it | operator |
| reprioritise 调整优先级 | any open | (same) new priority, limits of (category, priority) re-applied | operator |
| merge 并单 | any open | merged (closed); its findings move to ``into`` (``absorb`` there) | operator |
| split 拆单 | any open | (same) minus the findings named; a new order opens with them | operator |

Irreversible commands (``IRREVERSIBLE``: cancel, merge) need a reason (``note``).  A merge
touches two orders that may live on different partitions: ``merge_check`` runs where the
survivor lives, ``apply`` closes the duplicate where it lives, ``absorb`` folds its findings
into the survivor (docs/lifecycle.md "Merge and split").

Joint handling (联动处置, DESIGN §12): an assisting department's ``accept`` / ``handle`` /
``return`` act on its own part (dispatched → accepted → handled; return releases it); an
operator names the part with ``department``.  The lead's ``handle`` is refused while any
part is still dispatched or accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from citybrain.domain.deadlines import Deadlines
from citybrain.domain.escalation import EMERGENCY_RANK, add_assist, describe
from citybrain.domain.fusion import work_order_id_for
from citybrain.domain.routing import Router
from citybrain.wire.enums import OPEN_PARTS as OPEN_PARTS
from citybrain.wire.enums import PRIORITY_ZH
from citybrain.wire.models import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    Assist,
    Command,
    CommandRejection,
    Escalation,
    EventRef,
    Location,
    MergeInfo,
    SplitInfo,
    Visit,
    WorkOrder,
    WorkOrderChange,
)


class Area(Protocol):
    """Where a point lies (``CityMap.locate``'s answer)."""

    @property
    def grid_code(self) -> str: ...
    @property
    def community_code(self) -> str: ...
    @property
    def street_code(self) -> str: ...
    @property
    def district_code(self) -> str: ...


Locate = Callable[[float, float], Area | None]


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
    "comment": Rule(OPEN_STATUSES + CLOSED_STATUSES, None, "commented",
                    frozenset({"operator", "department", "street", "grid"})),
    "assist": Rule(OPEN_STATUSES, None, "assist_added", frozenset({"operator"})),
    "release_assist": Rule(OPEN_STATUSES, None, "assist_released", frozenset({"operator"})),
    "set_emergency_level": Rule(OPEN_STATUSES, None, "escalated", frozenset({"operator"})),
    "visit": Rule(("handled", "closed"), None, "visited", frozenset({"operator"})),
    "recategorise": Rule(OPEN_STATUSES, None, "recategorised", frozenset({"operator"})),
    "reprioritise": Rule(OPEN_STATUSES, None, "reprioritised", frozenset({"operator"})),
    "merge": Rule(OPEN_STATUSES, "merged", "merged", frozenset({"operator"})),
    "split": Rule(OPEN_STATUSES, None, "split", frozenset({"operator"})),
}
# Commands that cannot be undone: each needs a reason (a non-empty ``note``).
IRREVERSIBLE = frozenset({"cancel", "merge"})

PART_RULES: dict[str, PartRule] = {
    "accept": PartRule(("dispatched",), "accepted", "assist_accepted"),
    "handle": PartRule(("accepted",), "handled", "assist_handled"),
    "return": PartRule(("dispatched",), "released", "assist_returned"),
}


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """A refusal, or the change with what follows from it on the same order
    (``followups``: a recategorised order's dispatch to its new department) and the
    changes of an order it opened (``opened``: split)."""

    change: WorkOrderChange | None = None
    rejection: CommandRejection | None = None
    followups: tuple[WorkOrderChange, ...] = ()
    opened: tuple[WorkOrderChange, ...] = ()


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
          now: datetime, deadlines: Deadlines, *, router: Router | None = None,
          locate: Locate | None = None) -> CommandOutcome:
    """``router`` (recategorise, split: routing re-applied) and ``locate`` (split: the area
    of the new order's first finding) are needed only by those commands."""
    if order is None:
        return _refuse(None, cmd, "unknown_work_order", f"no work order {cmd.work_order_id}", now)
    if cmd.command_id in order.applied_commands:
        return _refuse(order, cmd, "duplicate_command",
                       f"command {cmd.command_id} was applied already; applying it again changes nothing", now)
    part = _part_addressed(order, cmd)
    if part is not None:
        return _apply_part(order, cmd, part, now, deadlines)
    rule = RULES[cmd.action]
    refused = _admission(order, cmd, rule, now)
    if refused is not None:
        return refused
    update = _common_update(order, cmd, rule.target, now, deadlines)
    action = cmd.action
    if action in ("recategorise", "reprioritise", "merge", "split"):
        return _operator_command(order, cmd, update, departments, now, deadlines, router, locate)
    if action in ("assist", "release_assist", "set_emergency_level"):
        return _joint_command(order, cmd, update, rule.change, departments, now, deadlines)
    refused = _lifecycle_move(order, cmd, update, departments, now, deadlines)
    if refused is not None:
        return refused
    new = order.model_copy(update=update)
    return CommandOutcome(change=WorkOrderChange(work_order_id=order.work_order_id, version=new.version,
                                          type=rule.change, at=now, actor=cmd.actor, snapshot=new,
                                          role="lead" if rule.change == "dispatched" else None))


def _admission(order: WorkOrder, cmd: Command, rule: Rule, now: datetime) -> CommandOutcome | None:
    """The refusal of a command its rule does not admit here (state, role, scope, reason), or None."""
    if order.status not in rule.allowed_from:
        return _refuse(order, cmd, "not_allowed_in_state",
                       f"{cmd.action} is not allowed when the order is {order.status}", now)
    if cmd.actor.role not in rule.roles:
        return _refuse(order, cmd, "forbidden_role",
                       f"role {cmd.actor.role} may not {cmd.action} (allowed: {', '.join(sorted(rule.roles))})", now)
    why = _in_scope(order, cmd)
    if why:
        return _refuse(order, cmd, "out_of_scope", why, now)
    if cmd.action in IRREVERSIBLE and not cmd.note.strip():
        return _refuse(order, cmd, "missing_field",
                       f"{cmd.action} cannot be undone: it needs a reason (note)", now)
    return None


def _common_update(order: WorkOrder, cmd: Command, target: str | None, now: datetime,
                   deadlines: Deadlines) -> dict[str, Any]:
    """What every admitted command changes: version, applied commands, the rule's status
    (with its stage clocks), the note and the evidence it brings."""
    update: dict[str, Any] = {"version": order.version + 1,
                    "applied_commands": [*order.applied_commands, cmd.command_id]}
    if target is not None:
        update["status"] = target
        if target != order.status:
            update.update(deadlines.enter(order, target, now))  # stage clocks (re)start or stop
    if cmd.note:
        update["notes"] = [*order.notes, f"{now.isoformat()} {cmd.actor.role}:{cmd.actor.id} {cmd.note}"]
    if cmd.evidence and cmd.action != "split":   # split's evidence names what leaves the order
        update["evidence"] = order.evidence + [u for u in cmd.evidence if u not in order.evidence]
    return update


def _operator_command(order: WorkOrder, cmd: Command, update: dict[str, Any], departments: frozenset[str],
                      now: datetime, deadlines: Deadlines, router: Router | None,
                      locate: Locate | None) -> CommandOutcome:
    """recategorise, reprioritise, merge, split (below: "operator commands of city volume")."""
    action = cmd.action
    if action in ("recategorise", "split") and router is None:
        raise ValueError(f"{action} needs the router")
    if action == "recategorise":
        assert router is not None
        return _recategorise(order, cmd, update, router, departments, now, deadlines)
    if action == "reprioritise":
        return _reprioritise(order, cmd, update, now, deadlines)
    if action == "merge":
        return _merge(order, cmd, update, now)
    assert router is not None
    return _split(order, cmd, update, router, locate, now, deadlines)


def _lifecycle_move(order: WorkOrder, cmd: Command, update: dict[str, Any], departments: frozenset[str],
                    now: datetime, deadlines: Deadlines) -> CommandOutcome | None:
    """The plain moves and records of the loop (dispatch … cancel, extend, supervise, visit,
    comment): adds what the action sets to ``update``; the refusal, or None."""
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
    elif action == "visit":
        return _visit(order, cmd, update, now, deadlines)
    return None


def _visit(order: WorkOrder, cmd: Command, update: dict[str, Any], now: datetime,
           deadlines: Deadlines) -> CommandOutcome | None:
    if cmd.satisfaction is None:
        return _refuse(order, cmd, "missing_field", "visit needs satisfaction "
                       "(satisfied, basically_satisfied or unsatisfied)", now)
    update["visits"] = [*order.visits, Visit(satisfaction=cmd.satisfaction, at=now, by=cmd.actor.id,
                                             report_id=cmd.report_id, note=cmd.note)]
    if cmd.satisfaction == "unsatisfied" and order.status == "handled":
        # 回访不满意 before 结案: the verification failed — back to the department (返工).
        update.update(status="accepted", rework_count=order.rework_count + 1, handled_at=None,
                      **deadlines.enter(order, "accepted", now))
    return None


# -- joint handling (联动): assisting parts and the emergency level --

def _joint_command(order: WorkOrder, cmd: Command, update: dict[str, Any], change_type: str,
                   departments: frozenset[str], now: datetime, deadlines: Deadlines) -> CommandOutcome:
    """assist, release_assist, set_emergency_level."""
    if cmd.action == "assist":
        return _add_assist(order, cmd, update, departments, now, deadlines)
    if cmd.action == "release_assist":
        return _release_assist(order, cmd, update, change_type, now)
    return _set_emergency_level(order, cmd, update, now)


def _add_assist(order: WorkOrder, cmd: Command, update: dict[str, Any], departments: frozenset[str],
                now: datetime, deadlines: Deadlines) -> CommandOutcome:
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


def _release_assist(order: WorkOrder, cmd: Command, update: dict[str, Any], change_type: str,
                    now: datetime) -> CommandOutcome:
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


def _set_emergency_level(order: WorkOrder, cmd: Command, update: dict[str, Any],
                         now: datetime) -> CommandOutcome:
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


# -- operator commands of city volume (DESIGN §14): recategorise, reprioritise, merge, split --

def _said(cmd: Command, now: datetime, what: str) -> str:
    """One note for the change: what it did (中文 first, codes after) and the operator's reason."""
    return f"{now.isoformat()} {cmd.actor.role}:{cmd.actor.id} {what}" + (f" — {cmd.note}" if cmd.note else "")


def _change(order: WorkOrder, cmd: Command, update: dict[str, Any], change_type: str, now: datetime,
            **extra: Any) -> WorkOrderChange:
    new = order.model_copy(update=update)
    return WorkOrderChange(work_order_id=order.work_order_id, version=new.version, type=change_type, at=now,
                           actor=cmd.actor, snapshot=new, **extra)


def _area(loc: Location) -> tuple[str, str, str, str]:
    return loc.grid_code, loc.community_code, loc.street_code, loc.district_code


def _recategorise(order: WorkOrder, cmd: Command, update: dict[str, Any], router: Router,
                  departments: frozenset[str], now: datetime, deadlines: Deadlines) -> CommandOutcome:
    """改类: the new category's routing (department, priority) and time limits.  The same
    department keeps the order where it is; another one gets it afresh — the order goes
    back to registered (its stage clocks stop) and, when routing names a department, is
    dispatched to it at once (a ``dispatched`` change, on ``dispatch.<department>``)."""
    if not cmd.category:
        return _refuse(order, cmd, "missing_field", "recategorise needs a category", now)
    cat = router.taxonomy.category(cmd.category)
    if cat is None:
        return _refuse(order, cmd, "unknown_category", f"no category {cmd.category!r} in the taxonomy", now)
    if cat.code == order.category:
        return _refuse(order, cmd, "not_allowed_in_state", f"the order is {cat.code} already", now)
    route = router.route(cat.code, _area(order.location))
    department = route.department if route.department in departments else None
    moved = department != order.department
    what = (f"改类 {order.category_name}→{cat.name_zh} category {order.category}→{cat.code}; "
            f"优先级 priority {order.priority}→{route.priority}")
    if moved:
        what += f"; 部门 department {order.department or '-'}→{department or '待分拨 triage'} ({route.rule})"
    update.update(category=cat.code, category_name=cat.name_zh, priority=route.priority,
                  notes=[*order.notes, _said(cmd, now, what)])
    update.update(deadlines.relimit(order, cat.code, route.priority))
    if not moved:
        return CommandOutcome(change=_change(order, cmd, update, "recategorised", now))
    if department is not None and any(a.department == department and a.status in OPEN_PARTS for a in order.assists):
        # The assisting department becomes the lead: its part ends.
        update["assists"] = [a.model_copy(update={"status": "released", "released_at": now, "accept_due_at": None,
                                                  "handle_due_at": None, "stage_started_at": None})
                             if a.department == department else a for a in update["assists"]]
    update.update(status="registered", department=None, accepted_at=None, handled_at=None,
                  route_rule=route.rule, **deadlines.enter(order, "registered", now))
    change = _change(order, cmd, update, "recategorised", now)
    if department is None:
        return CommandOutcome(change=change)
    triaged = change.snapshot
    dispatched = triaged.model_copy(update={"version": triaged.version + 1, "status": "dispatched",
                                            "department": department, "dispatched_at": now,
                                            **deadlines.enter(triaged, "dispatched", now)})
    return CommandOutcome(change=change, followups=(WorkOrderChange(
        work_order_id=order.work_order_id, version=dispatched.version, type="dispatched", at=now,
        actor=cmd.actor, snapshot=dispatched, role="lead"),))


def _reprioritise(order: WorkOrder, cmd: Command, update: dict[str, Any], now: datetime,
                  deadlines: Deadlines) -> CommandOutcome:
    """调整优先级: the priority, and the limits of (category, priority) — a category with
    limits of its own keeps them, as at 立案.  Escalation follows (a warning level's
    priority is a floor it raises the order back to, recorded as ``escalated``)."""
    if cmd.priority is None:
        return _refuse(order, cmd, "missing_field", "reprioritise needs a priority (low, normal, high, urgent)", now)
    if cmd.priority == order.priority:
        return _refuse(order, cmd, "not_allowed_in_state", f"the priority is {cmd.priority} already", now)
    esc = Escalation(reason="operator", warning_from=order.warning_level, warning_to=order.warning_level,
                     priority_from=order.priority, priority_to=cmd.priority,
                     emergency_from=order.emergency_level, emergency_to=order.emergency_level)
    what = f"调整优先级 {PRIORITY_ZH[order.priority]}→{PRIORITY_ZH[cmd.priority]} priority {order.priority}→{cmd.priority}"
    update.update(priority=cmd.priority, notes=[*order.notes, _said(cmd, now, what)],
                  **deadlines.relimit(order, order.category, cmd.priority))
    return CommandOutcome(change=_change(order, cmd, update, "reprioritised", now, escalation=esc))


def _merge_target_refusal(cmd: Command) -> tuple[str, str] | None:
    if not cmd.into:
        return "missing_field", "merge needs into (the work order that survives)"
    if cmd.into == cmd.work_order_id:
        return "invalid_field", f"{cmd.into} cannot be merged into itself"
    return None


def _merge(order: WorkOrder, cmd: Command, update: dict[str, Any], now: datetime) -> CommandOutcome:
    """并单, the duplicate's side: it ends as ``merged`` and gives up its findings (events,
    finders, sensor levels) — the survivor takes them in ``absorb``, so no finding is on
    two orders.  Its evidence stays on it as well, as a record."""
    refused = _merge_target_refusal(cmd)
    if refused is not None:
        return _refuse(order, cmd, *refused, now)
    assert cmd.into is not None
    update.update(merged_at=now, merged_into=cmd.into, events=[], finders=[], recovered_finders=[],
                  sensor_levels={}, notes=[*order.notes, _said(cmd, now, f"并单 merged into {cmd.into}")])
    info = MergeInfo(duplicate=order.work_order_id, survivor=cmd.into, events=[e.event_id for e in order.events])
    return CommandOutcome(change=_change(order, cmd, update, "merged", now, merge=info))


def merge_check(survivor: WorkOrder | None, cmd: Command, now: datetime) -> CommandRejection | None:
    """并单, first hop, where the survivor (``cmd.into``) lives: None when the merge may go
    on to the duplicate; else the refusal (its ``status`` is the duplicate's, unknown here)."""
    def refuse(reason: str, detail: str) -> CommandRejection:
        return CommandRejection(command=cmd, reason=reason, detail=detail, status=None, at=now)

    roles = RULES["merge"].roles
    if cmd.actor.role not in roles:
        return refuse("forbidden_role", f"role {cmd.actor.role} may not merge (allowed: {', '.join(sorted(roles))})")
    if not cmd.note.strip():
        return refuse("missing_field", "merge cannot be undone: it needs a reason (note)")
    refused = _merge_target_refusal(cmd)
    if refused is not None:
        return refuse(*refused)
    if survivor is None:
        return refuse("unknown_work_order", f"merge into {cmd.into}: no such work order")
    if survivor.status not in OPEN_STATUSES:
        return refuse("not_allowed_in_state", f"merge into {cmd.into}: it is {survivor.status}; "
                      "only an open order takes a duplicate")
    return None


def absorb(survivor: WorkOrder, duplicate: WorkOrder, cmd: Command, now: datetime) -> WorkOrderChange | None:
    """并单, last hop, where the survivor lives: the duplicate's findings (events, finders,
    sensor levels, recoveries) and evidence join the survivor — whatever its status by
    now (it was open when the merge was checked; closed since, the findings are still
    recorded on it).  None when this duplicate was absorbed already (a replay)."""
    if duplicate.work_order_id in survivor.merged_from:
        return None
    known = {e.event_id for e in survivor.events}
    moved = [e for e in duplicate.events if e.event_id not in known]
    recoveries = [t for t in (survivor.last_recovery_at, duplicate.last_recovery_at) if t is not None]
    what = (f"并单 合并重复工单 absorbed {duplicate.work_order_id} "
            f"({len(moved)} 条发现 findings, {duplicate.category_name})")
    new = survivor.model_copy(update={
        "version": survivor.version + 1,
        "events": [*survivor.events, *moved],
        "finders": list(dict.fromkeys([*survivor.finders, *duplicate.finders])),
        "recovered_finders": list(dict.fromkeys([*survivor.recovered_finders, *duplicate.recovered_finders])),
        "sensor_levels": {**duplicate.sensor_levels, **survivor.sensor_levels},
        "last_recovery_at": max(recoveries) if recoveries else None,
        "evidence": survivor.evidence + [u for u in duplicate.evidence if u not in survivor.evidence],
        "merged_from": [*survivor.merged_from, duplicate.work_order_id],
        # the platforms' cases follow their findings: the survivor now answers them
        "external_refs": [*survivor.external_refs, *(r for r in duplicate.external_refs
                                                     if (r.system, r.id) not in
                                                     {(k.system, k.id) for k in survivor.external_refs})],
        "notes": [*survivor.notes, _said(cmd, now, what)],
    })
    return WorkOrderChange(work_order_id=survivor.work_order_id, version=new.version, type="merge_absorbed",
                           at=now, actor=cmd.actor, snapshot=new,
                           merge=MergeInfo(duplicate=duplicate.work_order_id, survivor=survivor.work_order_id,
                                           events=[e.event_id for e in moved]))


def split_id(order: WorkOrder, cmd: Command) -> str:
    """The new order's id: deterministic (a replay opens the same one) and of the
    original's fusion group, so it lives on the original's partition."""
    return work_order_id_for(order.fusion_group, f"split:{order.work_order_id}:{cmd.command_id}")


def _split(order: WorkOrder, cmd: Command, update: dict[str, Any], router: Router, locate: Locate | None,
           now: datetime, deadlines: Deadlines) -> CommandOutcome:
    """拆单: the findings named — by event id, report id, or an evidence URL they carried
    (a finding moves whole, with all its evidence) — and the evidence URLs named leave the
    order; a new order of the same category opens with them, routed afresh for where its
    first finding lies."""
    if not cmd.evidence:
        return _refuse(order, cmd, "missing_field", "split needs evidence: the event ids, report ids or "
                       "evidence URLs that move to the new order", now)
    moving: dict[str, EventRef] = {}
    urls: list[str] = []
    unknown = []
    for item in cmd.evidence:
        hits = [e for e in order.events if item in (e.event_id, e.report_id) or item in e.evidence]
        if not hits and item not in order.evidence:
            unknown.append(item)
        for e in hits:
            moving[e.event_id] = e
        if item in order.evidence and item not in urls:
            urls.append(item)
    if unknown:
        return _refuse(order, cmd, "invalid_field", f"not on the order: {', '.join(unknown)}", now)
    if not moving:
        return _refuse(order, cmd, "invalid_field", "a split takes at least one finding (an event id, a report "
                       "id, or evidence a finding carried); evidence URLs alone make no order", now)
    staying = [e for e in order.events if e.event_id not in moving]
    if not any(e.kind != "recovery" for e in staying):
        return _refuse(order, cmd, "invalid_field", "the split would leave the order with no finding", now)
    moved = list(moving.values())
    for e in moved:
        urls += [u for u in e.evidence if u not in urls]
    new_id = split_id(order, cmd)
    info = SplitInfo(original=order.work_order_id, new=new_id, events=list(moving), evidence=urls)
    moved_reports = {e.report_id for e in moved if e.report_id}

    def devices(events: list[EventRef]) -> set[str]:
        return {e.finder for e in events if e.finder and e.source != "report"}

    kept_devices = devices(staying)
    update.update(
        events=staying, evidence=[u for u in order.evidence if u not in urls],
        finders=[f for f in order.finders if f in kept_devices],
        recovered_finders=[f for f in order.recovered_finders if f in kept_devices],
        sensor_levels={d: lv for d, lv in order.sensor_levels.items() if d in kept_devices},
        split_into=[*order.split_into, new_id],
        external_refs=[r for r in order.external_refs if r.report_id not in moved_reports],
        notes=[*order.notes, _said(cmd, now, f"拆单 split off {new_id} ({len(moved)} 条发现 findings)")])
    change = _change(order, cmd, update, "split", now, split=info)

    alarms = [e for e in moved if e.kind != "recovery"] or moved
    first = min(alarms, key=lambda e: e.occurred_at)
    area = locate(first.lon, first.lat) if locate is not None else None
    loc = (Location(lon=first.lon, lat=first.lat, district_code=area.district_code, street_code=area.street_code,
                    community_code=area.community_code, grid_code=area.grid_code)
           if area is not None else order.location.model_copy(update={"lon": first.lon, "lat": first.lat}))
    route = router.route(order.category, _area(loc))
    gone = devices(moved)
    recovered = [e.occurred_at for e in moved if e.kind == "recovery"]
    new = WorkOrder(
        work_order_id=new_id, version=1, status="registered", category=order.category,
        category_name=order.category_name, fusion_group=order.fusion_group, priority=route.priority,
        department=route.department, route_rule=route.rule, location=loc, description=order.description,
        opened_at=first.occurred_at, created_at=now, source_ingested_at=order.source_ingested_at,
        events=moved, evidence=urls, finders=[f for f in dict.fromkeys(e.finder for e in alarms) if f in gone],
        recovered_finders=[f for f in order.recovered_finders if f in gone],
        sensor_levels={d: lv for d, lv in order.sensor_levels.items() if d in gone},
        last_recovery_at=max(recovered) if recovered else None, split_from=order.work_order_id,
        external_refs=[r for r in order.external_refs if r.report_id in moved_reports],
        applied_commands=[cmd.command_id],
        notes=[_said(cmd, now, f"拆单 split from {order.work_order_id} ({len(moved)} 条发现 findings)")],
        **deadlines.on_open(order.category, route.priority, now))
    opened = [WorkOrderChange(work_order_id=new_id, version=1, type="created", at=now, actor=cmd.actor,
                              snapshot=new, split=info)]
    if route.department:
        dispatched = new.model_copy(update={"version": 2, "status": "dispatched", "dispatched_at": now,
                                            **deadlines.enter(new, "dispatched", now)})
        opened.append(WorkOrderChange(work_order_id=new_id, version=2, type="dispatched", at=now,
                                      actor=cmd.actor, snapshot=dispatched, role="lead"))
    return CommandOutcome(change=change, opened=tuple(opened))
