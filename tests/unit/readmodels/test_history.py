"""The history read model on SQLite: idempotent upserts in version order, positions
committed with the rows, trigram search (Chinese included), nearby by exact distance."""

import math
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citybrain.domain.geo import distance_m as haversine_m
from citybrain.readmodels.history import SHORT_TERM_DAYS, HistoryFilters, HistoryStore, sqlite_supported
from citybrain.readmodels.query import Scope

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LON, LAT = 117.8625, 36.7935


def state(wo, version, *, status="dispatched", category="waterlogging", department="water", created=NOW,
          lon=LON, lat=LAT, description="", address="", grid="370306002001016", finders=(), reports=(),
          assists=()):
    snap = {"work_order_id": wo, "version": version, "status": status, "category": category,
            "priority": "normal", "department": department, "created_at": created.isoformat(),
            "description": description, "address": address, "finders": list(finders),
            "assists": [{"department": a, "state": "working"} for a in assists],
            "location": {"lon": lon, "lat": lat, "district_code": grid[:6], "street_code": grid[:9],
                         "community_code": grid[:12], "grid_code": grid},
            "events": [{"event_id": f"ev-{wo}", "report_id": r} for r in reports],
            "closed_at": (created + timedelta(hours=3)).isoformat() if status == "closed" else None}
    return {"work_order_id": wo, "version": version, "at": (created + timedelta(minutes=version)).isoformat(),
            "snapshot": snap, "steps": []}


@pytest.fixture
def store(tmp_path):
    s = HistoryStore(tmp_path / "history.sqlite3")
    yield s
    s.close()


def test_this_python_has_fts5_trigram_and_rtree():
    assert sqlite3.sqlite_version_info >= (3, 34)
    assert sqlite_supported() is None


