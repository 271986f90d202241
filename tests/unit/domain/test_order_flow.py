"""The order workflow's decisions (domain/order_flow.py), with no stage, no clock and no
broker: what an event, a command, a merge's hop or the clock does to an order, and where
each change goes."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.config import Config
from citybrain.domain import order_flow
from citybrain.domain.area_warnings import AreaShapes, WarningBook, read_warning_record
from citybrain.domain.fusion import Decision, work_order_id_for
from citybrain.domain.order_flow import OrderRules, Outlet
from citybrain.wire.models import (
    OPEN_STATUSES,
    Actor,
    CityEvent,
    Command,
    Escalation,
    Location,
    MergeTransfer,
    SourceRef,
    WorkOrder,
    WorkOrderChange,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)   # a Monday: working hours run from 09:00
CONFIG = Config()
RULES = OrderRules(router=CONFIG.router, deadlines=CONFIG.deadlines, escalator=CONFIG.escalator,
                   departments=frozenset(CONFIG.desks), locate=CONFIG.city_map.locate,
                   warnings=WarningBook(CONFIG.warnings))
DL = RULES.deadlines
HERE = Location(lon=117.8625, lat=36.7935, district_code="370306", street_code="370306002",
                community_code="370306002001", grid_code="370306002001016")
OPERATOR = Actor(id="op-1", role="operator")
CATEGORIES = ["waterlogging", "gas_leak", "noise", "streetlight_fault", "device_fault", "other"]
KEEP = 14 * 86400.0


def event(eid: str, *, source: str = "report", kind: str = "report", category: str = "waterlogging",
          device: str | None = None, at: datetime = NOW, needs_location: bool = False) -> CityEvent:
    report = source == "report"
    return CityEvent(event_id=eid, source=source, kind=kind, category=category, category_name=category,
                     severity="high", occurred_at=at, ingested_at=at, location=HERE, device_id=device,
                     report_id=f"R-{eid}" if report else None, reporter_id="GM-1" if report else None,
                     needs_location=needs_location, source_ref=SourceRef(topic="t", partition=0, offset=0))


def opened(first: CityEvent, rules: OrderRules = RULES) -> list[WorkOrderChange]:
    wo = work_order_id_for(rules.router.group(first.category), first.event_id)
    outcome = order_flow.on_event(Decision("open", wo), None, first, first.occurred_at, rules)
    assert outcome.opened and not outcome.changes and outcome.ignored is None
    return list(outcome.opened)


def command(order: WorkOrder, action: str, at: datetime, **kw) -> Command:
    return Command(command_id=f"c-{action}-{order.version}-{at.timestamp()}", work_order_id=order.work_order_id,
                   action=action, actor=kw.pop("actor", OPERATOR), ts=at, **kw)


def move(order: WorkOrder, action: str, at: datetime, **kw) -> WorkOrder:
    result = order_flow.on_command(order, command(order, action, at, **kw), at, RULES)
    assert result.rejection is None, result.rejection
    return result.changes[-1].snapshot


def join(order: WorkOrder, ev: CityEvent, at: datetime) -> order_flow.EventOutcome:
    action = "recovery" if ev.kind == "recovery" else "join"
    return order_flow.on_event(Decision(action, order.work_order_id), order, ev, at, RULES)


def consecutive(order: WorkOrder, changes) -> bool:
    return [c.version for c in changes] == list(range(order.version + 1, order.version + 1 + len(changes)))


# -- an event ---------------------------------------------------------------------------------


def test_a_new_order_is_routed_by_its_area_and_dispatched_at_once():
    changes = opened(event("e1"))
    assert [c.type for c in changes][:2] == ["created", "dispatched"]
    snap = changes[-1].snapshot
    assert (snap.department, snap.priority, snap.fusion_group) == ("water", "high", "flooding")
    route = CONFIG.router.route("waterlogging", order_flow.area_codes(HERE))
    assert snap.route_rule == route.rule
    assert order_flow.area_codes(HERE) == (HERE.grid_code, HERE.community_code, HERE.street_code,
                                           HERE.district_code)


def test_an_unlocated_report_waits_in_triage_whatever_warning_holds():
    changes = opened(event("e1", needs_location=True), warned_rules())
    snap = changes[-1].snapshot
    assert [c.type for c in changes] == ["created"]
    assert (snap.department, snap.route_rule, snap.area_warnings) == (None, "needs_location", {})


def warned_rules() -> OrderRules:
    book = WarningBook(CONFIG.warnings)
    record = (b'{"warning_id": "W-1", "issuer": "qx", "kind": "rainstorm", "level": "red", '
              b'"area": {"district_codes": ["370306"]}, "valid_from": "2026-11-23T08:00:00+00:00", '
              b'"valid_to": "2026-11-23T12:00:00+00:00", "ts": "2026-11-23T08:00:00+00:00"}')
    entry = read_warning_record(b"W-1", record, 65536, AreaShapes(CONFIG.city_map))
    assert entry.warning is not None, entry.reason
    book.apply(entry)
    return OrderRules(RULES.router, RULES.deadlines, RULES.escalator, RULES.departments, RULES.locate, book)


def test_a_new_order_under_a_holding_warning_starts_at_its_level_and_priority():
    plain = opened(event("e1"))[-1].snapshot
    warned = opened(event("e1"), warned_rules())[-1].snapshot
    assert plain.warning_level is None and plain.priority == "high"
    assert warned.area_warnings == {"W-1": "red"} and warned.warning_level == "red"
    assert warned.priority == CONFIG.escalator.config.warning_priority["red"]
    assert warned.due_at < plain.due_at   # its priority's limits from the start


@pytest.mark.parametrize("action", ["duplicate", "orphan_recovery"])
def test_a_duplicate_or_an_orphan_recovery_changes_nothing(action):
    order = opened(event("e1"))[-1].snapshot
    outcome = order_flow.on_event(Decision(action, order.work_order_id if action == "duplicate" else None),
                                  order, event("e1"), NOW, RULES)
    assert outcome == order_flow.EventOutcome(ignored=action)


def test_a_join_on_an_order_that_is_not_stored_is_an_error():
    with pytest.raises(LookupError):
        order_flow.on_event(Decision("join", "WO-flooding-x"), None, event("e2"), NOW, RULES)


def test_more_evidence_is_attached_and_moves_no_clock():
    order = opened(event("e1"))[-1].snapshot
    outcome = join(order, event("e2", at=NOW + timedelta(minutes=5)), NOW + timedelta(minutes=5))
    assert [c.type for c in outcome.changes] == ["evidence_added"] and not outcome.timed
    assert [e.event_id for e in outcome.changes[-1].snapshot.events] == ["e1", "e2"]


def handled_sensor_order() -> WorkOrder:
    """A gauge's alarm, accepted and handled (it waits for verification)."""
    order = opened(event("a1", source="iot", kind="alarm", device="WLV-1"))[-1].snapshot
    order = move(order, "accept", NOW + timedelta(minutes=10))
    return move(order, "handle", NOW + timedelta(minutes=40), note="已排水")


