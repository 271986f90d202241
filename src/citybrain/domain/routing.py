"""Routing (分类分办): which department, at which priority (the priority's time limits
are in ``config/lifecycle.toml``, see ``deadlines``).

Assisting departments (协办, DESIGN §12): ``[[assist]]`` entries name, per category, a
department that joins the lead — always, or once the order reaches a warning level or a
priority (the escalation module asks again after every escalation).

A route may name ``@street`` (属地处置, DESIGN §13): the order goes to the desk of the street it
lies in, ``street.<street_code>`` (its topic ``dispatch.street.<street_code>``).

Precedence: the asset owner from the device registry (a gas detector belongs to the
gas utility); then the most specific area override (longest admin-code prefix) for
the category or for ``*``; then the category's default.  No department → None, and
the order stays registered for an operator to triage.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citybrain.domain.sensor_rules import LEVEL_RANK
from citybrain.domain.taxonomy import Priority, Taxonomy
from citybrain.wire.enums import PRIORITY_RANK as PRIORITY_RANK
from citybrain.wire.models import WarningLevel

STREET = "@street"


def street_desk(street_code: str) -> str:
    """The dispatch target of a street's desk (its topic: dispatch.street.<code>)."""
    return f"street.{street_code}"




class CategoryFusion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    group: str | None = None
    radius_m: float = Field(100, gt=0, le=20000)
    window_minutes: float = Field(120, gt=0)


class Override(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    area: str = Field(pattern=r"^\d{6}(\d{3}(\d{3}(\d{3})?)?)?$")
    category: str = "*"
    department: str | None = None
    priority: Priority | None = None

    @model_validator(mode="after")
    def _does_something(self) -> Override:
        if self.department is None and self.priority is None:
            raise ValueError(f"override for {self.area}/{self.category} sets neither department nor priority")
        return self


class Trigger(BaseModel):
    """When a rule applies to an order: once its warning level reaches ``at_level`` or its
    priority reaches ``at_priority`` (either); with neither, always."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    category: str
    at_level: WarningLevel | None = None
    at_priority: Priority | None = None

    def reached(self, level: str | None, priority: str) -> bool:
        if self.at_level is None and self.at_priority is None:
            return True
        return ((self.at_level is not None and LEVEL_RANK[level] >= LEVEL_RANK[self.at_level])
                or (self.at_priority is not None and PRIORITY_RANK[priority] >= PRIORITY_RANK[self.at_priority]))


class AssistRule(Trigger):
    """A department that assists on a category's orders (at a level or priority, or always)."""

    department: str

    @property
    def rule(self) -> str:
        when = (f"@{self.at_level}" if self.at_level else "") + (f"@{self.at_priority}" if self.at_priority else "")
        return f"routing:{self.category}{when}"


class Defaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    radius_m: float = 100
    window_minutes: float = 120


class RoutingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    defaults: Defaults
    category: dict[str, CategoryFusion] = {}
    override: list[Override] = []
    assist: list[AssistRule] = []


@dataclass(frozen=True, slots=True)
class Route:
    department: str | None
    priority: Priority
    rule: str          # which rule decided, for the audit trail


class Router:
    def __init__(self, config: RoutingConfig, taxonomy: Taxonomy):
        self.config = config
        self.taxonomy = taxonomy
        known = {d.code for d in taxonomy.departments}
        for cat in config.category:
            if taxonomy.category(cat) is None:
                raise ValueError(f"routing.toml: unknown category {cat!r}")
        for o in config.override:
            if o.category != "*" and taxonomy.category(o.category) is None:
                raise ValueError(f"routing.toml override: unknown category {o.category!r}")
            if o.department is not None and o.department != STREET and o.department not in known:
                raise ValueError(f"routing.toml override: unknown department {o.department!r}")
        for a in config.assist:
            if taxonomy.category(a.category) is None:
                raise ValueError(f"routing.toml assist: unknown category {a.category!r}")
            if a.department not in known:
                raise ValueError(f"routing.toml assist: unknown department {a.department!r}")
        self._known = known
        self._group_radius: dict[str, float] = {}
        for c in taxonomy.categories:
            g, r = self.group(c.code), self.fusion(c.code).radius_m
            self._group_radius[g] = max(self._group_radius.get(g, 0.0), r)
        # Longest prefix first, category-specific before "*".
        self._overrides = sorted(config.override,
                                 key=lambda o: (-len(o.area), o.category == "*"))

    def fusion(self, category: str) -> CategoryFusion:
        found = self.config.category.get(category)
        if found is None:
            d = self.config.defaults
            return CategoryFusion(radius_m=d.radius_m, window_minutes=d.window_minutes)
        return found

    def group(self, category: str) -> str:
        return self.fusion(category).group or category

    def max_radius(self, group: str) -> float:
        """The widest radius of any category of the group (how far to look)."""
        return self._group_radius.get(group, self.config.defaults.radius_m)

    def route(self, category: str, area_codes: tuple[str, ...], asset_owner: str | None = None) -> Route:
        """``area_codes``: the location's grid, community, street and district codes."""
        cat = self.taxonomy.category(category)
        if cat is None:
            raise KeyError(category)
        department: str | None = cat.department or None
        priority: Priority = cat.priority
        rule = f"category:{category}"
        dept_set = prio_set = False
        for o in self._overrides:
            if o.category not in ("*", category) or not any(c.startswith(o.area) for c in area_codes):
                continue
            if o.department and not dept_set:
                department, dept_set = o.department, True
                rule = f"override:{o.area}:{o.category}"
            if o.priority and not prio_set:
                priority, prio_set = o.priority, True
        if asset_owner and asset_owner in self._known:
            department, rule = asset_owner, f"asset_owner:{asset_owner}"
        if department == STREET:
            street = next((c for c in area_codes if len(c) == 9), None)
            department = street_desk(street) if street else None
        return Route(department, priority, rule)

    def assists(self, category: str, level: str | None, priority: str) -> list[tuple[str, str]]:
        """(department, rule) of every assist the category's orders get at this warning
        level and priority."""
        return [(a.department, a.rule) for a in self.config.assist
                if a.category == category and a.reached(level, priority)]
