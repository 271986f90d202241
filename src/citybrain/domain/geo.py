"""Point → unit grid (单元网格) and its admin chain, through an STRtree index."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

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
    """The grid layer of one city.  ``locate`` returns None outside every grid."""

    MEMO_SIZE = 65536

    def __init__(self, geojson: dict):
        self._memo: dict[tuple[float, float], AdminLocation | None] = {}
        self.district_code = geojson["district"]["district_code"]
        self.district_name = geojson["district"]["district_name"]
        self.street_names = {s["street_code"]: s["street_name"] for s in geojson["streets"]}
        self.community_names = {c["community_code"]: c["community_name"]
                                for c in geojson["communities"]}
        self._locations: list[AdminLocation] = []
        geoms = []
        for feature in geojson["features"]:
            p = feature["properties"]
            self._locations.append(AdminLocation(
                p["grid_code"], p["community_code"], p["street_code"], p["district_code"]))
            geoms.append(shape(feature["geometry"]))
        self._geoms = geoms
        for g in geoms:
            shapely.prepare(g)
        self._tree = STRtree(geoms)
        self._by_grid = {loc.grid_code: loc for loc in self._locations}

    @classmethod
    def load(cls, path: Path) -> "CityMap":
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
        hits = self._tree.query(Point(lon, lat), predicate="covered_by")
        if len(hits) == 0:
            return None
        # A point exactly on a shared border is covered by both grids; the lowest
        # code wins so every worker maps it the same way.
        return min((self._locations[i] for i in hits), key=lambda loc: loc.grid_code)

    def grid(self, grid_code: str) -> AdminLocation | None:
        return self._by_grid.get(grid_code)

    @property
    def grid_codes(self) -> list[str]:
        return sorted(self._by_grid)

    def grid_polygon(self, grid_code: str):
        return self._geoms[self._locations.index(self._by_grid[grid_code])]


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine; plenty for a city)."""
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))