def test_wal_and_synchronous_normal(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1   # NORMAL


def test_an_older_or_equal_version_never_overwrites(store):
    store.apply([(0, 0, state("WO-1", 2, status="accepted"))])
    store.apply([(0, 1, state("WO-1", 1, status="registered")), (0, 2, state("WO-1", 2, status="dispatched"))])
    assert store.get("WO-1")["status"] == "accepted"
    store.apply([(0, 3, state("WO-1", 3, status="closed", description="路面积水已排除"))])
    assert store.get("WO-1")["status"] == "closed"
    assert store.count() == 1
    # the text index follows the row: one entry, the newest text
    assert store.db.execute("SELECT count(*) FROM orders_fts").fetchone()[0] == 1
    assert store.search("积水已排", HistoryFilters()).total == 1


versions = st.lists(st.tuples(st.sampled_from(["WO-a", "WO-b", "WO-c"]), st.integers(1, 8)), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions, st.integers(1, 5))
def test_any_order_and_any_redelivery_keeps_the_highest_version(tmp_path_factory, records, cut):
    s = HistoryStore(tmp_path_factory.mktemp("h") / "h.sqlite3")
    batch = [(0, i, state(wo, v, description=f"v{v}")) for i, (wo, v) in enumerate(records)]
    for start in range(0, len(batch), cut):
        s.apply(batch[start:start + cut])
    s.apply(batch)   # the whole topic again (a rewind): nothing changes
    best: dict[str, int] = {}
    for wo, v in records:
        best[wo] = max(best.get(wo, 0), v)
    assert {wo: s.get(wo)["version"] for wo in best} == best
    assert s.count() == len(best)
    assert s.db.execute("SELECT count(*) FROM orders_fts").fetchone()[0] == len(best)
    assert s.positions() == ({0: len(batch)} if batch else {})
    s.close()


def test_positions_are_committed_with_the_rows(store, tmp_path):
    store.apply([(0, 0, state("WO-1", 1)), (1, 5, state("WO-2", 1)), (1, 6, None)])
    assert store.positions() == {0: 1, 1: 7}
    # a batch that fails half way leaves neither its rows nor its positions
    bad = state("WO-4", 1)
    del bad["snapshot"]["status"]
    with pytest.raises(KeyError):
        store.apply([(0, 1, state("WO-3", 1)), (0, 2, bad)])
    broken = state("WO-5", 1)
    broken["snapshot"]["status"] = None   # refused by the table (NOT NULL), inside the transaction
    with pytest.raises(sqlite3.Error):
        store.apply([(0, 1, state("WO-3", 1)), (0, 2, broken)])
    assert store.get("WO-3") is None
    assert store.positions() == {0: 1, 1: 7}
    # positions never move back (a redelivered batch)
    store.apply([(1, 2, state("WO-2", 1))])
    assert store.positions() == {0: 1, 1: 7}
    store.close()
    again = HistoryStore(tmp_path / "history.sqlite3")   # a restart resumes from its own offsets
    assert again.positions() == {0: 1, 1: 7}
    assert again.count() == 2
    again.close()


def test_chinese_trigram_search_and_filters(store):
    store.apply([
        (0, 0, state("WO-1", 1, description="周村区丝绸路下穿隧道路面积水", address="丝绸路与新建路交叉口")),
        (0, 1, state("WO-2", 1, description="新建路井盖缺失", address="新建路88号", category="manhole_cover",
                     department="municipal", created=NOW - timedelta(days=200))),
        (0, 2, state("WO-3", 1, description="路灯不亮", address="正阳路", category="streetlight",
                     department="municipal", status="closed", finders=("CAM-ZC-0042",), reports=("R-778899",))),
    ])
    ids = lambda r: [o["work_order_id"] for o in r.items]  # noqa: E731
    assert ids(store.search("下穿隧道", HistoryFilters())) == ["WO-1"]
    r = store.search("新建路", HistoryFilters())
    assert (r.total, r.mode, ids(r)) == (2, "fts", ["WO-1", "WO-2"])      # newest first
    short = store.search("新建路 井盖", HistoryFilters(), now=NOW.timestamp())   # 井盖 is 2: LIKE over 30 days
    assert (short.total, short.mode, short.created_from) == (0, "like", NOW.timestamp() - SHORT_TERM_DAYS * 86400)
    assert store.search("新建路 井盖", HistoryFilters(created_from=0), now=NOW.timestamp()).total == 1
    assert ids(store.search("cam-zc", HistoryFilters())) == ["WO-3"]      # case folded
    assert ids(store.search("778899", HistoryFilters())) == ["WO-3"]      # report ids
    assert ids(store.search("WO-", HistoryFilters(status=frozenset({"closed"})))) == ["WO-3"]
    assert ids(store.search("", HistoryFilters(category=frozenset({"manhole_cover"})))) == ["WO-2"]
    assert store.search("", HistoryFilters(created_to=(NOW - timedelta(days=1)).timestamp())).total == 1
    assert store.search("", HistoryFilters(district="370306")).total == 3
    assert store.search("", HistoryFilters(district="370302")).total == 0
    page = store.search("", HistoryFilters(), limit=1, offset=1)
    assert (page.total, ids(page)) == (3, ["WO-3"])
    assert store.search('"路灯', HistoryFilters()).total == 0              # quotes are text, not syntax
    assert store.search("%", HistoryFilters(created_from=0)).total == 0    # LIKE wildcards are text


def test_scope_like_the_lists(store):
    store.apply([
        (0, 0, state("WO-w", 1, department="water", assists=("gas",))),
        (0, 1, state("WO-m", 1, department="municipal", grid="370306001001001")),
        (0, 2, state("WO-s", 1, department="street.370306002", grid="370306003001001")),
    ])
    wos = lambda scope: sorted(o["work_order_id"] for o in store.search("", HistoryFilters(scope=scope)).items)  # noqa: E731
    assert wos(Scope()) == ["WO-m", "WO-s", "WO-w"]
    assert wos(Scope(department="gas")) == ["WO-w"]
    assert wos(Scope(department="water")) == ["WO-w"]
    assert wos(Scope(street_code="370306002", department="street.370306002")) == ["WO-s", "WO-w"]
    assert wos(Scope(grid_prefix="370306001")) == ["WO-m"]
    assert wos(Scope(grid_prefix="-")) == []


def test_nearby_is_exact_at_the_radius(store):
    # points due north at known distances: 1 m of latitude is 1/111,195 degrees on this sphere
    deg = 180 / (math.pi * 6_371_008.8)
    rows = [(0, i, state(f"WO-{d}", 1, lat=LAT + d * deg)) for i, d in enumerate((0, 50, 199, 201, 400))]
    rows.append((0, 9, state("WO-east", 1, lon=LON + 150 * deg / math.cos(math.radians(LAT)))))
    rows.append((0, 10, state("WO-other", 1, category="manhole_cover", lat=LAT + 10 * deg)))
    rows.append((0, 11, state("WO-old", 1, lat=LAT + 20 * deg, created=NOW - timedelta(days=40))))
    store.apply(rows)
    found = store.nearby(LON, LAT, 200, "waterlogging", 30, "WO-0", now=NOW.timestamp())
    assert [o["work_order_id"] for o in found] == ["WO-50", "WO-east", "WO-199"]
    assert [round(o["distance_m"]) for o in found] == [50, 150, 199]
    assert all(o["distance_m"] <= 200 for o in found)
    assert "WO-old" in [o["work_order_id"] for o in store.nearby(LON, LAT, 200, "waterlogging", 60, None,
                                                                  now=NOW.timestamp())]
    assert [o["work_order_id"] for o in store.nearby(LON, LAT, 200, None, 30, "WO-0", now=NOW.timestamp())][0] \
        == "WO-other"
    assert store.nearby(LON, LAT, 200, "waterlogging", 30, None, now=NOW.timestamp(),
                        scope=Scope(department="gas")) == []


@settings(max_examples=100, deadline=None)
@given(st.floats(-80, 80), st.floats(-179, 179), st.floats(1, 5000), st.floats(0, 360), st.floats(0, 1.2))
def test_the_bounding_box_never_loses_a_point_within_the_radius(lat, lon, radius, bearing, share):
    """A point at distance share × radius in any direction: found exactly when within."""
    d = share * radius
    b, p1 = math.radians(bearing), math.radians(lat)
    a = d / 6_371_008.8
    p2 = math.asin(math.sin(p1) * math.cos(a) + math.cos(p1) * math.sin(a) * math.cos(b))
    l2 = math.radians(lon) + math.atan2(math.sin(b) * math.sin(a) * math.cos(p1), math.cos(a) - math.sin(p1) * math.sin(p2))
    lat2, lon2 = math.degrees(p2), math.degrees(l2)
    exact = haversine_m(lon, lat, lon2, lat2)
    if abs(exact - radius) < 1e-3:
        return   # on the circle itself: floating point decides
    s = HistoryStore(":memory:")
    s.apply([(0, 0, state("WO-p", 1, lon=lon2, lat=lat2))])
    found = s.nearby(lon, lat, radius, None, 30, None, now=NOW.timestamp())
    assert bool(found) == (exact <= radius)
    s.close()


def test_the_category_name_is_searched_and_a_store_of_another_format_is_rebuilt(tmp_path):
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path)
    rec = state("WO-flooding-1", 1)
    rec["snapshot"]["category_name"] = "路面积水"
    store.apply([(0, 0, rec)])
    assert [o["work_order_id"] for o in store.search("路面积水", HistoryFilters()).items] == ["WO-flooding-1"]
    assert store.search("积水", HistoryFilters()).total == 1        # two characters: the LIKE path
    store.close()
    old = sqlite3.connect(path)
    old.execute("PRAGMA user_version = 1")                           # written by the earlier format
    old.close()
    again = HistoryStore(path)
    assert again.count() == 0 and again.positions() == {}            # read from the topic's start again
