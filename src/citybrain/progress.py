"""Progress lines for long commands: a live line on a terminal, a line every few
seconds otherwise (CI logs, pipes)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, title: str, total: float | None = None, every: float = 5.0, stream=None):
        self.title, self.total = title, total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.started = time.monotonic()
        self.last = 0.0

    def update(self, done: float, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        if self.total:
            pct = min(done / self.total, 1.0)
            bar = "█" * int(pct * 24) + "·" * (24 - int(pct * 24))
            line = f"{self.title} [{bar}] {pct:5.1%} {elapsed:6.1f}s {note}"
        else:
            line = f"{self.title} {elapsed:6.1f}s {note}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
