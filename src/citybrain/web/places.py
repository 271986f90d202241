"""立案 from the console (DESIGN §14): the address lookup (``GET /api/v1/places``), locating a
report that carries an address instead of lon/lat, and each category's limits for the
category picker (``GET /api/v1/meta``).  The routes themselves are methods of ``Api``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from citybrain.config import Config
from citybrain.domain.gazetteer import Gazetteer
from citybrain.web.auth import Principal, Refused

MAX_PLACES = 50
PLACES_PARAMETERS = {
    "q": "地址 free text: an address, a road, a place, a grid, community, street or district name",
    "limit": f"候选数 1..{MAX_PLACES} (10)",
}


def places_query(query: Mapping[str, str]) -> tuple[str, int]:
    """``q`` and ``limit`` of ``GET /api/v1/places``; any other parameter is a 400 naming it."""
    for name in query:
        if name not in PLACES_PARAMETERS:
            raise Refused(400, "invalid_field", f"unknown parameter {name!r}; places takes "
                          f"{', '.join(PLACES_PARAMETERS)}", name)
    q = query.get("q", "").strip()
    if not q:
        raise Refused(400, "missing_field", "q: the address text to look up", "q")
    if len(q) > 500:
        raise Refused(400, "invalid_field", "q: at most 500 characters", "q")
    raw = query.get("limit", "10")
    try:
        limit = int(raw)
    except ValueError:
        raise Refused(400, "invalid_field", f"limit: {raw!r} is not a whole number", "limit") from None
    if not 1 <= limit <= MAX_PLACES:
        raise Refused(400, "invalid_field", f"limit: 1..{MAX_PLACES}", "limit")
    return q, limit


def places_answer(gazetteer: Gazetteer, q: str, limit: int) -> dict[str, Any]:
    best = gazetteer.locate(q)
    return {"q": q, "candidates": [c.to_dict() for c in gazetteer.lookup(q, limit)],
            "located": best.to_dict() if best is not None else None,
            "note": "a road is found at its midpoint: house numbers are not resolved"}


def report_defaults(doc: dict[str, Any], p: Principal) -> None:
    """What the API fills in a report before validating it: a report id the server makes
    (``R-`` + a UUID) when none is given, and an operator's own id as ``reporter_id`` (a
    hotline caller is not a reporter id: their number goes in ``contact_phone``)."""
    if "report_id" not in doc:
        doc["report_id"] = f"R-{uuid.uuid4()}"
    if p.role == "operator":
        doc.setdefault("reporter_id", p.id)


class NeedsLocation(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def locate_report(doc: dict[str, Any], gazetteer: Gazetteer) -> dict[str, Any] | None:
    """A report with an ``address`` and no lon/lat: the gazetteer's point is filled in and
    returned as ``{name, kind, lon, lat}``; ``NeedsLocation`` when the address is not
    located unambiguously; None (nothing done) when the report has its own point or no
    address (validation then says what is missing)."""
    address = doc.get("address")
    if doc.get("lon") is not None or doc.get("lat") is not None or not isinstance(address, str):
        return None
    best = gazetteer.locate(address)
    if best is None:
        near = [c.name for c in gazetteer.lookup(address, 3)]
        raise NeedsLocation(f"address {address!r} could not be located unambiguously"
                            + (f" (candidates: {', '.join(near)})" if near else " (no known name in it)")
                            + "; give lon/lat, or an address naming a road, place, community or grid")
    doc["lon"], doc["lat"] = best.lon, best.lat
    return {"name": best.name, "kind": best.kind, "lon": best.lon, "lat": best.lat}


def category_limits(config: Config) -> dict[str, dict[str, Any]]:
    """Each category's default priority, department and time limits (config/categories.toml,
    config/lifecycle.toml: the category's own limits, else its priority's)."""
    out = {}
    for c in config.taxonomy.categories:
        lim = config.deadlines.limits(c.code, c.priority)
        out[c.code] = {"name": c.name_zh, "priority": c.priority, "department": c.department or None,
                       "time_limit_basis": lim.basis, "time_limit_hours": lim.total_hours,
                       "accept_limit_hours": lim.accept_hours, "handle_limit_hours": lim.handle_hours}
    return out
