"""区域预警 in the fuse stage, without a broker: a new order in a holding warning's area
starts at its level; the tick's sweep escalates the open orders a warning meets once —
again after a reassignment or an amendment it changes nothing twice; a warning that no
longer holds sweeps nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson
from pydantic_core import to_json

from citybrain.domain.area_warnings import AreaShapes, WarningBook, read_warning_record
from citybrain.kafka.topics import Topics
from citybrain.stream.collaborators import collaborators
from citybrain.stream.fuse_stage import FuseStage
from citybrain.wire.models import CityEvent, Location, SourceRef

IN_ZHOUCUN = Location(lon=117.90989, lat=36.77375, district_code="370306", street_code="370306001",
                      community_code="370306001001", grid_code="370306001001001")
ELSEWHERE = Location(lon=117.92944, lat=36.77375, district_code="370306", street_code="370306001",
                     community_code="370306001001", grid_code="370306001001003")
IN_ZICHUAN = Location(lon=117.755, lat=36.605, district_code="370302", street_code="370302001",
                      community_code="370302001001", grid_code="370302001001001")


def event(rid: str, where: Location) -> SimpleNamespace:
    now = datetime.now(UTC)
    ev = CityEvent(event_id=f"ev-{rid}", source="report", kind="report", category="waterlogging",
                   category_name="路面积水", severity="high", occurred_at=now, ingested_at=now, location=where,
                   report_id=rid, reporter_id="GM-1", source_ref=SourceRef(topic="t", partition=0, offset=0))
    return SimpleNamespace(value=to_json(ev), partition=0, topic="t.citybrain.fusion.inbox")


def warning(level="red", hours=1.0, district="370306") -> bytes:
    now = datetime.now(UTC)
    return orjson.dumps({"warning_id": "W-1", "issuer": "淄博市气象台", "kind": "rainstorm", "level": level,
                         "area": {"district_codes": [district]},
                         "valid_from": (now - timedelta(minutes=1)).isoformat(),
                         "valid_to": (now + timedelta(hours=hours)).isoformat(), "ts": now.isoformat()})


def changes(out, topics) -> list[dict]:
    return [orjson.loads(o.value) for o in out if o.topic == topics.workorder_events]


def test_the_fuse_stage_starts_and_sweeps_orders_under_a_warning(config):
    topics = Topics("t.")
    book = WarningBook(config.warnings)
    shapes = AreaShapes(config.city_map)
    stage = FuseStage(collaborators(config, warnings=book), topics, "t.g")
    stage.on_assigned({0})
    out: list = []
    stage.handle(event("R-A", IN_ZHOUCUN), out)       # before the warning: high, no level
    stage.handle(event("R-B", IN_ZICHUAN), out)
    assert {c["snapshot"]["priority"] for c in changes(out, topics)} == {"high"}
    assert changes(stage.tick(), topics) == []

    book.apply(read_warning_record(b"W-1", warning(), 65536, shapes))
    swept = changes(stage.tick(), topics)
    ups = [c for c in swept if c["type"] == "escalated"]
    assert [(c["snapshot"]["events"][0]["report_id"], c["escalation"]["reason"], c["escalation"]["warning_to"])
            for c in ups] == [("R-A", "area_warning", "red")]
    assert changes(stage.tick(), topics) == []                     # swept once
    stage.on_revoked({0})
    stage.on_assigned({0})
    assert changes(stage.tick(), topics) == []                     # a new owner sweeps again: nothing twice
    book.apply(read_warning_record(b"W-1", warning(hours=2), 65536, shapes))   # amended: a new record
    assert changes(stage.tick(), topics) == []

    out = []
    stage.handle(event("R-C", ELSEWHERE), out)                    # a new order starts at red
    [created, *_] = changes(out, topics)
    assert (created["snapshot"]["warning_level"], created["snapshot"]["priority"]) == ("red", "urgent")

    book.apply(read_warning_record(b"W-1", None, 65536, shapes))  # withdrawn (tombstone)
    assert book.escalating(datetime.now(UTC)) == []
    out = []
    stage.handle(event("R-D", ELSEWHERE.model_copy(update={"lon": 117.91966, "grid_code": "370306001001002"})), out)
    [created, *_] = changes(out, topics)
    assert (created["snapshot"]["warning_level"], created["snapshot"]["priority"]) == (None, "high")


def test_the_sweep_looks_at_no_more_than_its_budget_a_tick(config):
    topics = Topics("t.")
    book = WarningBook(config.warnings)
    stage = FuseStage(collaborators(config, warnings=book), topics, "t.g")
    stage.warning_sweep.budget = 1
    stage.on_assigned({0})
    for i, lon in enumerate((117.90989, 117.91966, 117.92944)):        # three orders, ~870 m apart
        stage.handle(event(f"R-{i}", IN_ZHOUCUN.model_copy(update={"lon": lon})), [])
    book.apply(read_warning_record(b"W-1", warning(), 65536, AreaShapes(config.city_map)))
    raised = [sum(c["type"] == "escalated" for c in changes(stage.tick(), topics)) for _ in range(4)]
    assert raised == [1, 1, 1, 0]
