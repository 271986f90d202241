"""区域预警: area warnings from outside authorities (weather, water, environment) and what
they do to work orders (DESIGN §15, ``config/warnings.toml``, docs/lifecycle.md).

- A warning (``ingest.warnings``, compacted, keyed by warning_id) holds at t when it is not
  cancelled and valid_from ≤ t < valid_to; it ends by itself at valid_to.  The latest
  record under a key is the warning (an amendment replaces it: level, area, an earlier
  valid_to; ``cancelled`` withdraws it; a tombstone or an unusable record leaves the key
  without one) — so a worker that read the whole log and one that reads it after
  compaction hold the same warnings, as with the registry.
- Its area is the union of its districts, its streets and its polygon.  An order is in it
  when its location's district or street is named, or its point lies in the polygon.
- ``config/warnings.toml`` maps each kind to the categories it concerns, the level from
  which new orders start at the warning's level (``new_orders_from``) and the level from
  which open ones are escalated to it (``open_orders_from``).
- A warning never lowers anything: it only adds its level to the order's
  ``area_warnings`` (the order's warning level is the highest of its sensors' and its area
  warnings'; priority and emergency response follow as escalation.py says).  When it
  ends, orders keep what it gave them ("release" is only that new orders after valid_to
  start at their normal level); an operator lowers an order by command if need be.

Pure: records and snapshots in, verdicts and changes out.  Shapes from the city map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from shapely.geometry import mapping, shape

from citybrain.domain.geo import CityMap
from citybrain.domain.normalize import validation_failure
from citybrain.domain.registry_records import key_text
from citybrain.domain.routing import PRIORITY_RANK, Route
from citybrain.wire.enums import WARNING_KIND_ZH, WARNING_RANK, WARNING_ZH
from citybrain.wire.models import (
    CLOSED_STATUSES,
    AreaWarning,
    Location,
    WarningKind,
    WarningLevel,
    WorkOrder,
    WorkOrderChange,
)

# -- configuration -------------------------------------------------------------------------


class KindRule(BaseModel):
    """What one kind of warning does (``[kind.<kind>]`` in config/warnings.toml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    categories: list[str] = Field(min_length=1, description="the categories whose orders it concerns")
    new_orders_from: WarningLevel = Field("blue", description="from this level up, new orders in the area "
                                                             "start at the warning's level")
    open_orders_from: WarningLevel | Literal["none"] = Field(
        "orange", description="from this level up, open orders in the area are escalated to the warning's "
                              "level; none: never")


class WarningsConfig(BaseModel):
    """``config/warnings.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: dict[WarningKind, KindRule] = Field(default_factory=dict)

    def check(self, categories: Iterable[str]) -> WarningsConfig:
        known = set(categories)
        for kind, rule in self.kind.items():
            unknown = sorted(set(rule.categories) - known)
            if unknown:
                raise ValueError(f"warnings.toml kind.{kind}: unknown categories {unknown}")
        return self

    def for_new(self, kind: WarningKind, level: str, category: str) -> bool:
        rule = self.kind.get(kind)
        return (rule is not None and category in rule.categories
                and WARNING_RANK[level] >= WARNING_RANK[rule.new_orders_from])

    def for_open(self, kind: WarningKind, level: str) -> KindRule | None:
        """The rule when open orders are escalated by a warning of this kind at this level."""
        rule = self.kind.get(kind)
        if rule is None or rule.open_orders_from == "none" \
                or WARNING_RANK[level] < WARNING_RANK[rule.open_orders_from]:
            return None
        return rule


# -- the city's areas ----------------------------------------------------------------------

# Grids meet along rounded borders with hairline gaps: grown by this before the union and
# shrunk after, an outline is one polygon, not a lace of slivers (≈ 0.2 m).
_SEAL = 2e-6


class AreaShapes:
    """District and street outlines (unions of the city's grids, made on first use) and
    the codes a warning may name."""

    def __init__(self, city: CityMap):
        self.city = city
        self.districts = frozenset(city.district_names)
        self.streets = frozenset(city.street_names)
        self._outlines: dict[str, Any] = {}

    def outline(self, code: str) -> Any:
        """A district's (6 digits) or a street's (9 digits) outline as a shapely geometry."""
        found = self._outlines.get(code)
        if found is None:
            grids = [self.city.grid_polygon(g) for g in self.city.grid_codes
                     if (self.city.grid(g).district_code if len(code) == 6 else self.city.grid(g).street_code) == code]  # type: ignore[union-attr]
            found = shapely.unary_union([g.buffer(_SEAL) for g in grids]).buffer(-_SEAL)
            self._outlines[code] = found
        return found

    def city_outline(self) -> Any:
        found = self._outlines.get("city")
        if found is None:   # (made once: every polygon record is checked against it)
            found = self._outlines["city"] = shapely.unary_union([self.outline(d) for d in sorted(self.districts)])
            shapely.prepare(found)
        return found


# -- one warning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldWarning:
    """A usable warning with its area resolved."""

    record: AreaWarning
    polygon: Any = None      # shapely geometry (prepared), or None

    @property
    def warning_id(self) -> str:
        return self.record.warning_id

    @property
    def level(self) -> str:
        return self.record.level

    def holds(self, at: datetime) -> bool:
        r = self.record
        return not r.cancelled and r.valid_from <= at < r.valid_to

    def covers(self, location: Location) -> bool:
        area = self.record.area
        if location.district_code in area.district_codes or location.street_code in area.street_codes:
            return True
        # intersects_xy: on the boundary counts, and no Point is made (the hot path asks this).
        return self.polygon is not None and bool(shapely.intersects_xy(self.polygon, location.lon, location.lat))

    def label(self) -> str:
        """中文 first: 淄博市气象台 暴雨红色预警 W-1."""
        r = self.record
        return f"{r.issuer} {WARNING_KIND_ZH[r.kind]}{WARNING_ZH[r.level]}预警 {r.warning_id}"

    def geometry(self, shapes: AreaShapes) -> dict[str, Any]:
        """The whole area as one GeoJSON geometry (for the console's map)."""
        area = self.record.area
        parts = [shapes.outline(c) for c in (*area.district_codes, *area.street_codes)]
        if self.polygon is not None:
            parts.append(self.polygon)
        union = shapely.unary_union(parts).simplify(1e-5)
        return mapping(union)   # type: ignore[no-any-return]


# -- a record's verdict --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WarningEntry:
    """What one ``ingest.warnings`` record means: the key's warning now (None: a tombstone,
    or a dead letter when ``reason`` is set).  Shaped like the registry's verdict, so the
    same dead-letter duty writes both."""

    key: str | None
    warning: HeldWarning | None = None
    reason: str | None = None
    detail: str = ""
    field: str | None = None
    exception_type: str | None = None

    @property
    def dead(self) -> bool:
        return self.reason is not None


def _polygon(raw: Mapping[str, Any], shapes: AreaShapes) -> tuple[Any, WarningEntry | None]:
    """The polygon as a prepared shapely geometry, or the refusal's reason."""
    def refuse(reason: str, detail: str) -> tuple[Any, WarningEntry]:
        return None, WarningEntry(None, reason=reason, detail=detail, field="area.polygon")
    try:
        geom = shape(raw)
    except Exception as e:  # noqa: BLE001 - shapely raises many kinds on bad coordinates
        return refuse("invalid_field", f"area.polygon is not a GeoJSON polygon: {type(e).__name__}: {e}")
    if geom.is_empty:
        return refuse("invalid_field", "area.polygon is empty")
    west, south, east, north = geom.bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        return refuse("invalid_field", "area.polygon: coordinates must be lon −180..180, lat −90..90")
    if not geom.is_valid:
        return refuse("invalid_field", f"area.polygon is not a valid polygon: {shapely.is_valid_reason(geom)}")
    if not geom.intersects(shapes.city_outline()):
        return refuse("out_of_area", "area.polygon lies outside the city")
    shapely.prepare(geom)
    return geom, None


def read_warning_record(key: bytes | None, value: bytes | None, max_bytes: int, shapes: AreaShapes) -> WarningEntry:
    """The verdict on one record (raises only on a bug)."""
    k = key_text(key)
    if value is None:
        return WarningEntry(k)
    if len(value) > max_bytes:
        return WarningEntry(k, reason="too_large", detail=f"record is {len(value)} bytes; the limit is {max_bytes}")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        return WarningEntry(k, reason="not_json", detail=f"not JSON: {e}")
    if not isinstance(doc, dict):
        return WarningEntry(k, reason="not_object", detail=f"a warning is a JSON object, not {type(doc).__name__}")
    try:
        rec = AreaWarning.model_validate(doc)
    except ValidationError as e:
        reason, path, err = validation_failure(e)
        return WarningEntry(k, reason=reason, detail=f"{path}: {err['msg']}", field=path)
    if k != rec.warning_id:
        shown = "null" if key is None else repr(key.decode("utf-8", "replace"))
        return WarningEntry(k, reason="wrong_key", field="key",
                            detail=f"record key {shown} is not the warning_id {rec.warning_id!r}; ingest.warnings "
                                   "is compacted by key, so a warning is amended and withdrawn only under its own id")
    for i, code in enumerate(rec.area.district_codes):
        if code not in shapes.districts:
            return WarningEntry(k, reason="out_of_area", field=f"area.district_codes.{i}",
                                detail=f"district {code} is not in the city ({', '.join(sorted(shapes.districts))})")
    for i, code in enumerate(rec.area.street_codes):
        if code not in shapes.streets:
            return WarningEntry(k, reason="out_of_area", field=f"area.street_codes.{i}",
                                detail=f"street {code} is not in the city")
    polygon = None
    if rec.area.polygon is not None:
        polygon, refused = _polygon(rec.area.polygon.model_dump(), shapes)
        if refused is not None:
            return WarningEntry(k, reason=refused.reason, detail=refused.detail, field=refused.field)
    return WarningEntry(k, HeldWarning(rec, polygon))


def internal_error(key: bytes | None, e: BaseException) -> WarningEntry:
    return WarningEntry(key_text(key), reason="internal_error", detail=f"{type(e).__name__}: {e}",
                        exception_type=type(e).__name__)


# -- every warning -------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The area warnings a new order starts under: warning_id → level, and the note."""

    levels: dict[str, str]
    level: str
    note: str


@dataclass
class WarningBook:
    """The latest warning under each key, and what they do to orders."""

    rules: WarningsConfig
    warnings: dict[str, HeldWarning] = field(default_factory=dict)
    version: int = 0     # moves with every record applied (the sweep looks again)

    def apply(self, entry: WarningEntry) -> HeldWarning | None:
        """The key now names ``entry.warning`` or nothing; returns what it named before."""
        self.version += 1
        if entry.key is None:
            return None
        if entry.warning is not None:
            before = self.warnings.get(entry.key)
            self.warnings[entry.key] = entry.warning
            return before
        return self.warnings.pop(entry.key, None)

    def holding(self, at: datetime) -> list[HeldWarning]:
        """The warnings that hold at ``at``, by id."""
        return [w for _, w in sorted(self.warnings.items()) if w.holds(at)]

    def start(self, category: str, location: Location, at: datetime) -> Start | None:
        """The warnings a new order of ``category`` at ``location`` starts under at ``at``."""
        if not self.warnings:   # the usual case: one dict lookup per new order
            return None
        held = [w for _, w in sorted(self.warnings.items())
                if self.rules.for_new(w.record.kind, w.level, category) and w.holds(at) and w.covers(location)]
        if not held:
            return None
        top = max(held, key=lambda w: (WARNING_RANK[w.level], w.warning_id))
        labels = "；".join(w.label() for w in held)
        note = (f"{at.isoformat()} system:citybrain 区域预警 area warning: {labels} — "
                f"按预警立案 starts at {WARNING_ZH[top.level]} {top.level}")
        return Start({w.warning_id: w.level for w in held}, top.level, note)

    def escalating(self, at: datetime) -> list[tuple[HeldWarning, KindRule]]:
        """The warnings holding at ``at`` that escalate open orders, with their rules."""
        out = []
        for w in self.holding(at):
            rule = self.rules.for_open(w.record.kind, w.level)
            if rule is not None:
                out.append((w, rule))
        return out


# -- what a warning does to an order --------------------------------------------------------


def start_route(route: Route, start: Start | None, warning_priority: Mapping[str, str]) -> Route:
    """A new order's route under area warnings: its priority at least the one the warning
    level brings (escalation.toml ``warning_priority``), so its time limits are that
    priority's from the start.  Never lower."""
    if start is None:
        return route
    wanted = warning_priority.get(start.level)
    if wanted is None or PRIORITY_RANK[wanted] <= PRIORITY_RANK[route.priority]:
        return route
    return Route(route.department, wanted, route.rule)   # type: ignore[arg-type]  # (a Priority)


def met_by(order: WorkOrder, warning: HeldWarning, rule: KindRule) -> bool:
    """Whether the warning should raise this open order: its category and place, and the
    warning's level not yet given to it."""
    return (order.status not in CLOSED_STATUSES and order.category in rule.categories
            and WARNING_RANK[order.area_warnings.get(warning.warning_id)] < WARNING_RANK[warning.level]
            and warning.covers(order.location))


def escalate_open(order: WorkOrder, warning: HeldWarning, rule: KindRule,
                  follow: Callable[[WorkOrder, datetime], list[WorkOrderChange]], now: datetime) -> list[WorkOrderChange]:
    """The changes an open order makes when a warning meets it: the warning's level joins
    its ``area_warnings`` and ``follow`` (``Escalator.follow``) brings the order up to
    date; the first change names the warning (reason ``area_warning``, a 中文 note).
    Nothing when the warning does not meet it or raises nothing (it is as high already)."""
    if not met_by(order, warning, rule):
        return []
    met = order.model_copy(update={"area_warnings": {**order.area_warnings, warning.warning_id: warning.level}})
    changes = follow(met, now)
    if not changes or changes[0].escalation is None:
        return []
    first = changes[0]
    snap = first.snapshot
    said = snap.notes[-1].split(" system:citybrain ", 1)[-1]
    note = f"{now.isoformat()} system:citybrain 区域预警 area warning {warning.label()}：{said}"
    snap = snap.model_copy(update={"notes": [*snap.notes[:-1], note]})
    esc = first.escalation.model_copy(update={"reason": "area_warning", "area_warning": warning.warning_id})  # type: ignore[union-attr]
    changes[0] = first.model_copy(update={"snapshot": snap, "escalation": esc})
    # Later changes (an assist joining) carry the renamed note on their snapshots too.
    for i, c in enumerate(changes[1:], 1):
        changes[i] = c.model_copy(update={"snapshot": c.snapshot.model_copy(update={
            "notes": [*c.snapshot.notes[:len(snap.notes) - 1], note, *c.snapshot.notes[len(snap.notes):]]})})
    return changes
