"""立案 from the console: the places query, a report's defaults and its location by address,
each category's limits (web/places.py)."""

import pytest
from multidict import MultiDict

from citybrain.config import Config
from citybrain.web.auth import Principal, Refused
from citybrain.web.places import (
    NeedsLocation,
    category_limits,
    locate_report,
    places_answer,
    places_query,
    report_defaults,
)

CONFIG = Config()
OPERATOR = Principal("op-7", "值班员", "operator")
GRID = Principal("GM-0107", "网格员", "grid", grid_prefix="370306002001")


def test_the_places_query_is_read_strictly():
    assert places_query(MultiDict(q=" 青年路 ")) == ("青年路", 10)
    assert places_query(MultiDict(q="青年路", limit="3")) == ("青年路", 3)
    for qs, field in [({"q": "x", "lmit": "3"}, "lmit"), ({}, "q"), ({"q": "  "}, "q"),
                      ({"q": "x", "limit": "0"}, "limit"), ({"q": "x", "limit": "51"}, "limit"),
                      ({"q": "x", "limit": "ten"}, "limit"), ({"q": "x" * 501}, "q")]:
        with pytest.raises(Refused) as e:
            places_query(MultiDict(qs))
        assert (e.value.status, e.value.field) == (400, field)


def test_the_places_answer_ranks_and_says_what_locates():
    body = places_answer(CONFIG.gazetteer, "周村区青年路88号门口", 5)
    assert [c["name"] for c in body["candidates"]] == ["青年路", "周村区"]
    assert body["located"]["name"] == "青年路" and "house numbers" in body["note"]
    assert places_answer(CONFIG.gazetteer, "周村区", 5)["located"] is None


def test_report_defaults():
    doc: dict = {}
    report_defaults(doc, OPERATOR)
    assert doc["reporter_id"] == "op-7" and doc["report_id"].startswith("R-") and len(doc["report_id"]) == 38
    given = {"report_id": "R-1", "reporter_id": "hotline-12345"}
    report_defaults(given, OPERATOR)
    assert given == {"report_id": "R-1", "reporter_id": "hotline-12345"}
    grid: dict = {}
    report_defaults(grid, GRID)
    assert "reporter_id" not in grid      # a grid member's is its own, set (and checked) by the route


def test_a_report_is_located_by_its_address_only_without_a_point():
    doc = {"address": "周村区青年路88号门口"}
    assert locate_report(doc, CONFIG.gazetteer) == {"name": "青年路", "kind": "road", "lon": doc["lon"],
                                                    "lat": doc["lat"]}
    assert CONFIG.city_map.locate(doc["lon"], doc["lat"]).street_code == "370306003"
    own = {"address": "周村区青年路88号门口", "lon": 117.9, "lat": 36.8}
    assert locate_report(own, CONFIG.gazetteer) is None and own["lon"] == 117.9
    assert locate_report({"description": "no address"}, CONFIG.gazetteer) is None
    with pytest.raises(NeedsLocation, match="no known name"):
        locate_report({"address": "火星路1号"}, CONFIG.gazetteer)
    with pytest.raises(NeedsLocation, match="candidates: 周村区"):
        locate_report({"address": "周村区某处"}, CONFIG.gazetteer)


def test_every_category_has_its_limits():
    limits = category_limits(CONFIG)
    assert set(limits) == {c.code for c in CONFIG.taxonomy.categories}
    flood = limits["waterlogging"]
    assert (flood["priority"], flood["department"], flood["time_limit_basis"], flood["time_limit_hours"],
            flood["accept_limit_hours"]) == ("high", "water", "natural", 12, 1)
    assert limits["other"]["department"] is None
    for code, row in limits.items():
        lim = CONFIG.deadlines.limits(code, row["priority"])
        assert row["time_limit_hours"] == lim.total_hours and row["handle_limit_hours"] == lim.handle_hours