def test_a_returning_alarm_before_verification_sends_the_order_back_for_rework():
    order = handled_sensor_order()
    t1 = NOW + timedelta(minutes=50)
    recovered = join(order, event("r1", source="iot", kind="recovery", device="WLV-1", at=t1), t1)
    assert [c.type for c in recovered.changes] == ["recovery_recorded"] and recovered.timed
    order = recovered.changes[-1].snapshot
    assert order.recovered_finders == ["WLV-1"]
    t2 = t1 + timedelta(minutes=5)
    back = join(order, event("a2", source="iot", kind="alarm", device="WLV-1", at=t2), t2)
    assert [c.type for c in back.changes][:2] == ["evidence_added", "verification_rejected"] and back.timed
    assert consecutive(order, back.changes)
    snap = back.changes[-1].snapshot
    assert (snap.status, snap.rework_count, snap.handled_at) == ("accepted", 1, None)


def test_only_an_alarm_of_a_recovered_sensor_is_a_return():
    order = handled_sensor_order()
    t = NOW + timedelta(minutes=50)
    other = join(order, event("b1", source="iot", kind="alarm", device="WLV-2", at=t), t)   # never recovered
    report = join(order, event("p1", at=t), t)
    for outcome in (other, report):
        assert "verification_rejected" not in [c.type for c in outcome.changes]
        assert outcome.changes[-1].snapshot.status == "handled"


