"""The history routes (DESIGN §14): search over every order the worker's history store
holds (a year and more, not only the order view's open and recently closed orders), and
"same place, same category, last N days" for one order.  Scope as the lists: a
department, street desk or grid member finds only what it may see."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from citybrain.readmodels.history import SHORT_TERM_DAYS, HistoryFilters, HistoryStore
from citybrain.readmodels.orders import OrderView
from citybrain.web.auth import Principal, Refused, may_see, require
from citybrain.web.params import Vocabulary, order_query

HISTORY_PARAMETERS = {
    "q": "搜索 words (each a substring of id, description, address, report ids, finders; 3+ characters use "
         f"the trigram index, shorter ones a scan of the last {SHORT_TERM_DAYS} days unless created_from is given)",
    "category": "类别 category codes, comma-separated",
    "district": "区县 a district code",
    "status": "状态 statuses, comma-separated",
    "created_from": "立案起 RFC 3339 time (inclusive)",
    "created_to": "立案止 RFC 3339 time (exclusive)",
    "limit": "每页 1..500 (default 50)",
    "offset": "跳过 0..100,000",
}
NEARBY_LIMIT = 200   # the nearest; count == limit means there are more
NEARBY_PARAMETERS = {"radius_m": "半径 metres, 1..5000 (default 200)", "days": "天数 1..400 (default 30)"}


def _bad(field: str, detail: str) -> Refused:
    return Refused(400, "invalid_field", detail, field)


def _known(query: Mapping[str, str], allowed: Mapping[str, str]) -> None:
    getall = getattr(query, "getall", None)
    for name in query:
        if name not in allowed:
            raise _bad(name, f"unknown parameter {name!r}; this route takes {', '.join(allowed)}")
        if getall is not None and len(getall(name)) > 1:
            raise _bad(name, f"{name} is given more than once")


def _number(query: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise _bad(name, f"{name} must be a number {low:g}..{high:g}")
    return value


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


class HistoryRoutes:
    def __init__(self, store: HistoryStore | None, complete: Callable[[], bool], view: OrderView,
                 vocabulary: Callable[[], Vocabulary]):
        self.store, self.complete, self.view, self.vocabulary = store, complete, view, vocabulary

    def _store(self) -> HistoryStore:
        if self.store is None:
            raise Refused(503, "no_history", "this worker keeps no history store (it runs without a data dir)")
        return self.store

    async def search(self, p: Principal, query: Mapping[str, str]) -> dict:
        require(p, "operator", "department", "street", "grid")
        _known(query, HISTORY_PARAMETERS)
        q = order_query(query, p, self.vocabulary(), allowed=lambda name: name in HISTORY_PARAMETERS)
        store = self._store()
        filters = HistoryFilters(
            status=q.status, category=q.category, district=q.district, department=q.department, grid=q.grid,
            created_from=q.created_from.timestamp() if q.created_from else None,
            created_to=q.created_to.timestamp() if q.created_to else None, scope=q.scope)
        started = time.perf_counter()
        found = await asyncio.to_thread(store.search, q.q, filters, q.limit, q.offset)
        return {"items": found.items, "total": found.total, "limit": q.limit, "offset": q.offset,
                "search": found.mode, "created_from": _iso(found.created_from), "complete": self.complete(),
                "took_ms": round((time.perf_counter() - started) * 1000, 2)}

    async def nearby(self, p: Principal, wo: str, query: Mapping[str, str]) -> dict:
        require(p, "operator", "department", "street", "grid")
        _known(query, NEARBY_PARAMETERS)
        radius = _number(query, "radius_m", 200.0, 1.0, 5000.0)
        days = _number(query, "days", 30.0, 1.0, 400.0)
        store = self._store()
        snap = self.view.snapshot(wo) or await asyncio.to_thread(store.get, wo)
        if snap is None:
            raise Refused(404, "not_found", f"no work order {wo}", "id")
        if not may_see(p, snap):
            raise Refused(403, "out_of_scope", f"{p.role} {p.id} may not see {wo}", "id")
        loc = snap.get("location") or {}
        if loc.get("lon") is None or loc.get("lat") is None:
            raise Refused(422, "no_location", f"{wo} has no point to search around", "id")
        # The last N days, counted back from now — or from the order's creation when the
        # order itself is older (what happened there before it).
        created = datetime.fromisoformat(snap["created_at"]).timestamp()
        since = min(time.time(), created) - days * 86400
        items = await asyncio.to_thread(store.nearby, loc["lon"], loc["lat"], radius, snap.get("category"),
                                        days, wo, since=since, scope=p.scope(), limit=NEARBY_LIMIT)
        return {"work_order_id": wo, "category": snap.get("category"), "lon": loc["lon"], "lat": loc["lat"],
                "radius_m": radius, "days": days, "since": _iso(since), "items": items, "count": len(items),
                "limit": NEARBY_LIMIT,
                "complete": self.complete()}
