"""回执 Deliveries and their state: the ``notifications.deliveries`` records (compacted, keyed by
the delivery id) and the book the notifier rebuilds from them at start (pure).

A delivery is one (order, version, person, channel).  Its record is written ``queued``
when it is decided, ``sending`` (the claim) just before each attempt hands it to the
channel, ``retrying`` after a failed attempt, ``sent`` / ``failed`` after it, ``delivered``
when the channel confirms delivery, ``acked`` when the person acknowledges it.  The book answers the dedupe
question — has this delivery been done? — and the escalation one — which urgent
(order, version) has nobody acknowledged in time?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["queued", "sending", "sent", "delivered", "retrying", "failed", "acked"]
# Done: a redelivered source record sends nothing for these.  ``queued``/``retrying``: the
# notifier stopped before handing the message to the channel (or after the channel refused
# it) — its source record comes again and the send is tried.  ``sending``: it stopped while
# the channel had the message, so nobody knows whether it went out — never sent again
# blindly (service.py: resent under the same id, or reported outcome_unknown).
DONE: frozenset[str] = frozenset({"sent", "delivered", "failed", "acked"})
UNKNOWN_OUTCOME = "outcome_unknown"
# The sms channel's detail of a sent message: this + the SMSC's message ids (one per part),
# comma-separated — how a delivery report (notify/receipts.py) finds its delivery.
SMPP_SENT = "smpp message_id "


def smsc_ids(detail: str) -> list[str]:
    return [i for i in detail[len(SMPP_SENT):].split(",") if i] if detail.startswith(SMPP_SENT) else []


class DeliveryRecord(BaseModel):
    """A ``notifications.deliveries`` record: a delivery's latest state."""

    model_config = ConfigDict(extra="ignore")
    delivery_id: str
    work_order_id: str
    version: int
    person: str
    channel: str
    kind: str
    desk: str
    status: Status
    at: datetime
    attempts: int = 0
    detail: str = ""
    urgent: bool = False
    step: int = 0
    final: bool = False
    sent_at: datetime | None = None
    ack_due_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    summary: dict[str, Any] = {}


@dataclass
class Group:
    """The deliveries of one urgent (order, version): who was told, the latest step, its due."""

    desk: str
    summary: dict[str, Any]
    notified: set[str] = field(default_factory=set)
    step: int = 0
    final: bool = False
    due: datetime | None = None
    acked: bool = False
    escalating: bool = False   # a step is being sent (not twice at once)


class DeliveryBook:
    def __init__(self) -> None:
        self.deliveries: dict[str, DeliveryRecord] = {}
        self.groups: dict[tuple[str, int], Group] = {}
        self.sent_times: dict[tuple[str, str], list[datetime]] = {}   # (person, channel) → messages
        self.by_smsc_id: dict[str, str] = {}   # an SMSC's message id → the SMS delivery it was part of

    def done(self, delivery_id: str) -> bool:
        rec = self.deliveries.get(delivery_id)
        return rec is not None and rec.status in DONE

    def claimed(self, delivery_id: str) -> DeliveryRecord | None:
        """The delivery's claim if its latest state is ``sending`` (in the channel's hands,
        outcome not recorded)."""
        rec = self.deliveries.get(delivery_id)
        return rec if rec is not None and rec.status == "sending" else None

    def apply(self, rec: DeliveryRecord) -> None:
        old = self.deliveries.get(rec.delivery_id)
        if old is not None and old.status == "acked" and rec.status != "acked":
            rec = rec.model_copy(update={"status": "acked", "acked_at": old.acked_at, "acked_by": old.acked_by})
        elif old is not None and old.status in DONE and rec.status not in DONE:
            # A stale queued/retrying read back after its outcome (the follower reads what
            # this notifier wrote): a done delivery never becomes undone.
            rec = old
        if old is None:   # a delivery's first record: one message (sent or tried) for the rate limit
            self.sent_times.setdefault((rec.person, rec.channel), []).append(rec.at)
        self.deliveries[rec.delivery_id] = rec
        for smsc_id in smsc_ids(rec.detail) if rec.channel == "sms" else ():
            self.by_smsc_id[smsc_id] = rec.delivery_id
        if not rec.urgent:
            return
        key = (rec.work_order_id, rec.version)
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = Group(desk=rec.desk, summary=rec.summary)
        g.notified.add(rec.person)
        if rec.status == "acked":
            g.acked = True
        if rec.step > g.step or (rec.step == g.step and rec.ack_due_at and (g.due is None or rec.ack_due_at > g.due)):
            g.step, g.final = rec.step, rec.final
            g.due = rec.ack_due_at if rec.ack_due_at else g.due
        elif rec.step == g.step and rec.final:
            g.final = True

    def sent_since(self, person: str, channel: str, since: datetime) -> int:
        """Messages to ``person`` on ``channel`` (queued at or after ``since``: sent, tried or on their
        way — the notifier checks and queues with no await between); older ones forgotten."""
        times = self.sent_times.get((person, channel))
        if not times:
            return 0
        times[:] = [t for t in times if t >= since]
        return len(times)

    def overdue(self, now: datetime) -> list[tuple[tuple[str, int], Group]]:
        """Urgent groups nobody acknowledged by their due, with a step still to come."""
        return [(k, g) for k, g in self.groups.items()
                if not g.acked and not g.final and not g.escalating and g.due is not None and g.due <= now]

    @staticmethod
    def ack_due(sent_at: datetime, minutes: float) -> datetime:
        return sent_at + timedelta(minutes=minutes)
