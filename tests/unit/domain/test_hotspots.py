"""高发 hotspots: planted repeats make exactly their hotspots, sparse background none;
the greedy choice is deterministic and no order is in two hotspots."""

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.domain.geo import distance_m
from citybrain.domain.hotspots import HotspotConfig, HotspotRule, Point, find, find_all, hotspot_id

NOW = 1_800_000_000.0
DAY = 86400.0
RULE = HotspotRule(min_orders=5, radius_m=100, days=30)


def near(lon, lat, metres, bearing):
    dlat = metres * math.cos(bearing) / 111_195
    dlon = metres * math.sin(bearing) / (111_195 * math.cos(math.radians(lat)))
    return lon + dlon, lat + dlat


def planted(rng, sites, per_site, background, days=29):
    points, n = [], 0
    for lon, lat in sites:
        for _ in range(per_site):
            x, y = near(lon, lat, rng.uniform(0, 60), rng.uniform(0, 2 * math.pi))
            points.append(Point(f"WO-{n:05d}", x, y, NOW - rng.uniform(0, days) * DAY, "370306002"))
            n += 1
    for _ in range(background):      # one order per ~1 km² on average: no five within 100 m
        points.append(Point(f"WO-{n:05d}", 117.7 + rng.uniform(0, 0.4), 36.6 + rng.uniform(0, 0.3),
                            NOW - rng.uniform(0, days) * DAY, "370306003"))
        n += 1
    return points


def test_a_month_with_planted_repeats_makes_exactly_their_hotspots():
    rng = random.Random(7)
    sites = [(117.80, 36.74), (117.85, 36.80), (117.95, 36.70)]
    points = planted(rng, sites, per_site=8, background=400)
    found = find("manhole_cover", points, RULE, NOW)
    assert len(found) == 3
    for h, (lon, lat) in zip(sorted(found, key=lambda h: h.lon), sorted(sites), strict=True):
        assert distance_m(h.lon, h.lat, lon, lat) <= 60 and h.count >= 8
        assert h.hotspot_id.startswith("HS-manhole_cover-") and h.first_ts <= h.last_ts
    ids = [wo for h in found for wo in h.work_order_ids]
    assert len(ids) == len(set(ids))                      # no order in two hotspots


def test_too_few_too_far_or_too_old_make_none():
    rng = random.Random(1)
    four = planted(rng, [(117.8, 36.74)], per_site=4, background=0)
    assert find("c", four, RULE, NOW) == []
    spread = [Point(f"WO-{i}", *near(117.8, 36.74, 150 * i, 0), NOW) for i in range(6)]
    assert find("c", spread, RULE, NOW) == []
    old = [Point(p.work_order_id, p.lon, p.lat, NOW - 40 * DAY) for p in planted(rng, [(117.8, 36.74)], 9, 0)]
    assert find("c", old, RULE, NOW) == []


def test_config_per_category_overrides_the_default():
    cfg = HotspotConfig.model_validate({"default": {"min_orders": 5}, "categories": {"noise": {"min_orders": 3,
                                                                                              "radius_m": 50}}})
    assert cfg.rule("noise").min_orders == 3 and cfg.rule("waterlogging") == HotspotRule(min_orders=5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 400), st.floats(0, 400), st.floats(0, 40)), max_size=60),
       st.integers(2, 6), st.sampled_from([50.0, 100.0, 200.0]))
def test_every_hotspot_has_enough_orders_within_the_radius_and_the_answer_is_deterministic(xyd, n, radius):
    points = [Point(f"WO-{i:03d}", *near(117.8, 36.74, math.hypot(x, y), math.atan2(x, y)), NOW - d * DAY)
              for i, (x, y, d) in enumerate(xyd)]
    rule = HotspotRule(min_orders=n, radius_m=radius, days=30)
    found = find("c", points, rule, NOW)
    assert found == find("c", list(reversed(points)), rule, NOW)
    by_id = {p.work_order_id: p for p in points}
    seen: set[str] = set()
    for h in found:
        assert h.count == len(h.work_order_ids) >= n
        for wo in h.work_order_ids:
            p = by_id[wo]
            assert distance_m(h.lon, h.lat, p.lon, p.lat) <= radius and p.created_ts >= NOW - 30 * DAY
        assert not seen & set(h.work_order_ids)
        seen |= set(h.work_order_ids)
    # What is left holds no further hotspot.
    rest = [p for p in points if p.work_order_id not in seen]
    assert find("c", rest, rule, NOW) == []


def test_a_hotspot_id_is_its_category_and_centre_and_its_record_names_them():
    """The id stays while the centre does (more orders join: same id); the record on
    analytics.hotspots has the centre, radius, orders and first/last in city time."""
    rng = random.Random(3)
    points = planted(rng, [(117.80, 36.74)], 5, 0)
    (h,) = find("manhole_cover", points, RULE, NOW)
    more = [*points, Point("WO-late", *near(117.80, 36.74, 10, 1.0), NOW - DAY, "370306002")]
    (h2,) = find("manhole_cover", more, RULE, NOW)
    assert h2.count == 6 and h2.work_order_ids[0] == h.work_order_ids[0] and h2.hotspot_id == h.hotspot_id
    assert find_all({"manhole_cover": more, "noise": points}, HotspotConfig(default=RULE), NOW)[0] == h2
    rec = h.record()
    assert rec["hotspot_id"] == h.hotspot_id == hotspot_id("manhole_cover", h.work_order_ids[0])
    assert rec["centre"]["work_order_id"] == h.work_order_ids[0] and rec["centre"]["lon"] == h.lon
    assert (rec["radius"], rec["count"], rec["orders"]) == (100.0, 5, list(h.work_order_ids))
    assert rec["first"].endswith("+08:00") and rec["first"] <= rec["last"]
    assert hotspot_id("noise", h.work_order_ids[0]) != h.hotspot_id
