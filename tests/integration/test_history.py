"""A year of history without replaying it (issue 12): the order view starts from
``workorders.state`` (the console's retention back) and the evaluation from its local
checkpoint, folding only the tail of ``workorders.events`` — and the figures of every
month are still those a full replay gives, from the API and from ``citybrain kpis``."""

import asyncio
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from citybrain.config import Config
from citybrain_tools.simulate.history import generate

from .kafka_helpers import WorkerProcess, new_prefix, prepare, produce

pytestmark = pytest.mark.integration
TOKEN = "demo-operator"
FOLDED = re.compile(r"order-log: read \S+ to its end \((\d+) records\)")


def get(worker: WorkerProcess, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def kpis_cli(worker: WorkerProcess, period: str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "citybrain", "kpis", "--period", period, "--json", *extra],
                         env=worker.env, capture_output=True, text=True, check=True, timeout=120)
    return orjson.loads(out.stdout.strip().splitlines()[-1])["figures"]


async def test_restarts_start_from_the_state_topic_and_the_checkpoint(kafka_bootstrap, tmp_path):
    prefix = new_prefix("history")
    t = await prepare(kafka_bootstrap, prefix)
    cfg = Config()
    now = datetime.now(UTC)
    history = list(generate(cfg, days=45, per_day=30, open_orders=40, now=now, seed=5))
    topic = {"events": t.workorder_events, "state": t.workorder_state}
    split = int((now - timedelta(days=2)).timestamp() * 1000)      # written while the worker is down
    before = [r for r in history if r.timestamp_ms < split]
    after = [r for r in history if r.timestamp_ms >= split]
    await produce(kafka_bootstrap, [(topic[r.topic], r.key, r.value, r.timestamp_ms) for r in before])

    # The reference: every change folded from the beginning.
    reference = cfg.new_evaluation()
    latest: dict[str, dict] = {}
    for r in history:
        if r.topic == "events":
            change = orjson.loads(r.value)
            reference.add(change)
            latest[change["work_order_id"]] = change
    months = sorted({(now - timedelta(days=d)).strftime("%Y-%m") for d in (0, 20, 44)})

    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path)
    worker.start()
    try:
        worker.stop()                                   # a clean stop: the checkpoint is saved
        await produce(kafka_bootstrap, [(topic[r.topic], r.key, r.value, r.timestamp_ms) for r in after])
        mark = len(worker.log_path.read_text(errors="replace"))
        worker.start()
        log = worker.log_path.read_text(errors="replace")[mark:]
        tail = int(FOLDED.search(log).group(1))
        assert "评价检查点 evaluation checkpoint" in log
        assert tail == sum(r.topic == "events" for r in after), tail     # only the tail was folded

        for month in months:
            status, body = await asyncio.to_thread(get, worker, f"/api/v1/kpis?period={month}")
            assert status == 200 and body["figures"] == reference.figures(month), month
            assert body["by_district"] == reference.figures(month, by="district"), month
            assert len(body["by_district"]) > 2    # the history spans the city's districts

        # The view: open orders however old, with their whole timeline; closed ones within
        # the console's retention; an order closed a month ago is not held.
        retention = timedelta(days=cfg.settings.console.closed_retention_days)
        old_open = [c for c in latest.values() if c["snapshot"]["status"] not in ("closed", "cancelled")
                    and now - datetime.fromisoformat(c["snapshot"]["created_at"]) > timedelta(days=10)]
        long_closed = [c for c in latest.values() if c["snapshot"]["status"] == "closed"
                       and now - datetime.fromisoformat(c["at"]) > retention + timedelta(days=2)]
        recent_closed = [c for c in latest.values() if c["snapshot"]["status"] == "closed"
                         and now - datetime.fromisoformat(c["at"]) < retention - timedelta(days=1)]
        assert old_open and long_closed and recent_closed
        for c in old_open[:5] + recent_closed[:5]:
            status, body = await asyncio.to_thread(get, worker, f"/api/v1/workorders/{c['work_order_id']}")
            assert status == 200 and body["work_order"]["version"] == c["version"], c["work_order_id"]
            assert [e["version"] for e in body["timeline"]] == list(range(1, c["version"] + 1))
        # Closed long ago: the order view has let them go (no list holds them); their detail
        # comes from the history store, as they ended, once it has read the state topic.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, h = await asyncio.to_thread(get, worker, "/api/v1/history?limit=1")
            if h.get("complete"):
                break
            await asyncio.sleep(0.5)
        for c in long_closed[:5]:
            wo = c["work_order_id"]
            _, listed = await asyncio.to_thread(get, worker, f"/api/v1/workorders?q={wo}&status=closed")
            assert listed["total"] == 0, wo
            status, body = await asyncio.to_thread(get, worker, f"/api/v1/workorders/{wo}")
            assert status == 200 and body["from_history"] is True and body["timeline"] == [], wo
            assert body["work_order"]["version"] == c["version"]
        worker.stop()

        # citybrain kpis: from the worker's checkpoint (read-only) and by a full replay, the
        # same figures — every run at once.
        ways = [("--data-dir", str(worker.data_dir)), ()]
        figures = await asyncio.gather(*(asyncio.to_thread(kpis_cli, worker, month, *way)
                                         for month in months for way in ways))
        assert figures == [reference.figures(month) for month in months for _ in ways]
        print(f"\nhistory: {len(history):,} records, restart folded {tail:,} changes of "
              f"{sum(r.topic == 'events' for r in history):,}; {len(old_open)} old open orders in the view")
    finally:
        worker.stop()
