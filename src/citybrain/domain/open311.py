"""Open311 GeoReport v2 (DESIGN §16), the pure part: a work order's lifecycle as a service
request's ``open``/``closed`` with notes, categories as services, the POST form read into
what a report needs, and the spec's JSON and XML renderings (element names as the spec
gives them: ``<services><service>``, ``<service_requests><request>``, ``<errors><error>``).

The routes are in ``citybrain.web.open311``; nothing here does I/O.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from citybrain.domain.followup import STATUS_ZH
from citybrain.domain.timeline import TYPE_ZH
from citybrain.wire import models

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
FORMATS = {"json": "application/json", "xml": "text/xml"}
# open: the lifecycle still runs (registered, dispatched, accepted, handled); closed: closed,
# cancelled, merged — the wire contract's own two groups.
OPEN_STATUSES = frozenset(models.OPEN_STATUSES)
CLOSED_STATUSES = frozenset(models.CLOSED_STATUSES)
MAX_REQUESTS = 1000            # the spec: a list returns at most 1000 requests
DEFAULT_DAYS = 90              # the spec: no dates → the last 90 days; a range spans at most 90
RECEIVED = "已受理 received"     # a request accepted, its order not yet made (seconds)
# What the POST form's fields may hold here (the report model's own limits where it has them).
MAX_DESCRIPTION = 2000
MAX_TEXT = 128
MAX_PHONE = 32
MAX_URL = 2048
MAX_ADDRESS = 500


class Open311Error(Exception):
    """One of the spec's errors: the HTTP status, and the ``{code, description}`` list."""

    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status, self.description = status, description

    def errors(self) -> list[dict[str, Any]]:
        return [{"code": self.status, "description": self.description}]


def spec_status(status: str) -> str:
    """A work order's status as the spec's ``open`` or ``closed``."""
    if status in OPEN_STATUSES:
        return "open"
    if status in CLOSED_STATUSES:
        return "closed"
    raise ValueError(f"unknown work-order status {status!r}")


def statuses_for(spec: Iterable[str]) -> frozenset[str]:
    """The work-order statuses a spec status filter (open, closed) selects."""
    out: set[str] = set()
    for s in spec:
        out |= OPEN_STATUSES if s == "open" else CLOSED_STATUSES if s == "closed" else set()
    return frozenset(out)


def status_notes(status: str, latest: tuple[str, str] | None = None, merged_into: str | None = None,
                 work_order_id: str | None = None) -> str:
    """中文 and the code: where the order stands (its work order), and its latest step
    ``(type, at)``."""
    notes = f"{STATUS_ZH.get(status, status)} {status}"
    if work_order_id:
        notes += f"; 工单 work order {work_order_id}"
    if merged_into:
        notes += f" → {merged_into}"
    if latest is not None:
        kind, at = latest
        notes += f"; 最新进展 latest: {TYPE_ZH.get(kind, kind)} {kind} {at}"
    return notes


def service_notice(limits: Mapping[str, Any]) -> str:
    """A category's time limit, as the citizen is told it (``web.places.category_limits``)."""
    hours = limits["time_limit_hours"]
    working = limits["time_limit_basis"] == "working"
    return (f"办理时限 {hours:g} {'工作小时' if working else '小时'} · to be resolved within {hours:g} "
            f"{'working ' if working else ''}hours")


def service(code: str, name_zh: str, department_zh: str | None, priority: str) -> dict[str, Any]:
    """A category as a GeoReport service (no attributes: metadata false; realtime: the
    request id is given at once)."""
    return {"service_code": code, "service_name": name_zh,
            "description": f"{name_zh} ({code}); 处置部门 {department_zh or '指挥中心分拨 triage'}; "
                           f"优先级 priority {priority}",
            "metadata": False, "type": "realtime", "keywords": f"{name_zh}, {code}",
            "group": department_zh or "综合 triage"}


def service_definition(code: str) -> dict[str, Any]:
    return {"service_code": code, "attributes": []}


