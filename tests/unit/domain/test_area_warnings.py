"""区域预警 (DESIGN §15): which warnings hold, which orders they meet, the level a new order
starts at and the escalation of open ones — examples, then properties (a warning never
lowers anything; outside its validity it changes nothing)."""

from datetime import timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.config import Config
from citybrain.domain.area_warnings import (
    AreaShapes,
    WarningBook,
    WarningsConfig,
    escalate_open,
    read_warning_record,
    start_route,
)
from citybrain.domain.routing import PRIORITY_RANK, Route
from citybrain.domain.workorder import open_order
from citybrain.wire.enums import EMERGENCY_RANK, WARNING_LEVELS, WARNING_RANK
from citybrain.wire.models import CityEvent, Location, SourceRef
from tests.unit.domain.test_lifecycle import NOW, order

CONFIG = Config()
SHAPES = AreaShapes(CONFIG.city_map)
ESC = CONFIG.escalator
PRIORITY = ESC.config.warning_priority
ZHOUCUN, ZICHUAN = "370306", "370302"
# A point in 淄川区 (not 周村区) and one in 周村区 of another street than order()'s.
IN_ZICHUAN = Location(lon=117.755, lat=36.605, district_code=ZICHUAN, street_code="370302001",
                      community_code="370302001001", grid_code="370302001001001")
IN_ZHOUCUN = Location(lon=117.90989, lat=36.77375, district_code=ZHOUCUN, street_code="370306001",
                      community_code="370306001001", grid_code="370306001001001")


def warning(wid="W-1", level="red", kind="rainstorm", area=None, start=-1.0, end=5.0, **extra) -> dict:
    return {"warning_id": wid, "issuer": "淄博市气象台", "kind": kind, "level": level,
            "area": area if area is not None else {"district_codes": [ZHOUCUN]},
            "valid_from": (NOW + timedelta(hours=start)).isoformat(),
            "valid_to": (NOW + timedelta(hours=end)).isoformat(), "ts": NOW.isoformat(), **extra}


def read(doc, key=None):
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    k = key if key is not None else (doc["warning_id"].encode() if isinstance(doc, dict) else b"W-1")
    return read_warning_record(k, raw, 65536, SHAPES)


def book(*docs) -> WarningBook:
    b = WarningBook(CONFIG.warnings)
    for d in docs:
        entry = read(d)
        assert not entry.dead, entry
        b.apply(entry)
    return b


def event(location=IN_ZHOUCUN, category="waterlogging", level=None) -> CityEvent:
    return CityEvent(event_id="ev-9", source="report", kind="report", category=category, category_name="路面积水",
                     severity="high", occurred_at=NOW, ingested_at=NOW, location=location, report_id="R-9",
                     reporter_id="GM-1", level=level, device_id="WLV-9" if level else None, source_ref=SourceRef(topic="t", partition=0, offset=0))


def new_order(b: WarningBook, ev: CityEvent, at=NOW):
    """As the fuse stage opens one: the route, the warnings it starts under, the escalator."""
    loc = ev.location
    route = ROUTER.route(ev.category, (loc.grid_code, loc.community_code, loc.street_code, loc.district_code))
    start = b.start(ev.category, loc, at)
    changes = open_order("WO-flooding-new", "flooding", ev, start_route(route, start, PRIORITY), at, DL, start)
    changes += ESC.follow(changes[-1].snapshot, at)
    return changes


ROUTER = CONFIG.router
DL = CONFIG.deadlines


# -- records ---------------------------------------------------------------------------------

def test_a_valid_warning_is_held_and_named_in_chinese():
    entry = read(warning())
    assert not entry.dead and entry.warning is not None
    assert entry.warning.label() == "淄博市气象台 暴雨红色预警 W-1"


@pytest.mark.parametrize("doc, reason, field", [
    (b"{not json", "not_json", None),
    (b"[1, 2]", "not_object", None),
    ({k: v for k, v in warning().items() if k != "level"}, "missing_field", "level"),
    (warning(level="purple"), "invalid_field", "level"),
    (warning(kind="meteor"), "invalid_field", "kind"),
    (warning(start=5, end=1), "invalid_field", None),
    (warning(area={}), "invalid_field", "area"),
    (warning(area={"district_codes": ["999999"]}), "out_of_area", "area.district_codes.0"),
    (warning(area={"street_codes": [ZHOUCUN + "999"]}), "out_of_area", "area.street_codes.0"),
    (warning(area={"polygon": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}),
     "out_of_area", "area.polygon"),
    (warning(area={"polygon": {"type": "Polygon",   # a bow tie: self-intersecting
                               "coordinates": [[[117.8, 36.7], [117.9, 36.8], [117.9, 36.7], [117.8, 36.8],
                                                [117.8, 36.7]]]}}), "invalid_field", "area.polygon"),
    (warning(area={"polygon": {"type": "Polygon", "coordinates": [[[117.8]]]}}), "invalid_field", "area.polygon"),
])
def test_bad_records_are_dead_letters_with_a_reason(doc, reason, field):
    entry = read(doc)
    assert entry.dead and entry.reason == reason, entry
    if field is not None:
        assert entry.field == field
    assert entry.detail


