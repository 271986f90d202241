"""一事一单 in one process (moved from tests/integration/test_dispatch_scenarios.py, which
keeps the latency metrics and the restart): scripted incidents become exactly the work
orders they should, on the right department's topic."""

import pytest

from ..incidents import gas_manhole, scripted
from .city import City


@pytest.fixture(scope="module")
def city(config):
    city = City(config)
    city.register(gas_manhole())
    for topic, key, value in scripted(city.topics):
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