def iso(t: datetime | str | None) -> str | None:
    """RFC 3339 with an offset (the spec: ISO 8601 with Z or ±HH:MM), seconds precision."""
    if t is None:
        return None
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    return t.replace(microsecond=0).isoformat()


def request_from_order(report_id: str, snap: Mapping[str, Any], *, agency: str | None, notice: str | None,
                       latest: tuple[str, str] | None, updated: str | None) -> dict[str, Any]:
    """The service request a report became: its order's status, department and due time;
    the report's own time, point and photo."""
    event = next((e for e in snap.get("events") or () if e.get("report_id") == report_id), None) or {}
    loc = snap["location"]
    lon, lat = event.get("lon", loc["lon"]), event.get("lat", loc["lat"])
    media = (event.get("evidence") or [None])[0]
    status = snap["status"]
    return {
        "service_request_id": report_id, "status": spec_status(status),
        "status_notes": status_notes(status, latest, snap.get("merged_into"), snap["work_order_id"]),
        "service_name": snap.get("category_name") or snap["category"], "service_code": snap["category"],
        "description": snap.get("description") or "", "agency_responsible": agency,
        "service_notice": notice,
        "requested_datetime": iso(event.get("occurred_at") or snap.get("opened_at") or snap["created_at"]),
        "updated_datetime": iso(updated or snap["created_at"]),
        "expected_datetime": iso(snap.get("due_at")) if status in OPEN_STATUSES else None,
        "address": snap.get("address"), "address_id": None, "zipcode": None,
        "lat": lat, "long": lon, "media_url": media,
    }


@dataclass(frozen=True)
class Pending:
    """A request accepted by this worker whose order is not made yet (what it may show:
    the text masked as the order will hold it)."""

    report_id: str
    service_code: str
    service_name: str
    description: str
    address: str | None
    lat: float
    lon: float
    media_url: str | None
    requested: datetime
    notice: str | None

    def request(self) -> dict[str, Any]:
        return {"service_request_id": self.report_id, "status": "open", "status_notes": RECEIVED,
                "service_name": self.service_name, "service_code": self.service_code,
                "description": self.description, "agency_responsible": None, "service_notice": self.notice,
                "requested_datetime": iso(self.requested), "updated_datetime": iso(self.requested),
                "expected_datetime": None, "address": self.address, "address_id": None, "zipcode": None,
                "lat": self.lat, "long": self.lon, "media_url": self.media_url}


# -- the POST form --------------------------------------------------------------------

