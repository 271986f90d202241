"""Progress lines for long commands: a live line on a terminal, a line every few
seconds otherwise (CI logs, pipes).

Whatever was last drawn, ``close`` leaves the final state on screen: the last update
(or the ``done``/``note`` it is given) is drawn once more unless it already was, so a
finished read never ends on a throttled 87 % line."""

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
        self.state: tuple[float, str] | None = None      # the latest update, drawn or not
        self.drawn: tuple[float, str] | None = None      # the state on screen
        self.closed = False

    def line(self, done: float, note: str, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self.started
        if self.total:
            pct = max(0.0, min(done / self.total, 1.0))
            filled = int(pct * 24)
            bar = "█" * filled + "·" * (24 - filled)
            return f"{self.title} [{bar}] {pct:6.1%} {elapsed:6.1f}s {note}".rstrip()
        return f"{self.title} {elapsed:6.1f}s {note}".rstrip()

    def update(self, done: float, note: str = "", force: bool = False) -> None:
        self.state = (done, note)
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        self.draw(done, note, now)

    def draw(self, done: float, note: str, now: float | None = None) -> None:
        line = self.line(done, note, now)
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.drawn = (done, note)

    def close(self, done: float | None = None, note: str | None = None) -> None:
        """End on the final state: ``done``/``note`` if given (e.g. the real count
        read), else the last update; drawn unless it is what is on screen already."""
        if self.closed:
            return
        self.closed = True
        if done is not None or note is not None:
            last_done, last_note = self.state or (0.0, "")
            self.state = (last_done if done is None else done, last_note if note is None else note)
        if self.state is not None and self.state != self.drawn:
            self.draw(*self.state)
        if self.tty and self.drawn is not None:
            self.stream.write("\n")
            self.stream.flush()
