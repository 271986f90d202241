"""An order's timeline shows its changes and the commands refused on it."""

from datetime import UTC, datetime, timedelta

import orjson
from pydantic_core import to_json

from citybrain.domain.lifecycle import apply
from citybrain.domain.timeline import timeline
from citybrain.wire.models import Actor, Command, EventRef, Location, WorkOrder, WorkOrderChange

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
LOC = Location(lon=117.8625, lat=36.7935, district_code="370306", street_code="370306002",
               community_code="370306002001", grid_code="370306002001016")
WATER = Actor(id="w-1", role="department", department="water")
FIRE = Actor(id="f-1", role="department", department="fire")


def test_changes_and_refusals_interleave_in_time(config):
    dl = config.deadlines
    order = WorkOrder(work_order_id="WO-t", version=1, status="registered", category="waterlogging",
                      category_name="路面积水", fusion_group="flooding", priority="high", department="water",
                      route_rule="r", location=LOC, opened_at=NOW, created_at=NOW, source_ingested_at=NOW,
                      events=[EventRef(event_id="e", source="report", kind="report", category="waterlogging",
                                       occurred_at=NOW, lon=LOC.lon, lat=LOC.lat)],
                      **dl.on_open("waterlogging", "high", NOW))
    log = [WorkOrderChange(work_order_id="WO-t", version=1, type="created", at=NOW,
                           actor=Actor(id="citybrain", role="system"), snapshot=order)]
    order = order.model_copy(update={"version": 2, "status": "dispatched", **dl.enter(order, "dispatched", NOW)})
    log.append(WorkOrderChange(work_order_id="WO-t", version=2, type="dispatched", at=NOW,
                               actor=Actor(id="citybrain", role="system"), snapshot=order))
    refused = []
    for i, (actor, action) in enumerate([(FIRE, "accept"), (WATER, "accept"), (WATER, "accept")]):
        at = NOW + timedelta(minutes=i + 1)
        out = apply(order, Command(command_id=f"c{min(i, 1)}", work_order_id="WO-t", action=action,
                                   actor=actor, ts=at), frozenset({"water", "fire"}), at, dl)
        if out.change:
            log.append(out.change)
            order = out.change.snapshot
        else:
            refused.append(out.rejection)
    changes = [orjson.loads(to_json(c)) for c in log]
    rejections = [orjson.loads(to_json(r)) for r in refused]
    lines = timeline(changes + changes[:1], rejections)          # a redelivered change collapses
    assert [(e["kind"], e["label"]) for e in lines] == [
        ("change", "立案"), ("change", "派遣"), ("refusal", "拒绝 超出职责范围"), ("change", "签收"),
        ("refusal", "拒绝 重复指令")]
    assert lines[2]["actor"] == "department:f-1(fire)" and "acts only on its own orders" in lines[2]["note"]
