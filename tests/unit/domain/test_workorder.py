"""Work orders from events: 立案, automatic 派遣, evidence and recoveries."""

import time
from datetime import UTC, datetime, timedelta

import orjson

from citybrain.domain.fusion import group_of, work_order_id_for
from citybrain.domain.normalize import RecordMeta
from citybrain.domain.sensor_rules import DeviceState
from citybrain.domain.workorder import attach, open_order
from citybrain_tools.simulate.traffic import iso

NOW = datetime.fromtimestamp(1_800_000_000, UTC)


def report_event(normalizer, rid="R-1", category="waterlogging", lon=117.8626, lat=36.7934):
    raw = orjson.dumps({"report_id": rid, "reporter_id": "GM-1", "category": category,
                        "ts": iso(time.time() - 30), "lon": lon, "lat": lat,
                        "photos": [f"https://p/{rid}.jpg"], "description": "积水"})
    return normalizer.report(raw, RecordMeta("ingest.reports", 0, 1, time.time(), b"GM-1")).event


def alarm_event(normalizer, device="WLV-UP-01", kind_value=0.4):
    raw = orjson.dumps({"device_id": device, "sensor_type": "water_level", "value": kind_value,
                        "ts": iso(time.time() - 10), "seq": 5})
    pending = DeviceState(pending_since=time.time() - 100, last_ts=time.time() - 100)
    recovering = DeviceState(alarm=True, pending_since=time.time() - 1000, last_ts=time.time() - 100)
    state = pending if kind_value > 0.15 else recovering
    return normalizer.reading(raw, RecordMeta("ingest.iot.readings", 0, 2, time.time(), device.encode()),
                              lambda d: state).event


def test_routed_order_is_created_then_dispatched(normalizer, config):
    ev = report_event(normalizer)
    route = config.router.route(ev.category, (ev.location.grid_code, ev.location.street_code))
    wo = work_order_id_for("flooding", ev.event_id)
    created, dispatched = open_order(wo, "flooding", ev, route, NOW, config.deadlines)
    assert (created.type, created.version, created.snapshot.status) == ("created", 1, "registered")
    assert (dispatched.type, dispatched.version, dispatched.snapshot.status) == ("dispatched", 2, "dispatched")
    snap = dispatched.snapshot
    assert snap.department == "water" and snap.priority == "high" and snap.dispatched_at == NOW
    assert snap.source_ingested_at == ev.ingested_at and snap.evidence == ["https://p/R-1.jpg"]
    # high priority: natural hours, 12 h for the order, 1 h to accept (config/lifecycle.toml)
    assert (snap.due_at - NOW).total_seconds() == 12 * 3600
    assert (snap.stage_started_at, snap.accept_due_at) == (NOW, NOW + timedelta(hours=1))
    assert group_of(snap.work_order_id) == "flooding"


def test_unroutable_order_stays_registered(normalizer, config):
    ev = report_event(normalizer, category="other")
    route = config.router.route("other", (ev.location.street_code,))
    changes = open_order(work_order_id_for("other", ev.event_id), "other", ev, route, NOW, config.deadlines)
    assert [c.type for c in changes] == ["created"]
    assert changes[0].snapshot.department is None and changes[0].snapshot.status == "registered"


def test_evidence_and_recovery_are_attached_with_growing_versions(normalizer, config):
    first = report_event(normalizer)
    route = config.router.route(first.category, (first.location.street_code,))
    order = open_order("WO-flooding-x", "flooding", first, route, NOW, config.deadlines)[-1].snapshot
    alarm = alarm_event(normalizer)
    c1 = attach(order, alarm, NOW)
    assert c1.type == "evidence_added" and c1.version == 3 and c1.snapshot.finders == ["WLV-UP-01"]
    recovery = alarm_event(normalizer, kind_value=0.01)
    assert recovery.kind == "recovery"
    c2 = attach(c1.snapshot, recovery, NOW)
    assert c2.type == "recovery_recorded" and c2.version == 4
    assert c2.snapshot.recovered_finders == ["WLV-UP-01"] and len(c2.snapshot.events) == 3
    again = attach(c2.snapshot, alarm_event(normalizer), NOW)   # the alarm came back
    assert again.snapshot.recovered_finders == []


def test_the_callers_address_and_masked_contact_stay_on_the_order(normalizer, config):
    def hotline(rid, **fields):
        raw = orjson.dumps({"report_id": rid, "reporter_id": "op-1", "channel": "hotline_12345",
                            "category": "road_damage", "ts": iso(time.time() - 30), "lon": 117.87, "lat": 36.745,
                            **fields})
        return normalizer.report(raw, RecordMeta("ingest.reports", 0, 1, time.time(), b"op-1")).event

    first = hotline("R-h1", address="周村区青年路88号门口，电话13812345678", contact_phone="138 1234 5678")
    route = config.router.route(first.category, (first.location.street_code,))
    snap = open_order(work_order_id_for("road", first.event_id), "road", first, route, NOW,
                      config.deadlines)[-1].snapshot
    assert snap.address == "周村区青年路88号门口，电话138****5678" and snap.reporter_contact == "138****5678"
    assert "12345678" not in orjson.dumps(snap.model_dump(mode="json")).decode()
    # A later report does not overwrite them …
    later = attach(snap, hotline("R-h2", address="青年路90号", contact_phone="13900001111"), NOW).snapshot
    assert (later.address, later.reporter_contact) == (snap.address, "138****5678")
    # … but fills them when the first report gave none (a sensor opened the order).
    bare = snap.model_copy(update={"address": None, "reporter_contact": None})
    filled = attach(bare, hotline("R-h3", address="青年路90号", contact_phone="13900001111"), NOW).snapshot
    assert (filled.address, filled.reporter_contact) == ("青年路90号", "139****1111")
    # Orders written before these fields read as None.
    old = {k: v for k, v in snap.model_dump(mode="json").items() if k not in ("address", "reporter_contact")}
    assert type(snap).model_validate(old).address is None
