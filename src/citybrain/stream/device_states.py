"""Per-device alarm state: an in-memory front for the ``sensor_state`` Faust table.

Writing the table on every reading costs a changelog record per reading (measured:
a Faust agent drops from ~12k to ~3k events/s).  Most readings change only the
dedupe marks (last ts/seq), so:

- a change of the alarm state itself (alarm, hold start) is written through at once;
- a change of only the dedupe marks is kept in memory and written with the next
  flush of its partition (at most every ``flush_seconds``, from inside an event of
  that partition so the changelog record lands in the right partition).

Replaying after a crash stays correct: the stored state always carries the marks of
the last alarm-state change, so an older reading replayed on top of it is refused,
and a reading that changed nothing changes nothing when applied again.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping

from citybrain.domain.sensor_rules import DeviceState


class DeviceStates:
    def __init__(self, table: MutableMapping, flush_seconds: float = 2.0):
        self.table = table
        self.flush_seconds = flush_seconds
        self.memory: dict[str, DeviceState] = {}
        self.dirty: dict[int, dict[str, DeviceState]] = {}
        self.last_flush: dict[int, float] = {}

    def get(self, device_id: str) -> DeviceState:
        state = self.memory.get(device_id)
        if state is None:
            state = DeviceState.from_dict(self.table.get(device_id))
            self.memory[device_id] = state
        return state

    def put(self, partition: int, device_id: str, state: DeviceState) -> None:
        old = self.memory.get(device_id)
        self.memory[device_id] = state
        if old is None or _alarm_state(old) != _alarm_state(state):
            self.table[device_id] = state.to_dict()
            self.dirty.get(partition, {}).pop(device_id, None)
        else:
            self.dirty.setdefault(partition, {})[device_id] = state

    def maybe_flush(self, partition: int, now: float | None = None) -> int:
        """Write this partition's pending marks if it is time; call inside an event of it."""
        now = time.monotonic() if now is None else now
        if now - self.last_flush.get(partition, 0.0) < self.flush_seconds:
            return 0
        self.last_flush[partition] = now
        pending = self.dirty.pop(partition, None)
        if not pending:
            return 0
        for device_id, state in pending.items():
            self.table[device_id] = state.to_dict()
        return len(pending)

    def forget(self) -> None:
        """On rebalance: partitions may move, so the table is the truth again."""
        self.memory.clear()
        self.dirty.clear()


def _alarm_state(s: DeviceState) -> tuple:
    return (s.alarm, s.pending_since, s.alarm_since)
