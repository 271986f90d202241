"""Fusion (一事一单): one incident, one order, whoever reports it and in what order."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.domain.fusion import Decision, FusionEvent, FusionIndex, OpenOrder
from citybrain_tools.sample.sites import EAST_DIP, UNDERPASS

T0 = 1_800_000_000.0


def ev(eid, kind="alarm", category="waterlogging", site=UNDERPASS, e=0, n=0, at=0, finder=None):
    lon, lat = site.offset(e, n)
    return FusionEvent(eid, kind, category, lon, lat, T0 + at, finder)


def rainstorm():
    return [
        ev("g1", e=0, n=0, at=60, finder="WLV-UP-01"),
        ev("g2", e=35, n=10, at=65, finder="WLV-UP-02"),
        ev("g3", e=-30, n=-25, at=70, finder="WLV-UP-03"),
        ev("c1", e=20, n=40, at=40, finder="CAM-UP-01"),
        ev("c2", e=-45, n=15, at=55, finder="CAM-UP-02"),
        ev("r1", "report", e=15, n=-20, at=50),
        ev("r2", "report", e=-40, n=30, at=80),
        ev("far", site=EAST_DIP, at=90, finder="WLV-EP-01"),
        ev("farcam", site=EAST_DIP, e=25, n=-20, at=100, finder="CAM-EP-01"),
    ]


def groups(index: FusionIndex) -> set[frozenset[str]]:
    return {frozenset(o.event_ids) for o in index.orders.values()}


def test_rainstorm_makes_one_order_and_the_far_spot_another(config):
    index = FusionIndex()
    decisions = [index.fuse(e, config.router) for e in rainstorm()]
    assert groups(index) == {frozenset({"g1", "g2", "g3", "c1", "c2", "r1", "r2"}),
                             frozenset({"far", "farcam"})}
    assert [d.action for d in decisions].count("open") == 2
    first = index.orders[decisions[0].work_order_id]
    assert set(first.finders) == {"WLV-UP-01", "WLV-UP-02", "WLV-UP-03", "CAM-UP-01", "CAM-UP-02"}


def test_work_order_id_is_derived_from_the_first_event(config):
    a, b = FusionIndex(), FusionIndex()
    da = a.fuse(ev("x1"), config.router)
    db = b.fuse(ev("x1"), config.router)
    assert da.work_order_id == db.work_order_id and da.work_order_id.startswith("WO-")


def test_replayed_event_is_a_duplicate(config):
    index = FusionIndex()
    d = index.fuse(ev("x1"), config.router)
    again = index.fuse(ev("x1"), config.router)
    assert (again.action, again.work_order_id) == ("duplicate", d.work_order_id)
    assert len(index.orders) == 1


def test_reports_either_side_of_a_street_border_fuse(config):
    # 117.835 is the border of 永安街 (west) and 大街 (east): 30 m apart across it.
    west = FusionEvent("w", "report", "road_damage", 117.835 - 0.00017, 36.80, T0, None)
    east = FusionEvent("e", "report", "road_damage", 117.835 + 0.00017, 36.80, T0 + 60, None)
    city = config.city_map
    assert city.locate(west.lon, west.lat).street_code != city.locate(east.lon, east.lat).street_code
    index = FusionIndex()
    index.fuse(west, config.router)
    assert index.fuse(east, config.router).action == "join"


def test_fusion_group_joins_related_categories(config):
    index = FusionIndex()
    index.fuse(ev("smoke", category="fire", site=UNDERPASS, finder="SMK-1"), config.router)
    d = index.fuse(ev("cable", category="electrical_fire_risk", e=20, finder="CBT-1"), config.router)
    assert d.action == "join"
    other = index.fuse(ev("gas", category="gas_leak", e=10), config.router)
    assert other.action == "open"      # not the same group


def test_outside_the_window_opens_a_new_order(config):
    index = FusionIndex()
    index.fuse(ev("a", category="illegal_parking", at=0), config.router)   # window 60 min
    assert index.fuse(ev("b", category="illegal_parking", at=59 * 60), config.router).action == "join"
    assert index.fuse(ev("c", category="illegal_parking", at=59 * 60 + 3601), config.router).action == "open"


def test_same_device_joins_its_order_however_far_or_late_within_the_order(config):
    index = FusionIndex()
    d = index.fuse(ev("a", finder="WLV-UP-01"), config.router)
    again = index.fuse(ev("b", e=5000, at=99999, finder="WLV-UP-01"), config.router)
    assert (again.action, again.work_order_id) == ("join", d.work_order_id)


def test_recovery_is_recorded_on_the_devices_order_and_opens_nothing(config):
    index = FusionIndex()
    d = index.fuse(ev("a", finder="WLV-UP-01"), config.router)
    rec = index.fuse(ev("a-rec", "recovery", at=600, finder="WLV-UP-01"), config.router)
    assert (rec.action, rec.work_order_id) == ("recovery", d.work_order_id)
    orphan = index.fuse(ev("z-rec", "recovery", finder="WLV-UP-09"), config.router)
    assert (orphan.action, orphan.work_order_id) == ("orphan_recovery", None)
    assert len(index.orders) == 1


def test_repeat_alarm_after_the_order_closed_opens_a_new_order(config):
    index = FusionIndex()
    first = index.fuse(ev("a1", finder="WLV-UP-01"), config.router)
    index.close(first.work_order_id)
    second = index.fuse(ev("a2", at=3600, finder="WLV-UP-01"), config.router)
    assert second.action == "open" and second.work_order_id != first.work_order_id


def test_index_round_trips(config):
    index = FusionIndex()
    for e in rainstorm():
        index.fuse(e, config.router)
    again = FusionIndex.from_list(index.to_list())
    assert groups(again) == groups(index)
    assert {o.work_order_id: set(o.finders) for o in again.orders.values()} == \
           {o.work_order_id: set(o.finders) for o in index.orders.values()}
    assert isinstance(next(iter(again.orders.values())), OpenOrder)


def test_every_arrival_order_of_the_rainstorm_gives_the_same_orders(config):
    events = rainstorm()
    expected = None
    for perm in itertools.islice(itertools.permutations(events), 0, 40320, 97):
        index = FusionIndex()
        for e in perm:
            index.fuse(e, config.router)
        expected = expected or groups(index)
        assert groups(index) == expected


# Incidents: centres 1.5 km apart; any two events of one incident within 50 m (the
# road_damage radius) of each other
# and within 30 min of each other (window 72 h): inside, and far from other incidents.
incident = st.tuples(st.integers(0, 7), st.lists(st.tuples(st.floats(-17, 17), st.floats(-17, 17),
                                                            st.floats(0, 1800)), min_size=1, max_size=6))


@settings(max_examples=150, deadline=None)
@given(st.lists(incident, min_size=1, max_size=5, unique_by=lambda i: i[0]), st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_the_set_of_orders(config, incidents, rnd):
    events = []
    for slot, members in incidents:
        for j, (e, n, at) in enumerate(members):
            events.append(ev(f"i{slot}-{j}", category="road_damage", e=slot * 1500 + e, n=n, at=at))
    truth = {frozenset(f"i{slot}-{j}" for j in range(len(m))) for slot, m in incidents}
    shuffled = list(events)
    rnd.shuffle(shuffled)
    for order in (events, shuffled):
        index = FusionIndex()
        for e in order:
            index.fuse(e, config.router)
        assert groups(index) == truth


def test_many_open_orders_only_near_ones_are_candidates(config):
    # 20,000 open road-damage orders on a 100 m lattice; a new report 20 m from one
    # of them joins exactly that one.
    index = FusionIndex()
    for i in range(200):
        for j in range(100):
            index.fuse(ev(f"o{i}-{j}", "report", "road_damage", e=i * 100, n=j * 100), config.router)
    assert len(index) == 20000
    d = index.fuse(ev("new", "report", "road_damage", e=5 * 100 + 20, n=7 * 100), config.router)
    assert d.action == "join" and "o5-7" in index.orders[d.work_order_id].event_ids
    index.close(d.work_order_id)
    assert len(index) == 19999
    # Any event of the closed order delivered again is a duplicate of it (issue 11), not
    # a new order; a new report at the same place opens one.
    assert index.fuse(ev("o5-7", "report", "road_damage", e=500, n=700), config.router) == \
        Decision("duplicate", d.work_order_id)
    assert index.fuse(ev("new", "report", "road_damage", e=500, n=700), config.router).action == "duplicate"
    assert index.fuse(ev("newer", "report", "road_damage", e=500, n=700), config.router).action == "open"


def test_an_order_that_left_hot_state_is_forgotten_by_fusion(config):
    index = FusionIndex()
    d = index.fuse(ev("a1", "report", "road_damage"), config.router)
    index.close(d.work_order_id)
    assert index.fuse(ev("a1", "report", "road_damage"), config.router).action == "duplicate"
    index.forget_retired(d.work_order_id, ["a1"])     # closed_state_days later: its inputs are gone
    assert index.fuse(ev("a1", "report", "road_damage"), config.router).action == "open"
