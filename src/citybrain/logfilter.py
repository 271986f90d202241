"""Logs an operator can read during a storm: one line per kind of repeated message per
interval, with how many like it were held back.

- ``Throttle``: the one rule (per key, at most once every ``every`` seconds).
- ``ThrottledLog``: our own repeated lines (dead letters by reason, stage failures,
  internal errors by exception type).
- ``RepeatFilter``: the Kafka client's and Faust's warnings and errors — during a broker
  outage aiokafka logs every connection attempt (measured: ~330 ERROR lines a second).
"""

from __future__ import annotations

import logging
import time

NOISY = ("aiokafka", "faust", "mode")


class Throttle:
    def __init__(self, every: float = 10.0, clock=time.monotonic):
        self.every, self.clock = every, clock
        self.last: dict = {}
        self.held: dict = {}

    def allow(self, key) -> int | None:
        """None: hold this one back; else how many were held back since the last one passed."""
        now = self.clock()
        if now - self.last.get(key, float("-inf")) < self.every:
            self.held[key] = self.held.get(key, 0) + 1
            return None
        self.last[key] = now
        return self.held.pop(key, 0)

    def note(self, held: int) -> str:
        return f" (+{held} like it in the last {self.every:.0f}s)" if held else ""


class ThrottledLog:
    def __init__(self, logger: logging.Logger, every: float = 10.0):
        self.logger, self.throttle = logger, Throttle(every)

    def __call__(self, level: int, key: str, msg: str, *args, exc_info=None) -> None:
        held = self.throttle.allow(key)
        if held is not None:
            self.logger.log(level, msg + self.throttle.note(held), *args, exc_info=exc_info)


class RepeatFilter(logging.Filter):
    def __init__(self, every: float = 10.0, clock=time.monotonic):
        super().__init__()
        self.throttle = Throttle(every, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(NOISY):
            return True
        held = self.throttle.allow((record.name, str(record.msg)))
        if held is None:
            return False
        record.msg = f"{record.msg}{self.throttle.note(held)}"
        return True


def install(every: float = 10.0) -> RepeatFilter:
    """On every handler of the root logger (a filter on a logger would miss its children)."""
    f = RepeatFilter(every)
    for handler in logging.getLogger().handlers:
        handler.addFilter(f)
    return f
