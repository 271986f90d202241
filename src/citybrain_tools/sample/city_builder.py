"""Builds the SAMPLE city geography: Zhoucun district (周村区, 370306) and three
synthetic neighbours sharing its borders — 淄川区 370302 (south), 张店区 370303 (east)
and 桓台县 370321 (north) — one city of four districts (DESIGN §13).

District names and codes are real; Zhoucun's street names and codes are real, the
neighbours' street names are real-sounding and their codes made up; every boundary,
community and grid polygon is synthetic (clipped rectangles), good for demos and tests
only.  Output: ``config/city/zibo-sample.geojson`` — one Feature per unit grid (单元网格)
with its admin chain, plus each district's outline and the street list.

Run ``citybrain sample build-city`` to regenerate.
"""

from __future__ import annotations

import json
from pathlib import Path

from shapely.geometry import Polygon, box, mapping
from shapely.ops import unary_union

DISTRICT_CODE = "370306"
DISTRICT_NAME = "周村区"

# Irregular outline around the real district's centre (~117.87E, 36.80N).
DISTRICT_OUTLINE = [
    (117.770, 36.712), (117.850, 36.700), (117.935, 36.706), (117.985, 36.745),
    (117.978, 36.842), (117.940, 36.892), (117.860, 36.898), (117.790, 36.880),
    (117.758, 36.820), (117.762, 36.760), (117.770, 36.712),
]
LON_CUTS = [117.70, 117.835, 117.905, 118.05]
LAT_CUTS = [36.65, 36.770, 36.830, 36.95]

# (row from south, column from west) -> (9-digit street code, name).
# 街道 use 001-099, 镇 100-199, as in the national statistical division codes.
STREETS = {
    (0, 0): ("370306102", "王村镇"),
    (0, 1): ("370306003", "青年路街道"),
    (0, 2): ("370306101", "南郊镇"),
    (1, 0): ("370306004", "永安街街道"),
    (1, 1): ("370306002", "大街街道"),
    (1, 2): ("370306001", "丝绸路街道"),
    (2, 0): ("370306100", "北郊镇"),
    (2, 1): ("370306005", "城北路街道"),
    (2, 2): ("370306103", "萌水镇"),
}
ORDINALS = ["一", "二", "三", "四"]
GRIDS_PER_SIDE = 4  # each community is cut into 4x4 unit grids

CITY_CODE, CITY_NAME = "370300", "淄博市"
# The neighbours: each a frame minus Zhoucun (so the shared border is Zhoucun's own
# edges, vertex for vertex), cut 2 × 2 into streets, each street 2 × 2 communities of
# 3 × 3 grids.  (row from south, column from west) → (street code, name).
NEIGHBOURS = [
    ("370302", "淄川区", [(117.740, 36.600, 118.100, 36.720)], {
        (0, 0): ("370302001", "般阳路街道"), (0, 1): ("370302002", "松龄路街道"),
        (1, 0): ("370302003", "钟楼街道"), (1, 1): ("370302004", "将军路街道")}),
    ("370303", "张店区", [(117.930, 36.720, 118.100, 36.900)], {
        (0, 0): ("370303001", "车站街道"), (0, 1): ("370303002", "公园街道"),
        (1, 0): ("370303003", "和平街道"), (1, 1): ("370303004", "科苑街道")}),
    ("370321", "桓台县", [(117.740, 36.850, 117.930, 37.000), (117.930, 36.900, 118.100, 37.000)], {
        (0, 0): ("370321001", "索镇街道"), (0, 1): ("370321002", "少海街道"),
        (1, 0): ("370321100", "起凤镇"), (1, 1): ("370321101", "田庄镇")}),
]
NEIGHBOUR_GRIDS_PER_SIDE = 3


def district_shapes() -> dict[str, tuple[str, Polygon]]:
    """district code → (name, polygon) for every district of the sample city."""
    zhoucun = Polygon(DISTRICT_OUTLINE)
    out = {DISTRICT_CODE: (DISTRICT_NAME, zhoucun)}
    for code, name, frames, _ in NEIGHBOURS:
        out[code] = (name, unary_union([box(*f) for f in frames]).difference(zhoucun))
    return out


def _split(rect: tuple[float, float, float, float], n: int):
    """Cut (minx, miny, maxx, maxy) into n x n cells, row-major from the south-west."""
    minx, miny, maxx, maxy = rect
    dx, dy = (maxx - minx) / n, (maxy - miny) / n
    for row in range(n):
        for col in range(n):
            yield row, col, (minx + col * dx, miny + row * dy, minx + (col + 1) * dx, miny + (row + 1) * dy)


