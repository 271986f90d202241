"""The evaluation's running figures on local disk (RocksDB through rocksdict) with the
``workorders.events`` offsets they reflect, so a restarted worker folds only the log's
tail instead of years of changes (DESIGN §11).

One record per day of figures, rewritten only when that day changed, and one record
with the rest (open orders, recent closures, dispatch and return counts, offsets) — all
in one atomic write, so a copy is always a consistent cut of the log.  ``citybrain
kpis`` opens it read-only beside a running worker.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
from rocksdict import AccessType, Options, Rdict, WriteBatch

log = logging.getLogger("citybrain.evalcheckpoint")

_META = b"meta"
_DAY = b"day:"


class EvaluationCheckpoint:
    NAME = "evaluation"

    def __init__(self, directory: Path, read_only: bool = False):
        self.path = directory / self.NAME
        if read_only:
            self.db = Rdict(str(self.path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        else:
            directory.mkdir(parents=True, exist_ok=True)
            self.db = Rdict(str(self.path), options=Options(raw_mode=True))

    @classmethod
    def open_read_only(cls, directory: Path) -> EvaluationCheckpoint | None:
        if not (directory / cls.NAME).exists():
            return None
        try:
            return cls(directory, read_only=True)
        except Exception as e:  # noqa: BLE001 - an unreadable copy is as good as none
            log.warning("评价检查点不可读 evaluation checkpoint at %s unreadable: %s", directory, e)
            return None

    def load(self, topic: str) -> tuple[dict, dict[str, dict], dict[int, int]] | None:
        """(meta, days, the next offset per partition of ``topic``), or None."""
        raw = self.db.get(_META)
        if raw is None:
            return None
        head = orjson.loads(raw)
        if head["topic"] != topic:
            return None
        days = {}
        it = self.db.iter()
        it.seek(_DAY)
        while it.valid() and it.key().startswith(_DAY):
            days[it.key()[len(_DAY):].decode()] = orjson.loads(it.value())
            it.next()
        return head["meta"], days, {int(p): o for p, o in head["offsets"].items()}

    def save(self, topic: str, meta: dict, days: dict[str, dict], offsets: dict[int, int]) -> None:
        batch = WriteBatch(raw_mode=True)
        for day, figures in days.items():
            batch.put(_DAY + day.encode(), orjson.dumps(figures))
        batch.put(_META, orjson.dumps({"topic": topic, "meta": meta, "saved_at": time.time(),
                                       "offsets": {str(p): o for p, o in offsets.items()}}))
        self.db.write(batch)
        self.db.flush()

    def clear(self) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(b"\x00", b"\xff")
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()
