"""The fuse stage driven record by record with no broker (issue 39): fake collaborators — a
router that sends every order to one desk and keeps its calls, deadlines of a few hours on
the natural clock, an escalator that escalates nothing, one desk, a fake clock — and the
in-memory state the functional tier uses (tests/functional/city.py).  Records go in as
the runner hands them over; what comes out is asserted per topic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import ConsumerRecord
from pydantic_core import to_json

from citybrain.config import Config
from citybrain.domain.area_warnings import WarningBook
from citybrain.domain.calendar import WorkCalendar
from citybrain.domain.deadlines import (
    CalendarSettings,
    Deadlines,
    LifecycleConfig,
    StageLimits,
    Supervision,
    SupervisionStep,
)
from citybrain.domain.order_flow import OrderRules
from citybrain.domain.routing import Route, Router
from citybrain.kafka.topics import Topics
from citybrain.stream.collaborators import Collaborators
from citybrain.stream.fuse_stage import FuseStage
from citybrain.stream.output import Output
from citybrain.wire.enums import PRIORITIES
from citybrain.wire.models import Actor, CityEvent, Command, Location, SourceRef, WorkOrder, WorkOrderChange

CONFIG = Config()
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DESK = "water"
HERE = Location(lon=117.8625, lat=36.7935, district_code="370306", street_code="370306002",
                community_code="370306002001", grid_code="370306002001016")
NEARBY = HERE.model_copy(update={"lon": 117.8627})   # ~18 m east: the same incident
OPERATOR = Actor(id="op-1", role="operator")
TOPICS = Topics("")
HOUR = 3600.0


class FakeRouter(Router):
    """The configured fusion groups and radii (fusion asks for those); every new order to
    one desk at one priority, each call kept."""

    def __init__(self):
        super().__init__(CONFIG.router.config, CONFIG.router.taxonomy)
        self.calls: list[tuple[str, tuple[str, ...], str | None]] = []

    def route(self, category: str, area_codes: tuple[str, ...], asset_owner: str | None = None) -> Route:
        self.calls.append((category, tuple(area_codes), asset_owner))
        return Route(DESK, "high", "fake:one-desk")


class FakeEscalator:
    """Escalates nothing; keeps each order it was asked about."""

    config = CONFIG.escalator.config   # a new order's route reads the warning priorities

    def __init__(self):
        self.asked: list[tuple[str, int]] = []

    def follow(self, order: WorkOrder, now: datetime) -> list[WorkOrderChange]:
        self.asked.append((order.work_order_id, order.version))
        return []


def fake_deadlines() -> Deadlines:
    """Every priority: 签收 within 1 h, 处置 within 2 h, the order within 4 h, natural hours;
    督办 at 100 % (street) and 200 % (city) of a limit; 自动核查 after 30 min of normal readings."""
    limits = StageLimits(basis="natural", accept_hours=1, handle_hours=2, total_hours=4)
    config = LifecycleConfig(
        calendar=CalendarSettings(timezone="UTC", working_hours=[("09:00", "17:00")]),
        time_limits=dict.fromkeys(PRIORITIES, limits),
        supervision=Supervision(step=[SupervisionStep(at=1.0, level="street"), SupervisionStep(at=2.0, level="city")]))
    return Deadlines(config, WorkCalendar(ZoneInfo("UTC"), ((time(9), time(17)),)))


@dataclass
class FakeClock:
    now: float

    def __call__(self) -> float:
        return self.now


class Harness:
    """One fuse stage on partition 0 with the fakes; ``feed`` hands it one record, ``tick``
    moves the clock and runs its timers."""

    def __init__(self, refresh_hours: float = 24.0):
        self.clock = FakeClock(T0.timestamp())
        self.router, self.escalator = FakeRouter(), FakeEscalator()
        rules = OrderRules(router=self.router, deadlines=fake_deadlines(), escalator=self.escalator,  # type: ignore[arg-type]
                           departments=frozenset({DESK}), warnings=WarningBook(CONFIG.warnings))
        self.collab = Collaborators(clock=self.clock, rules=rules, sensor_rules=CONFIG.sensor_rules,
                                    closed_state_seconds=14 * 86400, tick_seconds=1.0, health_tick_seconds=1.0,
                                    refresh_seconds=refresh_hours * HOUR)
        self.stage = self.new_stage()
        self.offset = 0

    def new_stage(self) -> FuseStage:
        stage = FuseStage(self.collab, TOPICS, "unit")
        stage.on_assigned({0})
        return stage

    def feed(self, value: bytes) -> list[Output]:
        m = ConsumerRecord(TOPICS.fusion_inbox, 0, self.offset, int(self.clock() * 1000), 0, b"k", value, None,
                           1, len(value), [])
        self.offset += 1
        out: list[Output] = []
        self.stage.handle(m, out)
        return out

    def event(self, eid: str, **kw) -> list[Output]:
        return self.feed(to_json(city_event(eid, at=self.at(), **kw)))

    def command(self, order_id: str, action: str, **kw) -> list[Output]:
        cmd = Command(command_id=f"c-{action}-{self.offset}", work_order_id=order_id, action=action, actor=OPERATOR,
                      ts=self.at(), **kw)
        return self.feed(to_json(cmd))

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def tick(self, *, hours: float = 0.0) -> list[Output]:
        self.clock.now += hours * HOUR
        return self.stage.tick()


def city_event(eid: str, *, at: datetime, source: str = "report", kind: str = "report",
               category: str = "waterlogging", device: str | None = None, where: Location = HERE) -> CityEvent:
    report = source == "report"
    return CityEvent(event_id=eid, source=source, kind=kind, category=category, category_name="积水",
                     severity="high", occurred_at=at, ingested_at=at, location=where, device_id=device,
                     sensor_type="water_level" if device else None, report_id=f"R-{eid}" if report else None,
                     reporter_id="GM-1" if report else None, source_ref=SourceRef(topic="t", partition=0, offset=0))


def on(out: list[Output], topic: str) -> list[dict]:
    return [orjson.loads(o.value) for o in out if o.topic == topic and o.value is not None]


def changes(out: list[Output]) -> list[str]:
    return [c["type"] for c in on(out, TOPICS.workorder_events)]


def order_id(out: list[Output]) -> str:
    ids = {c["work_order_id"] for c in on(out, TOPICS.workorder_events)}
    assert len(ids) == 1, ids
    return ids.pop()


@pytest.fixture
def city() -> Harness:
    return Harness()


def test_an_event_opens_one_order_routed_by_the_router_it_is_given(city):
    out = city.event("e1")
    assert changes(out) == ["created", "dispatched"]
    assert city.router.calls == [("waterlogging", (HERE.grid_code, HERE.community_code, HERE.street_code,
                                                   HERE.district_code), None)]
    [dispatch] = on(out, TOPICS.dispatch(DESK))
    snap = dispatch["snapshot"]
    assert (snap["department"], snap["priority"], snap["route_rule"]) == (DESK, "high", "fake:one-desk")
    assert datetime.fromisoformat(snap["accept_due_at"]) == T0 + timedelta(hours=1)   # the fake deadlines' 1 h
    [state] = on(out, TOPICS.workorder_state)
    assert state["work_order_id"] == snap["work_order_id"] and state["version"] == snap["version"]
    assert city.escalator.asked == [(snap["work_order_id"], snap["version"])]
    assert all(o.topic in city.stage.urgent_topics for o in out if o.topic.startswith("dispatch."))


def test_a_second_report_of_the_same_incident_fuses_into_its_order(city):
    wo = order_id(city.event("e1"))
    city.clock.now += 300
    out = city.event("e2", where=NEARBY)
    assert changes(out) == ["evidence_added"] and order_id(out) == wo
    assert on(out, TOPICS.dispatch(DESK)) == [] and len(city.router.calls) == 1   # routed once, dispatched once
    assert [e["event_id"] for e in on(out, TOPICS.workorder_state)[-1]["snapshot"]["events"]] == ["e1", "e2"]
    assert city.event("e2", where=NEARBY) == []   # the same report again: a duplicate, nothing out


def test_a_tick_at_the_deadline_emits_the_supervision_step_once(city):
    wo = order_id(city.event("e1"))
    assert changes(city.tick(hours=0.99)) == []
    out = city.tick(hours=0.01)   # 签收 limit (1 h) reached: 100 % → street
    assert changes(out) == ["supervised"] and order_id(out) == wo
    [step] = on(out, TOPICS.supervision("street"))
    assert step["supervision"]["clock"] == "accept" and step["snapshot"]["supervision_level"] == 1
    assert all(o.source == (TOPICS.fusion_inbox, 0, -1) for o in out)   # caused by the clock, on the order's partition
    assert changes(city.tick(hours=0.5)) == []   # not again
    assert changes(city.tick(hours=0.5)) == ["supervised"]   # 200 % → city
    assert on(city.stage.tick(), TOPICS.workorder_events) == []


def sensor_order_waiting_for_verification(city: Harness) -> str:
    """A gauge's alarm, accepted, handled, and the gauge back to normal."""
    wo = order_id(city.event("a1", source="iot", kind="alarm", device="WLV-1"))
    city.clock.now += 600
    assert changes(city.command(wo, "accept")) == ["accepted"]
    city.clock.now += 600
    assert changes(city.command(wo, "handle", note="已排水")) == ["handled"]
    city.clock.now += 600
    assert changes(city.event("r1", source="iot", kind="recovery", device="WLV-1")) == ["recovery_recorded"]
    return wo


