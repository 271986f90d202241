"""Closed orders leave the fuse stage's hot state (issue 12), on Kafka: after
closed_state_days a tombstone on the work_orders changelog, so memory and restarts follow
the open orders. The decisions — a replay is a duplicate until then, the order and its
events forgotten after — run on the fake clock in tests/functional/test_closed_state.py."""

import shutil
import time

import orjson
import pytest

from citybrain.paths import PROJECT_ROOT
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, consume, decode, new_prefix, prepare, produce, wait_for_metrics

pytestmark = pytest.mark.integration
KEEP_S = 4


def short_config(tmp_path):
    """Closed orders kept 4 s; the inputs fusion can replay kept less than that."""
    target = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", target)
    cfg = (target / "citybrain.toml").read_text().replace("closed_state_days = 14",
                                                          f"closed_state_days = {KEEP_S / 86400:.8f}")
    (target / "citybrain.toml").write_text(cfg)
    topics = (target / "topics.toml").read_text()
    for name in ("ingest.iot.readings", "ingest.video.alerts", "ingest.reports", "citybrain.fusion.inbox"):
        topics = topics.replace(f'"{name}" = 7', f'"{name}" = {(KEEP_S - 1) / 86400:.8f}')
    (target / "topics.toml").write_text(topics)
    return target


def command(cid, wo, action, actor):
    return orjson.dumps({"command_id": cid, "work_order_id": wo, "action": action, "actor": actor,
                         "ts": iso(time.time())})


OPERATOR = {"id": "op-1", "role": "operator"}


async def test_a_closed_order_leaves_hot_state_after_closed_state_days(kafka_bootstrap, tmp_path):
    prefix = new_prefix("evict")
    t = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, config_dir=short_config(tmp_path)).start()
    try:
        alert = orjson.dumps({"alert_id": "VA-E1", "camera_id": "CAM-UP-01", "algorithm": "road_ponding",
                              "confidence": 0.9, "ts": iso(time.time() - 60)})
        await produce(kafka_bootstrap, [(t.video, b"CAM-UP-01", alert)])
        [dispatched] = decode(await consume(kafka_bootstrap, t.dispatch("water"), want=1, timeout=30, settle=0))
        wo = dispatched["work_order_id"]
        await produce(kafka_bootstrap, [(t.commands, wo.encode(), command(f"c{i}", wo, action, OPERATOR))
                                        for i, action in enumerate(["accept", "handle", "verify"])])
        changes = decode(await consume(kafka_bootstrap, t.workorder_events, want=5, timeout=30, settle=0))
        closed_at = time.time()
        assert changes[-1]["snapshot"]["status"] == "closed"
        # After closed_state_days: a tombstone for the order on the changelog, counted.
        text = await wait_for_metrics(worker, lambda m: "citybrain_state_evicted_total 1.0" in m, timeout=KEEP_S + 30)
        assert "citybrain_state_evicted_total 1.0" in text and time.time() - closed_at >= KEEP_S - 1
        deadline = time.monotonic() + 20     # the tombstone goes out with the stage's next batch
        while True:
            changelog = await consume(kafka_bootstrap, f"{prefix}citybrain-work_orders-changelog", want=10**9,
                                      timeout=1, settle=0)
            mine = [r for r in changelog if r.key == wo.encode()]
            if (mine and mine[-1].value is None) or time.monotonic() > deadline:
                break
        assert mine and mine[-1].value is None, "the last changelog record of the order is its tombstone"
        # A restart reads the changelog back without it, and runs.
        worker.stop()
        worker.start()
        assert "citybrain_state_evicted_total" in await wait_for_metrics(worker, lambda m: True)
    finally:
        worker.stop()
