"""The history read model through real Kafka (issue 35, item 1): a worker folds a
synthetic history from ``workorders.state`` into its SQLite file; an order older than the
order view's 7 days is found by /api/v1/history and its same-place, same-category
neighbours by /nearby; a restart resumes from the store's own offsets (no order read
twice into a duplicate, the same answers).  Search latency over HTTP is printed."""

import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from urllib.error import HTTPError
from urllib.parse import quote

import pytest

from citybrain.config import Config
from citybrain.domain.geo import distance_m as haversine_m
from citybrain.stream.historyreader import FILE_NAME
from citybrain_tools.bench.console import get
from citybrain_tools.bench.history import write_history
from citybrain_tools.bench.stats import percentiles

from .kafka_helpers import WorkerProcess, new_prefix, prepare

pytestmark = pytest.mark.integration
DAYS, PER_DAY, OPEN = 20, 300, 400   # 12 days past the view's 7; ~45k records (the figures at a year: bench history)


def wait_complete(port: int, want: int, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        _, body = get(port, "/api/v1/history?limit=1")
        if body["complete"] and body["total"] >= want:
            return body
        time.sleep(0.5)
    raise AssertionError(f"history not complete in {timeout}s: {body.get('total')} of {want}")


def refused(port: int, path: str, token: str = "demo-operator") -> tuple[int, dict]:
    try:
        get(port, path, token)
    except HTTPError as e:
        import orjson
        return e.code, orjson.loads(e.read())
    raise AssertionError(f"{path} was not refused")


def answers(port: int, queries: list[str]) -> list[tuple]:
    out = []
    for q in queries:
        _, body = get(port, q)
        out.append((body["total"], tuple(o["work_order_id"] for o in body["items"])))
    return out


def history_reads(log_text: str) -> list[int]:
    return [int(n) for n in re.findall(r"history: read \S+ to its end \((\d+) records\)", log_text)]


async def test_search_and_nearby_over_history_beyond_the_view_and_a_restart_resumes(kafka_bootstrap, tmp_path):
    prefix = new_prefix("history-search")
    topics = await prepare(kafka_bootstrap, prefix)
    written = await write_history(kafka_bootstrap, topics, Config(), DAYS, PER_DAY, OPEN, seed=5)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path)
    db_path = worker.data_dir / FILE_NAME
    try:
        started = time.monotonic()
        worker.start(timeout=180)
        first = wait_complete(worker.port, DAYS * PER_DAY)
        built = time.monotonic() - started
        assert first["total"] == DAYS * PER_DAY          # every order once

        # An order closed long before the view's 7 days: not in the view, found in history.
        old = (datetime.now(UTC) - timedelta(days=12)).isoformat()
        _, page = get(worker.port, f"/api/v1/history?status=closed&created_to={quote(old)}&limit=5")
        assert page["total"] > 1000 and page["search"] == "all"
        snap = page["items"][0]
        wo = snap["work_order_id"]
        _, listed = get(worker.port, f"/api/v1/workorders?q={quote(wo)}&status=closed")
        assert listed["total"] == 0                       # the order view no longer holds it
        _, detail = get(worker.port, f"/api/v1/workorders/{wo}")   # the detail comes from history
        assert detail["from_history"] is True and detail["work_order"]["work_order_id"] == wo
        assert detail["timeline"] == [] and detail["work_order"]["overdue"] is False
        _, found = get(worker.port, f"/api/v1/history?q={quote(wo[-9:])}")
        assert wo in [o["work_order_id"] for o in found["items"]] and found["search"] == "fts"
        _, by_finder = get(worker.port, f"/api/v1/history?q={quote(snap['finders'][0])}&status=closed")
        assert wo in [o["work_order_id"] for o in by_finder["items"]]
        _, filtered = get(worker.port, f"/api/v1/history?q={quote(wo[-9:])}&category={snap['category']}"
                                       f"&district={snap['location']['district_code']}")
        assert [o["work_order_id"] for o in filtered["items"]] == [wo]

        # Scope: a department finds only its own orders.
        _, water = get(worker.port, "/api/v1/history?limit=200", "demo-water")
        assert 0 < water["total"] < first["total"]
        assert all(o["department"] == "water" or any(a["department"] == "water" for a in o.get("assists") or ())
                   for o in water["items"])
        status, err = refused(worker.port, "/api/v1/history?sort=-created")
        assert (status, err["error"]["field"]) == (400, "sort")

        # Same place, same category: the 30 days before the old order and since.
        _, near = get(worker.port, f"/api/v1/workorders/{wo}/nearby?radius_m=200&days=30")
        loc = snap["location"]
        assert near["count"] > 0 and wo not in [o["work_order_id"] for o in near["items"]]
        for o in near["items"]:
            assert o["category"] == snap["category"]
            assert haversine_m(loc["lon"], loc["lat"], o["location"]["lon"], o["location"]["lat"]) <= 200
            assert o["created_at"] >= near["since"][:19]
        status, err = refused(worker.port, f"/api/v1/workorders/{wo}/nearby?radius_m=-5")
        assert (status, err["error"]["field"]) == (400, "radius_m")

        # Search latency over HTTP: ids, finders, a category's page, two characters (LIKE).
        _, sample = get(worker.port, "/api/v1/history?limit=60&offset=1000")
        queries = []
        for i, o in enumerate(sample["items"]):
            queries.append([f"/api/v1/history?q={quote(o['work_order_id'][-9:])}",
                            f"/api/v1/history?q={quote(o['finders'][0])}",
                            f"/api/v1/history?category={o['category']}&offset=100",
                            f"/api/v1/history?q={o['work_order_id'][-2:]}"][i % 4])
        took = [get(worker.port, q)[0] for q in queries]
        nearby_took = [get(worker.port, f"/api/v1/workorders/{o['work_order_id']}/nearby")[0]
                       for o in sample["items"][:30]]
        fig = percentiles(took)
        print(f"\n  history: {written['records']:,} records written; {first['total']:,} orders in the store "
              f"{built:.1f} s after the worker started; {len(took)} searches over HTTP p50 {fig['p50_ms']} ms, "
              f"p99 {fig['p99_ms']} ms; nearby p50 {percentiles(nearby_took)['p50_ms']} ms, "
              f"p99 {percentiles(nearby_took)['p99_ms']} ms")

        checks = [f"/api/v1/history?q={quote(wo[-9:])}", f"/api/v1/history?status=closed&created_to={quote(old)}",
                  "/api/v1/history?category=waterlogging&limit=20", *queries[:20]]
        before = answers(worker.port, checks)
        near_before = sorted(o["work_order_id"] for o in near["items"])
        worker.stop()

        with sqlite3.connect(db_path) as db:
            rows = db.execute("SELECT count(*), count(DISTINCT work_order_id) FROM orders").fetchone()
            fts_rows = db.execute("SELECT count(*) FROM orders_fts").fetchone()[0]
            positions = dict(db.execute("SELECT partition, next_offset FROM positions").fetchall())
        assert rows == (first["total"], first["total"]) and fts_rows == first["total"]
        assert len(positions) == 3

        worker.start(timeout=180)
        again = wait_complete(worker.port, first["total"])
        assert again["total"] == first["total"]
        assert answers(worker.port, checks) == before
        _, near2 = get(worker.port, f"/api/v1/workorders/{wo}/nearby?radius_m=200&days=30")
        assert sorted(o["work_order_id"] for o in near2["items"]) == near_before
        worker.stop()
        reads = history_reads(worker.log_path.read_text(errors="replace"))
        # The first run read the whole topic; the restart only what came after its positions
        # (the worker's own daily rewrites of open orders, if any).
        assert len(reads) == 2 and reads[0] >= DAYS * PER_DAY and reads[1] < 100, reads
        with sqlite3.connect(db_path) as db:
            assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == first["total"]
            after = dict(db.execute("SELECT partition, next_offset FROM positions").fetchall())
        assert all(after[p] >= n for p, n in positions.items())
    finally:
        worker.stop()