ENDINGS = st.sampled_from(["cancel", "verify", "merge"])


def ended_order(ending: str, end: datetime) -> WorkOrder:
    """A handled sensor order ended at ``end``: verified, cancelled or merged."""
    order = handled_sensor_order()
    if ending == "verify":
        order = move(order, "verify", end)
    elif ending == "cancel":
        order = move(order, "cancel", end, note="误报")
    else:
        order = move(order, "merge", end, note="重复", into="WO-flooding-other")
    assert order.status not in OPEN_STATUSES
    return order


@settings(max_examples=60, deadline=None)
@given(ending=ENDINGS, kind=st.sampled_from(["report", "alarm", "recovery"]),
       action=st.sampled_from(["join", "recovery", "duplicate"]),
       hours_after=st.floats(min_value=0, max_value=40 * 24), keep_days=st.floats(min_value=0.5, max_value=30))
def test_an_event_on_an_ended_order_never_changes_it_and_it_leaves_hot_state_after_retention(
        ending, kind, action, hours_after, keep_days):
    end = NOW + timedelta(hours=1)
    order = ended_order(ending, end)
    at = end + timedelta(hours=hours_after)
    ev = event("late", source="report" if kind == "report" else "iot", kind=kind,
               device=None if kind == "report" else "WLV-1", at=at)
    outcome = order_flow.on_event(Decision(action, order.work_order_id), order, ev, at, RULES)
    assert outcome.changes == () and outcome.opened == () and outcome.ignored is not None
    snapshot = order.model_dump(mode="json")
    assert order_flow.ended_at(snapshot) == end.timestamp()
    assert order_flow.leaves_hot_state(snapshot, at.timestamp(), keep_days * 86400) == (
        at.timestamp() >= end.timestamp() + keep_days * 86400)


def test_an_open_order_never_leaves_hot_state():
    snapshot = opened(event("e1"))[-1].snapshot.model_dump(mode="json")
    assert order_flow.ended_at(snapshot) is None
    assert not order_flow.leaves_hot_state(snapshot, (NOW + timedelta(days=400)).timestamp(), KEEP)


# -- a command --------------------------------------------------------------------------------


def test_a_command_on_an_order_not_held_is_refused():
    ghost = opened(event("e1"))[-1].snapshot
    result = order_flow.on_command(None, command(ghost, "accept", NOW), NOW, RULES)
    assert result.rejection is not None and result.rejection.reason == "unknown_work_order"
    assert result.changes == () and result.opened == ()


def test_a_recategorised_order_is_indexed_again_and_routed_to_its_new_department():
    order = opened(event("e1"))[-1].snapshot
    result = order_flow.on_command(order, command(order, "recategorise", NOW, category="gas_leak"), NOW, RULES)
    assert result.rejection is None and result.reindex
    assert result.changes[-1].snapshot.category == "gas_leak" and consecutive(order, result.changes)
    accepted = order_flow.on_command(order, command(order, "accept", NOW), NOW, RULES)
    assert not accepted.reindex and [c.type for c in accepted.changes] == ["accepted"]


