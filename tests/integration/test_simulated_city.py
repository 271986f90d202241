"""The simulator's traffic through a real worker: scripted incidents raise their
alarms, every malformed record is a dead letter with its reason, nothing is lost."""

import os
import time
from collections import Counter

import pytest

from citybrain.config import Config
from citybrain.domain.pseudonym import from_environment
from citybrain.promtext import conservation_ok, outcomes, samples
from citybrain_tools.sample.registry_builder import load
from citybrain_tools.simulate.runner import run
from citybrain_tools.simulate.traffic import CitySimulator

from .kafka_helpers import WorkerProcess, consume, consume_all, decode, new_prefix, prepare, wait_for_metrics

pytestmark = pytest.mark.integration


async def test_simulated_city_end_to_end(kafka_bootstrap, tmp_path):
    prefix = new_prefix("sim")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path).start()
    try:
        # 160 simulated seconds that ended 10 s ago, sent as fast as possible:
        # durations are event time, so the scripted alarms fire without waiting.
        sim = CitySimulator(load(Config().registry_path), seed=11, rate=40, duration=160,
                            start=time.time() - 170, malformed_share=0.03)
        result = await run(sim, kafka_bootstrap, topics, paced=False)
        sent = result["by_source"]
        text = await wait_for_metrics(
            worker, lambda m: {s: r.get("received", 0) for s, r in outcomes(m).items()}
            == {"iot": sent["iot"], "video": sent["video"], "report": sent["report"], "device": sent["device"]},
            timeout=120)
        table = outcomes(text)
        for source, row in table.items():
            assert row["received"] == sent[source], source       # nothing lost
            assert conservation_ok(row), (source, row)

        # Every malformed record is a dead letter with the reason the simulator meant.
        labels = result["by_label"]
        expected_dead = Counter({k.split(":")[1]: v for k, v in labels.items() if k.startswith("malformed:")})
        got_dead = Counter()
        for lab, v in samples(text, "citybrain_deadletter_total"):
            got_dead[lab["reason"]] += int(v)
        assert got_dead == expected_dead
        assert table["iot"]["suppressed"] == labels["duplicate"]

        events = decode(await consume(kafka_bootstrap, topics.events, want=sum(
            table[s].get("event", 0) for s in ("iot", "video", "report", "device")), timeout=60))
        alarms = {e["device_id"] for e in events if e["source"] == "iot" and e["kind"] == "alarm"}
        assert {"WLV-UP-01", "WLV-UP-02", "WLV-UP-03", "WLV-EP-01", "GAS-LEAK-01",
                "CBT-FIRE-01", "RCM-FIRE-01", "SMK-FIRE-01"} <= alarms
        cameras = {e["camera_id"] for e in events if e["source"] == "video"}
        assert {"CAM-UP-01", "CAM-UP-02", "CAM-EP-01", "CAM-FIRE-01"} <= cameras
        gas = next(e for e in events if e.get("device_id") == "GAS-LEAK-01")
        assert gas["category"] == "gas_leak" and gas["asset_owner"] == "gas_utility"
        hotline = next(e for e in events if e.get("reporter_id") == from_environment(os.environ)("HL-12345"))
        assert "13905331234" not in hotline["description"]
        assert len({e["event_id"] for e in events}) == len(events)

        # Joint handling and escalation (DESIGN §12): the gas leak is worked by three
        # departments and, its detector at orange, emergency management joins; the
        # underpass gauges climb blue → orange and its order escalates the same way.
        # Once fusion has judged every event, its changes are on workorders.events.
        await wait_for_metrics(worker, lambda m: sum(v for _, v in samples(m, "citybrain_fusion_outcome_total"))
                               >= len(events), timeout=60)
        latest: dict[str, dict] = {}
        for c in decode(await consume_all(kafka_bootstrap, topics.workorder_events)):
            if c["version"] > latest.get(c["work_order_id"], {}).get("version", 0):
                latest[c["work_order_id"]] = c
        def order_of(finder):
            return next(c["snapshot"] for c in latest.values() if finder in c["snapshot"]["finders"])
        gas_order = order_of("GAS-LEAK-01")
        assert gas_order["department"] == "gas_utility"
        assert [a["department"] for a in gas_order["assists"]] == ["fire", "police", "emergency"]
        assert (gas_order["warning_level"], gas_order["emergency_level"]) == ("orange", "IV")
        flood = order_of("WLV-UP-01")
        assert (flood["warning_level"], flood["emergency_level"]) == ("orange", "IV")
        assert [a["department"] for a in flood["assists"]] == ["traffic", "emergency"]
        faults = [(e["kind"], e["camera_id"]) for e in events if e["category"] == "device_fault"]
        assert faults == [("alarm", "CAM-EP-01"), ("recovery", "CAM-EP-01")]     # 设备故障, back online
        command_centre = {c["work_order_id"] for c in decode(await consume_all(kafka_bootstrap, topics.emergency))}
        assert {gas_order["work_order_id"], flood["work_order_id"]} <= command_centre
    finally:
        worker.stop()
