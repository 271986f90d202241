"""The history read model (DESIGN §14): every order the city ever had, on SQLite, for
search and "same place, same category, last N days" over a year — beyond the in-memory
order view, which keeps open orders and those closed within days.

Each worker builds its own file from ``workorders.state`` (latest snapshot per order).
One SQLite file (WAL, synchronous=NORMAL) holds:

- ``orders``: one row per order (the columns lists filter by, and the snapshot compressed
  with ``citybrain.packing``); an older or equal version never overwrites a newer one;
- ``orders_fts``: FTS5 with the ``trigram`` tokenizer over id, description, address,
  report ids and finders — substring search, Chinese included, for terms of 3+ characters;
- ``orders_geo``: an R*Tree over lon/lat (a point as a zero-size box);
- ``positions``: partition → next offset of ``workorders.state``, written in the same
  transaction as the rows of each batch, so a restart resumes exactly where its data is.

Why SQLite: FTS5 (trigram) and R*Tree are in Python's standard library, no new dependency;
DuckDB's full-text index is not maintained incrementally.

Pure: no Kafka here.  Calls block (disk); the worker runs them in a thread.  Writes go
through one connection under a lock; each reading thread has its own connection (WAL lets
readers run beside the writer).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson

from citybrain import packing
from citybrain.domain.geo import EARTH_RADIUS_M, distance_m
from citybrain.readmodels.query import Scope
from citybrain.readmodels.sqlite import SqliteStore

SHORT_TERM_DAYS = 30          # terms under 3 characters: LIKE over this many days unless created_from says
MIN_SQLITE = (3, 34, 0)       # FTS5's trigram tokenizer
# The store's format: a store of another is cleared at start and rebuilt from the topic.
# 2: the category's name is searched with the description.
FORMAT = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    work_order_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    category TEXT NOT NULL,
    priority TEXT,
    department TEXT,
    assists TEXT NOT NULL DEFAULT '',
    district TEXT,
    street TEXT,
    grid TEXT,
    lon REAL,
    lat REAL,
    created_ts REAL NOT NULL,
    updated_ts REAL,
    closed_ts REAL,
    description TEXT,
    address TEXT,
    snapshot BLOB NOT NULL,
    search_text TEXT NOT NULL DEFAULT ''   -- what the FTS holds, case-folded: LIKE for 1-2 character words
);
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_ts);
CREATE INDEX IF NOT EXISTS orders_category_created ON orders (category, created_ts);
-- a category's (or a district's) page and its exact count from the index alone, not the rows
-- (a year: category + district p50 147 ms reading rows, snapshots inline)
CREATE INDEX IF NOT EXISTS orders_category_district ON orders (category, district, created_ts);
CREATE INDEX IF NOT EXISTS orders_district_created ON orders (district, created_ts);
CREATE VIRTUAL TABLE IF NOT EXISTS orders_fts USING fts5(
    work_order_id, description, address, reports, finders, tokenize='trigram');
CREATE VIRTUAL TABLE IF NOT EXISTS orders_geo USING rtree(id, min_lon, max_lon, min_lat, max_lat);
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""


def sqlite_supported() -> str | None:
    """None when this SQLite has what the store needs, else why not."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        return f"SQLite {sqlite3.sqlite_version} is older than 3.34 (no FTS5 trigram tokenizer)"
    try:
        db = sqlite3.connect(":memory:")
        db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram')")
        db.execute("CREATE VIRTUAL TABLE g USING rtree(id, a, b)")
        db.close()
    except sqlite3.OperationalError as e:
        return f"SQLite {sqlite3.sqlite_version} lacks FTS5 or R*Tree: {e}"
    return None


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


@dataclass(frozen=True, slots=True)
class HistoryFilters:
    status: frozenset[str] | None = None
    category: frozenset[str] | None = None
    district: str | None = None
    department: str | None = None       # leads or assists
    grid: str | None = None             # a grid-code prefix
    created_from: float | None = None   # epoch seconds, inclusive
    created_to: float | None = None     # exclusive
    scope: Scope = field(default_factory=Scope)


