"""The 研判 windows in the history read model (DESIGN §15): hour and day windows per
category × district × street (domain/aggregates.py), kept a year, on SQLite.

Its own file beside the order history (``analytics.sqlite3``), so neither store's writes
wait for the other's. Tables:

- ``windows``: one row per window with its counts, ``dirty`` while this worker has not
  published it on ``analytics.windows`` since it last changed;
- ``dedupe``: per order the versions folded (a bitmask as hex) and the day it ended —
  what makes a change delivered twice count once across restarts;
- ``positions``: partition → next offset of ``workorders.events``.

Each batch's deltas, dedupe entries and positions go in one transaction: a restart
resumes exactly where its counts are. Pure: no Kafka. Calls block; the worker runs them
in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from citybrain.domain.aggregates import MEASURES, WindowKey
from citybrain.readmodels.sqlite import SqliteStore

_COLS = ", ".join(MEASURES)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS windows (
    granularity TEXT NOT NULL,
    start_ts REAL NOT NULL,
    window_start TEXT NOT NULL,
    category TEXT NOT NULL,
    district TEXT NOT NULL,
    street TEXT NOT NULL,
    {", ".join(f"{m} INTEGER NOT NULL DEFAULT 0" for m in MEASURES)},
    dirty INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (granularity, start_ts, category, district, street)
);
CREATE INDEX IF NOT EXISTS windows_dirty ON windows (dirty) WHERE dirty = 1;
CREATE TABLE IF NOT EXISTS dedupe (work_order_id TEXT PRIMARY KEY, seen TEXT NOT NULL,
                                   ended INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def row_dict(row: tuple) -> dict[str, Any]:
    """(window_start, granularity, category, district, street, *counts) → the API's item."""
    out = {"window_start": row[0], "granularity": row[1], "category": row[2], "district": row[3],
           "street": row[4]}
    out.update(zip(MEASURES, row[5:5 + len(MEASURES)], strict=True))
    return out


class WindowStore(SqliteStore):
    def __init__(self, path: Path | str):
        super().__init__(path, _SCHEMA)

    # -- writing -----------------------------------------------------------------------

    def apply(self, deltas: Mapping[WindowKey, list[int]], dedupe: Mapping[str, tuple[int, int]],
              forgotten: Iterable[str], positions: Mapping[int, int], latest_day: int) -> None:
        rows = [(g, datetime.fromisoformat(start).timestamp(), start, c, d, s, *counts)
                for (start, g, c, d, s), counts in deltas.items()]
        adds = ", ".join(f"{m} = {m} + excluded.{m}" for m in MEASURES)
        with self._write_lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    f"INSERT INTO windows (granularity, start_ts, window_start, category, district, street, "  # noqa: S608
                    f"{_COLS}, dirty) VALUES (?,?,?,?,?,?,{','.join('?' * len(MEASURES))},1) "
                    f"ON CONFLICT (granularity, start_ts, category, district, street) DO UPDATE SET {adds}, dirty = 1",
                    rows)
                db.executemany("INSERT OR REPLACE INTO dedupe VALUES (?,?,?)",
                               [(wo, format(seen, "x"), ended) for wo, (seen, ended) in dedupe.items()])
                db.executemany("DELETE FROM dedupe WHERE work_order_id = ?", [(wo,) for wo in forgotten])
                db.executemany("INSERT INTO positions (partition, next_offset) VALUES (?, ?) ON CONFLICT "
                               "(partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                               sorted(positions.items()))
                db.execute("INSERT INTO meta VALUES ('latest_day', ?) ON CONFLICT (name) DO UPDATE SET "
                           "value = max(value, excluded.value)", (latest_day,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def clear(self) -> None:
        """Everything forgotten (the topic was re-created: its offsets mean other records)."""
        with self._write_lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            for table in ("windows", "dedupe", "positions", "meta"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            db.execute("COMMIT")

    def prune(self, before_ts: float) -> int:
        """Windows that started before ``before_ts`` leave (the store keeps a year)."""
        with self._write_lock:
            return self.db.execute("DELETE FROM windows WHERE start_ts < ?", (before_ts,)).rowcount

    def dirty(self, limit: int = 5000) -> list[tuple]:
        """Windows changed since this worker last published them, as (key…, counts…)."""
        return self._reader().execute(
            f"SELECT window_start, granularity, category, district, street, {_COLS} FROM windows "  # noqa: S608
            "WHERE dirty = 1 LIMIT ?", (limit,)).fetchall()

    def published(self, rows: Iterable[tuple]) -> None:
        """Rows sent: clean unless they changed again meanwhile (the counts still match)."""
        match = " AND ".join(f"{m} = ?" for m in MEASURES)
        with self._write_lock:
            self.db.executemany(
                f"UPDATE windows SET dirty = 0 WHERE granularity = ? AND start_ts = ? AND category = ? "  # noqa: S608
                f"AND district = ? AND street = ? AND {match}",
                [(r[1], datetime.fromisoformat(r[0]).timestamp(), *r[2:5], *r[5:]) for r in rows])

    # -- reading -----------------------------------------------------------------------

    def positions(self) -> dict[int, int]:
        return dict(self._reader().execute("SELECT partition, next_offset FROM positions").fetchall())

    def dedupe_entries(self) -> tuple[list[tuple[str, int, int]], int]:
        db = self._reader()
        entries = [(wo, int(seen, 16), ended) for wo, seen, ended in db.execute("SELECT * FROM dedupe")]
        latest = db.execute("SELECT value FROM meta WHERE name = 'latest_day'").fetchone()
        return entries, latest[0] if latest else 0

    def query(self, granularity: str, from_ts: float, to_ts: float, category: str | None = None,
              district: str | None = None, street: str | None = None, limit: int = 100_000) -> list[dict]:
        """Windows that start in [from_ts, to_ts), oldest first."""
        where, args = ["granularity = ?", "start_ts >= ?", "start_ts < ?"], [granularity, from_ts, to_ts]
        for name, value in (("category", category), ("district", district), ("street", street)):
            if value is not None:
                where.append(f"{name} = ?")
                args.append(value)
        rows = self._reader().execute(
            f"SELECT window_start, granularity, category, district, street, {_COLS} FROM windows "  # noqa: S608
            f"WHERE {' AND '.join(where)} ORDER BY start_ts, category, district, street LIMIT ?",
            (*args, limit)).fetchall()
        return [row_dict(r) for r in rows]

    def opened_by_day(self, starts: Iterable[float], category: str | None = None,
                      district: str | None = None) -> list[tuple[float, str, str, int]]:
        """(day window start, category, district, orders opened) over streets, for trends."""
        starts = list(starts)
        where = [f"start_ts IN ({','.join('?' * len(starts))})"]
        args: list[float | str] = list(starts)
        for name, value in (("category", category), ("district", district)):
            if value is not None:
                where.append(f"{name} = ?")
                args.append(value)
        return self._reader().execute(
            "SELECT start_ts, category, district, sum(opened) FROM windows WHERE granularity = 'day' AND "  # noqa: S608
            f"{' AND '.join(where)} GROUP BY start_ts, category, district", args).fetchall()
