"""Time limits (处置时限), supervision (督办) and automatic verification (自动核查).

Three clocks run on an open order, each with its limit in natural or working hours:

- ``order``: from 立案 (created) to 结案, limit ``total_hours`` → ``due_at``;
- ``accept``: from 派遣 to 签收, limit ``accept_hours`` → ``accept_due_at``;
- ``handle``: from 签收 to 处置反馈, limit ``handle_hours`` → ``handle_due_at``.

A stage clock restarts whenever its stage is entered again (after a return or a
rework).  ``extend`` adds to the running stage's limit and the order's limit.
Supervision steps fire at configured shares of a clock's limit (100 %, 150 %, 200 %),
each raising the order's supervision level to the step's level of the admin chain.
Everything needed lives in the snapshot, so a restarted worker recomputes what fell due.

Pure: these functions take a snapshot and a time and return updates or changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citybrain.domain.calendar import WorkCalendar
from citybrain.domain.taxonomy import Priority
from citybrain.wire.enums import PRIORITIES, SUPERVISION_RANK, SUPERVISION_ZH
from citybrain.wire.models import OPEN_STATUSES, Actor, SupervisionLevel, WorkOrder, WorkOrderChange

Basis = Literal["natural", "working"]
Level = SupervisionLevel
LEVEL_RANK: dict[str, int] = SUPERVISION_RANK   # street 1, district 2, city 3 (wire/enums.py)
LEVEL_NAME = SUPERVISION_ZH
CLOCK_NAME = {"order": "整单", "accept": "签收", "handle": "处置"}
SYSTEM = Actor(id="citybrain", role="system")


class StageLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    basis: Basis
    accept_hours: float = Field(gt=0)
    handle_hours: float = Field(gt=0)
    total_hours: float = Field(gt=0)


class CalendarSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    timezone: str = "Asia/Shanghai"
    working_hours: list[tuple[str, str]]
    files: list[str] = []


class SupervisionStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    at: float = Field(gt=0, description="share of the clock's limit, 1.0 = due")
    level: Level


class Supervision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    step: list[SupervisionStep]

    @model_validator(mode="after")
    def _climbs(self) -> Supervision:
        ats = [s.at for s in self.step]
        ranks = [LEVEL_RANK[s.level] for s in self.step]
        if ats != sorted(set(ats)) or ranks != sorted(ranks):
            raise ValueError("supervision steps must come in rising order of share and level")
        return self


class AutoVerify(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True
    normal_minutes: float = Field(30, ge=0)
    # Categories whose orders close once their devices are back, whatever stage they are
    # in: the device coming back is the fix (设备故障).
    on_recovery: list[str] = ["device_fault"]


class TimerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    tick_seconds: float = Field(1.0, gt=0, le=60)
    # The normalise stage's look for silent devices (设备离线, device health).
    health_tick_seconds: float = Field(1.0, gt=0, le=60)
    evaluation_seconds: float = Field(15.0, gt=0, le=3600)


class LifecycleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    calendar: CalendarSettings
    time_limits: dict[Priority, StageLimits]
    category_time_limits: dict[str, StageLimits] = {}
    supervision: Supervision
    auto_verify: AutoVerify = AutoVerify()
    timers: TimerSettings = TimerSettings()

    @model_validator(mode="after")
    def _every_priority(self) -> LifecycleConfig:
        missing = set(PRIORITIES) - set(self.time_limits)
        if missing:
            raise ValueError(f"time_limits needs every priority; missing {sorted(missing)}")
        return self


@dataclass(frozen=True, slots=True)
class Due:
    """One supervision step of one clock, and when it falls due."""
    clock: str          # order | accept | handle
    at: float           # share of the limit
    level: str
    when: datetime
    department: str | None = None   # an assisting part's clock; None: the lead's

    @property
    def key(self) -> str:
        part = f"{self.department}/" if self.department else ""
        return f"{part}{self.clock}@{self.at:g}"


class Deadlines:
    """The clocks of the lifecycle over one calendar and one set of limits."""

    def __init__(self, config: LifecycleConfig, calendar: WorkCalendar):
        self.config, self.calendar = config, calendar

    def limits(self, category: str, priority: str) -> StageLimits:
        return self.config.category_time_limits.get(category) or self.config.time_limits[priority]  # type: ignore[index]

    def add(self, start: datetime, hours: float, basis: str) -> datetime:
        return self.calendar.add(start, hours, basis)

    # -- the fields a new or moved order carries --------------------------------

    def on_open(self, category: str, priority: str, now: datetime) -> dict[str, Any]:
        lim = self.limits(category, priority)
        return {"time_limit_basis": lim.basis, "time_limit_hours": lim.total_hours,
                "accept_limit_hours": lim.accept_hours, "handle_limit_hours": lim.handle_hours,
                "due_at": self.add(now, lim.total_hours, lim.basis)}

    def enter(self, order: WorkOrder, status: str, now: datetime) -> dict[str, Any]:
        """Updates for an order entering ``status``: the stage clock (re)starts, its
        supervision steps may fire again."""
        clock = {"dispatched": "accept", "accepted": "handle"}.get(status)
        update: dict[str, Any] = {"accept_due_at": None, "handle_due_at": None, "stage_started_at": None}
        if clock is None:
            return update
        limit = order.accept_limit_hours if clock == "accept" else order.handle_limit_hours
        update["stage_started_at"] = now
        update[f"{clock}_due_at"] = self.add(now, limit, order.time_limit_basis)
        update["supervision_steps"] = [k for k in order.supervision_steps if not k.startswith(clock + "@")]
        return update

    def extend(self, order: WorkOrder, minutes: int) -> dict[str, Any]:
        """``extend``: the order's limit and the running stage's limit grow; dues move."""
        hours = minutes / 60
        basis = order.time_limit_basis
        extended = dict(order.extended_hours)
        extended["order"] = extended.get("order", 0.0) + hours
        update: dict[str, Any] = {"time_limit_hours": order.time_limit_hours + hours,
                                  "due_at": self.add(order.created_at, order.time_limit_hours + hours, basis)}
        clock = _running_clock(order)
        if clock is not None and order.stage_started_at is not None:
            name = f"{clock}_limit_hours"
            limit = getattr(order, name) + hours
            update[name] = limit
            update[f"{clock}_due_at"] = self.add(order.stage_started_at, limit, basis)
            extended[clock] = extended.get(clock, 0.0) + hours
        update["extended_hours"] = extended
        return update

    def relimit(self, order: WorkOrder, category: str, priority: str) -> dict[str, Any]:
        """``recategorise`` / ``reprioritise``: the limits of the new category and priority,
        plus what ``extend`` added to each clock; every running due time (the order's, the
        running stage's, each open assisting part's) recomputed from its own start.  Steps
        already fired stay fired (the supervision level does not fall); a shorter limit
        whose steps have now passed fires them at the next tick."""
        lim = self.limits(category, priority)
        ext = order.extended_hours
        basis = lim.basis
        total = lim.total_hours + ext.get("order", 0.0)
        limits = {"accept": lim.accept_hours + ext.get("accept", 0.0),
                  "handle": lim.handle_hours + ext.get("handle", 0.0)}
        update: dict[str, Any] = {"time_limit_basis": basis, "time_limit_hours": total,
                                  "accept_limit_hours": limits["accept"], "handle_limit_hours": limits["handle"],
                                  "due_at": self.add(order.created_at, total, basis)}
        clock = _running_clock(order)
        if clock is not None and order.stage_started_at is not None:
            update[f"{clock}_due_at"] = self.add(order.stage_started_at, limits[clock], basis)
        parts = []
        for part in order.assists:
            part_clock = {"dispatched": "accept", "accepted": "handle"}.get(part.status)
            if part_clock is not None and part.stage_started_at is not None:
                part = part.model_copy(update={f"{part_clock}_due_at": self.add(
                    part.stage_started_at, limits[part_clock], basis)})
            parts.append(part)
        update["assists"] = parts
        return update

    # -- supervision ---------------------------------------------------------------

    def steps(self, order: WorkOrder, first_only: bool = False) -> list[Due]:
        """Every supervision step of the running clocks that has not fired yet (with
        ``first_only``, the earliest of each clock: shares rise, so it comes first)."""
        if order.status not in OPEN_STATUSES:
            return []
        clocks: list[tuple[str, datetime, float, str | None]] = [
            ("order", order.created_at, order.time_limit_hours, None)]
        running = _running_clock(order)
        if running is not None and order.stage_started_at is not None:
            clocks.append((running, order.stage_started_at, getattr(order, f"{running}_limit_hours"), None))
        for part in order.assists:   # each assisting department's own clocks (协办时限)
            clock = {"dispatched": "accept", "accepted": "handle"}.get(part.status)
            if clock is not None and part.stage_started_at is not None:
                clocks.append((clock, part.stage_started_at, getattr(order, f"{clock}_limit_hours"),
                               part.department))
        out = []
        done = set(order.supervision_steps)
        for clock, start, limit, department in clocks:
            prefix = f"{department}/" if department else ""
            for step in self.config.supervision.step:
                if f"{prefix}{clock}@{step.at:g}" in done:
                    continue
                out.append(Due(clock, step.at, step.level,
                               self.add(start, limit * step.at, order.time_limit_basis), department))
                if first_only:
                    break
        return out

    def supervise_due(self, order: WorkOrder, now: datetime) -> list[WorkOrderChange]:
        """One ``supervised`` change per step that has fallen due by ``now``, oldest
        first (a worker back from a stop emits each step it missed)."""
        changes = []
        for due in sorted(self.steps(order), key=lambda d: (d.when, d.at)):
            if due.when > now:
                continue
            rank = LEVEL_RANK[due.level]
            part = f" 协办 {due.department}" if due.department else ""
            note = (f"{now.isoformat()} system:citybrain 自动督办 {LEVEL_NAME[due.level]} ({due.level}){part}: "
                    f"{CLOCK_NAME[due.clock]}时限 {due.clock} limit at {due.at:.0%}, due {due.when.isoformat()}")
            order = order.model_copy(update={
                "version": order.version + 1,
                "supervision_level": max(order.supervision_level, rank),
                "supervision_steps": [*order.supervision_steps, due.key],
                "notes": [*order.notes, note],
            })
            changes.append(WorkOrderChange(work_order_id=order.work_order_id, version=order.version,
                                           type="supervised", at=now, actor=SYSTEM, snapshot=order,
                                           supervision={"clock": due.clock, "share": due.at,
                                                        "level": due.level, "due_at": due.when,
                                                        "department": due.department}))
        return changes

    # -- automatic verification ------------------------------------------------------

    def verify_at(self, order: WorkOrder) -> datetime | None:
        """When a sensor-opened, handled order closes by itself, if it will."""
        av = self.config.auto_verify
        if not av.enabled:
            return None
        on_recovery = order.category in av.on_recovery and order.status in OPEN_STATUSES
        if not on_recovery and (order.status != "handled" or order.handled_at is None):
            return None
        sensors = sensor_finders(order)
        if not sensors or not sensors <= set(order.recovered_finders) or order.last_recovery_at is None:
            return None
        start = (order.last_recovery_at if on_recovery or order.handled_at is None
                 else max(order.handled_at, order.last_recovery_at))
        return start + timedelta(minutes=self.config.auto_verify.normal_minutes)

    def auto_verify(self, order: WorkOrder, now: datetime) -> WorkOrderChange | None:
        at = self.verify_at(order)
        if at is None or at > now or order.last_recovery_at is None:
            return None
        sensors = ", ".join(sorted(sensor_finders(order)))
        note = (f"{now.isoformat()} system:citybrain 自动核查通过 automatic verification: {sensors} "
                f"normal since {order.last_recovery_at.isoformat()}")
        new = order.model_copy(update={"version": order.version + 1, "status": "closed", "closed_at": now,
                                       "notes": [*order.notes, note], **self.enter(order, "closed", now)})
        return WorkOrderChange(work_order_id=order.work_order_id, version=new.version, type="verified",
                               at=now, actor=SYSTEM, snapshot=new)

    def alarm_returned(self, order: WorkOrder, device_id: str, now: datetime) -> WorkOrderChange | None:
        """The alarm of one of its sensors came back while the order waited for
        verification: back to 签收 for rework (返工)."""
        if order.status != "handled" or device_id not in sensor_finders(order):
            return None
        note = f"{now.isoformat()} system:citybrain 报警复现 alarm came back on {device_id}: 返工 rework"
        new = order.model_copy(update={"version": order.version + 1, "status": "accepted",
                                       "rework_count": order.rework_count + 1, "handled_at": None,
                                       "notes": [*order.notes, note], **self.enter(order, "accepted", now)})
        return WorkOrderChange(work_order_id=order.work_order_id, version=new.version,
                               type="verification_rejected", at=now, actor=SYSTEM, snapshot=new)

    # -- what the timers wait for ---------------------------------------------------

    def next_check(self, order: WorkOrder) -> datetime | None:
        """The earliest moment something may fall due for this order."""
        whens = [d.when for d in self.steps(order, first_only=True)]
        v = self.verify_at(order)
        if v is not None:
            whens.append(v)
        return min(whens) if whens else None

    def overdue_at(self, order: WorkOrder) -> datetime | None:
        """When an open order falls overdue: the earlier of the order's and the running
        stage's due time (None once it is closed or cancelled)."""
        if order.status not in OPEN_STATUSES:
            return None
        stage_due = order.accept_due_at or order.handle_due_at
        return min(order.due_at, stage_due) if stage_due is not None else order.due_at

    def overdue(self, order: WorkOrder, now: datetime) -> bool:
        at = self.overdue_at(order)
        return at is not None and now > at


def _running_clock(order: WorkOrder) -> str | None:
    return {"dispatched": "accept", "accepted": "handle"}.get(order.status)


def sensor_finders(order: WorkOrder) -> set[str]:
    """The sensors whose alarms are on this order (cameras and people do not recover — but
    a device fault of a camera does, when its platform reports it online)."""
    return {e.finder for e in order.events
            if e.kind == "alarm" and e.finder and (e.source == "iot" or e.category == "device_fault")}
