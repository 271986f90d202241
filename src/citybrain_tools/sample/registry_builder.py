"""Builds the SAMPLE device/camera registry (一源一码): ``config/registry/devices.jsonl``.

150 sensors of every sensor type and 200 cameras at random points inside Zhoucun, the
scenario devices of ``sites.py``, and in each of the city's other districts 10 sensors
of every type and 40 cameras (ids ``<type>-<district code>-<n>``); deterministic for
the seed.
Run ``citybrain sample build-registry`` to regenerate.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from shapely.geometry import Point, Polygon

from citybrain.wire.jsonl import read_records
from citybrain_tools.sample.city_builder import DISTRICT_CODE, DISTRICT_OUTLINE, district_shapes
from citybrain_tools.sample.sites import GATEWAY_GAUGE, GATEWAY_INTERVAL, SCENARIO_DEVICES

SENSOR_ABBR = {
    "water_level": "WLV", "manhole_tilt": "MHT", "smoke": "SMK", "residual_current": "RCM",
    "cable_temperature": "CBT", "gas_lel": "GAS", "pm25": "PM25", "pm10": "PM10",
    "noise_db": "NOI", "water_ph": "PH", "water_turbidity": "TUR",
    "streetlight_status": "SLT", "pipe_pressure": "PIP", "bin_fill": "BIN",
}
SENSOR_NAME = {
    "water_level": "积水监测仪", "manhole_tilt": "智能井盖", "smoke": "独立式烟感",
    "residual_current": "剩余电流监测", "cable_temperature": "线缆测温", "gas_lel": "可燃气体探测器",
    "pm25": "PM2.5微站", "pm10": "PM10微站", "noise_db": "噪声监测仪", "water_ph": "水质pH监测",
    "water_turbidity": "浊度监测", "streetlight_status": "智慧路灯", "pipe_pressure": "管网压力计",
    "bin_fill": "智能垃圾桶",
}
# Asset owners that differ from the category default (the registry wins in routing).
OWNER_SHARE = {"cable_temperature": ("power_utility", 0.3), "gas_lel": ("gas_utility", 0.5),
               "streetlight_status": ("power_utility", 1.0), "pipe_pressure": ("water", 1.0)}
PER_SENSOR_TYPE = 150
CAMERAS = 200
RETIRED_EVERY = 250  # a few retired devices, so `retired_device` has real examples
NEIGHBOUR_PER_SENSOR_TYPE = 10
NEIGHBOUR_CAMERAS = 40


def build(seed: int = 20261122) -> list[dict]:
    rng = random.Random(seed)
    district = Polygon(DISTRICT_OUTLINE)
    minx, miny, maxx, maxy = district.bounds

    # Keep 50 m inside the outline so devices are never on the border.
    point = _points(rng, district.buffer(-0.0005), (minx, miny, maxx, maxy))
    records: list[dict] = []
    n = 0
    for sensor_type, abbr in SENSOR_ABBR.items():
        for i in range(1, PER_SENSOR_TYPE + 1):
            n += 1
            records.append(_sensor(rng, f"{abbr}-{i:05d}", sensor_type, point(),
                                   "retired" if n % RETIRED_EVERY == 0 else "active"))
    for i in range(1, CAMERAS + 1):
        records.append(_camera(f"CAM-{i:05d}", point()))
    for device_id, kind, scenario_type, site, east, north, owner in SCENARIO_DEVICES:
        lon, lat = site.offset(east, north)
        rec = {"device_id": device_id, "kind": kind, "name": f"{site.name} {device_id}",
               "lon": lon, "lat": lat, "status": "active"}
        if scenario_type:
            rec["sensor_type"] = scenario_type
        if owner:
            rec["owner_department"] = owner
        if device_id == GATEWAY_GAUGE:
            rec["interval_seconds"] = GATEWAY_INTERVAL
        records.append(rec)
    records += _neighbours(random.Random(seed + 1))
    return records


def _neighbours(rng: random.Random) -> list[dict]:
    """The other districts' devices (a separate random stream: Zhoucun's stay put)."""
    out = []
    for code, (_, geom) in district_shapes().items():
        if code == DISTRICT_CODE:
            continue
        inner = geom.buffer(-0.0005)
        point = _points(rng, inner, inner.bounds)
        for sensor_type, abbr in SENSOR_ABBR.items():
            for i in range(1, NEIGHBOUR_PER_SENSOR_TYPE + 1):
                out.append(_sensor(rng, f"{abbr}-{code}-{i:03d}", sensor_type, point()))
        for i in range(1, NEIGHBOUR_CAMERAS + 1):
            out.append(_camera(f"CAM-{code}-{i:03d}", point()))
    return out


def _points(rng: random.Random, inside, bounds) -> Callable[[], tuple[float, float]]:
    """Random points inside ``inside`` drawn from its ``bounds`` (6 decimals)."""
    minx, miny, maxx, maxy = bounds

    def point() -> tuple[float, float]:
        while True:
            lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            if inside.contains(Point(lon, lat)):
                return round(lon, 6), round(lat, 6)
    return point


def _sensor(rng: random.Random, device_id: str, sensor_type: str, where: tuple[float, float],
            status: str = "active") -> dict:
    rec = {"device_id": device_id, "kind": "sensor", "sensor_type": sensor_type,
           "name": f"{SENSOR_NAME[sensor_type]} {device_id}", "lon": where[0], "lat": where[1], "status": status}
    owner = OWNER_SHARE.get(sensor_type)
    if owner and rng.random() < owner[1]:
        rec["owner_department"] = owner[0]
    return rec


def _camera(device_id: str, where: tuple[float, float]) -> dict:
    return {"device_id": device_id, "kind": "camera", "name": f"视频监控点 {device_id}",
            "lon": where[0], "lat": where[1], "status": "active"}


def write(path: Path, seed: int = 20261122) -> int:
    records = build(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("")
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
    return len(records)


def load(path: Path) -> list[dict]:
    return read_records(path)
