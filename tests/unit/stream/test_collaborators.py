"""The stages' collaborators, built from the configuration in one place
(stream/collaborators.py): what each stage gets instead of ``Config``."""

from citybrain.domain.area_warnings import WarningBook
from citybrain.kafka.topics import Topics
from citybrain.stream.collaborators import collaborators
from citybrain.stream.fuse_stage import FuseStage
from citybrain.stream.orderstate import REFRESH_SECONDS


def test_the_collaborators_are_the_configured_ones(config):
    c = collaborators(config)
    assert (c.rules.router, c.rules.deadlines, c.rules.escalator) == (config.router, config.deadlines,
                                                                       config.escalator)
    assert c.rules.departments == frozenset(config.desks) and c.sensor_rules == config.sensor_rules
    assert c.closed_state_seconds == config.settings.worker.closed_state_days * 86400
    assert c.tick_seconds == config.lifecycle.timers.tick_seconds
    assert c.health_tick_seconds == config.lifecycle.timers.health_tick_seconds
    assert c.refresh_seconds == REFRESH_SECONDS   # what the readers of workorders.state count on
    assert c.rules.locate is not None and c.rules.locate(117.8625, 36.7935) is not None
    assert isinstance(c.rules.warnings, WarningBook) and not c.rules.warnings.warnings


def test_the_fuse_stage_runs_on_the_clock_and_book_it_is_given(config):
    book = WarningBook(config.warnings)
    stage = FuseStage(collaborators(config, clock=lambda: 1_800_000_000.0, warnings=book), Topics("t."), "t.g")
    assert stage.warnings is book and stage.now().timestamp() == 1_800_000_000.0
    assert stage.tick_seconds == config.lifecycle.timers.tick_seconds
    assert stage.closed_orders.keep == config.settings.worker.closed_state_days * 86400
    assert stage.refresh.every == REFRESH_SECONDS
