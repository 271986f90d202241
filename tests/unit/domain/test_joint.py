"""Joint handling (联动处置) and escalation (DESIGN §12): assisting parts, warning levels,
priority and emergency response — examples, then a state machine with invariants."""

from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from citybrain.config import Config
from citybrain.domain.escalation import EMERGENCY_RANK, finders
from citybrain.domain.lifecycle import OPEN_PARTS, apply
from citybrain.domain.routing import PRIORITY_RANK
from citybrain.domain.sensor_rules import LEVEL_RANK
from citybrain.wire.models import Actor, Command, EventRef
from tests.unit.domain.test_lifecycle import GRID_MEMBER, NOW, OPERATOR, order

CONFIG = Config()
DL = CONFIG.deadlines
ESC = CONFIG.escalator
DEPTS = frozenset(d.code for d in CONFIG.taxonomy.departments)
GAS = Actor(id="gas-1", role="department", department="gas_utility")
FIRE = Actor(id="fire-2", role="department", department="fire")
POLICE = Actor(id="police-3", role="department", department="police")
EMERGENCY = Actor(id="em-4", role="department", department="emergency")
WATER = Actor(id="water-7", role="department", department="water")

_ids = iter(range(10**9))


def cmd(action, actor, **kw) -> Command:
    return Command(command_id=f"j-{next(_ids)}", work_order_id="WO-flooding-abc", action=action,
                   actor=actor, ts=NOW, **kw)


def step(o, c, now=NOW):
    """A command and the escalations that follow it, as the fuse stage applies them."""
    out = apply(o, c, DEPTS, now, DL)
    if out.change is None:
        return o, [], out.rejection
    changes = [out.change, *ESC.follow(out.change.snapshot, now)]
    return changes[-1].snapshot, changes, None


def gas_order():
    o = order().model_copy(update={"category": "gas_leak", "category_name": "燃气泄漏", "fusion_group": "gas_leak",
                                   "department": "gas_utility", "priority": "urgent"})
    changes = ESC.follow(o, NOW)
    return changes[-1].snapshot if changes else o, changes


def test_a_gas_leak_opens_with_fire_and_police_assisting():
    o, changes = gas_order()
    assert [(c.type, c.part, c.role) for c in changes] == [("assist_added", "fire", "assist"),
                                                          ("assist_added", "police", "assist")]
    assert [(a.department, a.status) for a in o.assists] == [("fire", "dispatched"), ("police", "dispatched")]
    part = o.assists[0]
    assert part.accept_due_at == NOW + timedelta(hours=o.accept_limit_hours)


def test_the_lead_cannot_handle_while_an_assist_is_open():
    o, _ = gas_order()
    o, _, _ = step(o, cmd("accept", GAS))
    _, _, refused = step(o, cmd("handle", GAS))
    assert refused.reason == "assist_open" and "fire" in refused.detail and "police" in refused.detail
    o, changes, _ = step(o, cmd("accept", FIRE))
    assert changes[0].type == "assist_accepted" and changes[0].part == "fire"
    assert o.status == "accepted" and o.assists[0].status == "accepted"
    o, _, _ = step(o, cmd("handle", FIRE, note="已警戒 cordoned"))
    o, changes, _ = step(o, cmd("return", POLICE, note="无需公安 not needed"))
    assert changes[0].type == "assist_returned" and o.assists[1].status == "released"
    o, changes, _ = step(o, cmd("handle", GAS))
    assert changes[0].type == "handled" and o.status == "handled"
    o, _, _ = step(o, cmd("verify", GRID_MEMBER))
    assert o.status == "closed"


def test_an_assist_acts_only_on_its_part_and_others_are_out_of_scope():
    o, _ = gas_order()
    _, _, refused = step(o, cmd("handle", FIRE))          # its part is not accepted yet
    assert refused.reason == "not_allowed_in_state" and "协办 fire" in refused.detail
    _, _, refused = step(o, cmd("accept", WATER))
    assert refused.reason == "out_of_scope"
    _, _, refused = step(o, cmd("cancel", FIRE))
    assert refused.reason == "forbidden_role"
    o2, changes, _ = step(o, cmd("comment", FIRE, note="路上 on our way"))
    assert changes[0].type == "commented"