def test_a_split_opens_a_new_order_with_the_findings_named():
    order = opened(event("e1"))[-1].snapshot
    t = NOW + timedelta(minutes=3)
    order = join(order, event("e2", at=t), t).changes[-1].snapshot
    result = order_flow.on_command(order, command(order, "split", t, evidence=["e2"], note="两处"), t, RULES)
    assert result.rejection is None and result.reindex and result.opened
    new = result.opened[-1].snapshot
    assert [e.event_id for e in new.events] == ["e2"] and new.work_order_id != order.work_order_id
    assert [e.event_id for e in result.changes[-1].snapshot.events] == ["e1"]


# -- a merge's hops ---------------------------------------------------------------------------


def two_orders() -> tuple[WorkOrder, WorkOrder]:
    survivor = opened(event("s1"))[-1].snapshot
    duplicate = opened(event("d1", category="noise"))[-1].snapshot
    return survivor, duplicate


def merge_cmd(duplicate: WorkOrder, into: str) -> Command:
    return command(duplicate, "merge", NOW, note="重复上报", into=into)


def test_a_merge_goes_from_the_survivor_to_the_duplicate_and_back():
    survivor, duplicate = two_orders()
    cmd = merge_cmd(duplicate, survivor.work_order_id)
    first = order_flow.merge_start(survivor, cmd, NOW)
    assert first.rejection is None and first.hop is not None
    transfer, to = first.hop
    assert (transfer.transfer, to) == ("close", duplicate.work_order_id)
    closed = order_flow.on_command(duplicate, cmd, NOW, RULES)
    assert closed.changes[-1].snapshot.status == "merged"
    back = order_flow.merge_closed(duplicate, cmd, NOW)
    assert back.hop is not None and back.hop[1] == survivor.work_order_id
    absorbed = order_flow.merge_absorb(survivor, back.hop[0], NOW, RULES)
    assert absorbed.rejection is None and absorbed.hop is None
    assert absorbed.changes[0].type == "merge_absorbed"
    assert duplicate.work_order_id in absorbed.changes[-1].snapshot.merged_from
    replay = order_flow.merge_absorb(absorbed.changes[-1].snapshot, back.hop[0], NOW, RULES)
    assert replay == order_flow.MergeStep()


def test_a_merge_into_an_order_not_held_is_refused_at_either_end():
    survivor, duplicate = two_orders()
    cmd = merge_cmd(duplicate, survivor.work_order_id)
    refused = order_flow.merge_start(None, cmd, NOW)
    assert refused.hop is None and refused.rejection is not None
    assert refused.rejection.reason == "unknown_work_order"
    transfer = MergeTransfer(transfer="absorb", command=cmd, duplicate=duplicate, visited=[survivor.work_order_id],
                             at=NOW)
    gone = order_flow.merge_absorb(None, transfer, NOW, RULES)
    assert gone.rejection is not None and gone.rejection.status == "merged" and gone.changes == ()


def test_the_findings_follow_a_survivor_merged_on_meanwhile():
    survivor, duplicate = two_orders()
    moved_on = survivor.model_copy(update={"merged_into": "WO-flooding-third"})
    transfer = MergeTransfer(transfer="absorb", command=merge_cmd(duplicate, survivor.work_order_id),
                             duplicate=duplicate, visited=[survivor.work_order_id], at=NOW)
    step = order_flow.merge_absorb(moved_on, transfer, NOW, RULES)
    assert step.hop is not None and step.changes == ()
    onward, to = step.hop
    assert to == "WO-flooding-third" and onward.visited == [survivor.work_order_id, "WO-flooding-third"]


# -- the clock --------------------------------------------------------------------------------


def test_supervision_and_automatic_verification_fall_due_in_one_tick():
    order = handled_sensor_order()
    t = NOW + timedelta(hours=1)
    order = join(order, event("r1", source="iot", kind="recovery", device="WLV-1", at=t), t).changes[-1].snapshot
    assert order_flow.due_changes(order, t + timedelta(minutes=29), DL) == []
    late = NOW + timedelta(hours=13)   # past the order's 12 h limit and the 30 min of normal readings
    changes = order_flow.due_changes(order, late, DL)
    assert [c.type for c in changes] == ["supervised", "verified"] and consecutive(order, changes)
    assert changes[0].supervision is not None and changes[0].supervision.level == "street"
    assert changes[-1].snapshot.status == "closed"


