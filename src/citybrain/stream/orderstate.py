"""What the fuse stage keeps of each order (its hot state) and publishes on
``workorders.state``: the latest snapshot, the order's timeline steps, and when its state
record was last written.

Kept as ``snapshot JSON \\n steps JSON \\n header`` — JSON from pydantic and orjson never
holds a raw newline — so adding a step joins bytes and never re-parses the snapshot on
the hot path.  A value written before the steps existed (the snapshot alone) reads as an
order without steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic_core import to_json

from citybrain.wire.models import WorkOrder, WorkOrderChange

# Steps kept per order.  Every change rewrites the order's record (hot state, changelog,
# workorders.state, every worker's view), so the record's size is paid per change: an
# incident that gathers a hundred reports made it O(n²) — measured, max throughput 13.2k →
# 9.6k records/s with 100 steps, 15.1k with 20 (docs/performance.md).  Evidence steps (a
# report, an alert, a reading joining) go first: the lifecycle's own steps stay.
MAX_STEPS = 30
TRIM_TO = 20       # trimmed in one go, so the steps are parsed once in ten changes, not each time
REPEATABLE = ("evidence_added", "recovery_recorded")
# An open order's state record is written again when older than this, so every open order
# has a record within the state topic's last REFRESH_SECONDS: readers start there.
REFRESH_SECONDS = 86_400.0


@dataclass(slots=True)
class OrderRecord:
    snapshot: bytes          # WorkOrder JSON
    steps: bytes = b"[]"     # JSON list of OrderStep, version order
    count: int = 0           # steps held
    omitted: int = 0         # oldest steps dropped beyond MAX_STEPS
    written_at: float = 0.0  # when the state record was last published (epoch seconds)
    at: str = ""             # the latest change's time (ISO)

    @classmethod
    def unpack(cls, raw: bytes) -> OrderRecord:
        parts = raw.split(b"\n")
        if len(parts) != 3:
            return cls(raw)
        head = orjson.loads(parts[2])
        return cls(parts[0], parts[1], head["n"], head["omitted"], head["written_at"], head["at"])

    def pack(self) -> bytes:
        head = orjson.dumps({"n": self.count, "omitted": self.omitted, "written_at": self.written_at,
                             "at": self.at})
        return b"\n".join((self.snapshot, self.steps, head))

    def order(self) -> WorkOrder:
        return WorkOrder.model_validate_json(self.snapshot)

    def summary(self) -> dict:
        return orjson.loads(self.snapshot)

    def add(self, change: WorkOrderChange, before: WorkOrder | None) -> None:
        """The change becomes the latest snapshot and a step of the timeline."""
        snap = change.snapshot
        note = snap.notes[-1] if len(snap.notes) > (len(before.notes) if before else 0) else None
        fields: dict[str, object] = {"version": change.version, "type": change.type, "at": change.at,
                  "actor": change.actor.model_dump(exclude_none=True), "status": snap.status,
                  "supervision": change.supervision, "note": note}
        if change.part is not None:
            fields["part"] = change.part
        if change.escalation is not None:
            fields["escalation"] = change.escalation
        step = to_json(fields)
        self.snapshot = to_json(snap)
        self.at = orjson.loads(to_json(change.at))
        if self.count >= MAX_STEPS:
            steps = orjson.loads(self.steps)
            while len(steps) >= TRIM_TO:
                oldest = next((i for i, s in enumerate(steps) if s["type"] in REPEATABLE), 0)
                del steps[oldest]
                self.omitted += 1
            self.steps = orjson.dumps(steps)[:-1] + (b"," if steps else b"") + step + b"]"
            self.count = len(steps) + 1
        else:
            self.steps = (self.steps[:-1] + (b"," if self.count else b"") + step + b"]")
            self.count += 1

    def state_record(self, work_order_id: str, version: int) -> bytes:
        """The ``workorders.state`` value (wire model ``OrderState``)."""
        at = self.at or self.summary()["created_at"]   # a value from before steps were kept
        return orjson.dumps({"work_order_id": work_order_id, "version": version, "at": at,
                             "snapshot": orjson.Fragment(self.snapshot), "steps": orjson.Fragment(self.steps),
                             "steps_omitted": self.omitted})
