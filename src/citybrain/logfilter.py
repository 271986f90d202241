"""One log line per kind of repeated client error: during a broker outage aiokafka logs
every connection attempt (measured: ~330 ERROR lines a second).  A warning or error from
the Kafka client and Faust's plumbing passes once per ``every`` seconds per message
template; the next one that passes says how many were held back."""

from __future__ import annotations

import logging
import time

NOISY = ("aiokafka", "faust", "mode")


class RepeatFilter(logging.Filter):
    def __init__(self, every: float = 10.0, clock=time.monotonic):
        super().__init__()
        self.every, self.clock = every, clock
        self.last: dict[tuple[str, str], float] = {}
        self.held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(NOISY):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        if now - self.last.get(key, float("-inf")) < self.every:
            self.held[key] = self.held.get(key, 0) + 1
            return False
        self.last[key] = now
        held = self.held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (+{held} like it in the last {self.every:.0f}s)"
        return True


def install(every: float = 10.0) -> RepeatFilter:
    """On every handler of the root logger (a filter on a logger would miss its children)."""
    f = RepeatFilter(every)
    for handler in logging.getLogger().handlers:
        handler.addFilter(f)
    return f
