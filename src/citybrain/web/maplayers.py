"""The console map's layers at city volume (DESIGN §14): the matching orders as clusters
(the server groups 10,000 points into cells a map can draw), the registry's devices and
cameras with their health, and the cameras within R metres of an order."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from citybrain.domain.geo import distance_m
from citybrain.domain.registry import Device
from citybrain.web.auth import Refused

MAX_DEVICES = 3000        # a layer's most points; the console asks for the map's bounds only
KINDS = ("camera", "sensor")


def _bad(field: str, detail: str) -> Refused:
    return Refused(400, "invalid_field", detail, field)


def parse_bbox(raw: str | None) -> tuple[float, float, float, float] | None:
    """``west,south,east,north`` in degrees (WGS-84, as Leaflet's toBBoxString gives)."""
    if not raw:
        return None
    try:
        w, s, e, n = (float(x) for x in raw.split(","))
    except ValueError:
        raise _bad("bbox", "bbox must be west,south,east,north in degrees") from None
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise _bad("bbox", "bbox must be west,south,east,north with west ≤ east and south ≤ north")
    return w, s, e, n


def cell_degrees(zoom_raw: str | None) -> float:
    """A cluster cell for a map zoom: ~48 px of a 256 px tile at that zoom."""
    try:
        zoom = int(zoom_raw) if zoom_raw not in (None, "") else 12
    except ValueError:
        raise _bad("zoom", "zoom must be an integer 0..20") from None
    if not 0 <= zoom <= 20:
        raise _bad("zoom", "zoom must be an integer 0..20")
    return 360.0 / (2 ** zoom) * (48 / 256)


def devices_in(devices: Iterable[Device], faulty: Mapping[str, set[str]], kind: str | None,
               bbox: tuple[float, float, float, float] | None) -> dict:
    if kind is not None and kind not in KINDS:
        raise _bad("kind", f"kind must be one of {', '.join(KINDS)}")
    out: list[dict] = []
    total = 0
    for d in devices:
        if d.status != "active" or (kind is not None and d.kind != kind):
            continue
        if bbox is not None and not (bbox[0] <= d.lon <= bbox[2] and bbox[1] <= d.lat <= bbox[3]):
            continue
        total += 1
        if len(out) < MAX_DEVICES:
            orders = sorted(faulty.get(d.device_id, ()))
            out.append({"device_id": d.device_id, "kind": d.kind, "sensor_type": d.sensor_type, "lon": d.lon,
                        "lat": d.lat, "owner": d.owner_department, "health": "fault" if orders else "ok",
                        "fault_orders": orders})
    return {"total": total, "items": out, "truncated": total > len(out)}


def cameras_near(devices: Iterable[Device], faulty: Mapping[str, set[str]], lon: float, lat: float,
                 radius_m: float) -> list[dict]:
    """Active cameras within ``radius_m`` of the point, nearest first (a quick box first:
    a degree of latitude is ~111 km; of longitude, that times cos(latitude))."""
    dlat = radius_m / 111_000.0
    dlon = radius_m / (111_000.0 * max(math.cos(math.radians(lat)), 0.01))
    near = []
    for d in devices:
        if d.kind != "camera" or d.status != "active":
            continue
        if abs(d.lon - lon) > dlon or abs(d.lat - lat) > dlat:
            continue
        m = distance_m(lon, lat, d.lon, d.lat)
        if m <= radius_m:
            near.append({"device_id": d.device_id, "lon": d.lon, "lat": d.lat, "distance_m": round(m, 1),
                         "owner": d.owner_department, "health": "fault" if faulty.get(d.device_id) else "ok"})
    return sorted(near, key=lambda c: c["distance_m"])


def radius(raw: str | None, default: float = 300.0) -> float:
    try:
        r = float(raw) if raw not in (None, "") else default
    except ValueError:
        raise _bad("radius_m", "radius_m must be a number of metres 1..5000") from None
    if not 1 <= r <= 5000:
        raise _bad("radius_m", "radius_m must be a number of metres 1..5000")
    return r

