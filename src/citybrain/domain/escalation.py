"""Escalation (升级): warning levels, priority and emergency response on an open order,
and the assisting departments they bring in (DESIGN §12, ``config/escalation.toml``).

After every change an event or a command made, ``Escalator.follow`` compares what the
order *should* be with what it is and returns the changes that close the gap, each a
recorded change:

- ``escalated`` / ``deescalated``: the order's warning level is the highest current
  level of its alarming sensors (a recovery takes a sensor's level away) and of the area
  warnings it met (``area_warnings``: kept after a warning ends); priority
  follows the level upwards (``warning_priority``) and rises one step once, when the
  order has ``finders.count`` distinct finders; priority never falls here.  The
  emergency level (应急响应级别) is the highest that the category's rules give at this
  warning level and priority; it falls with the level when set by a rule, while one an
  operator set stays until a rule gives a higher one.
- ``assist_added``: every department routing names for the category at this level and
  priority, and the emergency department while an emergency level is set, joins as an
  assist — once: a department that assisted before and was released is not brought back
  by the rules (an operator may add it again).

Pure: snapshots in, changes out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citybrain.domain.deadlines import SYSTEM, Deadlines
from citybrain.domain.routing import PRIORITY_RANK, Router, Trigger
from citybrain.domain.sensor_rules import LEVEL_RANK, LEVEL_ZH
from citybrain.domain.taxonomy import Priority
from citybrain.wire.enums import EMERGENCY_LEVELS, EMERGENCY_ZH, PRIORITIES, PRIORITY_ZH
from citybrain.wire.enums import EMERGENCY_RANK as EMERGENCY_RANK
from citybrain.wire.models import CLOSED_STATUSES, Actor, Assist, Escalation, WorkOrder, WorkOrderChange


class EmergencyRule(Trigger):
    level: str = Field(pattern=rf"^({'|'.join(EMERGENCY_LEVELS)})$")

    @model_validator(mode="after")
    def _has_trigger(self) -> EmergencyRule:
        if self.at_level is None and self.at_priority is None:
            raise ValueError(f"emergency rule for {self.category} needs at_level or at_priority")
        return self

    @property
    def trigger(self) -> str:
        return self.at_level or self.at_priority or "?"


class Emergency(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    department: str = "emergency"
    rule: list[EmergencyRule] = []


class Finders(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    count: int = Field(5, ge=2, description="distinct finders that raise priority one step")


class EscalationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    warning_priority: dict[str, Priority] = Field(default_factory=dict)
    finders: Finders = Finders()
    emergency: Emergency = Emergency()

    @model_validator(mode="after")
    def _levels(self) -> EscalationConfig:
        unknown = set(self.warning_priority) - set(LEVEL_RANK) - {None}
        if unknown:
            raise ValueError(f"warning_priority: unknown levels {sorted(unknown)}")
        return self


def _max_level(levels: Iterable[str | None]) -> str | None:
    return max(levels, key=LEVEL_RANK.__getitem__, default=None)


def _higher(a: str, b: str | None) -> str:
    return b if b is not None and PRIORITY_RANK[b] > PRIORITY_RANK[a] else a


class Escalator:
    def __init__(self, config: EscalationConfig, router: Router, deadlines: Deadlines,
                 departments: frozenset[str]):
        if config.emergency.department not in departments:
            raise ValueError(f"escalation.toml: unknown emergency department {config.emergency.department!r}")
        for r in config.emergency.rule:
            if router.taxonomy.category(r.category) is None:
                raise ValueError(f"escalation.toml emergency rule: unknown category {r.category!r}")
        self.config, self.router, self.deadlines = config, router, deadlines

    # -- what the order should be --------------------------------------------------

    def emergency_for(self, category: str, level: str | None, priority: str) -> tuple[str | None, str | None]:
        """The highest emergency level the category's rules give, and the rule that gave it."""
        best: tuple[str | None, str | None] = (None, None)
        for r in self.config.emergency.rule:
            if r.category == category and r.reached(level, priority) \
                    and EMERGENCY_RANK[r.level] > EMERGENCY_RANK[best[0]]:
                best = (r.level, f"rule:{category}@{r.trigger}")
        return best

    def follow(self, order: WorkOrder, now: datetime) -> list[WorkOrderChange]:
        """The changes that bring an open order's levels and assists up to date."""
        if order.status in CLOSED_STATUSES:
            return []
        changes = []
        leveled = self._levels(order, now)
        if leveled is not None:
            changes.append(leveled)
            order = leveled.snapshot
        changes += self.assists_due(order, now)
        return changes

    def _levels(self, order: WorkOrder, now: datetime) -> WorkOrderChange | None:
        # Its sensors' levels and the area warnings' it met (区域预警, domain/area_warnings.py).
        warning = _max_level([*order.sensor_levels.values(), *order.area_warnings.values()])
        priority = _higher(order.priority, self.config.warning_priority.get(warning) if warning else None)
        escalations = order.escalations
        by_finders = False
        key = f"finders@{self.config.finders.count}"
        if key not in escalations and len(finders(order)) >= self.config.finders.count:
            step = min(PRIORITIES.index(priority) + 1, len(PRIORITIES) - 1)
            by_finders = PRIORITIES[step] != priority
            priority, escalations = PRIORITIES[step], [*escalations, key]
        ruled, rule = self.emergency_for(order.category, warning, priority)
        emergency: str | None = order.emergency_level
        set_by = order.emergency_set_by
        by_operator = set_by is not None and set_by.startswith("operator:")
        if (not by_operator and ruled != emergency) or EMERGENCY_RANK[ruled] > EMERGENCY_RANK[emergency]:
            emergency, set_by = ruled, rule
        if (warning, priority, emergency) == (order.warning_level, order.priority, order.emergency_level):
            return None   # (a finders' step at urgent already changes nothing)
        up = (LEVEL_RANK[warning] > LEVEL_RANK[order.warning_level]
              or PRIORITY_RANK[priority] > PRIORITY_RANK[order.priority]
              or EMERGENCY_RANK[emergency] > EMERGENCY_RANK[order.emergency_level])
        reason = ("finders" if by_finders and warning == order.warning_level
                  else "alarm_cleared" if warning is None and order.warning_level is not None
                  else "warning_level")
        esc = Escalation(reason=reason, warning_from=order.warning_level, warning_to=warning,
                         priority_from=order.priority, priority_to=priority,
                         emergency_from=order.emergency_level, emergency_to=emergency)
        new = order.model_copy(update={
            "version": order.version + 1, "warning_level": warning, "priority": priority,
            "emergency_level": emergency, "emergency_set_by": set_by if emergency else None,
            "escalations": escalations,
            "notes": [*order.notes, f"{now.isoformat()} system:citybrain {describe(esc, len(finders(order)))}"]})
        return WorkOrderChange(work_order_id=order.work_order_id, version=new.version,
                               type="escalated" if up else "deescalated", at=now, actor=SYSTEM,
                               snapshot=new, escalation=esc)

    def assists_due(self, order: WorkOrder, now: datetime) -> list[WorkOrderChange]:
        """``assist_added`` for every department the rules want that has not been on the order."""
        wanted = self.router.assists(order.category, order.warning_level, order.priority)
        if order.emergency_level is not None:
            wanted.append((self.config.emergency.department,
                           f"emergency:{order.emergency_level}"))
        changes = []
        for department, rule in wanted:
            if department == order.department or any(a.department == department for a in order.assists):
                continue
            change = add_assist(order, department, rule, now, self.deadlines, SYSTEM)
            changes.append(change)
            order = change.snapshot
        return changes


