"""The fuse stage's clocks, per partition: when each open order's next deadline falls
due (supervision, automatic verification), when a closed order leaves hot state, when an
open order's state record is written again (``StateRefresh``)."""

from __future__ import annotations

import heapq
from collections import Counter

from citybrain.domain.order_flow import Clocks
from citybrain.stream.orderstate import REFRESH_SECONDS


class PartitionHeaps:
    """Per partition, a heap of (when, work-order id): what falls due first comes first."""

    def __init__(self):
        self.heaps: dict[int, list[tuple[float, str]]] = {}

    def push(self, partition: int, when: float, key: str) -> None:
        heapq.heappush(self.heaps.setdefault(partition, []), (when, key))

    def pop_due(self, now: float) -> list[tuple[int, float, str]]:
        out = []
        for p, heap in self.heaps.items():
            while heap and heap[0][0] <= now:
                when, key = heapq.heappop(heap)
                out.append((p, when, key))
        return out

    def drop(self, partitions: set[int]) -> list[tuple[float, str]]:
        """Forget the partitions; returns what they held."""
        return [entry for p in partitions for entry in self.heaps.pop(p, [])]


class OrderTimers:
    """Per partition: when each open order next needs a look (supervision step or
    automatic verification), as a heap with lazy invalidation, and when each open order
    falls overdue (for the overdue gauge)."""

    def __init__(self):
        self.heaps = PartitionHeaps()
        self.next_at: dict[str, float] = {}
        self.overdue_at: dict[int, dict[str, tuple[str, float]]] = {}

    def schedule(self, partition: int, work_order_id: str, clocks: Clocks) -> None:
        """The order's clocks (domain/order_flow.py ``clocks``) after a change: none for an
        ended order; a check already past is taken at the next look."""
        wo = work_order_id
        if clocks.overdue_at is None:   # ended: closed, cancelled or merged
            self.next_at.pop(wo, None)
            self.overdue_at.get(partition, {}).pop(wo, None)
            return
        self.overdue_at.setdefault(partition, {})[wo] = (clocks.department, clocks.overdue_at)
        ts = clocks.check_at
        if ts is None:
            self.next_at.pop(wo, None)
            return
        if self.next_at.get(wo) != ts:
            self.next_at[wo] = ts
            self.heaps.push(partition, ts, wo)

    def due(self, now: float) -> list[tuple[int, str]]:
        out = []
        for p, ts, wo in self.heaps.pop_due(now):
            if self.next_at.get(wo) == ts:   # else superseded by a later schedule
                del self.next_at[wo]
                out.append((p, wo))
        return out

    def overdue_counts(self, now: float) -> Counter:
        """Overdue open orders per (department,): the overdue gauge's labels."""
        counts: Counter = Counter()
        for orders in self.overdue_at.values():
            for dept, due in orders.values():
                if due < now:
                    counts[(dept,)] += 1
        return counts

    def drop(self, partitions: set[int]) -> None:
        for _, wo in self.heaps.drop(partitions):
            self.next_at.pop(wo, None)
        for p in partitions:
            self.overdue_at.pop(p, None)


class ClosedOrders:
    """Per partition: when each ended (closed, cancelled, merged) order leaves hot state."""

    def __init__(self, keep_seconds: float):
        self.keep = keep_seconds
        self.heaps = PartitionHeaps()

    def closed(self, partition: int, work_order_id: str, closed_at: float) -> None:
        self.heaps.push(partition, closed_at + self.keep, work_order_id)

    def due(self, now: float) -> list[tuple[int, str]]:
        return [(p, wo) for p, _, wo in self.heaps.pop_due(now)]

    def drop(self, partitions: set[int]) -> None:
        self.heaps.drop(partitions)


class StateRefresh:
    """Per partition: when each open order's ``workorders.state`` record falls older than
    ``REFRESH_SECONDS`` and is written again (readers start the topic at that age)."""

    def __init__(self, every: float = REFRESH_SECONDS):
        self.every = every
        self.heaps = PartitionHeaps()
        self.scheduled: set[str] = set()

    def written(self, partition: int, work_order_id: str, at: float) -> None:
        if work_order_id not in self.scheduled:
            self.scheduled.add(work_order_id)
            self.heaps.push(partition, at + self.every, work_order_id)

    def due(self, now: float) -> list[tuple[int, str]]:
        out = [(p, wo) for p, _, wo in self.heaps.pop_due(now)]
        self.scheduled.difference_update(wo for _, wo in out)
        return out

    def stale(self, written_at: float, now: float) -> bool:
        """A record written at ``written_at`` is to be written again by ``now`` (one written
        since its entry was scheduled is not: its entry is scheduled again from then)."""
        return now - written_at >= self.every

    def drop(self, partitions: set[int]) -> None:
        self.scheduled.difference_update(wo for _, wo in self.heaps.drop(partitions))