def test_a_record_under_another_key_is_refused():
    entry = read(warning(), key=b"W-2")
    assert (entry.reason, entry.field) == ("wrong_key", "key")


def test_the_latest_record_under_a_key_is_the_warning_and_a_tombstone_ends_it():
    b = book(warning(level="orange"), warning(level="red"))
    assert [w.level for w in b.holding(NOW)] == ["red"]
    b.apply(read_warning_record(b"W-1", None, 65536, SHAPES))
    assert b.holding(NOW) == []
    b = book(warning())
    b.apply(read(warning(level="lilac")))      # an unusable amendment leaves the key without one
    assert b.holding(NOW) == []


# -- validity and area ----------------------------------------------------------------------

def test_a_warning_holds_from_valid_from_until_valid_to_and_not_when_cancelled():
    b = book(warning(start=0, end=2))
    assert b.holding(NOW - timedelta(seconds=1)) == []
    assert [w.warning_id for w in b.holding(NOW)] == ["W-1"]
    assert b.holding(NOW + timedelta(hours=2)) == []               # ends by itself at valid_to
    b = book(warning(start=0, end=2), warning(start=0, end=1))     # valid_to moved earlier
    assert b.holding(NOW + timedelta(hours=1, minutes=30)) == []
    assert book(warning(cancelled=True)).holding(NOW) == []


def test_an_area_is_its_districts_streets_and_polygon():
    [w] = book(warning()).holding(NOW)
    assert w.covers(IN_ZHOUCUN) and w.covers(order().location) and not w.covers(IN_ZICHUAN)
    [w] = book(warning(area={"street_codes": ["370306001"]})).holding(NOW)
    assert w.covers(IN_ZHOUCUN) and not w.covers(order().location)
    box = [[117.75, 36.60], [117.76, 36.60], [117.76, 36.61], [117.75, 36.61], [117.75, 36.60]]
    [w] = book(warning(area={"polygon": {"type": "Polygon", "coordinates": [box]}})).holding(NOW)
    assert w.covers(IN_ZICHUAN) and not w.covers(IN_ZHOUCUN)


def test_the_area_geometry_is_one_outline_of_the_district():
    [w] = book(warning()).holding(NOW)
    geom = w.geometry(SHAPES)
    assert geom["type"] in ("Polygon", "MultiPolygon")
    from shapely.geometry import Point, shape
    assert shape(geom).covers(Point(IN_ZHOUCUN.lon, IN_ZHOUCUN.lat))
    assert not shape(geom).covers(Point(IN_ZICHUAN.lon, IN_ZICHUAN.lat))


# -- new orders ---------------------------------------------------------------------------

def test_a_new_order_in_the_area_starts_at_the_warnings_level():
    changes = new_order(book(warning()), event())
    created = changes[0].snapshot
    assert (created.warning_level, created.priority, created.area_warnings) == ("red", "urgent", {"W-1": "red"})
    assert "区域预警" in created.notes[0] and "淄博市气象台 暴雨红色预警 W-1" in created.notes[0]
    # urgent's time limits from the start, and emergency response as at any red waterlogging
    plain = new_order(book(), event())[0].snapshot
    assert created.time_limit_hours < plain.time_limit_hours
    final = changes[-1].snapshot
    assert (final.emergency_level, final.warning_level) == ("III", "red")
    assert "emergency" in [a.department for a in final.assists]


def test_a_new_order_outside_the_area_or_of_another_category_or_after_valid_to_starts_as_usual():
    b = book(warning())
    for ev, at in ((event(location=IN_ZICHUAN), NOW), (event(category="noise"), NOW),
                   (event(), NOW + timedelta(hours=5))):
        plain = new_order(WarningBook(CONFIG.warnings), ev, at)[-1].snapshot
        snap = new_order(b, ev, at)[-1].snapshot
        assert (snap.warning_level, snap.priority, snap.area_warnings, snap.emergency_level) == (
            None, plain.priority, {}, None)


def test_a_warning_below_new_orders_from_does_not_set_the_start():
    b = book(warning(kind="heat", level="blue"))      # heat: new orders from yellow
    assert b.start("electrical_fire_risk", IN_ZHOUCUN, NOW) is None
    b = book(warning(kind="heat", level="yellow"))
    assert b.start("electrical_fire_risk", IN_ZHOUCUN, NOW).level == "yellow"


# -- open orders ---------------------------------------------------------------------------

def escalating(b, at=NOW):
    return b.escalating(at)


