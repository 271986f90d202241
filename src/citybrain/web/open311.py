"""Open311 GeoReport v2 on the worker's HTTP server (DESIGN §16; docs/console.md "Open311"):
``/open311/discovery.{format}`` and ``/open311/v2/…`` — services, service definitions,
requests POST/GET, a request by id, tokens — in JSON and XML, errors in the spec's form.

A POST becomes an ``IncidentReport`` on ``ingest.reports`` as ``POST /api/v1/reports``
makes one (the gazetteer locates ``address_string``; the same model validates it; the
same producer sends it), and its ``service_request_id`` is the report id: a GET answers at
once (``open``, 已受理 received) and, once the report is on an order, with the order's
status, department and due time from the order view.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from citybrain import metrics
from citybrain.domain import open311 as spec
from citybrain.domain.masking import mask_text
from citybrain.domain.normalize import field_path
from citybrain.domain.open311 import Open311Error, Pending
from citybrain.readmodels.history import HistoryFilters
from citybrain.readmodels.query import OrderQuery, Scope
from citybrain.web.auth import Principal, Refused
from citybrain.web.places import NeedsLocation, category_limits, locate_report
from citybrain.wire.models import IncidentReport

if TYPE_CHECKING:
    from citybrain.web.api import Api

log = logging.getLogger("citybrain.open311")
MAX_FORM = 64 * 1024          # as POST /api/v1/reports
PENDING_MOST = 10_000         # requests remembered until their order exists (per worker)
PENDING_HOURS = 24
MAX_SCAN = 5_000              # orders a list reads at most (the most recently changed)
# A report field → the spec's field it came from (a refusal names the client's field).
SPEC_FIELD = {"lon": "long", "lat": "lat", "contact_phone": "phone", "photos": "media_url", "reporter_id": "account_id",
              "address": "address_string", "category": "service_code", "description": "description"}
ROUTES = re.compile(r"^/open311/(discovery|v2/services(/[^/]+)?|v2/requests(/[^/]+)?|v2/tokens/[^/]+)\.[A-Za-z0-9]+$")
REQUESTS = re.compile(r"^/open311/v2/requests\.[A-Za-z0-9]+$")
Handler = Callable[[web.Request, str], Awaitable[web.Response]]


def _respond(fmt: str, root: str, body: Any, status: int = 200) -> web.Response:
    data, content_type = spec.render(fmt, root, body)
    return web.Response(body=data, status=status, content_type=content_type, charset="utf-8")


class Open311:
    def __init__(self, api: Api):
        self.api = api
        cfg = api.config.settings.open311
        self.settings = cfg
        self.jurisdiction = cfg.jurisdiction_id or api.city.city_code
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.limits = category_limits(api.config)
        categories = api.config.directory / "categories.toml"
        self.changeset = datetime.fromtimestamp(categories.stat().st_mtime if categories.exists() else 0, UTC)

    def install(self, router: web.UrlDispatcher) -> None:
        if not self.settings.enabled:
            return
        fmt = "{format:[A-Za-z0-9]+}"
        router.add_get(f"/open311/discovery.{fmt}", self._wrap(self.discovery, public=True))
        router.add_get(f"/open311/v2/services.{fmt}", self._wrap(self.services, public=True))
        router.add_get(f"/open311/v2/services/{{code}}.{fmt}", self._wrap(self.definition, public=True))
        router.add_post(f"/open311/v2/requests.{fmt}", self._wrap(self.post_request))
        router.add_get(f"/open311/v2/requests.{fmt}", self._wrap(self.list_requests))
        router.add_get(f"/open311/v2/requests/{{id}}.{fmt}", self._wrap(self.get_request))
        router.add_get(f"/open311/v2/tokens/{{token}}.{fmt}", self._wrap(self.get_token))
        router.add_route("*", "/open311/{tail:.*}", self.unknown)

    # -- plumbing ----------------------------------------------------------------

    def _wrap(self, handler: Handler, public: bool = False) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def route(request: web.Request) -> web.Response:
            fmt = request.match_info["format"].lower()
            if fmt not in spec.FORMATS:
                return _respond("xml", "errors", [{"code": 404, "description": f"format {fmt!r}: json or xml"}],
                                404)
            try:
                if public:
                    self._rate(f"open311:{request.remote}")
                return await handler(request, fmt)
            except Open311Error as e:
                response = _respond(fmt, "errors", e.errors(), e.status)
                if e.status == 429:
                    response.headers["Retry-After"] = "1"
                return response
        return route

    async def unknown(self, request: web.Request) -> web.Response:
        fmt = "json" if request.path.endswith(".json") else "xml"
        if ROUTES.match(request.path):      # a route of the spec, another method
            allowed = "GET, POST" if REQUESTS.match(request.path) else "GET"
            response = _respond(fmt, "errors", [{"code": 405, "description": f"{request.method} is not allowed "
                                                 f"on {request.path} ({allowed})"}], 405)
            response.headers["Allow"] = allowed
            return response
        return _respond(fmt, "errors", [{"code": 404, "description": f"no Open311 route {request.method} "
                                                                      f"{request.path}"}], 404)

    def _rate(self, key: str) -> None:
        wait = self.api.rate.wait(key)
        if wait > 0:
            metrics.child(metrics.AUTH_REFUSALS, "rate_limited").inc()
            raise Open311Error(429, f"more than {self.api.rate.rate:g} requests a second with this api_key "
                                    f"(retry in {max(1, math.ceil(wait))} s)")

    def _jurisdiction(self, given: str | None) -> None:
        if given is not None and given.strip() and given.strip() != self.jurisdiction:
            raise Open311Error(404, f"jurisdiction_id {given.strip()[:64]!r} not found (this endpoint serves "
                                    f"{self.jurisdiction})")

    def _key(self, request: web.Request, key: str | None, roles: tuple[str, ...], what: str) -> Principal:
        """``api_key`` (a form or query field; an ``Authorization: Bearer`` header as well):
        a token of one of ``roles``; every refusal is a 403, counted and logged without the key."""
        header = f"Bearer {key}" if key else request.headers.get("Authorization")
        try:
            if not header:
                raise Refused(401, "missing_token", "api_key was not provided")
            p = self.api.tokens.authenticate(header)
        except Refused as r:
            metrics.child(metrics.AUTH_REFUSALS, r.reason).inc()
            log.warning("拒绝访问 refused %s %s: %s (open311; the key is not logged)", request.method,
                        request.path, r.reason)
            detail = "api_key was not provided" if r.reason == "missing_token" else "invalid api_key"
            raise Open311Error(403, f"{detail} -- can't proceed with {what}") from None
        if p.role not in roles:
            metrics.child(metrics.AUTH_REFUSALS, "forbidden_role").inc()
            log.warning("拒绝访问 refused %s %s: forbidden_role %s (open311)", request.method, request.path, p.role)
            raise Open311Error(403, f"api_key of role {p.role} may not {what} (allowed: {', '.join(roles)})")
        self._rate(p.id)
        return p

    def _reader(self, request: web.Request) -> None:
        """GET /requests: a key of the gateway or operator role, unless [open311] public_reads."""
        self._jurisdiction(request.query.get("jurisdiction_id"))
        if self.settings.public_reads and not request.query.get("api_key"):
            self._rate(f"open311:{request.remote}")
            return
        self._key(request, request.query.get("api_key"), ("gateway", "operator"), "read requests")

    # -- services ----------------------------------------------------------------

    async def discovery(self, request: web.Request, fmt: str) -> web.Response:
        base = (self.settings.base_url.rstrip("/") if self.settings.base_url
                else f"{request.scheme}://{request.host}/open311")
        contact = self.settings.contact or f"{self.api.city.city_name} 城市运行管理中心"
        return _respond(fmt, "discovery", spec.discovery(f"{base}/v2", self.changeset, contact))

    def _service(self, code: str) -> dict[str, Any]:
        c = self.api.config.taxonomy.category(code)
        if c is None:
            raise Open311Error(404, f"service_code {code!r} not found")
        return spec.service(c.code, c.name_zh, self.api.departments.get(c.department) if c.department else None,
                            c.priority)

    async def services(self, request: web.Request, fmt: str) -> web.Response:
        self._jurisdiction(request.query.get("jurisdiction_id"))
        body = [self._service(c.code) for c in self.api.config.taxonomy.categories]
        return _respond(fmt, "services", body)

    async def definition(self, request: web.Request, fmt: str) -> web.Response:
        self._jurisdiction(request.query.get("jurisdiction_id"))
        code = request.match_info["code"]
        self._service(code)
        return _respond(fmt, "service_definition", spec.service_definition(code))

    # -- POST a request ----------------------------------------------------------

    async def _form(self, request: web.Request) -> dict[str, str]:
        if request.content_length is not None and request.content_length > MAX_FORM:
            raise Open311Error(413, f"the body is larger than {MAX_FORM} bytes")
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise Open311Error(400, f"the body must be form-encoded (application/x-www-form-urlencoded or "
                                    f"multipart/form-data), not {request.content_type or 'empty'}")
        try:
            posted = await request.post()
        except (ValueError, web.HTTPException) as e:
            raise Open311Error(400, f"the form could not be read: {type(e).__name__}") from None
        form = {k: v for k, v in posted.items() if isinstance(v, str)}
        if sum(len(k) + len(v) for k, v in form.items()) > MAX_FORM:
            raise Open311Error(413, f"the body is larger than {MAX_FORM} bytes")
        return form

    def _locate(self, posted: spec.Posted, doc: dict[str, Any]) -> None:
        if posted.lat is not None and posted.lon is not None:
            doc["lon"], doc["lat"] = posted.lon, posted.lat
            return
        if posted.address_string is not None:
            try:
                locate_report(doc, self.api.config.gazetteer)
            except NeedsLocation as e:
                raise Open311Error(400, "address_string: " + e.detail.replace("; give lon/lat", "; give lat/long")
                                   ) from None
            return
        code = posted.address_id or ""
        if self.api.city.grid(code) is not None:        # a grid code: the address system here
            point = self.api.city.grid_polygon(code).representative_point()
            doc["lon"], doc["lat"] = round(point.x, 6), round(point.y, 6)
            return
        best = self.api.config.gazetteer.locate(code)
        if best is None:
            raise Open311Error(400, f"address_id {code[:64]!r} not found (a grid code of the city, or a name "
                                    "the gazetteer locates)")
        doc["lon"], doc["lat"] = best.lon, best.lat

    async def post_request(self, request: web.Request, fmt: str) -> web.Response:
        form = await self._form(request)
        self._jurisdiction(form.get("jurisdiction_id") or request.query.get("jurisdiction_id"))
        self._key(request, form.get("api_key") or request.query.get("api_key"), ("gateway",), "create_request")
        rid = f"R-{uuid.uuid4()}"
        posted = spec.read_post(form, rid)
        category = self.api.config.taxonomy.category(posted.service_code)
        if category is None:
            raise Open311Error(400, f"service_code {posted.service_code[:64]!r} not found (GET services)")
        now = datetime.now(UTC)
        doc: dict[str, Any] = {"report_id": rid, "channel": "citizen_app", "reporter_id": posted.reporter,
                               "category": category.code, "description": posted.description,
                               "ts": now.isoformat()}
        address = posted.address_string
        if address is not None:
            doc["address"] = address
        self._locate(posted, doc)
        if posted.media_url is not None:
            doc["photos"] = [posted.media_url]
        if posted.phone is not None:
            doc["contact_phone"] = posted.phone
        if posted.external_ref is not None:   # another platform's case: its status goes back
            doc["external_ref"] = {"system": posted.external_ref[0], "id": posted.external_ref[1]}
        try:
            report = IncidentReport.model_validate(doc)
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            name = (field_path(err["loc"]) or "form").split(".")[0]
            raise Open311Error(400, f"{SPEC_FIELD.get(name, name)}: {err['msg']}") from None
        assert report.lon is not None and report.lat is not None
        if self.api.city.locate(report.lon, report.lat) is None:
            raise Open311Error(400, f"lat/long: ({report.lat}, {report.lon}) is outside jurisdiction "
                                    f"{self.jurisdiction} (every grid of the city)")
        try:
            await self.api._send(self.api.topics.reports, report.reporter_id.encode(), orjson.dumps(doc))
        except Exception as e:     # noqa: BLE001 - any producer failure: the client may retry
            log.error("open311 request not stored: %s", type(e).__name__)
            raise Open311Error(503, "the request could not be stored just now; send it again") from None
        notice = spec.service_notice(self.limits[category.code])
        self._remember(Pending(rid, category.code, category.name_zh, mask_text(posted.description),
                               mask_text(address) if address else None, report.lat, report.lon,
                               posted.media_url, now, notice))
        return _respond(fmt, "service_requests", [{"service_request_id": rid, "service_notice": notice,
                                                   "account_id": form.get("account_id") or None}])

    def _remember(self, pending: Pending) -> None:
        self.pending[pending.report_id] = pending
        while len(self.pending) > PENDING_MOST:
            self.pending.popitem(last=False)

    # -- GET requests --------------------------------------------------------------

    def _from_order(self, rid: str, wo: str, snap: Mapping[str, Any]) -> dict[str, Any]:
        steps = [e for e in self.api.view.timeline(wo) if e["kind"] == "change"]
        latest = (steps[-1]["type"], steps[-1]["at"]) if steps else None
        return self._from_snapshot(rid, snap, latest, steps[-1]["at"] if steps else None)

    def _from_snapshot(self, rid: str, snap: Mapping[str, Any], latest: tuple[str, str] | None,
                       updated: str | None) -> dict[str, Any]:
        department = snap.get("department")
        limits = self.limits.get(snap["category"])
        return spec.request_from_order(
            rid, snap, agency=self.api.departments.get(department, department) if department else None,
            notice=spec.service_notice(limits) if limits else None, latest=latest, updated=updated)

    async def _find(self, rid: str) -> dict[str, Any] | None:
        """A request by id: from the order view, this worker's accepted requests, or — its
        order closed and gone from the view — the history store (as the order ended)."""
        found = self._request(rid)
        routes = self.api.history
        store = routes.store if routes is not None else None
        if found is not None or store is None or not rid.strip() or len(rid) > 128:
            return found
        result = await asyncio.to_thread(store.search, rid, HistoryFilters(), 10)
        for snap in sorted(result.items, key=lambda s: s.get("status") == "merged"):   # the survivor first
            if any(e.get("report_id") == rid for e in snap.get("events") or ()):
                ended = (snap.get("closed_at") or snap.get("cancelled_at") or snap.get("merged_at")
                         or snap.get("created_at"))
                return self._from_snapshot(rid, snap, None, ended)
        return None

    def _pending(self, rid: str) -> Pending | None:
        p = self.pending.get(rid)
        if p is not None and datetime.now(UTC) - p.requested > timedelta(hours=PENDING_HOURS):
            del self.pending[rid]
            return None
        return p

    def _request(self, rid: str) -> dict[str, Any] | None:
        wo = self.api.view.by_report.get(rid)
        snap = self.api.view.snapshot(wo) if wo else None
        if wo is not None and snap is not None:
            self.pending.pop(rid, None)
            return self._from_order(rid, wo, snap)
        p = self._pending(rid)
        return p.request() if p is not None else None

    async def get_request(self, request: web.Request, fmt: str) -> web.Response:
        self._reader(request)
        rid = request.match_info["id"]
        found = await self._find(rid)
        if found is None:
            raise Open311Error(404, f"service_request_id {rid[:128]!r} not found")
        return _respond(fmt, "service_requests", [found])

    async def get_token(self, request: web.Request, fmt: str) -> web.Response:
        """Requests are made at once here (service_request_id in the POST's answer); a
        token is the request id, for clients that ask."""
        self._reader(request)
        token = request.match_info["token"]
        if await self._find(token) is None:
            raise Open311Error(404, f"token {token[:128]!r} not found")
        return _respond(fmt, "service_requests", [{"service_request_id": token, "token": token}])

    async def list_requests(self, request: web.Request, fmt: str) -> web.Response:
        self._reader(request)
        started = time.monotonic()
        now = datetime.now(UTC)
        codes = [c.code for c in self.api.config.taxonomy.categories]
        listing = spec.read_listing(request.query, codes, now)
        if listing.ids is not None:
            found = [r for r in [await self._find(i) for i in listing.ids] if r is not None]
            return _respond(fmt, "service_requests", spec.select(found, listing))
        statuses = spec.statuses_for(listing.statuses) if listing.statuses is not None else None
        page = self.api.view.query(OrderQuery(
            status=statuses, category=listing.service_codes, source=frozenset({"report"}),
            updated_since=listing.start, sort="-updated", limit=MAX_SCAN, scope=Scope()))
        found = []
        for snap in page.items:
            wo = snap["work_order_id"]
            for e in snap.get("events") or ():
                rid = e.get("report_id")
                if rid and self.api.view.by_report.get(rid) == wo:
                    found.append(self._from_order(rid, wo, snap))
        on_orders = {r["service_request_id"] for r in found}
        for rid in list(self.pending):
            p = self._pending(rid)
            if p is not None and rid not in on_orders and rid not in self.api.view.by_report:
                found.append(p.request())
        chosen = spec.select(found, listing)
        log.debug("open311 list: %d of %d requests in %.0f ms", len(chosen), len(found),
                  (time.monotonic() - started) * 1000)
        return _respond(fmt, "service_requests", chosen)
