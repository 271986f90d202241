"""The history read model's own figures, without Kafka: a synthetic history
(``simulate.history``, the records ``citybrain bench history`` writes to the topics)
folded into a ``HistoryStore`` in batches as the worker folds them, then search and
nearby latency over it (one caller, in process: what the API adds is aiohttp and JSON).

    .venv/bin/python -m citybrain_tools.bench.history_search --days 365 --per-day 3000
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import orjson

from citybrain.config import Config
from citybrain.readmodels.history import HistoryFilters, HistoryStore
from citybrain_tools.bench.stats import percentiles
from citybrain_tools.simulate.history import generate

BATCH = 5000   # what the TopicReader hands over at most


def build(path: Path, days: int, per_day: int, open_orders: int, seed: int) -> dict:
    store = HistoryStore(path)
    started = time.perf_counter()
    batch: list = []
    n = 0
    for record in generate(Config(), days, per_day, open_orders, seed=seed):
        if record.topic != "state":
            continue
        batch.append((0, n, orjson.loads(record.value)))
        n += 1
        if len(batch) >= BATCH:
            store.apply(batch)
            batch = []
    store.apply(batch)
    seconds = time.perf_counter() - started
    rows = store.count()
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return {"state_records": n, "orders": rows, "build_s": round(seconds, 1),
            "records_per_s": round(n / seconds), "file_mb": round(os.path.getsize(path) / 1e6, 1)}


def measure(path: Path, searches: int, seed: int) -> dict:
    store = HistoryStore(path)
    rng = random.Random(seed)
    db = store.db
    n = store.count()
    ids = [db.execute("SELECT work_order_id FROM orders WHERE rowid = ?", (rng.randint(1, n),)).fetchone()[0]
           for _ in range(searches)]
    categories = [r[0] for r in db.execute("SELECT DISTINCT category FROM orders")]
    newest = db.execute("SELECT max(created_ts) FROM orders").fetchone()[0]
    kinds: dict[str, list[float]] = {"id_substring": [], "finder": [], "category_district_page": [],
                                     "two_char_like_30d": [], "nearby_200m_30d": []}
    totals: dict[str, list[int]] = {k: [] for k in kinds}
    for i in range(searches):
        wo = ids[i % len(ids)]
        snap = store.get(wo)
        assert snap is not None
        loc = snap["location"]
        for kind in kinds:
            t0 = time.perf_counter()
            if kind == "id_substring":
                got = store.search(wo[-9:], HistoryFilters(), 50, 0).total
            elif kind == "finder":
                got = store.search(snap["finders"][0], HistoryFilters(), 50, 0).total
            elif kind == "category_district_page":
                got = store.search("", HistoryFilters(category=frozenset({rng.choice(categories)}),
                                                      district=loc["district_code"]), 50, 100).total
            elif kind == "two_char_like_30d":
                got = store.search(wo[-2:], HistoryFilters(), 50, 0, now=newest).total
            else:
                got = len(store.nearby(loc["lon"], loc["lat"], 200, snap["category"], 30, wo, now=newest))
            kinds[kind].append(time.perf_counter() - t0)
            totals[kind].append(got)
    store.close()
    return {k: {**percentiles(v), "median_hits": sorted(totals[k])[len(totals[k]) // 2]} for k, v in kinds.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--per-day", type=int, default=3000)
    ap.add_argument("--open", type=int, default=10_000)
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="build here (or reuse what is here) and keep it")
    a = ap.parse_args()
    if a.keep is not None:
        if not a.keep.exists():
            built = build(a.keep, a.days, a.per_day, a.open, a.seed)
            print(orjson.dumps({"days": a.days, "per_day": a.per_day, **built}).decode(), flush=True)
        print(orjson.dumps(measure(a.keep, a.searches, a.seed + 1), option=orjson.OPT_INDENT_2).decode())
        return
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        path = Path(tmp) / "history.sqlite3"
        built = build(path, a.days, a.per_day, a.open, a.seed)
        print(orjson.dumps({"days": a.days, "per_day": a.per_day, **built}).decode(), flush=True)
        print(orjson.dumps(measure(path, a.searches, a.seed + 1), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