def test_an_open_order_in_the_area_is_escalated_with_the_warning_named():
    [(w, rule)] = escalating(book(warning()))
    changes = escalate_open(order(), w, rule, ESC.follow, NOW)
    first = changes[0]
    assert first.type == "escalated"
    assert (first.escalation.reason, first.escalation.area_warning) == ("area_warning", "W-1")
    assert (first.escalation.warning_from, first.escalation.warning_to) == (None, "red")
    assert first.snapshot.notes[-1].split(" ", 1)[1].startswith(
        "system:citybrain 区域预警 area warning 淄博市气象台 暴雨红色预警 W-1：预警 无→红色")
    final = changes[-1].snapshot
    assert (final.priority, final.emergency_level, final.area_warnings) == ("urgent", "III", {"W-1": "red"})
    assert all(c.snapshot.notes[-len(first.snapshot.notes):] == first.snapshot.notes for c in changes)
    # Once given, the same warning gives nothing again (a second sweep, a restart).
    assert escalate_open(final, w, rule, ESC.follow, NOW) == []


def test_open_orders_outside_below_the_rule_or_closed_are_left_alone():
    [(w, rule)] = escalating(book(warning()))
    outside = order().model_copy(update={"location": IN_ZICHUAN})
    assert escalate_open(outside, w, rule, ESC.follow, NOW) == []
    assert escalate_open(order(status="closed"), w, rule, ESC.follow, NOW) == []
    assert escalating(book(warning(level="yellow"))) == []          # rainstorm: open ones from orange
    assert escalating(book(warning(start=1))) == []                 # not yet valid


def test_a_warning_ending_releases_nothing_on_an_order_it_raised():
    [(w, rule)] = escalating(book(warning()))
    raised = escalate_open(order(), w, rule, ESC.follow, NOW)[-1].snapshot
    later = NOW + timedelta(hours=6)
    assert ESC.follow(raised, later) == []           # its level stays: what a warning gave is kept


# -- properties -----------------------------------------------------------------------------

levels = st.sampled_from(WARNING_LEVELS)
maybe_level = st.one_of(st.none(), levels)
priorities = st.sampled_from(["low", "normal", "high", "urgent"])
offsets = st.floats(min_value=-48, max_value=48, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(level=levels, sensor=maybe_level, priority=priorities, start=offsets, length=st.floats(0.1, 48),
       at=offsets, inside=st.booleans())
def test_a_warning_never_lowers_an_open_order_and_outside_its_validity_changes_nothing(
        level, sensor, priority, start, length, at, inside):
    o = order().model_copy(update={"priority": priority, "warning_level": sensor,
                                   "sensor_levels": {"WLV-1": sensor} if sensor else {}})
    settled = ESC.follow(o, NOW)
    o = settled[-1].snapshot if settled else o
    if not inside:
        o = o.model_copy(update={"location": IN_ZICHUAN})
    b = book(warning(level=level, start=start, end=start + length))
    when = NOW + timedelta(hours=at)
    # Judged on the same datetimes the record carries (hours as floats round differently:
    # start=2e-262 h is NOW itself).
    holds = NOW + timedelta(hours=start) <= when < NOW + timedelta(hours=start + length)
    for w, rule in b.escalating(when):
        for c in escalate_open(o, w, rule, ESC.follow, when):
            s = c.snapshot
            assert WARNING_RANK[s.warning_level] >= WARNING_RANK[o.warning_level]
            assert PRIORITY_RANK[s.priority] >= PRIORITY_RANK[o.priority]
            assert EMERGENCY_RANK[s.emergency_level] >= EMERGENCY_RANK[o.emergency_level]
    if not holds:
        assert b.escalating(when) == [] and b.start("waterlogging", o.location, when) is None
    route = Route("water", priority, "category:waterlogging")
    start_at = b.start("waterlogging", o.location, when)
    assert PRIORITY_RANK[start_route(route, start_at, PRIORITY).priority] >= PRIORITY_RANK[priority]
    if start_at is not None:
        assert holds and inside and start_at.level == level


@settings(max_examples=40, deadline=None)
@given(levels_=st.lists(levels, min_size=1, max_size=4), sensor=maybe_level)
def test_a_new_order_starts_at_the_highest_of_its_sensor_and_the_warnings_covering_it(levels_, sensor):
    b = book(*[warning(wid=f"W-{i}", level=lv) for i, lv in enumerate(levels_)])
    snap = new_order(b, event(level=sensor))[0].snapshot
    want = max([*levels_, *([sensor] if sensor else [])], key=WARNING_RANK.__getitem__)
    assert snap.warning_level == want
    assert snap.area_warnings == {f"W-{i}": lv for i, lv in enumerate(levels_)}


def test_the_config_refuses_unknown_categories_and_kinds():
    with pytest.raises(ValueError, match="unknown categories"):
        WarningsConfig.model_validate({"kind": {"rainstorm": {"categories": ["lava"]}}}).check(["waterlogging"])
    with pytest.raises(ValueError):
        WarningsConfig.model_validate({"kind": {"meteor": {"categories": ["waterlogging"]}}})
    with pytest.raises(ValueError):
        WarningsConfig.model_validate({"kind": {"rainstorm": {"categories": ["waterlogging"],
                                                             "open_orders_from": "purple"}}})