@dataclass(frozen=True, slots=True)
class SearchResult:
    items: list[dict]
    total: int
    mode: str                           # "all" (no q), "fts" or "like" (some term under 3 characters)
    created_from: float | None          # the bound applied (a LIKE search's default bound shows here)


def _row(state: dict) -> tuple:
    snap = state["snapshot"]
    loc = snap.get("location") or {}
    events = snap.get("events") or ()
    closed = snap.get("closed_at") or snap.get("cancelled_at")
    assists = ",".join(a["department"] for a in snap.get("assists") or () if a.get("department"))
    reports = " ".join(e["report_id"] for e in events if e.get("report_id"))
    finders = " ".join(f for f in snap.get("finders") or () if f)
    return (state["work_order_id"], int(state["version"]), snap["status"], snap.get("category") or "",
            snap.get("priority"), snap.get("department"), f",{assists}," if assists else "",
            loc.get("district_code") or (loc.get("street_code") or "")[:6] or None, loc.get("street_code"),
            loc.get("grid_code"), loc.get("lon"), loc.get("lat"), _ts(snap.get("created_at")) or 0.0,
            _ts(state.get("at")), _ts(closed), snap.get("description") or "", snap.get("address") or "",
            packing.pack(orjson.dumps(snap)), reports, finders,
            "\n".join((state["work_order_id"], snap.get("category_name") or "", snap.get("description") or "",
                       snap.get("address") or "", reports, finders)).casefold(),
            # what the FTS description column holds: the category's name too, so 积水 finds 路面积水
            f"{snap.get('category_name') or ''} {snap.get('description') or ''}".strip())


