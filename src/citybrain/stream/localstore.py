"""A stage state's copy on local disk (RocksDB through rocksdict), with the changelog
offset it reflects, so a restarted worker reads only the changelog's tail (DESIGN §9).

Written when the worker hands partitions over cleanly (a revocation, a stop) — after
everything of them is acknowledged and committed — never in the middle of a batch, so
the copy is always a committed state.  A worker that crashes keeps the copy of its last
clean hand-over: older, still consistent, and the changelog tail from its offset brings
it up to date.  A copy older than ``MAX_AGE`` is not used: compaction may by then have
dropped tombstones (``delete.retention.ms``, 1 day by default) that it predates, and a
deleted key would come back.  A worker without a copy (a new machine, a partition it
never held) reads the whole changelog.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
from rocksdict import Options, Rdict, WriteBatch

log = logging.getLogger("citybrain.localstore")


def _prefix(partition: int) -> bytes:
    return b"%d\x00" % partition


def _meta(partition: int) -> bytes:
    return b"%d\x01" % partition


class LocalStore:
    MAX_AGE = 12 * 3600.0

    def __init__(self, directory: Path, name: str, clock=time.time):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / name
        self.clock = clock
        self.db = Rdict(str(self.path), options=Options(raw_mode=True))

    def load(self, partition: int) -> tuple[dict[str, bytes], int] | None:
        """(the key → value copy, the changelog offset to read on from), or None."""
        raw = self.db.get(_meta(partition))
        if raw is None:
            return None
        meta = orjson.loads(raw)
        age = self.clock() - meta["saved_at"]
        if age > self.MAX_AGE:
            log.info("本地状态过旧 local copy of %s partition %d is %.1f h old: read from the changelog",
                     self.path.name, partition, age / 3600)
            return None
        prefix = _prefix(partition)
        data = {}
        it = self.db.iter()
        it.seek(prefix)
        while it.valid() and it.key().startswith(prefix):
            data[it.key()[len(prefix):].decode()] = it.value()
            it.next()
        return data, meta["offset"]

    def save(self, partition: int, data: dict[str, bytes], offset: int) -> None:
        """Replace the partition's copy with ``data``, reflecting the changelog up to
        ``offset`` (the next one to read); one atomic write."""
        prefix = _prefix(partition)
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(prefix, b"%d\x01" % partition)
        for key, value in data.items():
            batch.put(prefix + key.encode(), value)
        batch.put(_meta(partition), orjson.dumps({"offset": offset, "saved_at": self.clock()}))
        self.db.write(batch)
        self.db.flush()

    def close(self) -> None:
        self.db.close()
