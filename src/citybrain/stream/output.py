"""A stage's output record, and the input it came from."""

from __future__ import annotations

from dataclasses import dataclass

Source = tuple[str, int, int]   # the input record's topic, partition, offset (-1: a timer's output)


@dataclass(slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None            # None: a tombstone (changelogs)
    partition: int | None = None   # set for changelog records (same number as the input)
    source: Source | None = None   # set by the stage runner; exactly_once groups outputs by it
