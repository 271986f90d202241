"""Per-device alarm state machine for IoT readings (event time, hysteresis).

A device is ``normal`` or ``alarm``.  In ``normal`` an alarm is raised once the
alarm condition has held on consecutive readings for ``hold_seconds`` of event
time; in ``alarm`` a recovery is raised once the clear condition has held for its
``hold_seconds``.  A reading that is a duplicate or older than the last one
accepted (by ``seq`` when the device sends one, else by ``ts``) changes nothing.
A ``seq`` that stops advancing while event time moves on by more than
``SEQ_RESET_SECONDS`` is a counter that was reset or wrapped (a reboot, a 32-bit
counter, one corrupt value): it is adopted, so one bad ``seq`` cannot silence a device.

Graded warnings (预警分级, DESIGN §12): a rule may define ``levels`` — blue, yellow,
orange, red, each a condition with its own hold time.  An alarm starts at the lowest
defined level; while in alarm, a device's level moves to the highest one whose condition
holds (at least the lowest) once that has held for the hold time of the higher of the
two levels (going up and coming down alike) — an outcome ``LEVEL``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from citybrain.wire.enums import WARNING_LEVELS, WARNING_RANK, WARNING_ZH
from citybrain.wire.models import WarningLevel

Op = Literal["gt", "ge", "lt", "le", "outside", "inside"]
Level = WarningLevel
# The warning levels, their ranks and labels: wire/enums.py (one list, from the wire models).
LEVELS: tuple[str, ...] = WARNING_LEVELS
LEVEL_RANK: dict[str | None, int] = WARNING_RANK
LEVEL_ZH = WARNING_ZH


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    op: Op
    threshold: float | None = None
    range: tuple[float, float] | None = None
    hold_seconds: float = 0.0

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        if self.op in ("outside", "inside"):
            if self.range is None or self.range[0] > self.range[1]:
                raise ValueError(f"op {self.op} needs range = [low, high]")
        elif self.threshold is None:
            raise ValueError(f"op {self.op} needs a threshold")
        if self.hold_seconds < 0:
            raise ValueError("hold_seconds must be >= 0")
        return self

    def holds(self, v: float) -> bool:
        op, threshold = self.op, self.threshold
        if threshold is not None:   # gt | ge | lt | le (_shape makes sure)
            if op == "gt":
                return v > threshold
            if op == "ge":
                return v >= threshold
            if op == "lt":
                return v < threshold
            if op == "le":
                return v <= threshold
        lo, hi = self.range  # type: ignore[misc]
        return (v < lo or v > hi) if op == "outside" else (lo <= v <= hi)


class SensorRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    unit: str
    valid_range: tuple[float, float]
    alarm: Condition
    clear: Condition
    levels: dict[Level, Condition] = {}
    # 设备完好率: how often the device reports, and after how many intervals of silence it
    # is offline (docs/lifecycle.md, device health).
    interval_seconds: float = Field(300.0, gt=0)
    offline_after: float = Field(3.0, ge=1)
    _ordered: tuple[tuple[str, Condition], ...] = PrivateAttr(())

    @property
    def offline_seconds(self) -> float:
        return self.interval_seconds * self.offline_after

    @model_validator(mode="after")
    def _graded(self) -> SensorRule:
        # Levels in rank order; each higher level's condition implies the lower ones'
        # (probed over the valid range), so "the highest that holds" is well defined.
        ordered = [lv for lv in LEVELS if lv in self.levels]
        self._ordered = tuple((lv, self.levels[lv]) for lv in ordered)
        lo, hi = self.valid_range
        probes = [lo + (hi - lo) * i / 400 for i in range(401)]
        for low, high in pairwise(ordered):
            for v in probes:
                if self.levels[high].holds(v) and not self.levels[low].holds(v):
                    raise ValueError(f"level {high} holds at {v} where {low} does not: "
                                     "each level must lie within the one below")
        return self

    @model_validator(mode="after")
    def _hysteresis(self) -> SensorRule:
        # A value may not satisfy both conditions, or the state would flap.
        lo, hi = self.valid_range
        probes = [lo + (hi - lo) * i / 200 for i in range(201)]
        for c in (self.alarm, self.clear):
            probes += [c.threshold] if c.threshold is not None else list(c.range or ())
        for v in probes:
            if self.alarm.holds(v) and self.clear.holds(v):
                raise ValueError(f"alarm and clear conditions overlap at {v}")
        return self

    def in_range(self, v: float) -> bool:
        return self.valid_range[0] <= v <= self.valid_range[1]

    def level_of(self, v: float) -> str | None:
        """The highest level whose condition holds at ``v``, at least the lowest defined
        (a device in alarm is at least at the first level); None without levels."""
        ordered = _private(self)["_ordered"]   # not __getattr__: ~3 µs
        if not ordered:
            return None
        found: str = ordered[0][0]
        for lv, cond in ordered[1:]:
            if not cond.holds(v):
                break
            found = lv
        return found

    def level_hold(self, a: str | None, b: str | None) -> float:
        """The hold time for a move between two levels: the higher level's."""
        high = a if LEVEL_RANK[a] >= LEVEL_RANK[b] else b
        return self.levels[high].hold_seconds if high in self.levels else 0.0