def test_an_operator_adds_releases_and_works_a_part():
    o, _ = gas_order()
    o, changes, _ = step(o, cmd("assist", OPERATOR, department="environment"))
    assert (changes[0].type, changes[0].part, changes[0].actor.role) == ("assist_added", "environment", "operator")
    _, _, refused = step(o, cmd("assist", OPERATOR, department="environment"))
    assert refused.reason == "not_allowed_in_state"
    o, changes, _ = step(o, cmd("release_assist", OPERATOR, department="environment"))
    assert changes[0].type == "assist_released" and o.assists[-1].status == "released"
    o, _, _ = step(o, cmd("accept", OPERATOR, department="fire"))
    assert o.assists[0].status == "accepted"
    _, _, refused = step(o, cmd("release_assist", OPERATOR))
    assert refused.reason == "missing_field"


def test_an_operator_sets_the_emergency_level_and_emergency_management_joins():
    o, _ = gas_order()
    o, changes, _ = step(o, cmd("set_emergency_level", OPERATOR, emergency_level="II"))
    assert [c.type for c in changes] == ["escalated", "assist_added"]
    assert changes[0].escalation.emergency_to == "II" and changes[1].part == "emergency"
    assert o.emergency_level == "II" and o.emergency_set_by == "operator:op-1"
    o, changes, _ = step(o, cmd("set_emergency_level", OPERATOR, emergency_level="none"))
    assert changes[0].type == "deescalated" and o.emergency_level is None


def _with_level(o, device, level, recovery=False):
    levels = dict(o.sensor_levels)
    if recovery:
        levels.pop(device, None)
    else:
        levels[device] = level
    ref = EventRef(event_id=f"ev-{next(_ids)}", source="iot", kind="recovery" if recovery else "alarm",
                   category=o.category, occurred_at=NOW, finder=device, lon=o.location.lon, lat=o.location.lat,
                   level=None if recovery else level)
    return o.model_copy(update={"version": o.version + 1, "sensor_levels": levels, "events": [*o.events, ref]})


def test_a_rising_gauge_escalates_priority_and_brings_in_emergency_command():
    o = order().model_copy(update={"priority": "normal"})      # waterlogging, lead water
    o = _with_level(o, "WLV-1", "blue")
    changes = ESC.follow(o, NOW)
    assert [c.type for c in changes] == ["escalated"] and changes[0].escalation.warning_to == "blue"
    o = changes[-1].snapshot
    o = _with_level(o, "WLV-1", "orange")
    changes = ESC.follow(o, NOW)
    assert [(c.type, c.part) for c in changes] == [("escalated", None), ("assist_added", "traffic"),
                                                  ("assist_added", "emergency")]
    esc = changes[0].escalation
    assert (esc.warning_from, esc.warning_to, esc.priority_from, esc.priority_to, esc.emergency_to) == \
        ("blue", "orange", "normal", "high", "IV")
    o = changes[-1].snapshot
    o = _with_level(o, "WLV-1", "red")
    changes = ESC.follow(o, NOW)
    assert changes[0].escalation.emergency_to == "III" and changes[-1].snapshot.priority == "urgent"
    o = changes[-1].snapshot
    # the gauge recovers: the level and the rule's emergency level fall, priority stays
    o = _with_level(o, "WLV-1", None, recovery=True)
    changes = ESC.follow(o, NOW)
    assert [c.type for c in changes] == ["deescalated"]
    esc = changes[0].escalation
    assert (esc.reason, esc.warning_to, esc.emergency_to, esc.priority_to) == ("alarm_cleared", None, None, "urgent")
    assert "预警" in changes[0].snapshot.notes[-1]


