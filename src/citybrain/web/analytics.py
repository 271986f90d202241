"""研判 on the API: 高发 hotspots (domain.hotspots) over the worker's history store — every
order of the last days, not only the live board's — or, on a worker without one, over the
order view (open orders and those closed within days). Found again at most once a
minute per worker; each worker finds the same from the same topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from citybrain.domain.hotspots import HotspotConfig, Point, find
from citybrain.readmodels.history import HistoryStore
from citybrain.readmodels.orders import OrderView
from citybrain.web.auth import Refused

REFRESH_SECONDS = 60.0


class Hotspots:
    def __init__(self, config: HotspotConfig, categories: Callable[[], list[str]], view: OrderView,
                 store: Callable[[], HistoryStore | None]):
        self.config, self.categories, self.view, self.store = config, categories, view, store
        self._found: tuple[float, str, list[dict]] | None = None
        self._lock = asyncio.Lock()

    def _points(self, now: float) -> tuple[str, dict[str, list[Point]]]:
        longest = max([self.config.default.days, *(r.days for r in self.config.categories.values())])
        since = now - longest * 86400
        by_category: dict[str, list[Point]] = {}
        store = self.store()
        if store is not None:
            for wo, category, lon, lat, created, street in store.points(since):
                by_category.setdefault(category, []).append(Point(wo, lon, lat, created, street or ""))
            return "history", by_category
        for wo, e in self.view.orders.items():
            if e.created_ts >= since and e.status not in ("cancelled", "merged"):
                by_category.setdefault(e.category, []).append(Point(wo, e.lon, e.lat, e.created_ts, e.street_code))
        return "view", by_category

    def _compute(self, now: float) -> tuple[str, list[dict]]:
        source, by_category = self._points(now)
        found = []
        for category, points in sorted(by_category.items()):
            rule = self.config.rule(category)
            found += [h.to_dict() | {"min_orders": rule.min_orders, "days": rule.days}
                      for h in find(category, points, rule, now)]
        found.sort(key=lambda h: (-h["count"], h["hotspot_id"]))
        return source, found

    async def answer(self, query: Mapping[str, str]) -> dict:
        unknown = set(query) - {"category", "district"}
        if unknown:
            name = sorted(unknown)[0]
            raise Refused(400, "invalid_field", f"unknown parameter {name!r} (category, district)", name)
        category, district = query.get("category") or None, query.get("district") or None
        if category is not None and category not in self.categories():
            raise Refused(400, "invalid_field", f"category {category!r} is not in the taxonomy", "category")
        async with self._lock:
            now = time.time()
            if self._found is None or now - self._found[0] >= REFRESH_SECONDS:
                started = time.monotonic()
                source, found = await asyncio.to_thread(self._compute, now)
                self._found = (now, source, found)
                self.took_ms = round((time.monotonic() - started) * 1000, 1)
        at, source, found = self._found
        shown = [h for h in found if (category is None or h["category"] == category)
                 and (district is None or h["district_code"] == district)]
        return {"hotspots": shown, "total": len(shown), "source": source, "computed_at": at,
                "took_ms": self.took_ms, "rules": {"default": self.config.default.model_dump(),
                                                   **{c: r.model_dump() for c, r in self.config.categories.items()}}}
