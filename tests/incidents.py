"""The scripted incidents of 一事一单, as records: one set for the functional tier
(tests/functional/test_dispatch_scenarios.py) and for the worker on real Kafka
(tests/integration/test_dispatch_scenarios.py)."""

import time

import orjson

from citybrain.kafka.topics import Topics
from citybrain_tools.sample.sites import EAST_DIP, UNDERPASS
from citybrain_tools.simulate.traffic import iso

NOW = time.time()


def reading(device, st, value, ago, seq):
    return orjson.dumps({"device_id": device, "sensor_type": st, "value": value, "ts": iso(NOW - ago), "seq": seq})


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


def gas_manhole() -> dict:
    """A gas-utility manhole: a manhole_tilt sensor whose registry owner is the gas company."""
    lon, lat = UNDERPASS.offset(800, 600)
    return {"device_id": "MHT-GAS-1", "kind": "sensor", "sensor_type": "manhole_tilt",
            "lon": lon, "lat": lat, "owner_department": "gas_utility", "status": "active"}


def scripted(t: Topics) -> list[tuple[str, bytes, bytes]]:
    """Seven findings of one flood at the underpass, a second spot 2 km east, the gas
    manhole tilting, and a report nothing routes — 14 changes of 4 orders."""
    records = []
    for i, dev in enumerate(("WLV-UP-01", "WLV-UP-02", "WLV-UP-03")):
        records += [(t.iot, dev.encode(), r) for r in gauge_alarm(dev, 1, 300 - i * 5)]
    return records + [
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
