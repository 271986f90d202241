"""The query string of a work-order list, read strictly into an ``OrderQuery``: every
parameter is known and checked, and a refusal names the parameter at fault (an unknown
one is a 400, not silently ignored — an operator's typo must not look like "no such
orders")."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from citybrain.readmodels.query import SORTS, OrderQuery, decode_cursor
from citybrain.web.auth import Principal, Refused
from citybrain.wire.enums import EMERGENCY_LEVELS, PRIORITIES, SOURCES, STATUSES, WARNING_LEVELS

MAX_LIMIT = 500
MAX_OFFSET = 100_000
# Every parameter a list takes, and what it is (the 400 for an unknown one lists them).
PARAMETERS = {
    "status": "状态 statuses, comma-separated",
    "category": "类别 category codes, comma-separated",
    "priority": f"优先级 {', '.join(PRIORITIES)} (comma-separated)",
    "department": "部门 the lead or an assisting department; none: no lead yet (待分拨, as the facet says)",
    "assist": "协办 an assisting department",
    "district": "区县 a district code",
    "street": "街道 a street code (9 digits)",
    "grid": "网格 a grid-code prefix (digits)",
    "warning": f"预警 {', '.join(WARNING_LEVELS)}, none (comma-separated)",
    "emergency": f"应急 {', '.join(EMERGENCY_LEVELS)}, none (comma-separated)",
    "overdue": "超时 true or false",
    "supervision": "督办 levels 0-3, comma-separated",
    "source": f"来源 {', '.join(SOURCES)} (any of the order's events)",
    "followup": "回访 true: handled or closed with a reporter not yet called back (due 48 h after)",
    "created_from": "立案起 RFC 3339 time (inclusive)",
    "created_to": "立案止 RFC 3339 time (exclusive)",
    "since": "changed at or after, RFC 3339 time",
    "q": "搜索 words in ids, description, address, finders (all must appear)",
    "sort": "排序 " + ", ".join(SORTS),
    "limit": f"每页 1..{MAX_LIMIT}",
    "cursor": "the next_cursor of the previous page",
    "offset": f"跳过 rows to skip, 0..{MAX_OFFSET} (a pager; cursor is cheaper)",
    "facets": "分面 true: facet counts for the same filters in the same answer",
}


@dataclass(frozen=True)
class Vocabulary:
    """What the city's codes are, for checking a query's values."""

    categories: Iterable[str]
    departments: Iterable[str]
    districts: Iterable[str]


def _bad(field: str, detail: str) -> Refused:
    return Refused(400, "invalid_field", detail, field)


def _set(query: Mapping[str, str], name: str, allowed: Iterable[str]) -> frozenset[str] | None:
    raw = query.get(name)
    if not raw:
        return None
    values = frozenset(v.strip() for v in raw.split(",") if v.strip())
    unknown = values - frozenset(allowed)
    if unknown:
        raise _bad(name, f"{name}: unknown {', '.join(sorted(unknown))} (one of {', '.join(sorted(allowed))})")
    return values or None


def _time(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    t = None
    # An unescaped "+08:00" reaches us as " 08:00" (a + in a query string is a space).
    for text in (raw, raw[:-6] + "+" + raw[-5:] if raw[-6:-5] == " " else raw):
        try:
            t = datetime.fromisoformat(text)
            break
        except ValueError:
            continue
    if t is None or t.tzinfo is None:
        raise _bad(name, f"{name} must be an RFC 3339 time with an offset, e.g. 2026-12-01T08:00:00+08:00")
    return t


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _bad(name, f"{name} must be an integer {low}..{high}")
    return value


def _bool(query: Mapping[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false", "1", "0"):
        raise _bad(name, f"{name} must be true or false")
    return raw.lower() in ("true", "1")


def order_query(query: Mapping[str, str], p: Principal, vocab: Vocabulary,
                allowed: Callable[[str], bool] = lambda name: name in PARAMETERS) -> OrderQuery:
    """The list a principal asks for; a department's or a grid member's own scope is
    enforced here as well as in the view (asking outside it is a 403, not an empty list)."""
    getall = getattr(query, "getall", None)
    for name in query:
        if not allowed(name):
            raise _bad(name, f"unknown parameter {name!r}; a list takes {', '.join(PARAMETERS)}")
        if getall is not None and len(getall(name)) > 1:
            raise _bad(name, f"{name} is given more than once (use one value, comma-separated)")
    department = query.get("department") or None
    if department is not None and department != "none" and department not in set(vocab.departments):
        raise _bad("department", f"department {department!r} is not a department or street desk of this city")
    if p.role == "department":
        if department not in (None, p.department):
            raise Refused(403, "out_of_scope", f"department {p.department} sees only its own orders", "department")
        department = p.department
    grid = query.get("grid") or None
    if grid is not None and not grid.isdigit():
        raise _bad("grid", "grid must be a grid-code prefix (digits)")
    if p.role == "grid":
        if grid is not None and not grid.startswith(p.grid_scope):
            raise Refused(403, "out_of_scope", f"grid member sees only {p.grid_prefix}…", "grid")
        grid = grid or p.grid_prefix
    district = query.get("district") or None
    districts = set(vocab.districts)
    if district is not None and district not in districts:
        raise _bad("district", f"district must be one of {', '.join(sorted(districts))}")
    street = query.get("street") or None
    if street is not None and not (len(street) == 9 and street.isdigit()):
        raise _bad("street", "street must be a street code (9 digits)")
    assist = query.get("assist") or None
    if assist is not None and assist not in set(vocab.departments):
        raise _bad("assist", f"assist {assist!r} is not a department of this city")
    supervision = _set(query, "supervision", ("0", "1", "2", "3"))
    sort = query.get("sort") or "-created"
    if sort not in SORTS:
        raise _bad("sort", f"sort must be one of {', '.join(SORTS)}")
    cursor = None
    if query.get("cursor"):
        try:
            cursor = decode_cursor(query["cursor"], sort)
        except ValueError as e:
            raise _bad("cursor", str(e)) from e
    q = (query.get("q") or "").strip()
    if len(q) > 200:
        raise _bad("q", "q is longer than 200 characters")
    return OrderQuery(
        status=_set(query, "status", STATUSES),
        category=_set(query, "category", vocab.categories),
        priority=_set(query, "priority", PRIORITIES),
        department=department, assist=assist, district=district, street=street, grid=grid,
        warning=_set(query, "warning", (*WARNING_LEVELS, "none")),
        emergency=_set(query, "emergency", (*EMERGENCY_LEVELS, "none")),
        overdue=_bool(query, "overdue"),
        supervision=frozenset(int(s) for s in supervision) if supervision else None,
        source=_set(query, "source", SOURCES), followup=_bool(query, "followup"),
        created_from=_time(query, "created_from"), created_to=_time(query, "created_to"),
        updated_since=_time(query, "since"), q=q, sort=sort,
        limit=_int(query, "limit", 50, 1, MAX_LIMIT), cursor=cursor,
        offset=_int(query, "offset", 0, 0, MAX_OFFSET),
        facets=bool(_bool(query, "facets")), scope=p.scope())