# Ways through the lifecycle, a recovery in places that make automatic verification due.
PATHS = st.sampled_from([(), ("accept",), ("accept", "handle"), ("accept", "handle", "recover"),
                         ("accept", "recover", "handle"), ("recover",), ("dispatch", "accept")])


@st.composite
def open_orders(draw) -> WorkOrder:
    category = draw(st.sampled_from(CATEGORIES))
    sensor = draw(st.booleans())
    first = event("f1", source="iot" if sensor else "report", kind="alarm" if sensor else "report",
                  category=category, device="DEV-1" if sensor else None)
    order = opened(first)[-1].snapshot
    t = NOW
    for action in draw(PATHS):
        t += timedelta(minutes=draw(st.integers(1, 600)))
        if action == "recover" and sensor:
            order = join(order, event(f"r{t.timestamp()}", source="iot", kind="recovery", category=category,
                                      device="DEV-1", at=t), t).changes[-1].snapshot
        elif action != "recover":
            result = order_flow.on_command(order, command(order, action, t, department="water", note="好"), t,
                                           RULES)
            order = result.changes[-1].snapshot if result.rejection is None else order
    return order


@settings(max_examples=80, deadline=None)
@given(order=open_orders(), first=st.floats(0, 300), then=st.floats(0, 300))
def test_a_ticks_due_changes_are_exactly_those_whose_time_has_come(order, first, then):
    t1 = NOW + timedelta(hours=first)
    t2 = t1 + timedelta(hours=then)
    for now in (t1, t2):
        changes = order_flow.due_changes(order, now, DL)
        check = DL.next_check(order)
        assert bool(changes) == (check is not None and check <= now)
        assert consecutive(order, changes)
        for c in changes:
            if c.type == "supervised":
                assert c.supervision is not None and c.supervision.due_at <= now
            else:
                assert c.type == "verified" and c is changes[-1]
                at = DL.verify_at(changes[-2].snapshot if len(changes) > 1 else order)
                assert at is not None and at <= now
        if changes:
            order = changes[-1].snapshot
            assert order_flow.due_changes(order, now, DL) == []   # nothing falls due twice
            after = DL.next_check(order)
            assert after is None or after > now


# -- an assignment: what a stored order needs ------------------------------------------------------


def stored(order: WorkOrder) -> dict:
    """The snapshot as the fuse stage reads it from hot state (JSON, not validated)."""
    return orjson.loads(order.model_dump_json())


@settings(max_examples=80, deadline=None)
@given(order=open_orders(), away_hours=st.floats(0, 400))
def test_a_restored_open_order_is_timed_for_exactly_its_next_due_change(order, away_hours):
    now = NOW + timedelta(hours=away_hours)
    r = order_flow.restored(stored(order), now.timestamp(), DL)
    assert r.order == order and r.work_order_id == order.work_order_id and r.ended is None and not r.event_ids
    assert r.clocks == order_flow.clocks(order, DL)
    assert r.clocks is not None and r.clocks.overdue_at == DL.overdue_at(order).timestamp()
    check = r.clocks.check_at
    if check is None:   # nothing will ever fall due on it (a report's order waits for people)
        assert order_flow.due_changes(order, now + timedelta(days=400), DL) == []
        return
    at = datetime.fromtimestamp(check, UTC)
    assert order_flow.due_changes(order, at - timedelta(milliseconds=1), DL) == []   # nothing missed before
    first = order_flow.due_changes(order, at, DL)
    assert first and consecutive(order, first)   # the look finds a change
    # What fell due while the partition was away comes at the first tick after the assignment.
    assert bool(order_flow.due_changes(order, now, DL)) == (check <= now.timestamp())


