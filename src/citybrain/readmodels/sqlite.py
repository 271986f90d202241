"""One SQLite file of a worker's read model: written from one thread (under a lock, in
WAL mode so readers never wait for it), read from many (a connection per thread)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class SqliteStore:
    PRAGMAS: tuple[str, ...] = ()   # a store's own, after the shared ones

    def __init__(self, path: Path | str, schema: str):
        self.path = str(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self.db = self._connect()
        with self.db:
            self.db.executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        for pragma in self.PRAGMAS:
            db.execute(pragma)
        return db

    def _reader(self) -> sqlite3.Connection:
        if self.path == ":memory:":   # one database only on the one connection
            return self.db
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def close(self) -> None:
        self.db.close()
