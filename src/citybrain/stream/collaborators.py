"""What the stages work with, built from the configuration in one place (issue 39): the
stages take these, never ``Config``, so a test hands them a fake clock or its own rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from citybrain.config import Config
from citybrain.domain.area_warnings import WarningBook
from citybrain.domain.order_flow import OrderRules
from citybrain.domain.sensor_rules import SensorRule


@dataclass(frozen=True, slots=True)
class Collaborators:
    """``clock``: wall-clock seconds (the lifecycle's clocks, the stamps of changes);
    ``rules``: the order workflow's router, deadlines, escalator, desks, locate and area
    warnings; ``sensor_rules``: each device kind's rules (device health's silence limits);
    ``closed_state_seconds``: how long an ended order stays in hot state;
    ``tick_seconds``: how often the fuse stage's timers look."""

    clock: Callable[[], float]
    rules: OrderRules
    sensor_rules: dict[str, SensorRule]
    closed_state_seconds: float
    tick_seconds: float


def collaborators(config: Config, *, clock: Callable[[], float] = time.time,
                  warnings: WarningBook | None = None) -> Collaborators:
    """The stages' collaborators from ``config``; ``warnings``: the worker's book of area
    warnings (stream/area_warnings.py), else an empty one of the configured rules."""
    rules = OrderRules(router=config.router, deadlines=config.deadlines, escalator=config.escalator,
                       departments=frozenset(config.desks), locate=config.city_map.locate,
                       warnings=warnings if warnings is not None else WarningBook(config.warnings))
    return Collaborators(clock=clock, rules=rules, sensor_rules=config.sensor_rules,
                         closed_state_seconds=config.settings.worker.closed_state_days * 86400,
                         tick_seconds=config.lifecycle.timers.tick_seconds)
