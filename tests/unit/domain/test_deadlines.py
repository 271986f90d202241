"""Time limits, automatic supervision (督办) and automatic verification (自动核查)."""

from datetime import UTC, datetime, timedelta

import pytest

from citybrain.domain.deadlines import sensor_finders
from citybrain.wire.models import EventRef, Location, WorkOrder

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)   # Monday 09:00 in Zhoucun
H = timedelta(hours=1)
LOC = Location(lon=117.8625, lat=36.7935, district_code="370306", street_code="370306002",
               community_code="370306002001", grid_code="370306002001016")


@pytest.fixture(scope="module")
def dl(config):
    return config.deadlines


def ref(source="iot", kind="alarm", finder="WLV-UP-01", at=NOW):
    return EventRef(event_id=f"ev-{source}-{kind}-{finder}-{at.timestamp()}", source=source, kind=kind,
                    category="waterlogging", occurred_at=at, finder=finder, lon=LOC.lon, lat=LOC.lat)


def new_order(dl, category="waterlogging", priority="high", events=None) -> WorkOrder:
    o = WorkOrder(work_order_id="WO-flooding-t", version=1, status="registered", category=category,
                  category_name="x", fusion_group="flooding", priority=priority, department="water",
                  route_rule="category", location=LOC, opened_at=NOW, created_at=NOW, source_ingested_at=NOW,
                  events=events or [ref()], **dl.on_open(category, priority, NOW))
    return o.model_copy(update={"version": 2, "status": "dispatched", "dispatched_at": NOW,
                                **dl.enter(o, "dispatched", NOW)})


def test_limits_come_from_priority_or_category(dl):
    assert dl.limits("waterlogging", "high").accept_hours == 1
    assert dl.limits("streetlight_fault", "high").basis == "working"   # category wins
    o = new_order(dl)
    assert (o.time_limit_basis, o.due_at, o.accept_due_at) == ("natural", NOW + 12 * H, NOW + H)


def test_working_hour_limits_follow_the_calendar(dl):
    o = new_order(dl, category="garbage_overflow", priority="normal")
    # normal: 2 working hours to accept from Monday 09:00 → 11:00; 24 working hours
    # (three 8-hour days) → Wednesday 18:00.
    assert o.accept_due_at == NOW + 2 * H
    assert o.due_at == NOW + 2 * 24 * H + 9 * H


def test_supervision_climbs_street_district_city_at_100_150_200_percent(dl):
    o = new_order(dl)
    assert dl.supervise_due(o, NOW + 0.99 * H) == []
    first = dl.supervise_due(o, NOW + H)
    assert [(c.supervision.clock, c.supervision.share, c.supervision.level) for c in first] == [
        ("accept", 1.0, "street")]
    o = first[-1].snapshot
    assert (o.supervision_level, o.version) == (1, 3)
    assert dl.supervise_due(o, NOW + H) == []            # a step fires once
    second = dl.supervise_due(o, NOW + 1.5 * H)
    assert [c.supervision.level for c in second] == ["district"]
    o = second[-1].snapshot
    third = dl.supervise_due(o, NOW + 2 * H)
    assert [c.supervision.level for c in third] == ["city"] and third[-1].snapshot.supervision_level == 3


def test_a_worker_back_after_a_long_stop_emits_every_missed_step_in_order(dl):
    o = new_order(dl)
    changes = dl.supervise_due(o, NOW + 13 * H)
    assert [c.snapshot.supervision_steps[-1] for c in changes] == ["accept@1", "accept@1.5", "accept@2", "order@1"]
    assert [c.version for c in changes] == [3, 4, 5, 6]
    assert changes[-1].snapshot.supervision_level == 3
    assert all(c.type == "supervised" and c.actor.role == "system" for c in changes)
    assert dl.next_check(changes[-1].snapshot) == NOW + 18 * H    # order@1.5


def test_entering_a_stage_restarts_its_clock(dl):
    o = dl.supervise_due(new_order(dl), NOW + H)[-1].snapshot
    later = NOW + 2 * H
    accepted = o.model_copy(update={"status": "accepted", "accepted_at": later, **dl.enter(o, "accepted", later)})
    assert accepted.accept_due_at is None and accepted.handle_due_at == later + 8 * H
    assert dl.next_check(accepted) == later + 8 * H                 # handle@1
    assert "accept@1" in accepted.supervision_steps                 # history kept


def test_extension_moves_the_running_stage_and_the_order(dl):
    o = new_order(dl)
    moved = o.model_copy(update=dl.extend(o, 90))
    assert moved.accept_due_at == NOW + 2.5 * H and moved.due_at == NOW + 13.5 * H
    assert dl.supervise_due(moved, NOW + 2 * H) == []


def test_overdue(dl):
    o = new_order(dl)
    assert not dl.overdue(o, NOW + 0.5 * H) and dl.overdue(o, NOW + 1.1 * H)


def handled_sensor_order(dl, recovered_at):
    o = new_order(dl, events=[ref(), ref("video", "alarm", "CAM-1"), ref("iot", "recovery", at=recovered_at)])
    return o.model_copy(update={"status": "handled", "handled_at": NOW + H, "recovered_finders": ["WLV-UP-01"],
                                "last_recovery_at": recovered_at, **dl.enter(o, "handled", NOW + H)})


def test_a_sensor_order_verifies_itself_once_the_sensor_stays_normal(dl):
    o = handled_sensor_order(dl, recovered_at=NOW + 1.5 * H)
    assert sensor_finders(o) == {"WLV-UP-01"}           # the camera does not "recover"
    assert dl.verify_at(o) == NOW + 2 * H                # recovery + 30 min
    assert dl.auto_verify(o, NOW + 1.9 * H) is None
    done = dl.auto_verify(o, NOW + 2 * H)
    assert (done.type, done.actor.role, done.snapshot.status, done.snapshot.closed_at) == (
        "verified", "system", "closed", NOW + 2 * H)
    # Recovered before the department reported: the wait runs from 处置反馈.
    assert dl.verify_at(handled_sensor_order(dl, recovered_at=NOW)) == NOW + 1.5 * H


def test_no_automatic_verification_without_recovery_or_for_people_reports(dl):
    o = handled_sensor_order(dl, recovered_at=NOW + 1.5 * H)
    assert dl.verify_at(o.model_copy(update={"recovered_finders": []})) is None
    report = new_order(dl, events=[ref("report", "report", "GM-1")])
    report = report.model_copy(update={"status": "handled", "handled_at": NOW})
    assert dl.verify_at(report) is None


def test_alarm_back_before_closure_sends_the_order_back_for_rework(dl):
    o = handled_sensor_order(dl, recovered_at=NOW + 1.5 * H)
    back = dl.alarm_returned(o, "WLV-UP-01", NOW + 1.6 * H)
    assert (back.type, back.snapshot.status, back.snapshot.rework_count) == ("verification_rejected", "accepted", 1)
    assert back.snapshot.handle_due_at == NOW + 1.6 * H + 8 * H
    assert dl.alarm_returned(o, "CAM-1", NOW) is None     # not a sensor of this order
    assert dl.alarm_returned(back.snapshot, "WLV-UP-01", NOW) is None   # only while handled