def finders(order: WorkOrder) -> set[str]:
    """Distinct finders of the incident: devices, cameras and reporters."""
    return {e.finder for e in order.events if e.kind != "recovery" and e.finder}


def describe(esc: Escalation, finder_count: int = 0) -> str:
    """The change in words, for the timeline (中文 first, codes after)."""
    parts = []
    if esc.warning_from != esc.warning_to:
        zh = LEVEL_ZH.get(esc.warning_to or "", "解除")
        parts.append(f"预警 {LEVEL_ZH.get(esc.warning_from or '', '无')}→{zh} "
                     f"warning {esc.warning_from or 'none'}→{esc.warning_to or 'none'}")
    if esc.priority_from != esc.priority_to:
        why = f" ({finder_count} 个发现源 finders)" if esc.reason == "finders" else ""
        parts.append(f"优先级 {PRIORITY_ZH[esc.priority_from]}→{PRIORITY_ZH[esc.priority_to]} "
                     f"priority {esc.priority_from}→{esc.priority_to}{why}")
    if esc.emergency_from != esc.emergency_to:
        parts.append(f"应急响应 {EMERGENCY_ZH.get(esc.emergency_from or '', '无')}→"
                     f"{EMERGENCY_ZH.get(esc.emergency_to or '', '解除')} "
                     f"emergency {esc.emergency_from or 'none'}→{esc.emergency_to or 'none'}")
    return "；".join(parts) or "升级 escalated"


def add_assist(order: WorkOrder, department: str, added_by: str, now: datetime, deadlines: Deadlines,
               actor: Actor) -> WorkOrderChange:
    """A department joins as an assist (again, if it was released): its 签收 clock starts."""
    part = Assist(department=department, status="dispatched", added_by=added_by, dispatched_at=now,
                  stage_started_at=now,
                  accept_due_at=deadlines.add(now, order.accept_limit_hours, order.time_limit_basis))
    assists = [a for a in order.assists if a.department != department] + [part]
    steps = [k for k in order.supervision_steps if not k.startswith(f"{department}/")]
    new = order.model_copy(update={"version": order.version + 1, "assists": assists,
                                   "supervision_steps": steps})
    return WorkOrderChange(work_order_id=order.work_order_id, version=new.version, type="assist_added",
                           at=now, actor=actor, snapshot=new, role="assist", part=department)
