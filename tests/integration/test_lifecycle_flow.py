"""Lifecycle commands through real Kafka: a camera's order closes the loop, refusals
land on workorders.rejected, and a repeat alarm after closure opens a new order."""

import time

import orjson
import pytest

from citybrain.promtext import samples
from citybrain.wire.models import OrderState
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, consume, decode, new_prefix, prepare, produce, wait_for_metrics

pytestmark = pytest.mark.integration


def alert(alert_id, ago):
    return orjson.dumps({"alert_id": alert_id, "camera_id": "CAM-UP-01", "algorithm": "road_ponding",
                         "confidence": 0.9, "ts": iso(time.time() - ago)})


def command(cid, wo, action, actor, **extra):
    return orjson.dumps({"command_id": cid, "work_order_id": wo, "action": action, "actor": actor,
                         "ts": iso(time.time()), **extra})


WATER = {"id": "water-7", "role": "department", "department": "water"}
FIRE = {"id": "fire-2", "role": "department", "department": "fire"}
GRID = {"id": "GM-0107", "role": "grid", "grid_prefix": "370306002"}


async def test_closed_loop_refusals_and_repeat_alarm(kafka_bootstrap, tmp_path):
    prefix = new_prefix("loop")
    t = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path).start()
    try:
        first_alert = alert("VA-L1", 600)
        await produce(kafka_bootstrap, [(t.video, b"CAM-UP-01", first_alert)])
        [dispatched] = decode(await consume(kafka_bootstrap, t.dispatch("water"), want=1, timeout=30, settle=0))
        wo = dispatched["work_order_id"]
        key = wo.encode()
        # A second alert of the same camera joins the order before it is worked.
        second_alert = alert("VA-L1b", 500)
        await produce(kafka_bootstrap, [(t.video, b"CAM-UP-01", second_alert)])
        joined = decode(await consume(kafka_bootstrap, t.workorder_events, want=3, timeout=30, settle=0))
        assert [c["type"] for c in joined] == ["created", "dispatched", "evidence_added"]
        await produce(kafka_bootstrap, [
            (t.commands, key, command("c1", wo, "accept", FIRE)),                   # not fire's order
            (t.commands, key, command("c2", wo, "accept", WATER)),
            (t.commands, key, command("c2", wo, "accept", WATER)),                  # replayed
            (t.commands, key, command("c3", wo, "handle", WATER, note="已抽排")),
            (t.commands, key, command("c4", wo, "verify", GRID, note="现场已无积水")),
            (t.commands, b"x", b"{not json"),
        ])
        rejected = decode(await consume(kafka_bootstrap, t.rejected, want=2, timeout=30))
        assert sorted((r["command"]["command_id"], r["reason"]) for r in rejected) == [
            ("c1", "out_of_scope"), ("c2", "duplicate_command")]
        changes = [c for c in decode(await consume(kafka_bootstrap, t.workorder_events, want=6, timeout=30))
                   if c["work_order_id"] == wo]
        assert [c["type"] for c in changes] == ["created", "dispatched", "evidence_added", "accepted", "handled",
                                                "verified"]
        assert [c["version"] for c in changes] == [1, 2, 3, 4, 5, 6]
        assert changes[-1]["snapshot"]["status"] == "closed" and changes[-1]["actor"]["id"] == "GM-0107"
        # workorders.state: the latest snapshot with the whole timeline, one record per step.
        states = [OrderState.model_validate(s) for s in decode(await consume(
            kafka_bootstrap, t.workorder_state, want=5, timeout=15, settle=0.5)) if s["work_order_id"] == wo]
        latest = max(states, key=lambda s: s.version)
        assert latest.snapshot.model_dump(mode="json") == changes[-1]["snapshot"]
        assert [(s.version, s.type, s.status) for s in latest.steps] == [
            (c["version"], c["type"], c["snapshot"]["status"]) for c in changes]
        dead = [d for d in decode(await consume(kafka_bootstrap, t.deadletter, want=1, timeout=20))
                if d["source"] == "command"]
        assert len(dead) == 1 and dead[0]["reason"] == "not_json"
        text = await wait_for_metrics(worker, lambda m: True)
        reasons = {lab["reason"]: v for lab, v in samples(text, "citybrain_commands_rejected_total")}
        assert reasons == {"out_of_scope": 1.0, "duplicate_command": 1.0}

        # Any event of the closed order replayed (an offset reset upstream) changes nothing —
        # the opening one and the one that joined, before and after a restart (the worker
        # rebuilds what it knows of closed orders from its state); the same camera seeing
        # ponding again is a new order.
        await produce(kafka_bootstrap, [(t.video, b"CAM-UP-01", first_alert),
                                        (t.video, b"CAM-UP-01", second_alert)])
        await produce(kafka_bootstrap, [(t.video, b"CAM-UP-01", alert("VA-L2", 30))])
        water = decode(await consume(kafka_bootstrap, t.dispatch("water"), want=2, timeout=30, settle=0))
        worker.stop()
        worker.start()
        await produce(kafka_bootstrap, [(t.video, b"CAM-UP-01", first_alert),
                                        (t.video, b"CAM-UP-01", second_alert)])
        # The restarted worker judged both replays (duplicates, counted), so anything they
        # made is on the topics by now: still two orders, the closed one not reopened.
        text = await wait_for_metrics(worker, lambda m: 'citybrain_fusion_outcome_total{action="duplicate"} 2.0' in m)
        assert 'citybrain_fusion_outcome_total{action="duplicate"} 2.0' in text
        water = decode(await consume(kafka_bootstrap, t.dispatch("water"), want=2, timeout=15, settle=0.5))
        ids = {w["work_order_id"] for w in water}
        assert len(water) == 2 and wo in ids and len(ids) == 2
        changes = decode(await consume(kafka_bootstrap, t.workorder_events, want=8, timeout=15, settle=0.5))
        mine = [c for c in changes if c["work_order_id"] == wo]
        assert [c["version"] for c in mine] == [1, 2, 3, 4, 5, 6]    # the replays did not reopen it
        assert [c["type"] for c in changes if c["work_order_id"] != wo] == ["created", "dispatched"]

    finally:
        worker.stop()
