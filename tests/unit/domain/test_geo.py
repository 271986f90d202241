"""Point → grid and admin chain on the sample city: Zhoucun and three neighbours that
share its borders (DESIGN §13)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point
from shapely.ops import unary_union

from citybrain.config import Config
from citybrain.domain.geo import distance_m
from citybrain_tools.sample.city_builder import DISTRICT_OUTLINE, NEIGHBOURS, STREETS, district_shapes

CITY = Config().city_map
SHAPES = {code: geom for code, (_, geom) in district_shapes().items()}
WHOLE = unary_union(list(SHAPES.values()))
# Every pair of districts that share a border, with the shared lines.
BORDERS = [(a, b, SHAPES[a].boundary.intersection(SHAPES[b].boundary))
           for i, a in enumerate(sorted(SHAPES)) for b in sorted(SHAPES)[i + 1:]]
BORDERS = [(a, b, line) for a, b, line in BORDERS if line.length > 0]


def test_the_city_has_four_districts_and_every_grid_chain_is_consistent():
    assert set(CITY.district_names) == {"370306", "370302", "370303", "370321"}
    streets = {code for code, _ in STREETS.values()} | {
        code for *_, layout in NEIGHBOURS for code, _ in layout.values()}
    assert set(CITY.street_names) == streets
    districts = set()
    for code in CITY.grid_codes:
        loc = CITY.grid(code)
        assert loc.grid_code.startswith(loc.community_code)
        assert loc.community_code.startswith(loc.street_code)
        assert loc.street_code.startswith(loc.district_code) and loc.district_code in CITY.district_names
        assert len(loc.grid_code) == 15 and len(loc.community_code) == 12 and len(loc.street_code) == 9
        districts.add(loc.district_code)
    assert districts == set(CITY.district_names)


def test_zhoucun_shares_a_border_with_each_neighbour():
    with_zhoucun = {b if a == "370306" else a for a, b, _ in BORDERS if "370306" in (a, b)}
    assert with_zhoucun == {"370302", "370303", "370321"}


@pytest.mark.parametrize("street_code", sorted(CITY.street_names))
def test_a_point_inside_each_street_maps_to_that_street(street_code):
    # The representative point of the street's first grid lies inside it.
    grid = next(c for c in CITY.grid_codes if c.startswith(street_code))
    p = CITY.grid_polygon(grid).representative_point()
    loc = CITY.locate(p.x, p.y)
    assert loc.street_code == street_code and loc.grid_code == grid


def test_points_outside_the_city():
    assert CITY.locate(116.40, 39.90) is None         # Beijing
    assert CITY.locate(117.70, 36.80) is None         # just west of Zhoucun
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


@settings(max_examples=400, deadline=None)
@given(st.floats(117.70, 118.15), st.floats(36.55, 37.05))
def test_grid_layer_covers_exactly_the_city_and_each_district_its_own(lon, lat):
    loc = CITY.locate(lon, lat)
    p = Point(lon, lat)
    if WHOLE.distance(p) > 1e-5:
        assert loc is None
        return
    if any(geom.buffer(-1e-5).contains(p) for geom in SHAPES.values()):
        assert loc is not None
        assert SHAPES[loc.district_code].buffer(1e-5).covers(p)
        assert CITY.grid_polygon(loc.grid_code).buffer(1e-6).covers(p)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**6), st.floats(0.0, 1.0), st.floats(-3e-5, 3e-5))
def test_on_and_beside_a_shared_border(which, t, off):
    """A point on a border between two districts belongs to exactly one grid of one of
    them, the same on every call (every worker maps it alike); a point just off the
    border belongs to the district on its side."""
    a, b, line = BORDERS[which % len(BORDERS)]
    pieces = [g for g in getattr(line, "geoms", [line]) if g.length > 0]
    piece = pieces[which // len(BORDERS) % len(pieces)]
    at = piece.interpolate(t, normalized=True)
    loc = CITY.locate(at.x, at.y)
    touching = {code for code, geom in SHAPES.items() if geom.distance(at) < 1e-6}   # a, b, and at a corner a third
    assert {a, b} <= touching
    assert loc is not None and loc.district_code in touching
    CITY._memo.clear()
    assert CITY._locate(at.x, at.y) == loc
    # Beside it: move across the border along its normal.
    seg = LineString([piece.interpolate(max(0.0, t - 1e-4), normalized=True),
                      piece.interpolate(min(1.0, t + 1e-4), normalized=True)])
    (x0, y0), (x1, y1) = seg.coords
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    if length == 0 or abs(off) < 2e-5:
        return
    p = Point(at.x - (y1 - y0) / length * off, at.y + (x1 - x0) / length * off)
    side = [code for code in (a, b) if SHAPES[code].buffer(-1e-5).contains(p)]
    if side:   # not at a corner where a third district meets
        beside = CITY.locate(p.x, p.y)
        assert beside is not None and beside.district_code == side[0]


def test_distance():
    assert distance_m(117.8625, 36.7935, 117.8849, 36.7935) == pytest.approx(2000, rel=0.02)


def test_each_grid_code_gives_the_polygon_of_its_own_feature():
    """grid_polygon looks the polygon up by code (it was a list search per call)."""
    codes = CITY.grid_codes
    assert len(codes) > 100
    for code in codes:
        inside = CITY.grid_polygon(code).representative_point()
        assert CITY.locate(inside.x, inside.y).grid_code == code
    with pytest.raises(KeyError):
        CITY.grid_polygon("no-such-grid")