@dataclass(frozen=True)
class Posted:
    """A POST /requests form, checked: a point or an address to locate, the report's text."""

    service_code: str
    lat: float | None
    lon: float | None
    address_string: str | None
    address_id: str | None
    description: str
    media_url: str | None
    phone: str | None
    reporter: str               # the reporter id the report carries (never a name or an email)
    # another platform's case (docs/integration.md): attribute[external_system] + attribute[external_id]
    external_ref: tuple[str, str] | None = None


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(form: Mapping[str, str], name: str, most: int) -> str | None:
    raw = form.get(name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if len(value) > most:
        raise Open311Error(400, f"{name}: at most {most} characters (got {len(value)})")
    return value


def _coordinate(form: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    raw = form.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise Open311Error(400, f"{name}: {raw[:40]!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise Open311Error(400, f"{name}: must be within {low:g}..{high:g} (WGS84 decimal degrees)")
    return value


# Another platform's own case id on a POST (GeoReport v2 attributes; docs/integration.md).
EXTERNAL_SYSTEM, EXTERNAL_ID = "attribute[external_system]", "attribute[external_id]"


def read_post(form: Mapping[str, str], report_id: str) -> Posted:
    """The spec's POST fields: ``service_code`` and a location (``lat``+``long``, or
    ``address_string``, or ``address_id``) required; every field within the report
    model's limits. A refusal names the field at fault (400)."""
    code = _text(form, "service_code", 64)
    if code is None:
        raise Open311Error(400, "service_code: required (one of GET services)")
    lat = _coordinate(form, "lat", -90, 90)
    lon = _coordinate(form, "long", -180, 180)
    if (lat is None) != (lon is None):
        raise Open311Error(400, f"{'long' if lon is None else 'lat'}: lat and long go together")
    address = _text(form, "address_string", MAX_ADDRESS)
    address_id = _text(form, "address_id", 64)
    if lat is None and address is None and address_id is None:
        raise Open311Error(400, "lat/long, address_string or address_id: one location is required")
    description = (form.get("description") or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise Open311Error(400, f"description: at most {MAX_DESCRIPTION} characters here "
                                f"(got {len(description)})")
    media = _text(form, "media_url", MAX_URL)
    if media is not None and not re.match(r"^https?://[^\s]+$", media):
        raise Open311Error(400, "media_url: an http(s) URL")
    phone = _text(form, "phone", MAX_PHONE)
    for name in ("email", "first_name", "last_name"):
        _text(form, name, MAX_TEXT)          # accepted and checked; not forwarded (docs/contract.md)
    account, device = _text(form, "account_id", MAX_TEXT - 16), _text(form, "device_id", MAX_TEXT - 16)
    reporter = (f"open311:{account}" if account else f"open311-device:{device}" if device
                else f"open311-anon:{report_id}")
    system, case = _text(form, EXTERNAL_SYSTEM, 64), _text(form, EXTERNAL_ID, 128)
    if (system is None) != (case is None):
        raise Open311Error(400, f"{EXTERNAL_ID if case is None else EXTERNAL_SYSTEM}: {EXTERNAL_SYSTEM} and "
                                f"{EXTERNAL_ID} go together (another platform's case)")
    if system is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]+", system):
        raise Open311Error(400, f"{EXTERNAL_SYSTEM}: letters, digits and _.:- only")
    return Posted(code, lat, lon, address, address_id, _CONTROL.sub("", description), media, phone, reporter,
                  (system, case) if system is not None and case is not None else None)


# -- the GET /requests query ----------------------------------------------------------

@dataclass(frozen=True)
class Listing:
    ids: tuple[str, ...] | None        # service_request_id: overrides every other filter
    service_codes: frozenset[str] | None
    statuses: frozenset[str] | None    # the spec's open / closed
    start: datetime
    end: datetime


LIST_PARAMETERS = ("service_request_id", "service_code", "start_date", "end_date", "status",
                   "jurisdiction_id", "api_key")


def _when(raw: str, name: str) -> datetime:
    text = raw.strip().replace(" ", "+") if raw.strip()[-6:-5] == " " else raw.strip()
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise Open311Error(400, f"{name}: an ISO 8601 time with Z or an offset, e.g. 2026-12-01T08:00:00+08:00")
    return t


def read_listing(query: Mapping[str, str], services: Iterable[str], now: datetime) -> Listing:
    """The spec's filters: ``service_request_id`` (comma list; overrides the rest),
    ``service_code`` (comma list), ``start_date``/``end_date`` (requested_datetime; at most
    90 days apart; none: the last 90 days), ``status`` (open, closed; comma list)."""
    ids = query.get("service_request_id")
    if ids is not None and ids.strip():
        wanted = tuple(dict.fromkeys(i.strip() for i in ids.split(",") if i.strip()))
        if len(wanted) > MAX_REQUESTS:
            raise Open311Error(400, f"service_request_id: at most {MAX_REQUESTS} ids")
        return Listing(wanted, None, None, now, now)
    codes = None
    raw = query.get("service_code")
    if raw is not None and raw.strip():
        codes = frozenset(c.strip() for c in raw.split(",") if c.strip())
        unknown = codes - set(services)
        if unknown:
            raise Open311Error(400, f"service_code: unknown {', '.join(sorted(unknown))}")
    statuses = None
    raw = query.get("status")
    if raw is not None and raw.strip():
        statuses = frozenset(s.strip() for s in raw.split(",") if s.strip())
        if not statuses <= {"open", "closed"}:
            raise Open311Error(400, f"status: open or closed (got {', '.join(sorted(statuses))})")
    start = _when(query["start_date"], "start_date") if query.get("start_date") else None
    end = _when(query["end_date"], "end_date") if query.get("end_date") else None
    span = timedelta(days=DEFAULT_DAYS)
    if start is None and end is None:
        end = now
        start = now - span
    elif start is None:
        assert end is not None
        start = end - span
    elif end is None:
        end = min(now, start + span) if start <= now else start + span
    if end < start:
        raise Open311Error(400, "end_date: before start_date")
    if end - start > span:
        raise Open311Error(400, f"start_date, end_date: the range may not span more than {DEFAULT_DAYS} days")
    return Listing(None, codes, statuses, start, end)


def select(requests: Iterable[dict[str, Any]], listing: Listing) -> list[dict[str, Any]]:
    """The requests a listing asks for, newest first, at most 1000 (ids: in the order asked)."""
    if listing.ids is not None:
        by_id = {r["service_request_id"]: r for r in requests}
        return [by_id[i] for i in listing.ids if i in by_id]
    out = []
    for r in requests:
        if listing.service_codes is not None and r["service_code"] not in listing.service_codes:
            continue
        if listing.statuses is not None and r["status"] not in listing.statuses:
            continue
        requested = datetime.fromisoformat(r["requested_datetime"])
        if not listing.start <= requested <= listing.end:
            continue
        out.append(r)
    out.sort(key=lambda r: (datetime.fromisoformat(r["requested_datetime"]), r["service_request_id"]),
             reverse=True)
    return out[:MAX_REQUESTS]


# -- renderings -----------------------------------------------------------------------

# A list's element name → its items' (the spec's XML: <services><service>, …).
ITEMS = {"services": "service", "service_requests": "request", "errors": "error", "endpoints": "endpoint",
         "formats": "format", "attributes": "attribute", "values": "value"}
# Not XML 1.0 characters (the spec's XML must parse): dropped from text.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return _NOT_XML.sub("", str(value))


def _element(parent: ET.Element, name: str, value: Any) -> None:
    node = ET.SubElement(parent, name)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _element(node, k, v)
    elif isinstance(value, list):
        item = ITEMS.get(name, "item")
        for v in value:
            _element(node, item, v)
    else:
        node.text = _xml_text(value) or None


def to_xml(root: str, body: Any) -> bytes:
    """``body`` (a list: its items under ``root``; a mapping: its fields) as the spec's XML,
    with the XML declaration naming UTF-8."""
    holder = ET.Element("holder")
    _element(holder, root, body)
    tree = holder[0]
    text: bytes = ET.tostring(tree, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text


def to_json(body: Any) -> bytes:
    return orjson.dumps(body)


def render(fmt: str, root: str, body: Any) -> tuple[bytes, str]:
    """The bytes and the content type of ``body`` in ``fmt`` (json or xml)."""
    if fmt == "xml":
        return to_xml(root, body), "text/xml"
    return to_json(body), "application/json"


def render_errors(fmt: str, errors: list[dict[str, Any]]) -> tuple[bytes, str]:
    return render(fmt, "errors", errors)


def discovery(base_url: str, changeset: datetime, contact: str) -> dict[str, Any]:
    """The service discovery document (wiki.open311.org/Service_discovery)."""
    stamp = iso(changeset.astimezone(UTC))
    return {"changeset": stamp, "contact": contact,
            "key_service": "api_key: a token of the gateway role, issued by the city (citybrain token new "
                           "--role gateway)",
            "endpoints": [{"specification": SPECIFICATION, "url": base_url, "changeset": stamp,
                           "type": "production", "formats": list(FORMATS.values())}]}
