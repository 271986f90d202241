"""Departments and the category taxonomy (事件分类), loaded from ``config/``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from citybrain.wire.models import Severity

Priority = Severity   # the wire models' priorities (wire/enums.py PRIORITIES)


class Department(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_zh: str


class Category(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_zh: str
    department: str = ""  # "" = no default department: stays registered for triage
    priority: Priority
    sensor_types: list[str] = []
    algorithms: list[str] = []

    @property
    def label(self) -> str:
        return f"{self.name_zh} ({self.code})"


class Taxonomy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    departments: list[Department]
    categories: list[Category]

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        dept_codes = {d.code for d in self.departments}
        seen_sensor: dict[str, str] = {}
        seen_algo: dict[str, str] = {}
        for c in self.categories:
            if c.department and c.department not in dept_codes:
                raise ValueError(f"category {c.code}: unknown department {c.department!r}")
            for s in c.sensor_types:
                if s in seen_sensor:
                    raise ValueError(f"sensor type {s} maps to {seen_sensor[s]} and {c.code}")
                seen_sensor[s] = c.code
            for a in c.algorithms:
                if a in seen_algo:
                    raise ValueError(f"algorithm {a} maps to {seen_algo[a]} and {c.code}")
                seen_algo[a] = c.code
        if len({c.code for c in self.categories}) != len(self.categories):
            raise ValueError("duplicate category code")
        return self

    _by_code: dict[str, Category] = PrivateAttr(default_factory=dict)
    _by_sensor: dict[str, Category] = PrivateAttr(default_factory=dict)
    _by_algorithm: dict[str, Category] = PrivateAttr(default_factory=dict)
    _departments: dict[str, Department] = PrivateAttr(default_factory=dict)

    # The lookups below read the private dict directly: ``self._by_sensor`` goes through
    # pydantic's ``__getattr__`` (~3 µs, a tenth of normalising a reading — measured).
    def model_post_init(self, _ctx: Any) -> None:
        self._by_code = {c.code: c for c in self.categories}
        self._by_sensor = {s: c for c in self.categories for s in c.sensor_types}
        self._by_algorithm = {a: c for c in self.categories for a in c.algorithms}
        self._departments = {d.code: d for d in self.departments}

    def category(self, code: str) -> Category | None:
        found: Category | None = _private(self)["_by_code"].get(code)
        return found

    def for_sensor(self, sensor_type: str) -> Category | None:
        found: Category | None = _private(self)["_by_sensor"].get(sensor_type)
        return found

    def for_algorithm(self, algorithm: str) -> Category | None:
        found: Category | None = _private(self)["_by_algorithm"].get(algorithm)
        return found

    def department(self, code: str) -> Department | None:
        found: Department | None = _private(self)["_departments"].get(code)
        return found


def _private(model: BaseModel) -> dict[str, Any]:
    """A model's private attributes, read without pydantic's ``__getattr__`` (always set:
    every private attribute here has a default)."""
    return model.__pydantic_private__  # type: ignore[return-value]