class HistoryStore(SqliteStore):
    PRAGMAS = ("PRAGMA cache_size=-65536",)   # 64 MiB of pages: a year's indexes are ~1 GB on disk

    def __init__(self, path: Path | str):
        why = sqlite_supported()
        if why is not None:
            raise RuntimeError(why)
        super().__init__(path, _SCHEMA)
        if self.db.execute("PRAGMA user_version").fetchone()[0] != FORMAT:
            # Written by an earlier format (what the search covers changed): read the topic again.
            self.clear()
            self.db.execute(f"PRAGMA user_version = {FORMAT}")

    # -- writing -----------------------------------------------------------------------

    def apply(self, batch: Iterable[tuple[int, int, dict | None]]) -> int:
        """(partition, offset, state record or None) in offset order per partition: the
        newer versions upserted and every partition's next offset, in one transaction.
        Returns the rows written.  A None (a tombstone or an unreadable record) only
        moves the position: history keeps what it saw."""
        written = 0
        positions: dict[int, int] = {}
        newest: dict[str, dict] = {}   # within the batch only the highest version matters
        for partition, offset, state in batch:
            positions[partition] = max(positions.get(partition, 0), offset + 1)
            if state is not None:
                seen = newest.get(state["work_order_id"])
                if seen is None or int(state["version"]) > int(seen["version"]):
                    newest[state["work_order_id"]] = state
        rows = [_row(state) for state in newest.values()]
        with self._write_lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                for r in rows:
                    known = db.execute("SELECT rowid, version FROM orders WHERE work_order_id = ?",
                                       (r[0],)).fetchone()
                    if known is not None and known[1] >= r[1]:
                        continue
                    if known is None:
                        rowid = db.execute(
                            "INSERT INTO orders (work_order_id, version, status, category, priority, department, "
                            "assists, district, street, grid, lon, lat, created_ts, updated_ts, closed_ts, "
                            "description, address, snapshot, search_text) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (*r[:18], r[20])).lastrowid
                    else:
                        rowid = known[0]
                        db.execute(
                            "UPDATE orders SET version=?, status=?, category=?, priority=?, department=?, assists=?, "
                            "district=?, street=?, grid=?, lon=?, lat=?, created_ts=?, updated_ts=?, closed_ts=?, "
                            "description=?, address=?, snapshot=?, search_text=? WHERE rowid=?",
                            (*r[1:18], r[20], rowid))
                        db.execute("DELETE FROM orders_fts WHERE rowid = ?", (rowid,))
                    db.execute("INSERT INTO orders_fts (rowid, work_order_id, description, address, reports, "
                               "finders) VALUES (?,?,?,?,?,?)", (rowid, r[0], r[21], r[16], r[18], r[19]))
                    if r[10] is not None and r[11] is not None:
                        db.execute("INSERT OR REPLACE INTO orders_geo VALUES (?,?,?,?,?)",
                                   (rowid, r[10], r[10], r[11], r[11]))
                    written += 1
                db.executemany("INSERT INTO positions (partition, next_offset) VALUES (?, ?) ON CONFLICT "
                               "(partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                               sorted(positions.items()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return written

    def clear(self) -> None:
        """Everything forgotten (the topic was re-created: its offsets mean other records)."""
        with self._write_lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            for table in ("orders", "orders_fts", "orders_geo", "positions"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            db.execute("COMMIT")

    # -- reading -----------------------------------------------------------------------

    def positions(self) -> dict[int, int]:
        return dict(self._reader().execute("SELECT partition, next_offset FROM positions").fetchall())

    def count(self) -> int:
        return self._reader().execute("SELECT count(*) FROM orders").fetchone()[0]

    def get(self, work_order_id: str) -> dict | None:
        row = self._reader().execute("SELECT snapshot FROM orders WHERE work_order_id = ?",
                                     (work_order_id,)).fetchone()
        return orjson.loads(packing.unpack(row[0])) if row is not None else None

    def search(self, q: str, filters: HistoryFilters, limit: int = 50, offset: int = 0,
               *, now: float | None = None) -> SearchResult:
        """Orders matching every filter and every word of ``q`` (each a substring of the
        id, description, address, report ids or finders), newest first, with the exact
        total.  Words of 3+ characters use the trigram index; a word of 1–2 characters
        cannot, and is matched with LIKE over orders created in the last ``SHORT_TERM_DAYS``
        days unless ``created_from`` bounds the search."""
        terms = [t for t in q.split() if t]
        long_terms = [t for t in terms if len(t) >= 3]
        short_terms = [t for t in terms if len(t) < 3]
        where, args = _filters(filters)
        created_from = filters.created_from
        mode = "fts" if terms else "all"
        if short_terms:
            mode = "like"
            if created_from is None:
                created_from = (time.time() if now is None else now) - SHORT_TERM_DAYS * 86400
                where.append("o.created_ts >= ?")
                args.append(created_from)
            for t in short_terms:
                like = "%" + t.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                where.append("o.search_text LIKE ? ESCAPE '\\'")
                args.append(like)
        if long_terms:
            where.append("orders_fts MATCH ?")
            args.append(" ".join('"' + t.replace('"', '""') + '"' for t in long_terms))
        source = "orders o"   # no word of 3+: the orders in the time bound (created_ts index), LIKE on each
        if long_terms:
            source = "orders_fts f JOIN orders o ON o.rowid = f.rowid"
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        db = self._reader()
        total = db.execute(f"SELECT count(*) FROM {source}{clause}", args).fetchone()[0]  # noqa: S608
        rows = db.execute(f"SELECT o.snapshot FROM {source}{clause} "  # noqa: S608
                          "ORDER BY o.created_ts DESC, o.work_order_id LIMIT ? OFFSET ?",
                          [*args, limit, offset]).fetchall()
        return SearchResult([orjson.loads(packing.unpack(r[0])) for r in rows], total, mode, created_from)

    def points(self, since: float, category: str | None = None) -> list[tuple]:
        """(work_order_id, category, lon, lat, created_ts, street) of the orders created at or
        after ``since`` that were problems of their own (not cancelled, not merged): what
        hotspots are found in."""
        where = ["created_ts >= ?", "status NOT IN ('cancelled', 'merged')", "lon IS NOT NULL"]
        args: list = [since]
        if category is not None:
            where.append("category = ?")
            args.append(category)
        return self._reader().execute(
            "SELECT work_order_id, category, lon, lat, created_ts, street FROM orders WHERE "  # noqa: S608
            + " AND ".join(where), args).fetchall()

    def nearby(self, lon: float, lat: float, radius_m: float, category: str | None, days: float,
               exclude_id: str | None = None, *, since: float | None = None, scope: Scope | None = None,
               now: float | None = None, limit: int = 200) -> list[dict]:
        """Orders within ``radius_m`` metres (great-circle) of (lon, lat), of ``category``
        (any when None), created at or after ``since`` (default: ``days`` days before now),
        nearest first; each snapshot with ``distance_m``.  The R*Tree gives the bounding
        box, the exact distance decides."""
        if since is None:
            since = (time.time() if now is None else now) - days * 86400
        dlat = math.degrees(radius_m / EARTH_RADIUS_M)
        coslat = max(math.cos(math.radians(lat)), 1e-6)
        dlon = min(180.0, dlat / coslat)
        where, args = _filters(HistoryFilters(scope=scope or Scope()))
        # The R*Tree keeps 32-bit floats, each box rounded outwards: a point is a small box,
        # found by overlap (containment would lose points at a radius of a few metres).
        where += ["g.max_lon >= ?", "g.min_lon <= ?", "g.max_lat >= ?", "g.min_lat <= ?", "o.created_ts >= ?"]
        args += [lon - dlon, lon + dlon, lat - dlat, lat + dlat, since]
        if category is not None:
            where.append("o.category = ?")
            args.append(category)
        if exclude_id is not None:
            where.append("o.work_order_id != ?")
            args.append(exclude_id)
        rows = self._reader().execute(
            "SELECT o.lon, o.lat, o.snapshot FROM orders_geo g JOIN orders o ON o.rowid = g.id WHERE "  # noqa: S608
            + " AND ".join(where), args).fetchall()
        found = []
        for olon, olat, blob in rows:
            d = distance_m(lon, lat, olon, olat)
            if d <= radius_m:
                found.append((d, blob))
        found.sort(key=lambda x: x[0])
        return [{**orjson.loads(packing.unpack(blob)), "distance_m": round(d, 1)} for d, blob in found[:limit]]


def _filters(f: HistoryFilters) -> tuple[list[str], list]:
    where: list[str] = []
    args: list = []
    if f.status is not None:
        where.append(f"o.status IN ({','.join('?' * len(f.status))})")
        args += sorted(f.status)
    if f.category is not None:
        where.append(f"o.category IN ({','.join('?' * len(f.category))})")
        args += sorted(f.category)
    if f.district is not None:
        where.append("o.district = ?")
        args.append(f.district)
    if f.department is not None:
        where.append("(o.department = ? OR o.assists LIKE ?)")
        args += [f.department, f"%,{f.department},%"]
    if f.grid is not None:
        where.append("substr(o.grid, 1, ?) = ?")
        args += [len(f.grid), f.grid]
    if f.created_from is not None:
        where.append("o.created_ts >= ?")
        args.append(f.created_from)
    if f.created_to is not None:
        where.append("o.created_ts < ?")
        args.append(f.created_to)
    s = f.scope
    if s.grid_prefix is not None:
        where.append("substr(o.grid, 1, ?) = ?")
        args += [len(s.grid_prefix), s.grid_prefix]
    if s.street_code is not None:
        where.append("(o.street = ? OR o.department = ?)")
        args += [s.street_code, s.department]
    elif s.department is not None:
        where.append("(o.department = ? OR o.assists LIKE ?)")
        args += [s.department, f"%,{s.department},%"]
    return where, args