def test_many_finders_raise_priority_one_step_once():
    o = order().model_copy(update={"priority": "normal"})
    for i in range(4):
        o = _with_level(o, f"CAM-{i}", None, recovery=False).model_copy(update={"sensor_levels": {}})
    assert len(finders(o)) == 4 and ESC.follow(o, NOW) == []
    o = _with_level(o, "CAM-9", None).model_copy(update={"sensor_levels": {}})
    changes = ESC.follow(o, NOW)
    assert [(c.type, c.escalation.reason, c.snapshot.priority) for c in changes] == [("escalated", "finders", "high")]
    o = _with_level(changes[-1].snapshot, "CAM-10", None).model_copy(update={"sensor_levels": {}})
    assert ESC.follow(o, NOW) == []


def test_part_clocks_supervise_the_assisting_department():
    o, _ = gas_order()
    later = NOW + timedelta(hours=o.accept_limit_hours * 1.01)
    steps = DL.supervise_due(o, later)
    parts = sorted(c.supervision.department or "lead" for c in steps)
    assert parts == ["fire", "lead", "police"]
    o = steps[-1].snapshot
    assert "fire/accept@1" in o.supervision_steps and DL.supervise_due(o, later) == []


class JointMachine(RuleBasedStateMachine):
    """Random commands from the lead, assists, operators and grid members, sensor levels
    rising and falling, and time passing, on one gas-leak order."""

    def __init__(self):
        super().__init__()
        self.order, _ = gas_order()
        self.now = NOW
        self.versions = [self.order.version]

    def _take(self, changes):
        before = self.order
        for c in changes:
            after = c.snapshot
            assert c.version == after.version == before.version + 1
            if c.type == "handled":
                assert not [a for a in after.assists if a.status in OPEN_PARTS]
            if after.priority != before.priority:
                assert c.type == "escalated" and c.escalation.priority_to == after.priority
                assert PRIORITY_RANK[after.priority] > PRIORITY_RANK[before.priority]
            if after.emergency_level != before.emergency_level:
                assert c.type in ("escalated", "deescalated")
                assert (c.type == "escalated") == (EMERGENCY_RANK[after.emergency_level]
                                                    > EMERGENCY_RANK[before.emergency_level])
            released = {a.department for a in before.assists if a.status == "released"}
            for a in after.assists:
                if a.department in released and a.status != "released":
                    assert c.type == "assist_added" and c.actor.role == "operator"
            before = after
        self.order = before
        self.versions.append(before.version)

    @rule(action=st.sampled_from(["accept", "handle", "return", "verify", "assist", "release_assist",
                                  "set_emergency_level", "cancel", "comment"]),
          actor=st.sampled_from([GAS, FIRE, POLICE, EMERGENCY, WATER, OPERATOR, GRID_MEMBER]),
          department=st.sampled_from([None, "fire", "police", "emergency", "environment"]),
          level=st.sampled_from([None, "IV", "II", "none"]))
    def command(self, action, actor, department, level):
        _, changes, _ = step(self.order, cmd(action, actor, department=department, emergency_level=level,
                                             note="n"), self.now)
        self._take(changes)

    @rule(device=st.sampled_from(["GAS-1", "GAS-2"]),
          level=st.sampled_from([None, "yellow", "orange", "red"]))
    def sensor(self, device, level):
        if self.order.status in ("closed", "cancelled"):
            return
        o = _with_level(self.order, device, level, recovery=level is None)
        self.order = o
        self._take(ESC.follow(o, self.now))

    @rule(hours=st.sampled_from([0.5, 2.0]))
    def time_passes(self, hours):
        self.now += timedelta(hours=hours)
        self._take(DL.supervise_due(self.order, self.now))

    @invariant()
    def levels_and_parts_agree(self):
        o = self.order
        if o.status in ("closed", "cancelled"):
            return
        top = max(o.sensor_levels.values(), key=LEVEL_RANK.__getitem__, default=None)
        assert o.warning_level == top
        if o.emergency_level is not None:
            assert any(a.department == "emergency" for a in o.assists) or o.department == "emergency"
        assert len({a.department for a in o.assists}) == len(o.assists)
        assert self.versions == sorted(self.versions)
        assert len(o.supervision_steps) == len(set(o.supervision_steps))


JointMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
TestJointMachine = JointMachine.TestCase