def _round_polygon(geom) -> dict:
    geo = mapping(geom)
    def rnd(ring):
        return [[round(x, 6), round(y, 6)] for x, y in ring]
    if geo["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [rnd(r) for r in geo["coordinates"]]}
    return {"type": "MultiPolygon",
            "coordinates": [[rnd(r) for r in poly] for poly in geo["coordinates"]]}


def build() -> dict:
    district = Polygon(DISTRICT_OUTLINE)
    features: list[dict] = []
    streets: list[dict] = []
    communities: list[dict] = []
    for row in range(3):
        for col in range(3):
            street_rect = (LON_CUTS[col], LAT_CUTS[row], LON_CUTS[col + 1], LAT_CUTS[row + 1])
            _street(STREETS[(row, col)], box(*street_rect).intersection(district), (DISTRICT_CODE, DISTRICT_NAME),
                    GRIDS_PER_SIDE, features, streets, communities)
    shapes = district_shapes()
    for code, name, _, layout in NEIGHBOURS:
        _neighbour(code, name, shapes[code][1], layout, features, streets, communities)
    return {
        "type": "FeatureCollection",
        "name": "zibo-sample-grids",
        "sample_data": True,
        "note": "SAMPLE DATA: real district names and codes, synthetic boundaries, "
                "communities and grids; the neighbours' street codes are made up. 示例数据，边界为虚构。",
        "city": {"city_code": CITY_CODE, "city_name": CITY_NAME},
        "districts": [{"district_code": code, "district_name": name, "geometry": _round_polygon(geom)}
                      for code, (name, geom) in shapes.items()],
        "streets": streets,
        "communities": communities,
        "features": features,
    }


def _neighbour(code: str, name: str, geom, layout: dict, features: list, streets: list,
               communities: list) -> None:
    for row, col, street_rect in _split(geom.bounds, 2):
        street_geom = box(*street_rect).intersection(geom)
        if not street_geom.is_empty:
            _street(layout[(row, col)], street_geom, (code, name), NEIGHBOUR_GRIDS_PER_SIDE,
                    features, streets, communities)


def _street(street: tuple[str, str], street_geom, district: tuple[str, str], grids_per_side: int,
            features: list, streets: list, communities: list) -> None:
    """A street clipped to its district, cut 2 × 2 into communities over its bounds (so
    none lies wholly outside), each cut into grids; a grid cell split by the outline
    gives one grid per piece."""
    street_code, street_name = street
    is_town = street_name.endswith("镇")
    streets.append({"street_code": street_code, "street_name": street_name,
                    "kind": "town" if is_town else "subdistrict"})
    short = street_name[:-1] if is_town else street_name[:-2]
    for k, (_, _, comm_rect) in enumerate(_split(street_geom.bounds, 2)):
        comm_geom = box(*comm_rect).intersection(street_geom)
        if comm_geom.is_empty or comm_geom.area < 1e-7:
            continue
        comm_code, comm_name = _community(street_code, short, is_town, k)
        communities.append({"community_code": comm_code, "community_name": comm_name,
                            "street_code": street_code})
        serial = 0
        for _, _, cell in _split(comm_rect, grids_per_side):
            cell_geom = box(*cell).intersection(comm_geom)
            for part in getattr(cell_geom, "geoms", [cell_geom]):
                if part.is_empty or part.geom_type != "Polygon" or part.area < 1e-7:
                    continue
                serial += 1
                features.append(_grid(serial, (comm_code, comm_name), street, district, part))


def write(path: Path) -> int:
    data = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return len(data["features"])


def _community(street_code: str, short: str, is_town: bool, k: int) -> tuple[str, str]:
    """The k-th community of a street: villages (村, 200…) in a town, 社区 (001…) in a 街道."""
    if is_town:
        return f"{street_code}{200 + k:03d}", f"{short}{ORDINALS[k]}村"
    return f"{street_code}{1 + k:03d}", f"{short}第{ORDINALS[k]}社区"


def _grid(serial: int, community: tuple[str, str], street: tuple[str, str], district: tuple[str, str],
          geom) -> dict:
    (comm_code, comm_name), (street_code, street_name), (district_code, district_name) = community, street, district
    return {
        "type": "Feature",
        "properties": {
            "grid_code": f"{comm_code}{serial:03d}", "grid_name": f"{comm_name}{serial}号网格",
            "community_code": comm_code, "community_name": comm_name,
            "street_code": street_code, "street_name": street_name,
            "district_code": district_code, "district_name": district_name,
        },
        "geometry": _round_polygon(geom),
    }
