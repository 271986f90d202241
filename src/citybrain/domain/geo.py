"""Point → unit grid (单元网格) and its admin chain, through an STRtree index."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from shapely import STRtree
from shapely.geometry import Point, shape


@dataclass(frozen=True, slots=True)
class AdminLocation:
    grid_code: str
    community_code: str
    street_code: str
    district_code: str


class CityMap:
    """The grid layer of one city of one or more districts (区县).  ``locate`` returns
    None outside every grid."""

    MEMO_SIZE = 65536
    # A point within this of a grid (≈ 0.1 m) but in none — on a border where the two
    # sides' rounded vertices left a hairline gap — belongs to the nearest grid.
    BORDER_TOLERANCE = 1e-6

    def __init__(self, geojson: dict[str, Any]):
        self._memo: dict[tuple[float, float], AdminLocation | None] = {}
        districts = geojson.get("districts") or [geojson["district"]]
        self.district_names = {d["district_code"]: d["district_name"] for d in districts}
        city = geojson.get("city") or {}
        self.city_code = city.get("city_code", "")
        self.city_name = city.get("city_name") or "、".join(self.district_names.values())
        self.street_names = {s["street_code"]: s["street_name"] for s in geojson["streets"]}
        self.community_names = {c["community_code"]: c["community_name"]
                                for c in geojson["communities"]}
        self._locations: list[AdminLocation] = []
        self.grid_names: dict[str, str] = {}
        geoms = []
        for feature in geojson["features"]:
            p = feature["properties"]
            self.grid_names[p["grid_code"]] = p.get("grid_name") or p["grid_code"]
            self._locations.append(AdminLocation(
                p["grid_code"], p["community_code"], p["street_code"], p["district_code"]))
            geoms.append(shape(feature["geometry"]))
        self._geoms = geoms
        for g in geoms:
            shapely.prepare(g)
        self._tree = STRtree(geoms)
        self._by_grid = {loc.grid_code: loc for loc in self._locations}
        # grid code → its polygon's index: a list search per grid was quadratic (measured:
        # 0.43 s of a worker's start building the gazetteer over 938 grids).
        first: dict[AdminLocation, int] = {}
        for i, loc in enumerate(self._locations):
            first.setdefault(loc, i)
        self._polygon_at = {code: first[loc] for code, loc in self._by_grid.items()}

    @classmethod
    def load(cls, path: Path) -> CityMap:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def locate(self, lon: float, lat: float) -> AdminLocation | None:
        # Fixed devices report from the same point over and over: memoise (bounded).
        key = (lon, lat)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = self._locate(lon, lat)
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = found
        return found

    def _locate(self, lon: float, lat: float) -> AdminLocation | None:
        if not (math.isfinite(lon) and math.isfinite(lat)):
            return None
        point = Point(lon, lat)
        hits = self._tree.query(point, predicate="covered_by")
        if len(hits) == 0:
            hits = self._tree.query_nearest(point, max_distance=self.BORDER_TOLERANCE)
            if len(hits) == 0:
                return None
        # A point exactly on a shared border is covered by both grids; the lowest
        # code wins so every worker maps it the same way.
        found: AdminLocation = min((self._locations[i] for i in hits), key=lambda loc: loc.grid_code)
        return found

    def district_of(self, street_code: str) -> str:
        """The district code of a street (the national codes nest: 6 digits of 9)."""
        return street_code[:6]

    def grid(self, grid_code: str) -> AdminLocation | None:
        return self._by_grid.get(grid_code)

    @property
    def grid_codes(self) -> list[str]:
        return sorted(self._by_grid)

    def grid_polygon(self, grid_code: str) -> Any:   # a shapely Polygon (shapely ships no types)
        return self._geoms[self._polygon_at[grid_code]]


EARTH_RADIUS_M = 6_371_008.8


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine; plenty for a city)."""
    r = EARTH_RADIUS_M
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))