def test_a_returning_alarm_before_verification_sends_the_order_back_for_rework(city):
    wo = sensor_order_waiting_for_verification(city)
    city.clock.now += 300
    out = city.event("a2", source="iot", kind="alarm", device="WLV-1")
    assert changes(out) == ["evidence_added", "verification_rejected"] and order_id(out) == wo   # 返工
    snap = on(out, TOPICS.workorder_state)[-1]["snapshot"]
    assert (snap["status"], snap["rework_count"], snap["handled_at"]) == ("accepted", 1, None)
    assert changes(city.tick(hours=0.5)) == []   # no automatic verification of an order back in rework


def test_a_closed_orders_returning_alarm_opens_a_new_order_and_leaves_it_closed(city):
    """Per the domain (order_flow.on_event): 返工 is for an order that waits for
    verification; once closed, the order is history and a new alarm is a new incident."""
    wo = sensor_order_waiting_for_verification(city)
    out = city.tick(hours=0.5)   # 30 min of normal readings: 自动核查
    assert changes(out) == ["verified"] and on(out, TOPICS.workorder_state)[-1]["snapshot"]["status"] == "closed"
    out = city.event("a2", source="iot", kind="alarm", device="WLV-1")
    assert changes(out) == ["created", "dispatched"] and order_id(out) != wo
    assert city.event("a1", source="iot", kind="alarm", device="WLV-1") == []   # the closed order's own alarm: a duplicate


