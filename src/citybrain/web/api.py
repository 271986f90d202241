"""The HTTP API (DESIGN §7) and the console's static files, as aiohttp routes on the
worker's web server.  Bodies are validated with the wire models of the topics; every
error is JSON naming the field at fault; every auth refusal is counted and logged
without the token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import orjson
from aiohttp import web
from pydantic import ValidationError

from citybrain import metrics
from citybrain.config import Config
from citybrain.domain import followup
from citybrain.domain.device_health import device_rates, registered_devices
from citybrain.domain.evaluation import Evaluation
from citybrain.domain.lifecycle import IRREVERSIBLE, RULES
from citybrain.domain.normalize import IngestLimits, extra_nested_too_deep, field_path
from citybrain.kafka.topics import MEDIA_RECORD_BYTES, Topics
from citybrain.readmodels.orders import OrderView
from citybrain.readmodels.query import OrderQuery
from citybrain.web import maplayers
from citybrain.web.analytics import Hotspots, Windows
from citybrain.web.auth import Principal, Refused, ReloadingTokens, TokenRegistry, may_see, require
from citybrain.web.history import HistoryRoutes
from citybrain.web.limits import RequestRate, StreamSlots
from citybrain.web.media import MediaRoutes, MediaStore
from citybrain.web.open311 import Open311
from citybrain.web.params import PARAMETERS, Vocabulary, order_query
from citybrain.web.places import (
    NeedsLocation,
    category_limits,
    locate_report,
    places_answer,
    places_query,
    report_defaults,
)
from citybrain.web.sink import KafkaSink, RecordSink
from citybrain.web.warnings import WarningLayer
from citybrain.wire import enums
from citybrain.wire.models import WORK_ORDER_STATUSES, Command, IncidentReport, WorkOrder

log = logging.getLogger("citybrain.api")
MAX_BODY = 64 * 1024
STATUSES = frozenset(WORK_ORDER_STATUSES)
EMERGENCY_LEVELS = {"I", "II", "III", "IV", "none"}
STATIC = Path(str(resources.files("citybrain.web") / "static"))


def _json(body, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, reason: str, detail: str, field: str | None = None, errors: list | None = None):
    body = {"error": {"status": status, "reason": reason, "detail": detail, "field": field}}
    if errors:
        body["error"]["errors"] = errors
    return _json(body, status)


def _validation(e: ValidationError) -> web.Response:
    errors = [{"field": field_path(err["loc"]), "message": err["msg"]} for err in e.errors(include_url=False)]
    return error_response(422, "invalid_field", f"{errors[0]['field']}: {errors[0]['message']}", errors[0]["field"], errors)


def _refuse_unreadable_requests() -> None:
    """A request aiohttp cannot even parse (a header over 8,190 bytes, bytes no header may
    hold, not HTTP) is answered before any route: by default with the parser's message,
    which quotes the offending bytes — an Authorization header among them — in the 400
    and in the log line. Answer it as JSON and log only what kind of error it was."""
    from aiohttp import web_protocol

    original = web_protocol.RequestHandler.handle_error
    if getattr(original, "citybrain", False):
        return

    def handle_error(self, request, status=500, exc=None, message=None):
        if status >= 500:
            return original(self, request, status, exc, message)
        log.warning("无法解析的请求 unreadable request from %s: %s (%d; the bytes are not logged)",
                    request.remote, type(exc).__name__ if exc is not None else "bad request", status)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already; cannot send the error")
        response = error_response(status, "bad_request", "the request could not be read (a header too long or "
                          "malformed, or not HTTP)")
        response.force_close()
        return response

    handle_error.citybrain = True  # type: ignore[attr-defined]
    web_protocol.RequestHandler.handle_error = handle_error  # type: ignore[method-assign]


class Api:
    history: HistoryRoutes | None = None   # set by attach_history on a worker with a data dir
    warning_layer: WarningLayer | None = None   # 区域预警: set by the worker (its copy of ingest.warnings)

    def __init__(self, config: Config, topics: Topics, bootstrap: str, view: OrderView,
                 evaluation: Evaluation, tokens: TokenRegistry | ReloadingTokens, city_map, ready,
                 devices=lambda: (), sink: RecordSink | None = None, media_sink: RecordSink | None = None,
                 clock: Callable[[], float] = time.time):
        self.config, self.topics, self.bootstrap = config, topics, bootstrap
        self.view, self.evaluation, self.tokens, self.city, self.ready = view, evaluation, tokens, city_map, ready
        self.clock = clock   # wall-clock seconds: overdue, command stamps (a fake in tests/functional)
        self.devices = devices     # the registry's devices (for 设备完好率)
        # 完好率 and 联网率 (domain/device_health.py): the worker's views; without them (tests
        # of the API alone) the registry and the evaluation's faults, nothing heard.
        self.device_health: Callable[[], dict[str, dict[str, dict]]] = self._device_health_alone
        self._device_places: dict[str, tuple[float, float, str]] = {}
        self.departments = config.desks
        # Reports and commands; photos (larger records) on a producer of their own.
        self.sink: RecordSink = sink or KafkaSink(bootstrap, "citybrain-api", linger_ms=1)
        self.media_sink: RecordSink = media_sink or KafkaSink(
            bootstrap, "citybrain-api-media", max_request_size=MEDIA_RECORD_BYTES + 64 * 1024)
        self.media: MediaRoutes | None = None     # set by attach_media on a worker with a data dir
        self.hotspots: Hotspots | None = None     # made on first use
        self.windows = Windows(lambda: None, lambda: [], lambda: False, config.analytics.trends)   # attach_windows
        limits = config.settings.api
        self.rate = RequestRate(limits.requests_per_second, limits.request_burst)
        self.streams = StreamSlots(limits.max_streams_per_token)

    # -- plumbing ----------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def install(self, app: web.Application) -> None:
        _refuse_unreadable_requests()
        app.middlewares.append(self.middleware)
        r = app.router
        r.add_get("/", self.console)
        r.add_get("/department", self.console)
        r.add_static("/static/", STATIC)
        r.add_get("/city.geojson", self.city_layer)
        r.add_get("/api/v1/meta", self.meta)
        r.add_post("/api/v1/reports", self.post_report)
        r.add_get("/api/v1/reports/{report_id}", self.get_report)
        r.add_get("/api/v1/workorders", self.list_orders)
        r.add_get("/api/v1/workorders/facets", self.facets)
        r.add_get("/api/v1/workorders/map", self.order_map)
        r.add_get("/api/v1/workorders/{id}/cameras", self.cameras_near_order)
        r.add_get("/api/v1/devices", self.device_layer)
        r.add_get("/api/v1/hotspots", self.hotspot_layer)
        r.add_get("/api/v1/warnings", self.area_warnings)
        r.add_get("/api/v1/analytics/windows", self.analytics_windows)
        r.add_get("/api/v1/analytics/trends", self.analytics_trends)
        r.add_get("/api/v1/workorders/{id}", self.get_order)
        r.add_post("/api/v1/workorders/{id}/commands", self.post_command)
        r.add_get("/api/v1/stream", self.stream)
        r.add_post("/api/v1/media", self.post_media)
        r.add_get("/api/v1/media/{name}", self.get_media)
        r.add_get("/api/v1/kpis", self.kpis)
        r.add_get("/api/v1/history", self.search_history)
        r.add_get("/api/v1/workorders/{id}/nearby", self.nearby_orders)
        r.add_get("/api/v1/places", self.places)
        Open311(self).install(r)   # GeoReport v2 under /open311 (web/open311.py)

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            response = await handler(request)
        except Refused as r:
            if r.status in (401, 403, 429):
                metrics.child(metrics.AUTH_REFUSALS, r.reason).inc()
                log.warning("拒绝访问 refused %s %s: %s (%s)", request.method, route, r.reason, r.detail)
            response = error_response(r.status, r.reason, r.detail, r.field)
            if r.retry_after is not None:
                response.headers["Retry-After"] = str(max(1, math.ceil(r.retry_after)))
        except web.HTTPRequestEntityTooLarge:
            response = error_response(413, "too_large", f"the body is larger than {MAX_BODY} bytes", "body")
        except web.HTTPException as e:
            if e.status == 404:
                response = error_response(404, "not_found", f"no route {request.method} {request.path}")
            elif e.status == 405:
                response = error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}")
            else:
                response = error_response(e.status, "http_error", e.reason)
        if not isinstance(response, web.StreamResponse) or not response.prepared:
            metrics.child(metrics.API_REQUESTS, route, str(response.status)).inc()
        return response

    def principal(self, request: web.Request) -> Principal:
        p = self.tokens.authenticate(request.headers.get("Authorization"))
        wait = self.rate.wait(p.id)
        if wait > 0:
            raise Refused(429, "rate_limited", f"more than {self.rate.rate:g} requests a second with this token",
                          "Authorization", retry_after=wait)
        return p

    async def _body(self, request: web.Request) -> dict:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        raw = await request.read()
        if len(raw) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise Refused(400, "not_json", f"the body is not JSON: {e}", "body") from e
        if not isinstance(doc, dict):
            raise Refused(400, "not_object", "the body must be a JSON object", "body")
        return doc

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        await self.sink.send(topic, key, value)   # 202 means: in Kafka

    async def close(self) -> None:
        # Open consoles are told the worker is stopping (not that their network failed).
        for q in list(self.view.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait({"kind": "shutdown", "id": self.view.event_id()})
        await asyncio.sleep(0.2)     # the streams write it before the server closes them
        await self.sink.close()
        await self.media_sink.close()

    # -- media (web.media) ---------------------------------------------------------

    def attach_media(self, store: MediaStore) -> None:
        self.media = MediaRoutes(store, self._send_media, self.view.orders_with_media)

    async def _send_media(self, sha: str, data: bytes) -> None:
        await self.media_sink.send(self.topics.media, sha.encode(), data)

    def _media(self) -> MediaRoutes:
        if self.media is None:
            raise Refused(503, "unavailable", "this worker keeps no media (started without a data directory)")
        return self.media

    async def post_media(self, request: web.Request) -> web.Response:
        """A photo for a case: its bytes as the body (image/jpeg, png or webp, ≤ 5 MiB)."""
        p = self.principal(request)
        require(p, "operator", "grid", "gateway")
        return _json(await self._media().upload(request, p), 201)

    async def get_media(self, request: web.Request) -> web.StreamResponse:
        p = self.principal(request)
        require(p, "operator", "department", "street", "grid", "gateway")
        return self._media().serve(request, p)

    # -- routes ------------------------------------------------------------------

    async def console(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def city_layer(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.config.directory / self.config.settings.city.geography,
                                headers={"Content-Type": "application/geo+json"})

    async def meta(self, request: web.Request) -> web.Response:
        p = self.principal(request)
        streets = self.city.street_names
        return _json({"me": p.public(), "departments": self.departments,
                      "categories": {c.code: c.name_zh for c in self.config.taxonomy.categories},
                      "category_limits": category_limits(self.config),
                      "streets": streets, "districts": self.city.district_names,
                      "city": {"code": self.city.city_code, "name": self.city.city_name},
                      "statuses": sorted(STATUSES),
                      # every enumeration in its order, with its 中文 labels (wire/enums.py): the
                      # console spells none of them itself
                      "enums": {**enums.for_console(), "irreversible": sorted(IRREVERSIBLE)},
                      "tile_url": self.config.settings.console.tile_url,
                      "view_ready": self.ready()})

    async def post_report(self, request: web.Request) -> web.Response:
        p = self.principal(request)
        require(p, "operator", "grid", "gateway")
        doc = await self._body(request)
        report_defaults(doc, p)   # report_id made here when omitted; an operator reports as itself
        try:   # an address without lon/lat: the gazetteer's point (立案 from the console)
            located = locate_report(doc, self.config.gazetteer)
        except NeedsLocation as e:
            return error_response(422, "needs_location", e.detail, "address")
        if p.role == "grid":
            doc.setdefault("reporter_id", p.id)
            if doc["reporter_id"] != p.id:
                raise Refused(403, "out_of_scope", f"a grid member reports as itself ({p.id})", "reporter_id")
        now = self.now()
        doc.setdefault("ts", now.isoformat())
        # What the pipeline would refuse is refused here, with the field (not a 202 and a
        # dead letter later).
        too_deep = extra_nested_too_deep(doc, IncidentReport, IngestLimits.max_extra_depth)
        if too_deep is not None:
            return error_response(422, "invalid_field", f"extra field {too_deep!r} is nested more than "
                          f"{IngestLimits.max_extra_depth} levels deep", too_deep)
        try:
            report = IncidentReport.model_validate(doc)
        except ValidationError as e:
            return _validation(e)
        if report.external_ref is not None and p.role != "gateway":
            # another platform's case id (docs/integration.md): only its gateway hands cases over
            raise Refused(403, "forbidden_role", "external_ref: only a gateway token hands over another "
                          "platform's case", "external_ref")
        if report.lon is None or report.lat is None:
            return error_response(422, "missing_field", "lon and lat: a point (or, without them, an address the gazetteer "
                          "locates)", "lon" if report.lon is None else "lat")
        if self.config.taxonomy.category(report.category) is None:
            return error_response(422, "unknown_category", f"category {report.category!r} is not in the taxonomy",
                          "category")
        ahead = (report.ts - now).total_seconds()
        if ahead > self.config.settings.ingest.max_future_seconds:
            return error_response(422, "future_timestamp", f"ts is {ahead:.0f}s in the future", "ts")
        place = self.city.locate(report.lon, report.lat)
        if place is None:
            return error_response(422, "out_of_area", f"({report.lon}, {report.lat}) is outside every grid", "lon")
        if report.grid_code is not None and self.city.grid(report.grid_code) is None:
            return error_response(422, "invalid_field", f"grid_code {report.grid_code} is not a grid of this city",
                          "grid_code")
        grid = report.grid_code or place.grid_code
        if p.role == "grid":
            # Scope is judged on where the point is, not on the grid the app names.
            if not place.grid_code.startswith(p.grid_scope):
                raise Refused(403, "out_of_scope", f"the point lies in grid {place.grid_code}, outside "
                              f"{p.grid_prefix}", "lon")
            if not grid.startswith(p.grid_scope):
                raise Refused(403, "out_of_scope", f"grid {grid} is outside {p.grid_prefix}", "grid_code")
        await self._send(self.topics.reports, report.reporter_id.encode(), orjson.dumps(doc))
        accepted = {"report_id": report.report_id, "grid_code": grid, "status": "accepted"}
        return _json({**accepted, "located": located} if located else accepted, 202)

    async def places(self, request: web.Request) -> web.Response:
        """地址 lookup: ranked candidates for free address text (the gazetteer)."""
        p = self.principal(request)
        require(p, "operator", "grid", "gateway", "department", "street")
        q, limit = places_query(request.query)
        return _json(places_answer(self.config.gazetteer, q, limit))

    async def get_report(self, request: web.Request) -> web.Response:
        """反馈: what became of one report, for the reporter's app (a grid member within its
        prefix, or the gateway that relays citizens' apps)."""
        p = self.principal(request)
        require(p, "operator", "grid", "gateway")
        rid = request.match_info["report_id"]
        wo = self.view.by_report.get(rid)
        snap = self.view.snapshot(wo) if wo else None
        if wo is None or snap is None:
            raise Refused(404, "not_found", f"report {rid} is on no work order (yet: a report joins one "
                          "within seconds of its acceptance — or it was refused, see the dead letters)", "report_id")
        if p.role == "grid" and not may_see(p, snap):
            raise Refused(403, "out_of_scope", f"grid member sees only reports within {p.grid_prefix}…", "report_id")
        shown = ("created", "dispatched", "accepted", "handled", "verified", "verification_rejected", "cancelled",
                 "returned", "visited", "escalated")
        steps = [{"at": e["at"], "type": e["type"], "label": e["label"], "status": e["status"]}
                 for e in self.view.timeline(wo) if e["kind"] == "change" and e["type"] in shown]
        return _json({"report_id": rid, "work_order_id": wo, "status": snap["status"],
                      "status_zh": followup.STATUS_ZH.get(snap["status"], snap["status"]),
                      "category": snap["category"], "category_name": snap["category_name"],
                      "department": snap.get("department"), "closed_at": snap.get("closed_at"),
                      "visits": [v for v in snap.get("visits") or () if v.get("report_id") in (None, rid)],
                      "steps": steps})

    def _vocabulary(self) -> Vocabulary:
        return Vocabulary(categories=[c.code for c in self.config.taxonomy.categories],
                          departments=self.departments, districts=self.city.district_names)

    def _list_query(self, request: web.Request, p: Principal, **fixed) -> OrderQuery:
        require(p, "operator", "department", "street", "grid")
        q = order_query(request.query, p, self._vocabulary())
        return replace(q, **fixed) if fixed else q

    def _item(self, snap: dict, now: float) -> dict:
        due = self.view.overdue_at(snap["work_order_id"])
        followup = self.view.followup_at(snap["work_order_id"])
        return {**snap, "overdue": due is not None and now > due,
                "overdue_at": datetime.fromtimestamp(due, UTC).isoformat() if due is not None else None,
                "followup_due_at": datetime.fromtimestamp(followup, UTC).isoformat() if followup is not None else None}

    async def list_orders(self, request: web.Request) -> web.Response:
        """A page of the orders matching every filter, with the exact total (and facet
        counts with facets=true): the board is whole at any volume."""
        p = self.principal(request)
        q = self._list_query(request, p)
        now = self.clock()
        page = self.view.query(q, now=now)
        body = {"items": [self._item(s, now) for s in page.items], "total": page.total,
                "next_cursor": page.next_cursor, "offset": q.offset, "limit": q.limit, "sort": q.sort,
                "event_id": self.view.event_id()}
        if page.facets is not None:
            body["facets"] = page.facets
        return _json(body)

    async def order_map(self, request: web.Request) -> web.Response:
        """The matching orders as map clusters (the list's filters, plus zoom and bbox)."""
        p = self.principal(request)
        require(p, "operator", "department", "street", "grid")
        q = order_query(request.query, p, self._vocabulary(), allowed=lambda n: n in PARAMETERS or n in (
            "zoom", "bbox"))
        total, cells = self.view.clusters(q, maplayers.cell_degrees(request.query.get("zoom")),
                                          maplayers.parse_bbox(request.query.get("bbox")))
        return _json({"total": total, "cells": cells, "event_id": self.view.event_id()})

    async def hotspot_layer(self, request: web.Request) -> web.Response:
        """高发 hotspots (web.analytics): the same category again and again at one place."""
        p = self.principal(request)
        require(p, "operator")
        if self.hotspots is None:
            self.hotspots = Hotspots(self.config.hotspots, lambda: [c.code for c in self.config.taxonomy.categories],
                                     self.view, lambda: self.history.store if self.history is not None else None)
        return _json(await self.hotspots.answer(request.query))

    def attach_windows(self, store, complete) -> None:
        """研判 windows (readmodels.windows, kept by stream.analytics) behind /api/v1/analytics/*."""
        self.windows = Windows(lambda: store, lambda: [c.code for c in self.config.taxonomy.categories],
                               complete, self.config.analytics.trends, self.config.analytics.windows.timezone)

    async def analytics_windows(self, request: web.Request) -> web.Response:
        require(self.principal(request), "operator")
        return _json(await self.windows.answer_windows(request.query))

    async def analytics_trends(self, request: web.Request) -> web.Response:
        require(self.principal(request), "operator")
        return _json(await self.windows.answer_trends(request.query))

    async def area_warnings(self, request: web.Request) -> web.Response:
        """区域预警 holding now, each a GeoJSON Feature of its whole area (web/warnings.py)."""
        require(self.principal(request), "operator", "department", "street", "grid")
        if self.warning_layer is None:
            self.warning_layer = WarningLayer.empty(self.config)
        return _json(self.warning_layer.answer(request.query, self.clock()))

    async def device_layer(self, request: web.Request) -> web.Response:
        """Registered devices and cameras within the map's bounds, with their health (an
        open 设备故障 order naming one is a fault)."""
        p = self.principal(request)
        require(p, "operator", "department", "street")
        unknown = set(request.query) - {"kind", "bbox"}
        if unknown:
            raise Refused(400, "invalid_field", f"unknown parameter {sorted(unknown)[0]!r} (kind, bbox)",
                          sorted(unknown)[0])
        return _json(maplayers.devices_in(self.devices(), self.view.faulty, request.query.get("kind") or None,
                                          maplayers.parse_bbox(request.query.get("bbox"))))

    async def cameras_near_order(self, request: web.Request) -> web.Response:
        """The cameras within radius_m (default 300) of an order, nearest first: who can look."""
        p = self.principal(request)
        require(p, "operator", "department", "street", "grid")
        wo, snap = self._order_in_scope(request, p)
        unknown = set(request.query) - {"radius_m"}
        if unknown:
            raise Refused(400, "invalid_field", f"unknown parameter {sorted(unknown)[0]!r} (radius_m)",
                          sorted(unknown)[0])
        r = maplayers.radius(request.query.get("radius_m"))
        loc = snap["location"]
        near = maplayers.cameras_near(self.devices(), self.view.faulty, loc["lon"], loc["lat"], r)
        return _json({"work_order_id": wo, "radius_m": r, "cameras": near})

    async def facets(self, request: web.Request) -> web.Response:
        """Counts by every dimension for the same filters as a list, in one call."""
        p = self.principal(request)
        q = self._list_query(request, p, facets=True, limit=1, offset=0, cursor=None)
        page = self.view.query(q, now=self.clock())
        return _json({"total": page.total, "facets": page.facets, "event_id": self.view.event_id()})

    def _with_overdue(self, snap: dict, now: datetime) -> dict:
        return {**snap, "overdue": self.config.deadlines.overdue(WorkOrder.model_validate(snap), now)}

    def _order_in_scope(self, request: web.Request, p: Principal) -> tuple[str, dict]:
        wo = request.match_info["id"]
        snap = self.view.snapshot(wo)
        if snap is None:
            raise Refused(404, "not_found", f"no work order {wo}", "id")
        if not may_see(p, snap):
            raise Refused(403, "out_of_scope", f"{p.role} {p.id} may not see {wo}", "id")
        return wo, snap

    async def get_order(self, request: web.Request) -> web.Response:
        """The order and its timeline; an order the view no longer holds (closed long ago)
        comes from the history store, as it ended, with no timeline (``from_history``)."""
        p = self.principal(request)
        require(p, "operator", "department", "street", "grid")
        wo = request.match_info["id"]
        store = self.history.store if self.history is not None else None
        if self.view.snapshot(wo) is None and store is not None:
            snap = await asyncio.to_thread(store.get, wo)
            if snap is not None:
                if not may_see(p, snap):
                    raise Refused(403, "out_of_scope", f"{p.role} {p.id} may not see {wo}", "id")
                return _json({"work_order": self._with_overdue(snap, self.now()), "timeline": [],
                              "from_history": True})
        wo, snap = self._order_in_scope(request, p)
        return _json({"work_order": self._with_overdue(snap, self.now()),
                      "timeline": self.view.timeline(wo)})

    async def post_command(self, request: web.Request) -> web.Response:
        p = self.principal(request)
        require(p, "operator", "department", "street", "grid")
        wo, snap = self._order_in_scope(request, p)
        doc = await self._body(request)
        if "actor" in doc or "work_order_id" in doc:
            field = "actor" if "actor" in doc else "work_order_id"
            return error_response(422, "invalid_field", f"{field} comes from the token and the path, not the body", field)
        doc.update(work_order_id=wo, actor=p.actor().model_dump(exclude_none=True),
                   ts=self.now().isoformat())
        try:
            cmd = Command.model_validate(doc)
        except ValidationError as e:
            return _validation(e)
        roles = RULES[cmd.action].roles
        if p.role not in roles:
            raise Refused(403, "forbidden_role",
                          f"role {p.role} may not {cmd.action} (allowed: {', '.join(sorted(roles))})", "action")
        # What the lifecycle would refuse for a missing field is refused here, with the field.
        if cmd.action in IRREVERSIBLE and not cmd.note.strip():
            return error_response(422, "missing_field", f"{cmd.action} cannot be undone: it needs a reason (note)", "note")
        if cmd.action == "merge" and (not cmd.into or cmd.into == wo):
            return error_response(422, "missing_field" if not cmd.into else "invalid_field",
                          "merge needs into: another work order, the one that survives", "into")
        await self._send(self.topics.commands, wo.encode(), orjson.dumps(cmd.model_dump(mode="json")))
        return _json({"command_id": cmd.command_id, "work_order_id": wo, "status": "accepted",
                      "detail": "the outcome appears on the order's timeline"}, 202)

    def attach_history(self, store, complete) -> None:
        """The worker's history store (readmodels.history) behind /api/v1/history and
        /api/v1/workorders/{id}/nearby; ``complete()``: it has read workorders.state to the end."""
        self.history = HistoryRoutes(store, complete, self.view, self._vocabulary)

    def _history(self) -> HistoryRoutes:
        return self.history or HistoryRoutes(None, lambda: False, self.view, self._vocabulary)

    async def search_history(self, request: web.Request) -> web.Response:
        """Search over every order the history holds (DESIGN §14), scoped like the lists."""
        p = self.principal(request)
        return _json(await self._history().search(p, request.query))

    async def nearby_orders(self, request: web.Request) -> web.Response:
        """Same place, same category, last N days (radius_m=200, days=30 by default)."""
        p = self.principal(request)
        return _json(await self._history().nearby(p, request.match_info["id"], request.query))

    async def kpis(self, request: web.Request) -> web.Response:
        p = self.principal(request)
        require(p, "operator", "department", "street")
        period = request.query.get("period") or self.evaluation.period_of(self.now())
        try:
            figures = self.evaluation.figures(period)
        except ValueError as e:
            return error_response(400, "invalid_field", str(e), "period")
        rates = self.device_health()
        health, health_by_district, health_by_kind = rates["owner"], rates["district"], rates["kind_district"]
        if p.role in ("department", "street"):
            figures = {d: row for d, row in figures.items() if d == p.department}
            health = {k: row for k, row in health.items() if row["owner"] == p.department}
            health_by_district, health_by_kind = {}, {}
            by_district, by_category = {}, {}
        else:   # 市/区县: the figures of the orders lying in each district, and the city's; 分类: per category
            by_district = self.evaluation.figures(period, by="district")
            by_category = self.evaluation.figures(period, by="category")
        return _json({"period": period, "figures": figures, "by_district": by_district, "by_category": by_category,
                      "device_health": health, "device_health_by_district": health_by_district,
                      "device_health_by_kind_district": health_by_kind,
                      "definitions": "docs/lifecycle.md#evaluation-综合评价",
                      "device_definitions": "docs/lifecycle.md#device-health-设备完好率"})

    def _device_health_alone(self) -> dict[str, dict[str, dict]]:
        devices = registered_devices(self.devices(), self.city.locate, self._device_places)
        return device_rates(devices, self.evaluation.faulty_devices(), ())

    @staticmethod
    async def _event(response: web.StreamResponse, kind: str, event_id: str, msg: dict) -> None:
        await response.write(b"id: " + event_id.encode() + b"\nevent: " + kind.encode() + b"\ndata: "
                             + orjson.dumps(msg) + b"\n\n")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        p = self.principal(request)
        require(p, "operator", "department", "street", "grid")
        if not self.streams.take(p.id):
            raise Refused(429, "too_many_streams", f"this token has {self.streams.most} live streams open already",
                          "Authorization", retry_after=5)
        try:
            return await self._stream(request, p)
        finally:
            self.streams.give_back(p.id)

    async def _stream(self, request: web.Request, p: Principal) -> web.StreamResponse:
        metrics.child(metrics.API_REQUESTS, "/api/v1/stream", "200").inc()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=2000)
        # Subscribed before the replay is read: a change that lands in between is in both,
        # and the client keeps the higher version.
        self.view.subscribers.add(queue)
        try:
            await response.write(b": citybrain stream\n\n")
            last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
            changed = self.view.changed_since(last) if last else None
            now_id = self.view.event_id()
            if last and changed is None:
                # Too old, another worker's or an earlier run's: the client reloads its lists.
                await self._event(response, "reload", now_id, {"kind": "reload", "id": now_id,
                                  "detail": "the changes since your last event are not held here: reload"})
            else:
                for wo in changed or ():
                    snap = self.view.snapshot(wo)
                    if snap is not None and may_see(p, snap):
                        await self._event(response, "change", now_id, {
                            "kind": "change", "work_order_id": wo, "version": snap["version"],
                            "type": "replay", "id": now_id, "snapshot": snap})
                await self._event(response, "hello", now_id, {"kind": "hello", "id": now_id,
                                  "replayed": len(changed or ())})
            quiet_since = time.monotonic()
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    # A client gone is noticed within a second (its slot is given back),
                    # not only at the next keep-alive.
                    if request.transport is None or request.transport.is_closing():
                        break
                    if queue not in self.view.subscribers and queue.empty():
                        break      # dropped for falling behind: the client reconnects and replays
                    if time.monotonic() - quiet_since >= 15.0:
                        await response.write(b": keep-alive\n\n")
                        quiet_since = time.monotonic()
                    continue
                quiet_since = time.monotonic()
                if msg["kind"] == "shutdown":
                    await self._event(response, "shutdown", msg["id"], {
                        "kind": "shutdown", "id": msg["id"], "detail": "工作进程正在停止 the worker is stopping"})
                    break
                snap = msg.get("snapshot")
                if snap is None or not may_see(p, snap):
                    continue
                await self._event(response, msg["kind"], msg["id"], msg)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.view.subscribers.discard(queue)
        return response
