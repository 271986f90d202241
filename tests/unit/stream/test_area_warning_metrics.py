"""区域预警 metrics, without a broker: the gauge of warnings holding by kind and level (the
configured kinds at 0 from the start; a warning that ends by itself leaves it at the next
export) and the counter of orders a warning raised — a new order started at its level, an
open one escalated by the sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from citybrain.domain.area_warnings import read_warning_record
from citybrain.kafka.topics import Topics
from citybrain.stream.area_warnings import WarningFeed
from citybrain.stream.collaborators import collaborators
from citybrain.stream.fuse_stage import FuseStage

from .test_area_warning_sweep import IN_ZHOUCUN, changes, event, warning


def active(kind: str, level: str) -> float | None:
    return REGISTRY.get_sample_value("citybrain_area_warnings_active", {"kind": kind, "level": level})


def raised(kind: str, way: str) -> float | None:
    return REGISTRY.get_sample_value("citybrain_area_warning_orders_total", {"kind": kind, "way": way})


def test_the_gauge_follows_the_warnings_holding(config):
    feed = WarningFeed(config, "127.0.0.1:1", "t.ingest.warnings")
    for kind in config.warnings.kind:        # primed: the dashboard and the alert see them at start
        assert active(kind, "red") == 0 and active(kind, "blue") == 0
        assert raised(kind, "new") is not None and raised(kind, "open") is not None
    feed.book.apply(read_warning_record(b"W-1", warning("red", hours=1), 65536, feed.shapes))
    now = datetime.now(UTC)
    feed.export(now)
    assert active("rainstorm", "red") == 1 and active("rainstorm", "yellow") == 0
    feed.export(now + timedelta(hours=2))    # ended by itself: no record says so
    assert active("rainstorm", "red") == 0


def test_orders_raised_are_counted_new_and_open(config):
    topics = Topics("t.")
    feed = WarningFeed(config, "127.0.0.1:1", "t.ingest.warnings")
    stage = FuseStage(collaborators(config, warnings=feed.book), topics, "t.g")
    stage.on_assigned({0})
    new0, open0 = raised("rainstorm", "new") or 0, raised("rainstorm", "open") or 0
    stage.handle(event("R-OPEN", IN_ZHOUCUN), [])            # opened before any warning
    assert (raised("rainstorm", "new") or 0) == new0

    feed.book.apply(read_warning_record(b"W-1", warning("red"), 65536, feed.shapes))
    assert len(changes(stage.tick(), topics)) >= 1                # the sweep raises the open one
    assert raised("rainstorm", "open") == open0 + 1
    stage.tick()                                                    # once only
    assert raised("rainstorm", "open") == open0 + 1

    # ~870 m east of the first: a new order, not evidence on the old one.
    out: list = []
    stage.handle(event("R-NEW", IN_ZHOUCUN.model_copy(update={"lon": 117.92944})), out)
    assert changes(out, topics)[0]["snapshot"]["area_warnings"] == {"W-1": "red"}
    assert raised("rainstorm", "new") == new0 + 1
