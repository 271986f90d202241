"""A configuration file read again when it changes, for files people edit while the
service runs (the token file, the notifier's roster): a change takes effect without a
restart, and a file that no longer loads keeps what was loaded last, with an error in the
log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class ReloadingFile(Generic[T]):
    """``load(path)`` gives the value; the file is looked at most every ``every`` seconds,
    when the value is asked for, and loaded again when its mtime or size changed."""

    def __init__(self, path: Path, load: Callable[[Path], T], *, every: float, log: logging.Logger,
                 reloaded: Callable[[T], str], refused: str):
        self.path, self.load, self.every, self.log = path, load, every, log
        self.reloaded, self.refused = reloaded, refused   # the log lines, for a person on shift
        self.stamp = self._stamp()
        self.value = load(path)
        self.looked = time.monotonic()
        self.reloads = 0

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> T:
        now = time.monotonic()
        if now - self.looked >= self.every:
            self.looked = now
            stamp = self._stamp()
            if stamp != self.stamp:
                self.stamp = stamp
                try:
                    self.value = self.load(self.path)
                    self.reloads += 1
                    self.log.warning(self.reloaded(self.value))
                except (OSError, ValueError) as e:   # pydantic's ValidationError is a ValueError
                    self.log.error("%s %s does not load, keeping the one loaded before: %s", self.refused,
                                   self.path, str(e)[:300])
        return self.value
