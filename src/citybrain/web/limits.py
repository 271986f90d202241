"""Per-token limits on the API: a request rate (token bucket) and concurrent live streams.
In memory, per worker: a city's gateway in front balances clients over workers, so the
limit a client meets is per worker it reaches (docs/security.md)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable


class RequestRate:
    """``rate`` requests a second per key, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, tuple[float, float]] = {}   # key → (tokens, when)

    def wait(self, key: str) -> float:
        """0 when the request may go now (and it is counted), else the seconds until it may."""
        now = self.clock()
        tokens, then = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self.buckets[key] = (tokens - 1.0, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class StreamSlots:
    """At most ``most`` open streams per key."""

    def __init__(self, most: int):
        self.most = most
        self.open: Counter[str] = Counter()

    def take(self, key: str) -> bool:
        if self.open[key] >= self.most:
            return False
        self.open[key] += 1
        return True

    def give_back(self, key: str) -> None:
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]
