"""Feeds the history read model (``readmodels.history``) from ``workorders.state``: a
``TopicReader`` from the store's own positions (from the beginning when it has none),
each batch parsed and written in a worker thread so SQLite never blocks the event loop.
Only for a worker with a data dir."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import orjson

from citybrain.readmodels.history import HistoryStore
from citybrain.stream.logreader import TopicReader

log = logging.getLogger("citybrain.history")
_SKIPPABLE = (orjson.JSONDecodeError, KeyError, TypeError, ValueError)
FILE_NAME = "history.sqlite3"


def _parsed(records) -> list[tuple[int, int, dict | None]]:
    batch: list[tuple[int, int, dict | None]] = []
    for m in records:
        state = None
        if m.value is not None:
            try:
                state = orjson.loads(m.value)
                if not isinstance(state, dict) or not isinstance(state.get("snapshot"), dict):
                    raise ValueError("not a state record")
            except _SKIPPABLE as e:
                log.warning("历史跳过 record skipped %s@%d/%d: %r", m.topic, m.partition, m.offset, e)
                state = None
        batch.append((m.partition, m.offset, state))
    return batch


class HistoryFeed:
    def __init__(self, bootstrap: str, state_topic: str, data_dir: Path):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = HistoryStore(data_dir / FILE_NAME)
        self.reader = TopicReader(bootstrap, state_topic, self._fold, "history", start_offsets=self.store.positions,
                                  on_start_rejected=self._start_over)

    def _apply(self, records) -> int:
        batch = _parsed(records)
        try:
            return self.store.apply(batch)
        except (KeyError, TypeError, ValueError, sqlite3.IntegrityError) as e:   # one bad record: the batch one by one
            log.warning("历史批次 history batch of %d had a record it could not store (%r): one by one",
                        len(batch), e)
            n = 0
            for item in batch:
                try:
                    n += self.store.apply([item])
                except (KeyError, TypeError, ValueError, sqlite3.IntegrityError) as e1:
                    log.warning("历史跳过 record skipped %d/%d: %r", item[0], item[1], e1)
                    self.store.apply([(item[0], item[1], None)])
            return n

    async def _fold(self, records) -> None:
        await asyncio.to_thread(self._apply, records)

    def _start_over(self) -> None:
        log.warning("历史库不符 the history store is ahead of %s (a re-created topic?): rebuilding it",
                    self.reader.topic)
        self.store.clear()

    def caught_up(self) -> bool:
        return self.reader.caught_up.is_set()

    async def run(self) -> None:
        await self.reader.run()
