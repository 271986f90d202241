"""Point → grid and admin chain on the sample Zhoucun grid layer."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon

from citybrain.config import Config
from citybrain.domain.geo import distance_m
from citybrain.sample.city_builder import DISTRICT_OUTLINE, STREETS

CITY = Config().city_map
DISTRICT = Polygon(DISTRICT_OUTLINE)


def test_every_street_has_grids_and_chain_is_consistent():
    streets = {code for code, _ in STREETS.values()}
    assert set(CITY.street_names) == streets
    for code in CITY.grid_codes:
        loc = CITY.grid(code)
        assert loc.grid_code.startswith(loc.community_code)
        assert loc.community_code.startswith(loc.street_code)
        assert loc.street_code.startswith(loc.district_code) and loc.district_code == "370306"
        assert len(loc.grid_code) == 15 and len(loc.community_code) == 12 and len(loc.street_code) == 9


@pytest.mark.parametrize("street_code,name", [v for v in STREETS.values()])
def test_a_point_inside_each_street_maps_to_that_street(street_code, name):
    # The representative point of the street's first grid lies inside it.
    grid = next(c for c in CITY.grid_codes if c.startswith(street_code))
    p = CITY.grid_polygon(grid).representative_point()
    loc = CITY.locate(p.x, p.y)
    assert loc.street_code == street_code, name
    assert loc.grid_code == grid


def test_points_outside_the_district():
    assert CITY.locate(116.40, 39.90) is None         # Beijing
    assert CITY.locate(117.70, 36.80) is None         # just west of the outline
    assert CITY.locate(float("nan"), 36.8) is None


def test_a_point_on_a_grid_border_gets_one_grid_whichever_side_is_asked():
    # 117.835 is the border between 永安街 (west) and 大街 (east).
    on_border = CITY.locate(117.835, 36.80)
    west = CITY.locate(117.83499, 36.80)
    east = CITY.locate(117.83501, 36.80)
    assert west.street_code == "370306004" and east.street_code == "370306002"
    assert on_border.grid_code == min(west.grid_code, east.grid_code)


def test_district_outline_vertex_is_inside():
    lon, lat = DISTRICT_OUTLINE[0]
    assert CITY.locate(lon, lat) is not None


@settings(max_examples=300, deadline=None)
@given(st.floats(117.74, 118.0), st.floats(36.69, 36.91))
def test_grid_layer_covers_exactly_the_district(lon, lat):
    loc = CITY.locate(lon, lat)
    inside = DISTRICT.covers(Point(lon, lat))
    assert (loc is not None) == inside
    if loc:
        assert CITY.grid_polygon(loc.grid_code).covers(Point(lon, lat))


def test_distance():
    assert distance_m(117.8625, 36.7935, 117.8849, 36.7935) == pytest.approx(2000, rel=0.02)
