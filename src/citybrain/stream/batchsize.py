"""How many records a stage takes in one batch: as many as it handles in ``target``
seconds, between ``least`` and ``most`` (issue 38: "a SIGKILL mid-drain replays ≤ 5 s of
work").

What a kill replays is what was handled and not yet committed: the batches in flight
(stream/checkpoint.py) and the commit interval's.  A fixed 2,000-record batch is 0.1 s of
work at full speed but seconds on a loaded box — measured in the backlog chaos test at
load, a kill put out again 5.9 and 8.4 s of its incarnation's work, 1.5 s on a quiet box.
Bounding a batch by its handling time bounds the replay in time whatever the speed; at
full speed the bound is above ``most`` and nothing changes (max throughput unchanged).
Before anything is measured (a start) a batch is the smallest: measured in the backlog
chaos test on a quiet box, the fuse stage's first 2,000-record batch after a start kept
its committed position at 0 for the 1.6 s until a kill."""

from __future__ import annotations


class BatchSize:
    SMOOTHING = 0.3   # weight of the latest batch in the per-record time

    def __init__(self, most: int, least: int = 50, target: float = 0.25):
        self.most, self.least, self.target = most, least, target
        self.per_record: float | None = None   # seconds, smoothed over the batches handled

    @property
    def records(self) -> int:
        """The next batch's size."""
        if not self.per_record:   # nothing measured yet (a start, a restore): the smallest
            return self.least
        # Bounded before it is an int: a vanishing per-record time makes the quotient infinite.
        return max(self.least, int(min(self.most, self.target / self.per_record)))

    def handled(self, records: int, seconds: float) -> None:
        """A batch of ``records`` took ``seconds`` to handle (small ones say little: the
        per-record cost of a handful is mostly the batch's own overhead)."""
        if records < self.least or seconds <= 0:
            return
        latest = seconds / records
        self.per_record = latest if self.per_record is None else (
            self.SMOOTHING * latest + (1 - self.SMOOTHING) * self.per_record)
