"""区域预警 on the API: the area warnings holding now, each a GeoJSON Feature whose geometry is
its whole area (districts and streets as the city's outlines, and its polygon), for the
console's map layer (``GET /api/v1/warnings``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from citybrain.config import Config
from citybrain.domain.area_warnings import AreaShapes, HeldWarning, WarningBook
from citybrain.web.auth import Refused
from citybrain.wire.enums import WARNING_KIND_ZH, WARNING_RANK, WARNING_ZH


class WarningLayer:
    def __init__(self, book: WarningBook, shapes: AreaShapes):
        self.book, self.shapes = book, shapes
        self._geometry: dict[str, dict[str, Any]] = {}   # record JSON → its area's GeoJSON

    @classmethod
    def empty(cls, config: Config) -> WarningLayer:
        """An API without a worker (its tests): no warnings."""
        return cls(WarningBook(config.warnings), AreaShapes(config.city_map))

    def feature(self, w: HeldWarning) -> dict[str, Any]:
        r = w.record
        key = r.model_dump_json()
        geometry = self._geometry.get(key)
        if geometry is None:
            if len(self._geometry) > 256:   # amendments of long-gone warnings
                self._geometry.clear()
            geometry = self._geometry[key] = w.geometry(self.shapes)
        rule = self.book.rules.kind.get(r.kind)
        return {"type": "Feature", "id": r.warning_id, "geometry": geometry, "properties": {
            "warning_id": r.warning_id, "issuer": r.issuer, "kind": r.kind, "kind_zh": WARNING_KIND_ZH[r.kind],
            "level": r.level, "level_zh": WARNING_ZH[r.level], "label": w.label(), "title": r.title,
            "valid_from": r.valid_from.isoformat(), "valid_to": r.valid_to.isoformat(), "ts": r.ts.isoformat(),
            "area": r.area.model_dump(exclude_none=True),
            "categories": list(rule.categories) if rule else [],
            "new_orders_from": rule.new_orders_from if rule else None,
            "open_orders_from": rule.open_orders_from if rule else None}}

    def answer(self, query: Mapping[str, str], now: float) -> dict[str, Any]:
        unknown = sorted(set(query))
        if unknown:
            raise Refused(400, "invalid_field", f"unknown parameter {unknown[0]!r} (none are taken)", unknown[0])
        at = datetime.fromtimestamp(now, UTC)
        held = sorted(self.book.holding(at), key=lambda w: (-WARNING_RANK[w.level], w.warning_id))
        return {"type": "FeatureCollection", "at": at.isoformat(timespec="seconds"),
                "total": len(held), "features": [self.feature(w) for w in held]}