class ReadingOutcome(enum.Enum):
    NORMAL = "normal"          # accepted, no event (may have started a pending timer)
    ALARM = "alarm"
    RECOVERY = "recovery"
    LEVEL = "level"            # still in alarm, at another warning level
    DUPLICATE = "duplicate"    # same seq/ts as one already seen
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What we remember of one device; ts are epoch seconds (event time)."""

    alarm: bool = False
    pending_since: float | None = None   # first ts of the current run toward a flip
    last_ts: float | None = None
    last_seq: int | None = None
    alarm_since: float | None = None     # ts of the reading that raised the alarm
    level: str | None = None             # warning level while in alarm (graded rules)
    level_pending: tuple[str | None, float] | None = None   # (another level, since ts)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, object] = {"a": self.alarm, "p": self.pending_since, "t": self.last_ts,
             "s": self.last_seq, "as": self.alarm_since}
        if self.level is not None:
            d["lv"] = self.level
            if self.level_pending is not None:
                d["lp"] = list(self.level_pending)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DeviceState:
        if not d:
            return cls()
        lp = d.get("lp")
        return cls(alarm=d["a"], pending_since=d["p"], last_ts=d["t"], last_seq=d["s"],
                   alarm_since=d.get("as"), level=d.get("lv"), level_pending=(lp[0], lp[1]) if lp else None)


SEQ_RESET_SECONDS = 60.0


def apply_reading(rule: SensorRule, state: DeviceState, value: float, ts: float,
                  seq: int | None = None) -> tuple[DeviceState, ReadingOutcome]:
    """Fold one reading into the device's state.  Pure: returns the new state."""
    reset = (seq is not None and state.last_seq is not None and seq <= state.last_seq
             and state.last_ts is not None and ts > state.last_ts + SEQ_RESET_SECONDS)
    if seq is not None and state.last_seq is not None and not reset:
        if seq == state.last_seq:
            return state, ReadingOutcome.DUPLICATE
        if seq < state.last_seq:
            return state, ReadingOutcome.OUT_OF_ORDER
    if state.last_ts is not None:
        if ts < state.last_ts:
            return state, ReadingOutcome.OUT_OF_ORDER
        if ts == state.last_ts and (seq is None or state.last_seq is None):
            return state, ReadingOutcome.DUPLICATE
    # Plain constructor calls: dataclasses.replace was 6 % of the worker's time.
    seq = seq if seq is not None else state.last_seq
    toward = rule.clear if state.alarm else rule.alarm
    if not toward.holds(value):
        if state.alarm and rule.levels:
            return _graded(rule, state, value, ts, seq, None)
        return DeviceState(state.alarm, None, ts, seq, state.alarm_since), ReadingOutcome.NORMAL
    since = state.pending_since if state.pending_since is not None else ts
    if ts - since >= toward.hold_seconds:
        if state.alarm:
            return DeviceState(False, None, ts, seq, None), ReadingOutcome.RECOVERY
        if not rule.levels:
            return DeviceState(True, None, ts, seq, ts), ReadingOutcome.ALARM
        # An alarm starts at the lowest level and climbs as each level holds: the value
        # rose during the alarm's own hold, but no higher level has held for its time yet.
        lowest, now = _private(rule)["_ordered"][0][0], rule.level_of(value)
        pending = (now, ts) if now != lowest else None
        return DeviceState(True, None, ts, seq, ts, lowest, pending), ReadingOutcome.ALARM
    if state.alarm and rule.levels:
        return _graded(rule, state, value, ts, seq, since)
    return DeviceState(state.alarm, since, ts, seq, state.alarm_since), ReadingOutcome.NORMAL


def _graded(rule: SensorRule, state: DeviceState, value: float, ts: float, seq: int | None,
            pending_since: float | None) -> tuple[DeviceState, ReadingOutcome]:
    """A reading of a device in alarm, under a graded rule: its level may move."""
    now = rule.level_of(value)
    if now == state.level:
        return DeviceState(True, pending_since, ts, seq, state.alarm_since, state.level), ReadingOutcome.NORMAL
    since = (state.level_pending[1] if state.level_pending is not None and state.level_pending[0] == now
             else ts)
    if ts - since >= rule.level_hold(now, state.level):
        return DeviceState(True, pending_since, ts, seq, state.alarm_since, now), ReadingOutcome.LEVEL
    return (DeviceState(True, pending_since, ts, seq, state.alarm_since, state.level, (now, since)),
            ReadingOutcome.NORMAL)


def _private(model: BaseModel) -> dict[str, Any]:
    """A model's private attributes, read without pydantic's ``__getattr__`` (always set:
    every private attribute here has a default)."""
    return model.__pydantic_private__  # type: ignore[return-value]