@settings(max_examples=40, deadline=None)
@given(ending=ENDINGS, away_hours=st.floats(0, 400))
def test_a_restored_ended_order_gets_no_clock_and_its_events_stay_duplicates(ending, away_hours):
    end = NOW + timedelta(hours=1)
    order = ended_order(ending, end)
    now = end + timedelta(hours=away_hours)
    r = order_flow.restored(stored(order), now.timestamp(), DL)
    assert (r.order, r.clocks, r.ended) == (None, None, end.timestamp())
    assert r.event_ids == tuple(e.event_id for e in order.events)
    assert order_flow.clocks(order, DL) == order_flow.Clocks(None, None)
    assert order_flow.due_changes(order, now + timedelta(days=30), DL) == []


def test_an_ended_order_with_no_end_stamped_ends_at_the_assignment():
    order = ended_order("verify", NOW + timedelta(hours=1))
    unstamped = {**stored(order), "closed_at": None}
    r = order_flow.restored(unstamped, 1_900_000_000.0, DL)
    assert r.ended == 1_900_000_000.0 and r.clocks is None


# -- where a change goes ------------------------------------------------------------------------


def a_day_of_changes() -> list[tuple[WorkOrderChange, WorkOrder | None]]:
    """(change, the order before it) for an order opened, supervised, and put under
    emergency response (an assisting department follows)."""
    changes = opened(event("e1"))
    t = NOW + timedelta(hours=13)
    changes += order_flow.due_changes(changes[-1].snapshot, t, DL)
    order = changes[-1].snapshot
    result = order_flow.on_command(order, command(order, "set_emergency_level", t, emergency_level="III", note="险情"),
                                   t, RULES)
    assert result.rejection is None, result.rejection
    changes += result.changes
    pairs: list[tuple[WorkOrderChange, WorkOrder | None]] = []
    old = None
    for c in changes:
        pairs.append((c, old))
        old = c.snapshot
    return pairs


def test_each_change_goes_to_the_topics_its_kind_names():
    seen = {c.type: order_flow.outlets(c, old) for c, old in a_day_of_changes()}
    assert seen["created"] == [Outlet("events")]
    assert seen["dispatched"] == [Outlet("events"), Outlet("dispatch", "water")]
    assert seen["supervised"] == [Outlet("events"), Outlet("supervision", "street")]
    emergency = CONFIG.escalator.config.emergency.department
    assert seen["assist_added"] == [Outlet("events"), Outlet("dispatch", emergency), Outlet("emergency")]
    assert seen["escalated"] == [Outlet("events"), Outlet("emergency")]   # the operator's 应急响应
    change, old = a_day_of_changes()[-1]
    ended = change.model_copy(update={"snapshot": change.snapshot.model_copy(update={"emergency_level": None})})
    assert Outlet("emergency") in order_flow.outlets(ended, change.snapshot)   # 应急指挥 hears it end
    assert Outlet("emergency") not in order_flow.outlets(ended, ended.snapshot)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_each_change_maps_to_the_same_topics_in_whatever_order_they_are_looked_at(seed):
    pairs = a_day_of_changes()
    shuffled = pairs[:]
    random.Random(seed).shuffle(shuffled)
    by_change = {c.version: order_flow.outlets(c, old) for c, old in pairs}
    assert {c.version: order_flow.outlets(c, old) for c, old in shuffled} == by_change
    assert Counter(o for c, old in shuffled for o in order_flow.outlets(c, old)) == \
        Counter(o for outs in by_change.values() for o in outs)
    for outs in by_change.values():   # every change once on workorders.events, first
        assert outs[0] == Outlet("events") and outs.count(Outlet("events")) == 1


def test_an_escalation_counts_what_it_raised():
    esc = Escalation(reason="warning_level", warning_from=None, warning_to="red", priority_from="high",
                     priority_to="urgent", emergency_from=None, emergency_to=None)
    assert order_flow.reached(esc) == "red"
    assert order_flow.reached(esc.model_copy(update={"warning_to": None, "emergency_to": "II"})) == "II"
    assert order_flow.reached(esc.model_copy(update={"warning_to": None})) == "urgent"
