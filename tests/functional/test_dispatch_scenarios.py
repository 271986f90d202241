"""一事一单 in one process (moved from tests/integration/test_dispatch_scenarios.py, which
keeps the latency metrics and the restart): scripted incidents become exactly the work
orders they should, on the right department's topic."""

import time

import orjson
import pytest

from citybrain.sample.sites import EAST_DIP, UNDERPASS
from citybrain.simulate.traffic import iso

from .city import City

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


@pytest.fixture(scope="module")
def city(config):
    city = City(config)
    t = city.topics
    # A gas-utility manhole: a manhole_tilt sensor whose registry owner is the gas company.
    lon, lat = UNDERPASS.offset(800, 600)
    city.register({"device_id": "MHT-GAS-1", "kind": "sensor", "sensor_type": "manhole_tilt",
                   "lon": lon, "lat": lat, "owner_department": "gas_utility", "status": "active"})
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
    for topic, key, value in records:
        city.put(topic, key, value)
    return city


def orders_of(city):
    by_id: dict[str, list[dict]] = {}
    for c in city.on(city.topics.workorder_events):
        by_id.setdefault(c["work_order_id"], []).append(c)
    return by_id


def test_every_incident_is_one_order_and_nothing_else(city):
    # flood: created, dispatched, 6 × evidence, escalated (the 5th finder); east: 2; gas manhole: 2; other: 1
    assert len(city.on(city.topics.workorder_events)) == 14 and len(orders_of(city)) == 4
    assert city.on(city.topics.deadletter) == []


def test_rainstorm_is_one_order_to_water_with_all_evidence(city):
    orders = orders_of(city)
    flood = [cs for cs in orders.values() if cs[0]["snapshot"]["location"]["lon"] < 117.87
             and cs[0]["snapshot"]["category"] == "waterlogging"]
    assert len(flood) == 1
    cs = flood[0]
    assert [c["version"] for c in cs] == list(range(1, len(cs) + 1))          # monotonic
    assert [c["type"] for c in cs[:2]] == ["created", "dispatched"]
    assert sorted(c["type"] for c in cs[2:]) == ["escalated"] + ["evidence_added"] * 6
    # Five distinct finders (three gauges, two cameras; the grid member is the sixth) raise
    # the priority one step, once; the gauges alarm at blue, which asks for no more.
    [up] = [c for c in cs if c["type"] == "escalated"]
    assert (up["escalation"]["reason"], up["escalation"]["priority_from"], up["escalation"]["priority_to"]) == (
        "finders", "high", "urgent")
    final = cs[-1]["snapshot"]
    assert final["department"] == "water" and final["status"] == "dispatched"
    assert (final["priority"], final["warning_level"], final["assists"]) == ("urgent", "blue", [])
    assert final["work_order_id"].startswith("WO-flooding-")
    assert set(final["finders"]) == {"WLV-UP-01", "WLV-UP-02", "WLV-UP-03", "CAM-UP-01", "CAM-UP-02"}
    assert len(final["events"]) == 7
    assert {"https://grid.example.invalid/R-d1.jpg", "https://grid.example.invalid/R-d2.jpg",
            "https://video.example.invalid/VA-d1.jpg"} <= set(final["evidence"])
    water = city.on(city.topics.dispatch("water"))
    assert sorted(d["work_order_id"] for d in water) == sorted(
        {final["work_order_id"]} | {o for o, c in orders.items() if c[0]["snapshot"]["location"]["lon"] > 117.88
                                    and c[0]["snapshot"]["category"] == "waterlogging"})
    assert all(d["type"] == "dispatched" for d in water)


def test_second_spot_two_km_away_is_its_own_order(city):
    east = [cs for cs in orders_of(city).values() if "WLV-EP-01" in cs[-1]["snapshot"]["finders"]]
    assert len(east) == 1 and east[0][-1]["snapshot"]["department"] == "water"
    assert len(east[0][-1]["snapshot"]["events"]) == 1


def test_asset_owner_wins_over_the_category_default(city):
    owned = [cs for cs in orders_of(city).values() if "MHT-GAS-1" in cs[-1]["snapshot"]["finders"]]
    assert len(owned) == 1
    snap = owned[0][-1]["snapshot"]
    assert snap["category"] == "manhole_cover" and snap["department"] == "gas_utility"
    assert snap["route_rule"] == "asset_owner:gas_utility"
    assert [d["work_order_id"] for d in city.on(city.topics.dispatch("gas_utility"))] == [snap["work_order_id"]]
    assert city.on(city.topics.dispatch("city_mgmt")) == []


def test_unroutable_category_stays_registered(city):
    other = [cs for cs in orders_of(city).values() if cs[0]["snapshot"]["category"] == "other"]
    assert len(other) == 1 and [c["type"] for c in other[0]] == ["created"]
    assert other[0][0]["snapshot"]["status"] == "registered" and other[0][0]["snapshot"]["department"] is None
