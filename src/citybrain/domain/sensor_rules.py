"""Per-device alarm state machine for IoT readings (event time, hysteresis).

A device is ``normal`` or ``alarm``.  In ``normal`` an alarm is raised once the
alarm condition has held on consecutive readings for ``hold_seconds`` of event
time; in ``alarm`` a recovery is raised once the clear condition has held for its
``hold_seconds``.  A reading that is a duplicate or older than the last one
accepted (by ``seq`` when the device sends one, else by ``ts``) changes nothing.
A ``seq`` that stops advancing while event time moves on by more than
``SEQ_RESET_SECONDS`` is a counter that was reset or wrapped (a reboot, a 32-bit
counter, one corrupt value): it is adopted, so one bad ``seq`` cannot silence a device.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

Op = Literal["gt", "ge", "lt", "le", "outside", "inside"]


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    op: Op
    threshold: float | None = None
    range: tuple[float, float] | None = None
    hold_seconds: float = 0.0

    @model_validator(mode="after")
    def _shape(self) -> "Condition":
        if self.op in ("outside", "inside"):
            if self.range is None or self.range[0] > self.range[1]:
                raise ValueError(f"op {self.op} needs range = [low, high]")
        elif self.threshold is None:
            raise ValueError(f"op {self.op} needs a threshold")
        if self.hold_seconds < 0:
            raise ValueError("hold_seconds must be >= 0")
        return self

    def holds(self, v: float) -> bool:
        op = self.op
        if op == "gt":
            return v > self.threshold
        if op == "ge":
            return v >= self.threshold
        if op == "lt":
            return v < self.threshold
        if op == "le":
            return v <= self.threshold
        lo, hi = self.range  # type: ignore[misc]
        return (v < lo or v > hi) if op == "outside" else (lo <= v <= hi)


class SensorRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    unit: str
    valid_range: tuple[float, float]
    alarm: Condition
    clear: Condition

    @model_validator(mode="after")
    def _hysteresis(self) -> "SensorRule":
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


class Outcome(enum.Enum):
    NORMAL = "normal"          # accepted, no event (may have started a pending timer)
    ALARM = "alarm"
    RECOVERY = "recovery"
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

    def to_dict(self) -> dict:
        return {"a": self.alarm, "p": self.pending_since, "t": self.last_ts,
                "s": self.last_seq, "as": self.alarm_since}

    @classmethod
    def from_dict(cls, d: dict | None) -> "DeviceState":
        if not d:
            return cls()
        return cls(alarm=d["a"], pending_since=d["p"], last_ts=d["t"], last_seq=d["s"],
                   alarm_since=d.get("as"))


SEQ_RESET_SECONDS = 60.0


def apply_reading(rule: SensorRule, state: DeviceState, value: float, ts: float,
                  seq: int | None = None) -> tuple[DeviceState, Outcome]:
    """Fold one reading into the device's state.  Pure: returns the new state."""
    reset = (seq is not None and state.last_seq is not None and seq <= state.last_seq
             and state.last_ts is not None and ts > state.last_ts + SEQ_RESET_SECONDS)
    if seq is not None and state.last_seq is not None and not reset:
        if seq == state.last_seq:
            return state, Outcome.DUPLICATE
        if seq < state.last_seq:
            return state, Outcome.OUT_OF_ORDER
    if state.last_ts is not None:
        if ts < state.last_ts:
            return state, Outcome.OUT_OF_ORDER
        if ts == state.last_ts and (seq is None or state.last_seq is None):
            return state, Outcome.DUPLICATE
    # Plain constructor calls: dataclasses.replace was 6 % of the worker's time.
    seq = seq if seq is not None else state.last_seq
    toward = rule.clear if state.alarm else rule.alarm
    if not toward.holds(value):
        return DeviceState(state.alarm, None, ts, seq, state.alarm_since), Outcome.NORMAL
    since = state.pending_since if state.pending_since is not None else ts
    if ts - since >= toward.hold_seconds:
        if state.alarm:
            return DeviceState(False, None, ts, seq, None), Outcome.RECOVERY
        return DeviceState(True, None, ts, seq, ts), Outcome.ALARM
    return DeviceState(state.alarm, since, ts, seq, state.alarm_since), Outcome.NORMAL
