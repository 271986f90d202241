"""The closed loop as a state machine: moves, roles, scope, idempotency, invariants."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from citybrain.config import Config
from citybrain.domain.lifecycle import RULES, apply
from citybrain.wire.models import CLOSED_STATUSES, Actor, Command, EventRef, Location, WorkOrder

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DEPTS = frozenset({"water", "fire", "city_mgmt"})
GRID = "370306002001016"
OPERATOR = Actor(id="op-1", role="operator")
WATER = Actor(id="water-7", role="department", department="water")
FIRE = Actor(id="fire-2", role="department", department="fire")
GRID_MEMBER = Actor(id="GM-0107", role="grid", grid_prefix="370306002001")
OTHER_GRID = Actor(id="GM-0999", role="grid", grid_prefix="370306005")
SYSTEM = Actor(id="citybrain", role="system")
DL = Config().deadlines
ROUTER = Config().router
ACTORS = [OPERATOR, WATER, FIRE, GRID_MEMBER, OTHER_GRID, SYSTEM]


def order(status="dispatched", department="water") -> WorkOrder:
    return WorkOrder(
        work_order_id="WO-flooding-abc", version=2, status=status, category="waterlogging",
        category_name="路面积水", fusion_group="flooding", priority="high", department=department,
        route_rule="category:waterlogging",
        location=Location(lon=117.8625, lat=36.7935, district_code="370306", street_code="370306002",
                          community_code="370306002001", grid_code=GRID),
        opened_at=NOW, created_at=NOW, source_ingested_at=NOW, time_limit_hours=12,
        due_at=NOW + timedelta(hours=12), accept_limit_hours=1, handle_limit_hours=8,
        stage_started_at=NOW if status == "dispatched" else None,
        accept_due_at=NOW + timedelta(hours=1) if status == "dispatched" else None,
        events=[EventRef(event_id="ev-1", source="report", kind="report", category="waterlogging",
                         occurred_at=NOW, lon=117.8625, lat=36.7935)])


counter = iter(range(10**9))


def cmd(action, actor, **kw) -> Command:
    return Command(command_id=kw.pop("command_id", f"c-{next(counter)}"), work_order_id="WO-flooding-abc",
                   action=action, actor=actor, ts=NOW, **kw)


def run(o, *commands):
    for c in commands:
        out = apply(o, c, DEPTS, NOW, DL)
        assert out.change is not None, out.rejection
        o = out.change.snapshot
    return o


def test_full_loop_with_a_return_and_a_rework():
    o = order(status="registered", department=None)
    o = run(o, cmd("dispatch", OPERATOR, department="fire"))
    assert o.status == "dispatched" and o.department == "fire"
    o = run(o, cmd("return", FIRE, note="不是消防的事 not ours"))
    assert (o.status, o.department, o.return_count) == ("registered", None, 1)
    o = run(o, cmd("dispatch", OPERATOR, department="water"), cmd("accept", WATER),
            cmd("handle", WATER, evidence=["https://p/after.jpg"], note="已抽排"))
    assert o.status == "handled" and "https://p/after.jpg" in o.evidence
    o = run(o, cmd("reject_verification", GRID_MEMBER, note="仍有积水"))
    assert (o.status, o.rework_count) == ("accepted", 1)
    o = run(o, cmd("handle", WATER), cmd("verify", GRID_MEMBER))
    assert o.status == "closed" and o.closed_at == NOW and o.version == 2 + 8


@pytest.mark.parametrize("action,actor,extra,reason", [
    ("accept", FIRE, {}, "out_of_scope"),                # another department's order
    ("accept", GRID_MEMBER, {}, "forbidden_role"),
    ("handle", WATER, {}, "not_allowed_in_state"),       # not accepted yet
    ("dispatch", OPERATOR, {"department": "water"}, "not_allowed_in_state"),
    ("cancel", WATER, {}, "forbidden_role"),
    ("extend", WATER, {"extend_minutes": 60}, "missing_field"),   # no reason given
    ("comment", OTHER_GRID, {"note": "x"}, "out_of_scope"),
])
def test_refusals_have_a_reason(action, actor, extra, reason):
    out = apply(order(), cmd(action, actor, **extra), DEPTS, NOW, DL)
    assert out.change is None and out.rejection.reason == reason and out.rejection.detail
    assert out.rejection.status == "dispatched"


def test_dispatch_needs_a_known_department():
    o = order(status="registered", department=None)
    assert apply(o, cmd("dispatch", OPERATOR), DEPTS, NOW, DL).rejection.reason == "missing_field"
    assert apply(o, cmd("dispatch", OPERATOR, department="navy"), DEPTS, NOW, DL).rejection.reason == "unknown_department"


def test_same_command_twice_changes_nothing():
    c = cmd("accept", WATER, command_id="cmd-42")
    first = apply(order(), c, DEPTS, NOW, DL).change.snapshot
    again = apply(first, c, DEPTS, NOW, DL)
    assert again.change is None and again.rejection.reason == "duplicate_command"


def test_extend_moves_the_due_time_and_supervision_climbs_to_city():
    o = run(order(), cmd("extend", WATER, extend_minutes=120, note="设备故障"))
    # The order's limit and the running stage's (签收) grow by the extension.
    assert o.due_at == NOW + timedelta(hours=14) and o.extension_count == 1
    assert (o.accept_limit_hours, o.accept_due_at) == (3, NOW + timedelta(hours=3))
    o = run(o, cmd("supervise", SYSTEM), cmd("supervise", SYSTEM), cmd("supervise", OPERATOR))
    assert o.supervision_level == 3
    assert apply(o, cmd("supervise", SYSTEM), DEPTS, NOW, DL).rejection.reason == "not_allowed_in_state"


def test_closed_and_cancelled_orders_take_only_comments():
    closed = run(order(), cmd("cancel", OPERATOR, note="误报 false alarm"))
    assert closed.status == "cancelled"
    for action in RULES:
        out = apply(closed, cmd(action, OPERATOR, department="water", extend_minutes=5, note="n"), DEPTS, NOW, DL)
        assert (out.change is not None) == (action == "comment")


class LoopMachine(RuleBasedStateMachine):
    """Random commands from any actor, replays, and time passing (the timers'
    supervision steps), on one order."""

    def __init__(self):
        super().__init__()
        self.order = order(status="registered", department=None)
        self.start = self.order
        self.now = NOW
        self.inputs: list[tuple] = []     # ("cmd", command, at) | ("tick", at)
        self.commands: list[Command] = []
        self.history: list = []

    def _step(self, o, item):
        if item[0] == "cmd":
            out = apply(o, item[1], DEPTS, item[2], DL, router=ROUTER)
            return [out.change, *out.followups] if out.change else [], out.rejection
        return DL.supervise_due(o, item[1]), None

    @rule(action=st.sampled_from(sorted(RULES)), actor=st.sampled_from(ACTORS),
          department=st.sampled_from([None, "water", "fire", "navy"]),
          replay=st.booleans(), minutes=st.sampled_from([None, 30]), note=st.sampled_from(["", "ok"]),
          category=st.sampled_from([None, "waterlogging", "manhole_cover", "noise", "device_fault"]),
          priority=st.sampled_from([None, "low", "urgent"]),
          into=st.sampled_from([None, "WO-flooding-abc", "WO-flooding-def"]))
    def send(self, action, actor, department, replay, minutes, note, category, priority, into):
        if replay and self.commands:
            c = self.commands[-1]
        else:
            c = cmd(action, actor, department=department, extend_minutes=minutes, note=note, category=category,
                    priority=priority, into=into, evidence=["ev-1"] if action == "split" else [])
        self.commands.append(c)
        self._apply(("cmd", c, self.now))

    @rule(hours=st.sampled_from([0.25, 0.5, 1.0, 3.0, 8.0]))
    def time_passes(self, hours):
        self.now += timedelta(hours=hours)
        self._apply(("tick", self.now))

    def _apply(self, item):
        before = self.order
        self.inputs.append(item)
        changes, rejection = self._step(before, item)
        if rejection is not None:
            assert rejection.reason and rejection.detail
            return
        for change in changes:
            after = change.snapshot
            assert after.version == before.version + 1 == change.version
            if before.status in CLOSED_STATUSES:
                assert after.status == before.status
            if change.type == "supervised" and change.actor.role == "system":
                assert after.supervision_level >= before.supervision_level
                assert before.status not in CLOSED_STATUSES
            if after.status in ("cancelled", "merged"):   # irreversible: a reason was given
                assert change.type not in ("cancelled", "merged") or item[1].note.strip()
            self.history.append(change)
            before = after
        self.order = before

    @invariant()
    def timeline_replays_to_the_snapshot(self):
        o = self.start
        for item in self.inputs:
            changes, _ = self._step(o, item)
            if changes:
                o = changes[-1].snapshot
        assert o == self.order
        if self.history:
            assert self.history[-1].snapshot == self.order
            versions = [h.version for h in self.history]
            assert versions == sorted(versions) and len(set(versions)) == len(versions)

    @invariant()
    def each_step_fires_once_per_clock_run(self):
        steps = self.order.supervision_steps
        assert len(steps) == len(set(steps))


LoopMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestLoopMachine = LoopMachine.TestCase


def test_a_street_desk_works_the_orders_sent_to_it_and_notes_on_any_of_its_street():
    desk = Actor(id="street-dajie", role="street", department="street.370306002", street_code="370306002")
    o = order(department="street.370306002")
    o = run(o, cmd("accept", desk), cmd("handle", desk, note="已劝离 vendors moved on"))
    assert o.status == "handled"
    water = order()      # the water department's order, in the desk's street
    assert apply(water, cmd("accept", desk), DEPTS, NOW, DL).rejection.reason == "out_of_scope"
    assert apply(water, cmd("comment", desk, note="现场有积水 seen on patrol"), DEPTS, NOW, DL).change is not None
    other = Actor(id="street-x", role="street", department="street.370306005", street_code="370306005")
    assert apply(water, cmd("comment", other, note="x"), DEPTS, NOW, DL).rejection.reason == "out_of_scope"