def test_a_restored_partition_emits_what_fell_due_while_away_once_and_keeps_ended_orders_duplicates(city):
    wo = order_id(city.event("e1"))
    ended = order_id(city.event("x1", category="noise"))
    city.command(ended, "cancel", note="误报")
    held = dict(city.stage.work_orders.items(0))
    city.clock.now += 2.5 * HOUR   # away: the 签收 steps at 1 h and 2 h fell due meanwhile
    city.stage = restarted = FuseStage(city.collab, TOPICS, "unit")
    for key, value in held.items():
        restarted.work_orders.set(0, key, value)
    restarted.on_assigned({0})
    out = city.tick()
    assert changes(out) == ["supervised", "supervised"] and order_id(out) == wo
    assert [s["supervision"]["level"] for s in on(out, TOPICS.workorder_events)] == ["street", "city"]
    assert changes(city.tick(hours=0.1)) == []   # once
    assert city.event("x1", category="noise") == []   # the ended order's event is still a duplicate
    assert changes(city.event("e9", where=NEARBY)) == ["evidence_added"]   # the open one is indexed again


def test_an_open_orders_state_record_is_written_again_after_the_refresh_period():
    city = Harness(refresh_hours=0.25)   # 15 min, before any supervision step
    wo = order_id(city.event("e1"))
    assert on(city.tick(hours=0.24), TOPICS.workorder_state) == []
    [again] = on(city.tick(hours=0.01), TOPICS.workorder_state)
    assert again["work_order_id"] == wo and again["version"] == 2 and changes(city.stage.tick()) == []
    city.clock.now += 0.1 * HOUR
    city.event("e2", where=NEARBY)   # written at +0.35 h: the next refresh waits until +0.6 h
    assert on(city.tick(hours=0.15), TOPICS.workorder_state) == []   # +0.5 h: its entry, but written since
    assert on(city.tick(hours=0.09), TOPICS.workorder_state) == []
    [later] = on(city.tick(hours=0.01), TOPICS.workorder_state)
    assert later["version"] == 3
    city.command(wo, "cancel", note="误报")
    assert on(city.tick(hours=1.0), TOPICS.workorder_state) == []   # an ended order is not refreshed


def test_the_stage_takes_its_ticks_and_refresh_period_from_its_collaborators():
    city = Harness(refresh_hours=2.0)
    assert city.stage.tick_seconds == 1.0 and city.stage.refresh.every == 2 * HOUR
    assert city.stage.now() == T0
