"""区域预警 on the hot path: what the fuse stage's question "which warnings does a new order
start under?" costs per new order, with no warning and with three holding (a district, a
street, a polygon), best of 5 × 50,000; and one record's verdict and its map outline.
Run: .venv/bin/python scripts/bench-area-warnings.py (docs/lifecycle.md "Area warnings")."""

import time
from datetime import UTC, datetime, timedelta

import orjson

from citybrain.config import Config
from citybrain.domain.area_warnings import AreaShapes, WarningBook, read_warning_record
from citybrain.wire.models import Location

config = Config()
shapes = AreaShapes(config.city_map)
now = datetime.now(UTC)
where = Location(lon=117.90989, lat=36.77375, district_code="370306", street_code="370306001",
                 community_code="370306001001", grid_code="370306001001001")


def record(wid: str, area: dict, kind: str = "rainstorm") -> bytes:
    return orjson.dumps({"warning_id": wid, "issuer": "淄博市气象台", "kind": kind, "level": "red", "area": area,
                         "valid_from": (now - timedelta(hours=1)).isoformat(),
                         "valid_to": (now + timedelta(hours=3)).isoformat(), "ts": now.isoformat()})


def per_order(book: WarningBook, n: int = 50_000) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            book.start("waterlogging", where, now)
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e9


print(f"无预警 no warning: {per_order(WarningBook(config.warnings)):,.0f} ns per new order")
book = WarningBook(config.warnings)
box = [[117.85, 36.70], [117.95, 36.70], [117.95, 36.80], [117.85, 36.80], [117.85, 36.70]]
for wid, area, kind in (("W1", {"district_codes": ["370306"]}, "rainstorm"), ("W2", {"street_codes": ["370302001"]}, "gale"),
                        ("W3", {"polygon": {"type": "Polygon", "coordinates": [box]}}, "flood")):
    book.apply(read_warning_record(wid.encode(), record(wid, area, kind), 65536, shapes))
print(f"三条预警 3 warnings (district, street, polygon; 2 cover the point): {per_order(book):,.0f} ns per new order")
t0 = time.perf_counter()
entry = read_warning_record(b"W9", record("W9", {"district_codes": ["370306", "370302"]}), 65536, shapes)
print(f"一条记录的判定 a two-district record's verdict: {(time.perf_counter() - t0) * 1000:.1f} ms")
assert entry.warning is not None
t0 = time.perf_counter()
geometry = entry.warning.geometry(shapes)
print(f"其区域轮廓 its GeoJSON outline: {(time.perf_counter() - t0) * 1000:.1f} ms, {len(orjson.dumps(geometry)):,} bytes")
