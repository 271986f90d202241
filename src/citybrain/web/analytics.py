"""研判 on the API.

- 高发 hotspots (domain.hotspots) over the worker's history store — every order of the last
  days, not only the live board's — or, on a worker without one, over the order view (open
  orders and those closed within days). Found again at most once a minute per worker; each
  worker finds the same from the same topic.
- The windows and trends (``Windows``): GET /api/v1/analytics/windows and /trends from the
  worker's window store (stream/analytics.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from citybrain.domain.aggregates import GRANULARITIES
from citybrain.domain.hotspots import HotspotConfig, Point, find
from citybrain.domain.trends import TrendSettings, baseline_days, trends
from citybrain.readmodels.history import HistoryStore
from citybrain.readmodels.orders import OrderView
from citybrain.readmodels.windows import WindowStore
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


# -- 研判 windows and trends (domain.aggregates, domain.trends) over the window store ----

MAX_WINDOWS = {"hour": 24 * 93, "day": 400}   # the longest span one request may ask, in windows
DAY = timedelta(days=1)


def _when(query: Mapping[str, str], name: str) -> datetime:
    raw = query.get(name)
    if not raw:
        raise Refused(400, "missing_field", f"{name} is required (ISO 8601 with an offset, e.g. "
                                            "2026-12-01T00:00:00+08:00)", name)
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise Refused(400, "invalid_field", f"{name} {raw!r} is not an ISO 8601 time", name) from None
    if at.tzinfo is None:
        raise Refused(400, "invalid_field", f"{name} {raw!r} needs an offset (+08:00 or Z)", name)
    return at


def _code(query: Mapping[str, str], name: str, known: Callable[[], Iterable[str]] | None = None,
          digits: int | None = None) -> str | None:
    value = query.get(name) or None
    if value is None:
        return None
    if digits is not None and not (len(value) == digits and value.isdigit()):
        raise Refused(400, "invalid_field", f"{name} must be a {digits}-digit code, not {value!r}", name)
    if known is not None and value not in set(known()):
        raise Refused(400, "invalid_field", f"{name} {value!r} is not in the taxonomy", name)
    return value


def _only(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = set(query) - set(allowed)
    if unknown:
        name = sorted(unknown)[0]
        raise Refused(400, "invalid_field", f"unknown parameter {name!r} ({', '.join(allowed)})", name)


class Windows:
    """GET /api/v1/analytics/windows and /api/v1/analytics/trends from a worker's window
    store (stream/analytics.py keeps it from workorders.events)."""

    def __init__(self, store: Callable[[], WindowStore | None], categories: Callable[[], list[str]],
                 complete: Callable[[], bool], trends: TrendSettings, timezone: str = "Asia/Shanghai"):
        self.store, self.categories, self.complete, self.settings = store, categories, complete, trends
        self.tz = ZoneInfo(timezone)

    def _store(self) -> WindowStore:
        store = self.store()
        if store is None:
            raise Refused(503, "unavailable", "this worker keeps no 研判 windows (started without a data directory)")
        return store

    async def answer_windows(self, query: Mapping[str, str]) -> dict:
        _only(query, ("granularity", "from", "to", "category", "district", "street"))
        granularity = query.get("granularity") or ""
        if granularity not in GRANULARITIES:
            raise Refused(400, "invalid_field", f"granularity must be hour or day, not {granularity!r}",
                          "granularity")
        start, end = _when(query, "from"), _when(query, "to")
        if end <= start:
            raise Refused(400, "invalid_field", "to must be later than from", "to")
        span = (end - start) / (DAY if granularity == "day" else timedelta(hours=1))
        if span > MAX_WINDOWS[granularity]:
            raise Refused(400, "invalid_field", f"at most {MAX_WINDOWS[granularity]} {granularity} windows "
                                                "in one request", "to")
        category = _code(query, "category", self.categories)
        district, street = _code(query, "district", digits=6), _code(query, "street", digits=9)
        store = self._store()
        items = await asyncio.to_thread(store.query, granularity, start.timestamp(), end.timestamp(),
                                        category, district, street)
        for item in items:
            del item["granularity"]
        return {"granularity": granularity, "from": start.isoformat(), "to": end.isoformat(),
                "complete": self.complete(), "items": items}

    async def answer_trends(self, query: Mapping[str, str]) -> dict:
        _only(query, ("date", "category", "district"))
        raw = query.get("date")
        if raw:
            try:
                day = date.fromisoformat(raw)
            except ValueError:
                raise Refused(400, "invalid_field", f"date {raw!r} is not YYYY-MM-DD", "date") from None
        else:
            day = datetime.now(self.tz).date()
        category = _code(query, "category", self.categories)
        district = _code(query, "district", digits=6)
        days = [day, *baseline_days(day, self.settings.weeks)]
        starts = {datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp(): d for d in days}
        rows = await asyncio.to_thread(self._store().opened_by_day, starts, category, district)
        counts = {(starts[ts], c, d): n for ts, c, d, n in rows}
        return {"date": day.isoformat(), "weeks": self.settings.weeks, "k": self.settings.k,
                "min_sd": self.settings.min_sd, "complete": self.complete(),
                "items": trends(day, counts, self.settings)}
