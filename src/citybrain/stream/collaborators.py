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
from citybrain.stream.orderstate import REFRESH_SECONDS


@dataclass(frozen=True, slots=True)
class Collaborators:
    """``clock``: wall-clock seconds (the lifecycle's clocks, the stamps of changes);
    ``rules``: the order workflow's router, deadlines, escalator, desks, locate and area
    warnings; ``sensor_rules``: each device kind's rules (device health's silence limits);
    ``closed_state_seconds``: how long an ended order stays in hot state;
    ``tick_seconds``: how often the fuse stage's timers look; ``health_tick_seconds``: how
    often the normalise stage looks for silent devices; ``refresh_seconds``: how old an
    open order's ``workorders.state`` record grows before it is written again (readers
    start the topic that far back: a test shortens it, the worker never does)."""

    clock: Callable[[], float]
    rules: OrderRules
    sensor_rules: dict[str, SensorRule]
    closed_state_seconds: float
    tick_seconds: float
    health_tick_seconds: float
    refresh_seconds: float = REFRESH_SECONDS


def collaborators(config: Config, *, clock: Callable[[], float] = time.time,
                  warnings: WarningBook | None = None) -> Collaborators:
    """The stages' collaborators from ``config``; ``warnings``: the worker's book of area
    warnings (stream/area_warnings.py), else an empty one of the configured rules."""
    rules = OrderRules(router=config.router, deadlines=config.deadlines, escalator=config.escalator,
                       departments=frozenset(config.desks), locate=config.city_map.locate,
                       warnings=warnings if warnings is not None else WarningBook(config.warnings))
    timers = config.lifecycle.timers
    return Collaborators(clock=clock, rules=rules, sensor_rules=config.sensor_rules,
                         closed_state_seconds=config.settings.worker.closed_state_days * 86400,
                         tick_seconds=timers.tick_seconds, health_tick_seconds=timers.health_tick_seconds)
