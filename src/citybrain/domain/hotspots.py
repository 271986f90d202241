"""高发 hotspots: the same problem at the same place, again and again (DESIGN §15).

A hotspot of a category is at least ``min_orders`` of its orders within ``radius_m`` metres
of one of them, created in the last ``days`` days (cancelled and merged orders do not
count: they were not problems of their own). Found greedily and deterministically: the
order with the most such neighbours (ties: the earliest, then the smallest id) is a
centre; it and its neighbours are one hotspot and leave the pool; again until no order has
enough. Planted repeats more than two radii apart are one hotspot each; sparse background
makes none.

A hotspot's id is stable while its centre is: ``HS-<category>-<hash of the centre order's
id>``. ``record`` is its form on ``analytics.hotspots`` (compacted, key hotspot_id: written
when it appears or changes, a tombstone when it is found no more).

Pure: points in, hotspots out. The config (``[hotspots]`` of config/analytics.toml) names
the default rule and per-category ones."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from citybrain.domain.geo import distance_m

METRES_PER_DEGREE = 111_195.0     # of latitude (and of longitude at the equator)


class HotspotRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_orders: int = Field(5, ge=2, le=1000)
    radius_m: float = Field(100.0, gt=0, le=5000)
    days: float = Field(30.0, gt=0, le=400)


class HotspotConfig(BaseModel):
    """``[hotspots]`` of config/analytics.toml: ``[hotspots.default]`` and
    ``[hotspots.categories.<code>]`` rules."""

    model_config = ConfigDict(extra="forbid")
    default: HotspotRule = HotspotRule()
    categories: dict[str, HotspotRule] = Field(default_factory=dict)

    def rule(self, category: str) -> HotspotRule:
        return self.categories.get(category, self.default)


@dataclass(frozen=True, slots=True)
class Point:
    work_order_id: str
    lon: float
    lat: float
    created_ts: float
    street_code: str = ""


@dataclass(frozen=True, slots=True)
class Hotspot:
    hotspot_id: str
    category: str
    lon: float              # the centre order's point
    lat: float
    radius_m: float
    count: int
    first_ts: float
    last_ts: float
    street_code: str
    work_order_ids: tuple[str, ...]   # nearest the centre first

    @property
    def centre_id(self) -> str:
        return self.work_order_ids[0]   # nearest the centre first: the centre itself

    def record(self, timezone: str = "Asia/Shanghai") -> dict[str, Any]:
        """The record on ``analytics.hotspots``."""
        tz = ZoneInfo(timezone)
        return {"hotspot_id": self.hotspot_id, "category": self.category,
                "centre": {"work_order_id": self.centre_id, "lon": self.lon, "lat": self.lat,
                           "street_code": self.street_code, "district_code": self.street_code[:6]},
                "radius": self.radius_m, "orders": list(self.work_order_ids), "count": self.count,
                "first": datetime.fromtimestamp(self.first_ts, tz).isoformat(),
                "last": datetime.fromtimestamp(self.last_ts, tz).isoformat()}

    def to_dict(self) -> dict[str, Any]:
        return {"hotspot_id": self.hotspot_id, "category": self.category, "lon": self.lon, "lat": self.lat,
                "radius_m": self.radius_m, "count": self.count, "first_ts": self.first_ts,
                "last_ts": self.last_ts, "street_code": self.street_code,
                "district_code": self.street_code[:6], "work_order_ids": list(self.work_order_ids),
                "first": datetime.fromtimestamp(self.first_ts, UTC).isoformat(),
                "last": datetime.fromtimestamp(self.last_ts, UTC).isoformat()}


def hotspot_id(category: str, centre: str) -> str:
    return f"HS-{category}-{hashlib.sha256(f'{category}|{centre}'.encode()).hexdigest()[:12]}"


def find_all(by_category: dict[str, list[Point]], config: HotspotConfig, now: float) -> list[Hotspot]:
    """Every category's hotspots, the largest first (ties by id)."""
    found = [h for category, points in sorted(by_category.items())
             for h in find(category, points, config.rule(category), now)]
    return sorted(found, key=lambda h: (-h.count, h.hotspot_id))


def find(category: str, points: list[Point], rule: HotspotRule, now: float) -> list[Hotspot]:
    since = now - rule.days * 86400
    pool = {p.work_order_id: p for p in points if since <= p.created_ts <= now}
    if len(pool) < rule.min_orders:
        return []
    lat0 = sum(p.lat for p in pool.values()) / len(pool)
    cell_lat = rule.radius_m / METRES_PER_DEGREE
    cell_lon = cell_lat / max(math.cos(math.radians(lat0)), 0.01)

    def cell(p: Point) -> tuple[int, int]:
        return int(math.floor(p.lon / cell_lon)), int(math.floor(p.lat / cell_lat))

    grid: dict[tuple[int, int], list[Point]] = defaultdict(list)
    for p in pool.values():
        grid[cell(p)].append(p)

    def neighbours(p: Point) -> list[Point]:
        cx, cy = cell(p)
        out = []
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for q in grid.get((cx + dx, cy + dy), ()):
                    if q.work_order_id in pool and distance_m(p.lon, p.lat, q.lon, q.lat) <= rule.radius_m:
                        out.append(q)
        return out

    counts = {wo: len(neighbours(p)) for wo, p in pool.items()}
    found: list[Hotspot] = []
    while True:
        best: tuple[int, float, str] | None = None
        for wo, n in counts.items():
            if n >= rule.min_orders:
                p = pool[wo]
                key = (-n, p.created_ts, wo)
                if best is None or key < best:
                    best = key
        if best is None:
            return found
        centre = pool[best[2]]
        members = sorted(neighbours(centre), key=lambda q: (distance_m(centre.lon, centre.lat, q.lon, q.lat),
                                                            q.work_order_id))
        cx, cy = cell(centre)
        found.append(Hotspot(hotspot_id(category, centre.work_order_id), category, centre.lon, centre.lat, rule.radius_m,
                             len(members), min(q.created_ts for q in members), max(q.created_ts for q in members),
                             centre.street_code, tuple(q.work_order_id for q in members)))
        for q in members:
            del pool[q.work_order_id]
            del counts[q.work_order_id]
        # Only orders within two radii of the centre lost neighbours: recount those cells.
        for dx in range(-3, 4):
            for dy in range(-3, 4):
                for q in grid.get((cx + dx, cy + dy), ()):
                    if q.work_order_id in pool:
                        counts[q.work_order_id] = len(neighbours(q))
