"""Labelled gauges kept from counts, for the stages' state: what changed moves the
series it touches (never a walk over every order or device on the event loop)."""

from __future__ import annotations

from collections import Counter

from citybrain import metrics
from citybrain.wire.enums import OPEN_PARTS
from citybrain.wire.models import OPEN_STATUSES, WorkOrder


class GaugeCounts:
    """A labelled gauge set from counts: series that drop out of the counts go to 0."""

    def __init__(self, metric):
        self.metric = metric
        self.counts: Counter[tuple] = Counter()

    def set_all(self, counts: Counter) -> None:
        for key in set(self.counts) | set(counts):
            metrics.child(self.metric, *key).set(counts.get(key, 0))
        self.counts = counts


class OpenOrderGauge(GaugeCounts):
    """Open orders counted by ``keys(order)`` (an order may count under several keys)."""

    def __init__(self, metric=metrics.WORKORDERS_OPEN, keys=None):
        super().__init__(metric)
        self.keys = keys or (lambda o: [(o.status, o.department or "", o.location.district_code)])

    def of(self, order: WorkOrder | None) -> list[tuple]:
        return self.keys(order) if order is not None and order.status in OPEN_STATUSES else []

    def moved(self, old: WorkOrder | None, new: WorkOrder) -> None:
        """Only the series the change touches."""
        before, after = self.of(old), self.of(new)
        if before == after:
            return
        for keys, step in ((before, -1), (after, 1)):
            for key in keys:
                self.counts[key] += step
                metrics.child(self.metric, *key).set(self.counts[key])


def emergency_keys(order: WorkOrder) -> list[tuple]:
    return [(order.emergency_level,)] if order.emergency_level else []


def assist_keys(order: WorkOrder) -> list[tuple]:
    return [(a.department,) for a in order.assists if a.status in OPEN_PARTS]
