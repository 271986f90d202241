"""一事一单 through real Kafka and a real worker: the scripted incidents' orders measured
by the worker's metrics, and a restarted worker carrying on with the same open orders.
Which orders the incidents become, and on which department's topic, is asserted in one
process: tests/functional/test_dispatch_scenarios.py."""

import os
import time

import orjson
import pytest

from citybrain.domain.pseudonym import from_environment
from citybrain.promtext import samples
from citybrain.sample.sites import EAST_DIP, UNDERPASS
from citybrain.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, consume, decode, new_prefix, prepare, produce

pytestmark = pytest.mark.integration
NOW = time.time()


def reading(device, st, value, ago, seq):
    return orjson.dumps({"device_id": device, "sensor_type": st, "value": value,
                         "ts": iso(NOW - ago), "seq": seq})


def alert(alert_id, camera, algorithm, conf, ago):
    return orjson.dumps({"alert_id": alert_id, "camera_id": camera, "algorithm": algorithm,
                         "confidence": conf, "ts": iso(NOW - ago),
                         "snapshot_url": f"https://video.example.invalid/{alert_id}.jpg"})


def report(rid, category, site, e, n, ago, text="现场情况见照片"):
    lon, lat = site.offset(e, n)
    return orjson.dumps({"report_id": rid, "channel": "grid_app", "reporter_id": "GM-0107",
                         "category": category, "description": text, "ts": iso(NOW - ago),
                         "lon": lon, "lat": lat, "photos": [f"https://grid.example.invalid/{rid}.jpg"]})


def gauge_alarm(device, seq0, ago):
    """Two readings 70 s apart above 0.15 m: an alarm on the second."""
    return [reading(device, "water_level", 0.3, ago + 70, seq0), reading(device, "water_level", 0.32, ago, seq0 + 1)]


@pytest.fixture(scope="module")
async def city(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("dispatch")
    topics = await prepare(kafka_bootstrap, prefix)
    # A gas-utility manhole: a manhole_tilt sensor whose registry owner is the gas company.
    lon, lat = UNDERPASS.offset(800, 600)
    owned = {"device_id": "MHT-GAS-1", "kind": "sensor", "sensor_type": "manhole_tilt",
             "lon": lon, "lat": lat, "owner_department": "gas_utility", "status": "active"}
    await produce(kafka_bootstrap, [(topics.registry, b"MHT-GAS-1", orjson.dumps(owned))])
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("state")).start()
    t = topics
    records = []
    for i, dev in enumerate(("WLV-UP-01", "WLV-UP-02", "WLV-UP-03")):
        records += [(t.iot, dev.encode(), r) for r in gauge_alarm(dev, 1, 300 - i * 5)]
    records += [
        (t.video, b"CAM-UP-01", alert("VA-d1", "CAM-UP-01", "road_ponding", 0.88, 320)),
        (t.video, b"CAM-UP-02", alert("VA-d2", "CAM-UP-02", "road_ponding", 0.91, 310)),
        (t.reports, b"GM-0107", report("R-d1", "waterlogging", UNDERPASS, 15, -20, 280)),
        (t.reports, b"GM-0107", report("R-d2", "waterlogging", UNDERPASS, -40, 30, 260)),
        # 2 km east: another flooded spot, another order.
        *[(t.iot, b"WLV-EP-01", r) for r in gauge_alarm("WLV-EP-01", 1, 250)],
        # The gas company's manhole cover tilts.
        (t.iot, b"MHT-GAS-1", reading("MHT-GAS-1", "manhole_tilt", 30.0, 200, 1)),
        (t.iot, b"MHT-GAS-1", reading("MHT-GAS-1", "manhole_tilt", 31.0, 185, 2)),
        # Nothing routes "other": it stays registered for triage.
        (t.reports, b"GM-0107", report("R-other", "other", EAST_DIP, 900, 900, 100, "不明异味")),
    ]
    await produce(kafka_bootstrap, records)
    # flood: created, dispatched, 6 × evidence, escalated (the 5th finder); east: 2; gas manhole: 2; other: 1
    changes = decode(await consume(kafka_bootstrap, t.workorder_events, want=14, timeout=60, settle=3))
    yield kafka_bootstrap, t, worker, changes
    worker.stop()


async def test_dispatch_latency_is_measured_by_department_and_priority(city):
    _, _, worker, _ = city
    text = worker.metrics()
    counts = {(lab["department"], lab["priority"]): v
              for lab, v in samples(text, "citybrain_dispatch_latency_seconds_count")}
    assert counts[("water", "high")] == 2 and counts[("gas_utility", "high")] == 1
    opened = {(lab["category"], lab["department"]): v
              for lab, v in samples(text, "citybrain_workorders_opened_total")}
    assert opened[("waterlogging", "water")] == 2 and opened[("other", "")] == 1
    assert {lab["district"] for lab, _ in samples(text, "citybrain_workorders_opened_total")} == {"370306"}


async def test_restarted_worker_carries_on_with_the_same_open_orders(city):
    bootstrap, t, worker, changes = city
    flood_id = next(c["work_order_id"] for c in changes if "WLV-UP-01" in c["snapshot"]["finders"])
    worker.stop()
    worker.start()
    await produce(bootstrap, [(t.reports, b"GM-0107", report("R-d3", "waterlogging", UNDERPASS, 5, 5, 30))])
    after = decode(await consume(bootstrap, t.workorder_events, want=len(changes) + 1, timeout=60, settle=2))
    assert len(after) == len(changes) + 1            # no second order, nothing replayed twice
    seen = {(c["work_order_id"], c["version"]) for c in changes}
    [last] = [c for c in after if (c["work_order_id"], c["version"]) not in seen]
    assert (last["work_order_id"], last["type"]) == (flood_id, "evidence_added")
    # the grid member as its pseudonym (DESIGN §16), never the clear id
    assert last["snapshot"]["events"][-1]["finder"] == from_environment(os.environ)("GM-0107")
    assert last["version"] == max(c["version"] for c in changes if c["work_order_id"] == flood_id) + 1
