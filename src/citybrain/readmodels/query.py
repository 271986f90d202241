"""What a list of work orders asks for: filters, search, sort, paging and facets — one
value the HTTP layer parses and the order view (and the history store) answers.

Keyset paging: a cursor is the sort key of the last row given out, so the next page
starts after it whatever arrived meanwhile; ``offset`` jumps to a page (the console's
pager) at the cost of walking past the rows before it."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from citybrain.wire.enums import PRIORITIES

# low 0 … urgent 3, from the one list (wire/enums.py)
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}
# The sorts a list offers: name → what the console's column header says.
SORTS = {
    "-created": "最新立案 newest first",
    "created": "最早立案 oldest first",
    "due": "最紧迫 soonest due first (overdue first, closed last)",
    "-updated": "最近变动 last changed first",
    "-priority": "优先级 highest priority first, then newest",
    "followup": "回访 soonest follow-up due first",
}
# The dimensions facet counts are given for (one pass over the matching orders).
FACETS = ("status", "category", "priority", "department", "assist", "district", "street", "overdue",
          "supervision", "warning", "emergency", "source")


@dataclass(frozen=True, slots=True)
class Scope:
    """Which orders a signed-in principal may see (the view's side of auth.may_see):
    None everywhere is an operator's whole city."""

    department: str | None = None     # leads or assists
    street_code: str | None = None    # lies in the street (or is sent to ``department``)
    grid_prefix: str | None = None    # lies in the grid prefix


@dataclass(frozen=True, slots=True)
class OrderQuery:
    status: frozenset[str] | None = None
    category: frozenset[str] | None = None
    priority: frozenset[str] | None = None
    department: str | None = None          # the lead or an assisting department
    assist: str | None = None              # an assisting department (any part state)
    district: str | None = None
    street: str | None = None
    grid: str | None = None                # a grid-code prefix
    warning: frozenset[str] | None = None  # warning levels, "none" for orders without one
    emergency: frozenset[str] | None = None
    overdue: bool | None = None
    supervision: frozenset[int] | None = None
    source: frozenset[str] | None = None   # iot, video, report: any of its events'
    followup: bool | None = None           # a reporter still to be called back (回访 worklist)
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_since: datetime | None = None
    q: str = ""                            # words, each a substring of ids, description, address
    sort: str = "-created"
    limit: int = 50
    cursor: tuple | None = None
    offset: int = 0
    facets: bool = False
    scope: Scope = field(default_factory=Scope)

    def terms(self) -> list[str]:
        return [t for t in self.q.casefold().split() if t]


def encode_cursor(sort: str, key: tuple) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([sort, *key])).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple:
    """The key a cursor carries; a cursor of another sort, or not one this server gave
    out, is a ValueError (the client's)."""
    try:
        got = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        given_sort, *key = got
    except Exception as e:  # noqa: BLE001 - anything malformed is the client's cursor
        raise ValueError("cursor is not one this server gave out") from e
    if given_sort != sort:
        raise ValueError(f"cursor was given out for sort {given_sort!r}, not {sort!r}")
    return tuple(key)
