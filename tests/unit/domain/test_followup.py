"""反馈 and 回访: what reporters are told, and the visit command (DESIGN §13)."""

from datetime import timedelta

from citybrain.domain.followup import notifications
from citybrain.domain.lifecycle import apply
from citybrain.wire.models import Actor, Command, EventRef, WorkOrderChange
from tests.unit.domain.test_lifecycle import DEPTS, DL, GRID_MEMBER, NOW, OPERATOR, WATER, order

_n = iter(range(10**9))


def report_ref(rid, reporter):
    return EventRef(event_id=f"ev-{rid}", source="report", kind="report", category="waterlogging",
                    occurred_at=NOW, finder=reporter, lon=117.86, lat=36.79, report_id=rid)


def with_reports(*pairs):
    o = order()
    return o.model_copy(update={"events": [*o.events, *(report_ref(r, who) for r, who in pairs)]})


def change(o, kind="accepted"):
    return WorkOrderChange(work_order_id=o.work_order_id, version=o.version, type=kind, at=NOW,
                           actor=Actor(id="x", role="operator"), snapshot=o)


def cmd(action, actor, **kw):
    return Command(command_id=f"v-{next(_n)}", work_order_id="WO-flooding-abc", action=action, actor=actor,
                   ts=NOW, **kw)


def test_every_reporter_hears_of_a_lifecycle_change_once():
    o = with_reports(("R-1", "CZ-1"), ("R-2", "CZ-2"), ("R-1", "CZ-1")).model_copy(update={"status": "accepted"})
    notes = notifications(change(o, "accepted"))
    assert [(n.reporter_id, n.report_id) for n in notes] == [("CZ-1", "R-1"), ("CZ-2", "R-2")]
    assert all(n.status == "accepted" and n.change == "accepted" and n.work_order_id == o.work_order_id
               for n in notes)
    assert "处置部门已签收" in notes[0].message and "R-1" in notes[0].message


def test_more_evidence_is_told_only_to_the_reporter_whose_report_joined():
    o = with_reports(("R-1", "CZ-1"), ("R-2", "CZ-2"))
    [only] = notifications(change(o, "evidence_added"))
    assert (only.reporter_id, only.report_id) == ("CZ-2", "R-2") and "已并入工单" in only.message
    camera = o.model_copy(update={"events": [*o.events, EventRef(
        event_id="ev-cam", source="video", kind="alarm", category="waterlogging", occurred_at=NOW,
        finder="CAM-1", lon=117.86, lat=36.79)]})
    assert notifications(change(camera, "evidence_added")) == []
    assert notifications(change(order(), "accepted")) == []     # no report joined: nobody to tell


def test_visit_records_satisfaction_and_unsatisfied_before_closure_is_a_rework():
    o = order(status="handled").model_copy(update={"handled_at": NOW})
    out = apply(o, cmd("visit", OPERATOR, satisfaction="unsatisfied", report_id="R-1", note="积水仍在"), DEPTS,
                NOW + timedelta(hours=1), DL)
    snap = out.change.snapshot
    assert out.change.type == "visited"
    assert (snap.status, snap.rework_count, snap.handled_at) == ("accepted", 1, None)
    assert snap.handle_due_at is not None and snap.visits[-1].satisfaction == "unsatisfied"
    closed = apply(o, cmd("verify", GRID_MEMBER), DEPTS, NOW, DL).change.snapshot
    out = apply(closed, cmd("visit", OPERATOR, satisfaction="unsatisfied"), DEPTS, NOW, DL)
    assert out.change.snapshot.status == "closed" and len(out.change.snapshot.visits) == 1   # recorded, no rework
    assert apply(closed, cmd("visit", OPERATOR), DEPTS, NOW, DL).rejection.reason == "missing_field"
    assert apply(closed, cmd("visit", WATER, satisfaction="satisfied"), DEPTS, NOW, DL).rejection.reason == \
        "forbidden_role"
    assert apply(order(), cmd("visit", OPERATOR, satisfaction="satisfied"), DEPTS, NOW, DL).rejection.reason == \
        "not_allowed_in_state"
