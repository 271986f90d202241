"""The gazetteer on the SAMPLE city and config/places.toml: names find themselves, points lie
where their codes say, a named district narrows, locate() refuses what is ambiguous."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from citybrain.config import Config, PlacesConfig, RoadConfig
from citybrain.domain.gazetteer import Gazetteer, normalise

CONFIG = Config()
CITY = CONFIG.city_map
GAZ = CONFIG.gazetteer
AREA_ENTRIES = [e for e in GAZ.entries if e.kind in ("grid", "community", "street", "district")]
NAMED = [e for e in GAZ.entries if e.kind in ("grid", "community", "street")]
# Text around a name that names nothing itself (house numbers, sides, directions).
NOISE = st.text(alphabet="0123456789号门口东侧附近旁边对面楼单元", max_size=8)


def test_every_grid_street_and_community_name_looks_itself_up_first():
    for e in NAMED:
        best = GAZ.lookup(e.name, 3)[0]
        assert (best.name, best.kind, best.codes) == (e.name, e.kind, e.codes)
    assert len(NAMED) == 938 + 83 + 21


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NAMED), NOISE, NOISE)
def test_a_name_with_house_numbers_around_it_still_wins(entry, before, after):
    best = GAZ.lookup(before + entry.name + after, 3)[0]
    assert (best.name, best.kind) == (entry.name, entry.kind)


def test_every_candidates_point_lies_in_its_own_area():
    for e in GAZ.entries:
        where = CITY.locate(e.lon, e.lat)
        assert where is not None, e
        got = {"district_code": where.district_code, "street_code": where.street_code,
               "community_code": where.community_code, "grid_code": where.grid_code}
        assert all(got[k] == v for k, v in e.codes.items()), (e, got)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(CITY.district_names)), st.sampled_from(NAMED + [e for e in GAZ.entries
                                                                           if e.kind in ("road", "place")]))
def test_a_named_district_narrows_every_candidate_to_it(district, entry):
    found = GAZ.lookup(CITY.district_names[district] + entry.name + "12号", 20)
    assert found and all(c.codes["district_code"] == district for c in found)
    if entry.codes["district_code"] == district:
        assert (found[0].name, found[0].kind) == (entry.name, entry.kind)
    else:   # another district's name: only the district is left, and that locates nothing
        assert [c.kind for c in found] == ["district"] and GAZ.locate(CITY.district_names[district] + entry.name) is None


def test_an_address_on_a_road_is_the_roads_midpoint():
    best = GAZ.locate("周村区青年路88号门口")
    assert best is not None and (best.name, best.kind, best.matched) == ("青年路", "road", "青年路")
    assert best.codes == {"district_code": "370306", "street_code": "370306003"}
    assert (best.lon, best.lat) == pytest.approx((117.870, 36.745))
    assert GAZ.locate("青年路100号") == GAZ.locate("青年路2号")        # house numbers are not resolved
    assert CITY.locate(best.lon, best.lat).street_code == "370306003"


def test_places_by_name_and_alias_and_the_longest_name_wins():
    assert GAZ.locate("周村古商城东门").name == "周村古商城"
    assert GAZ.locate("古商城").name == "周村古商城"                       # an alias
    assert GAZ.lookup("周村古商城", 1)[0].score > GAZ.lookup("古商城", 1)[0].score
    assert GAZ.locate("周村区人民医院急诊").kind == "place"                  # not the district inside it
    assert [c.kind for c in GAZ.lookup("青年路街道")] == ["street"]         # not the road inside it
    assert GAZ.locate("青年路第二社区3号楼").name == "青年路第二社区"
    assert GAZ.locate("ＺＣ 丝 绸 路 １２号").name == "丝绸路"               # full-width, spaces
    assert normalise("１２ 号") == "12号"


def test_locate_refuses_what_is_vague_or_ambiguous():
    assert GAZ.locate("") is None and GAZ.lookup("   ") == []
    assert GAZ.locate("火星路1号") is None                   # nothing
    assert GAZ.locate("周村区") is None                       # a district is not a location
    assert GAZ.locate("丝绸路街道") is None                   # nor a street
    # Two rivals of equal weight: the road in one street, a place in another.
    assert GAZ.locate("青年路和丝绸路路口") is None
    assert {c.name for c in GAZ.lookup("青年路和丝绸路路口")} == {"青年路", "丝绸路"}
    # The street named as well is not a rival: it holds the road.
    assert GAZ.locate("青年路街道青年路5号").name == "青年路"


def test_candidates_are_plain_dicts_with_the_documented_fields():
    d = GAZ.lookup("周村区青年路88号门口", 1)[0].to_dict()
    assert set(d) == {"name", "kind", "codes", "lon", "lat", "score", "matched"}


def test_places_toml_is_validated():
    assert CONFIG.places.sample_data and {r.name for r in CONFIG.places.road} >= {"青年路", "正阳路", "丝绸路"}
    with pytest.raises(ValidationError, match="colour"):
        PlacesConfig.model_validate({"road": [{"name": "青年路", "street_code": "370306003",
                                               "points": [[117.87, 36.745]], "colour": "red"}]})
    with pytest.raises(ValidationError, match="street_code"):
        RoadConfig.model_validate({"name": "青年路", "points": [[117.87, 36.745]]})
    with pytest.raises(ValidationError, match="not in district"):
        RoadConfig.model_validate({"name": "青年路", "street_code": "370306003", "district_code": "370302",
                                   "points": [[117.87, 36.745]]})
    with pytest.raises(ValidationError, match="given twice"):
        PlacesConfig.model_validate({"place": [{"name": "古商城", "lon": 117.875, "lat": 36.806},
                                               {"name": "周村古商城", "aliases": ["古商城"], "lon": 117.875,
                                                "lat": 36.806}]})
    with pytest.raises(ValidationError, match="points"):
        RoadConfig.model_validate({"name": "青年路", "street_code": "370306003", "points": []})


def test_a_road_or_place_not_where_it_says_is_refused():
    wrong_street = PlacesConfig.model_validate({"road": [{"name": "青年路", "street_code": "370306001",
                                                          "points": [[117.87, 36.745]]}]})
    with pytest.raises(ValueError, match="not its street 370306001"):
        Gazetteer(CITY, wrong_street.road)
    outside = PlacesConfig.model_validate({"place": [{"name": "某地", "lon": 100.0, "lat": 30.0}]})
    with pytest.raises(ValueError, match="outside every grid"):
        Gazetteer(CITY, (), outside.place)
