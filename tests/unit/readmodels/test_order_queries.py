"""The order view's lists at city volume: every filter, search, facets, totals and paging
over any sort (hypothesis: walking the pages gives each matching order once, in order)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.readmodels.orders import OrderView
from citybrain.readmodels.query import SORTS, OrderQuery, Scope, decode_cursor

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NOW = (T0 + timedelta(days=2)).timestamp()
CATEGORIES = ("waterlogging", "road_damage", "gas_leak")
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("registered", "dispatched", "accepted", "handled", "closed", "cancelled")


def order(i: int, *, status="dispatched", category="waterlogging", priority="normal", department="water",
          hours_old=0.0, due_in_hours=24.0, description="", warning=None, emergency=None, supervision=0,
          sources=("report",), assists=(), street="370306002", grid_tail="001016", address=None):
    created = T0 + timedelta(hours=i) - timedelta(hours=hours_old)
    snap = {"work_order_id": f"WO-{i:05d}", "version": 1, "status": status, "category": category,
            "category_name": {"waterlogging": "积水", "road_damage": "道路破损", "gas_leak": "燃气泄漏"}[category],
            "priority": priority, "department": department, "created_at": created.isoformat(),
            "due_at": (created + timedelta(hours=due_in_hours)).isoformat(), "description": description,
            "warning_level": warning, "emergency_level": emergency, "supervision_level": supervision,
            "assists": [{"department": a, "status": "dispatched"} for a in assists],
            "events": [{"event_id": f"E-{i}-{s}", "source": s, "report_id": f"R-{i}" if s == "report" else None}
                       for s in sources],
            "finders": [f"op-{i}"], "location": {"grid_code": street + grid_tail, "street_code": street,
                                                  "district_code": street[:6]}}
    if address:
        snap["address"] = address
    return {"work_order_id": snap["work_order_id"], "version": 1, "at": created.isoformat(), "steps": [],
            "snapshot": snap}


def ask(view, **kw):
    return view.query(OrderQuery(**kw), now=NOW)


def ids(page):
    return [o["work_order_id"] for o in page.items]


@pytest.fixture
def view():
    v = OrderView()
    v.add_state(order(1, description="周村区青年路88号门口积水", priority="urgent", warning="red"))
    v.add_state(order(2, category="road_damage", department="roads", due_in_hours=1.0, supervision=2))
    v.add_state(order(3, status="closed", department="roads", category="road_damage"))
    v.add_state(order(4, category="gas_leak", department="gas", emergency="II", sources=("iot", "video"),
                      assists=("fire",), street="370303001", address="张店区 人民路 12 号"))
    v.add_state(order(5, status="registered", department=None, priority="low", due_in_hours=0.5))
    return v


def test_every_filter(view):
    assert ids(ask(view, category=frozenset({"road_damage"}))) == ["WO-00003", "WO-00002"]
    assert ids(ask(view, priority=frozenset({"urgent", "low"}))) == ["WO-00005", "WO-00001"]
    assert ids(ask(view, department="fire")) == ["WO-00004"]          # an assisting department
    assert ids(ask(view, assist="fire")) == ["WO-00004"]
    assert ids(ask(view, assist="gas")) == []
    assert ids(ask(view, district="370303")) == ["WO-00004"]
    assert ids(ask(view, street="370306002", status=frozenset({"closed"}))) == ["WO-00003"]
    assert ids(ask(view, grid="370303")) == ["WO-00004"]
    assert ids(ask(view, warning=frozenset({"red"}))) == ["WO-00001"]
    assert len(ask(view, warning=frozenset({"none"})).items) == 4
    assert ids(ask(view, emergency=frozenset({"I", "II"}))) == ["WO-00004"]
    assert ids(ask(view, supervision=frozenset({2}))) == ["WO-00002"]
    assert ids(ask(view, source=frozenset({"video"}))) == ["WO-00004"]
    # Overdue at NOW (two days after T0): open orders past their due time; a closed one never.
    assert ids(ask(view, overdue=True)) == ["WO-00005", "WO-00004", "WO-00002", "WO-00001"]
    assert ids(ask(view, overdue=False)) == ["WO-00003"]
    assert ids(ask(view, created_from=T0 + timedelta(hours=2), created_to=T0 + timedelta(hours=4))) == [
        "WO-00003", "WO-00002"]


def test_search_chinese_address_ids_and_reporters(view):
    assert ids(ask(view, q="青年路88号")) == ["WO-00001"]
    assert ids(ask(view, q="人民路")) == ["WO-00004"]                  # the caller's address
    assert ids(ask(view, q="wo-00002")) == ["WO-00002"]                # ids, any case
    assert ids(ask(view, q="R-5")) == ["WO-00005"]                     # a report id
    assert ids(ask(view, q="op-3")) == ["WO-00003"]                    # a finder
    assert ids(ask(view, q="积水 周村")) == ["WO-00001"]                # every word must appear
    assert ask(view, q="积水 张店").total == 0


def test_totals_and_facets_count_every_match_not_the_page(view):
    page = ask(view, limit=1, facets=True)
    assert page.total == 5 and len(page.items) == 1
    f = page.facets
    assert f["status"] == {"dispatched": 3, "closed": 1, "registered": 1}
    assert f["category"] == {"waterlogging": 2, "road_damage": 2, "gas_leak": 1}
    assert f["department"] == {"roads": 2, "water": 1, "gas": 1, "none": 1}
    assert f["assist"] == {"fire": 1}
    assert f["district"] == {"370306": 4, "370303": 1}
    assert f["overdue"] == {"true": 4, "false": 1}
    assert f["supervision"] == {"0": 4, "2": 1}
    assert f["source"] == {"report": 4, "iot": 1, "video": 1}
    assert f["emergency"] == {"none": 4, "II": 1}
    only_open = ask(view, status=frozenset({"registered", "dispatched"}), facets=True)
    assert only_open.total == 4 and "closed" not in only_open.facets["status"]


def test_sorts(view):
    # earliest due first; a closed order has nothing due and comes last
    assert ids(ask(view, sort="due")) == ["WO-00002", "WO-00005", "WO-00001", "WO-00004", "WO-00003"]
    assert ids(ask(view, sort="-priority")) == ["WO-00001", "WO-00004", "WO-00003", "WO-00002", "WO-00005"]
    assert ids(ask(view, sort="created")) == ["WO-00001", "WO-00002", "WO-00003", "WO-00004", "WO-00005"]


def test_scopes_match_the_principals_rule(view):
    assert ids(ask(view, scope=Scope(department="fire"))) == ["WO-00004"]
    assert ids(ask(view, scope=Scope(street_code="370303001", department="street.370303001"))) == ["WO-00004"]
    assert ids(ask(view, scope=Scope(grid_prefix="370306002001"))) == ["WO-00005", "WO-00003", "WO-00002",
                                                                         "WO-00001"]


def test_closing_an_order_moves_it_out_of_the_open_set(view):
    assert "WO-00002" in view.open
    closed = order(2, status="closed", category="road_damage", department="roads")
    closed["version"] = closed["snapshot"]["version"] = 2
    view.add_state(closed)
    assert "WO-00002" not in view.open
    assert "WO-00002" not in ids(ask(view, status=frozenset({"dispatched"})))
    assert ask(view, status=frozenset({"closed"})).total == 2


def test_live_changes_replay_from_an_event_id(view):
    import asyncio
    q: asyncio.Queue = asyncio.Queue()
    view.subscribers.add(q)
    first_id = view.event_id()
    for i, v in ((2, 2), (4, 2), (2, 3)):
        rec = order(i)
        rec["version"] = rec["snapshot"]["version"] = v
        rec["steps"] = [{"version": v, "type": "commented", "at": rec["at"], "actor": {"id": "o", "role": "operator"},
                         "status": "dispatched", "supervision": None, "note": None}]
        view.add_state(rec)
    ids_sent = [q.get_nowait()["id"] for _ in range(3)]
    assert ids_sent == [f"{view.epoch}.{n}" for n in (6, 7, 8)]     # the fixture's five came first
    assert view.changed_since(first_id) == ["WO-00004", "WO-00002"]    # each order once, oldest first
    assert view.changed_since(ids_sent[0]) == ["WO-00004", "WO-00002"]
    assert view.changed_since(ids_sent[2]) == []
    assert view.changed_since("0.1") is None                            # another worker's or run's
    assert view.changed_since(f"{view.epoch}.99") is None               # from the future
    assert view.changed_since("garbage") is None


def test_an_id_older_than_the_ring_asks_for_a_reload():
    v = OrderView()
    v.recent = type(v.recent)(maxlen=2)
    for i in range(4):
        rec = order(i)
        rec["steps"] = [{"version": 1, "type": "created", "at": rec["at"], "actor": {"id": "s", "role": "system"},
                         "status": "dispatched", "supervision": None, "note": None}]
        v.add_state(rec)
    assert v.changed_since(f"{v.epoch}.2") == ["WO-00002", "WO-00003"]   # the ring holds changes 3 and 4
    assert v.changed_since(f"{v.epoch}.1") is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STATUSES), st.sampled_from(CATEGORIES), st.sampled_from(PRIORITIES),
                          st.floats(0, 100), st.floats(-10, 100)), min_size=0, max_size=40),
       st.sampled_from(sorted(SORTS)), st.integers(1, 7),
       st.sampled_from([None, frozenset({"registered", "dispatched"}), frozenset({"closed"})]),
       st.sampled_from([None, frozenset({"road_damage"})]))
def test_walking_the_pages_gives_each_match_once_in_order(rows, sort, limit, status, category):
    v = OrderView()
    for i, (s, c, p, old, due) in enumerate(rows):
        v.add_state(order(i, status=s, category=c, priority=p, hours_old=old, due_in_hours=due))
    q = OrderQuery(sort=sort, limit=limit, status=status, category=category)
    seen, cursor = [], None
    while True:
        page = v.query(replace(q, cursor=decode_cursor(cursor, sort) if cursor else None), now=NOW)
        assert len(page.items) <= limit
        seen += ids(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [f"WO-{i:05d}" for i, (s, c, *_rest) in enumerate(rows)
                if (status is None or s in status) and (category is None or c in category)]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    assert page.total == len(expected)
    keys = [v.orders[wo].sort_key(sort, wo) for wo in seen]
    assert keys == sorted(keys)
    # offset paging agrees with the cursor walk
    by_offset = []
    for off in range(0, len(expected) + limit, limit):
        by_offset += ids(v.query(replace(q, offset=off), now=NOW))
    assert by_offset == seen


def test_a_merge_moves_every_report_and_merged_orders_leave_the_view():
    v = OrderView()
    v.add_state(order(1, sources=("report",)))
    dup = order(2, sources=("report",))
    v.add_state(dup)
    assert v.by_report["R-2"] == "WO-00002"
    survivor = order(1, sources=("report",))
    survivor["version"] = survivor["snapshot"]["version"] = 2
    survivor["snapshot"]["events"] += dup["snapshot"]["events"] + [{"event_id": "E-x", "source": "report",
                                                                     "report_id": "R-older"}]
    v.add_state(survivor)
    assert v.by_report["R-2"] == "WO-00001" and v.by_report["R-older"] == "WO-00001"
    merged = order(2, status="merged")
    merged["version"] = merged["snapshot"]["version"] = 2
    v.add_state(merged)
    assert "WO-00002" not in v.open
    assert v.evict_closed("2100-01-01T00:00:00+00:00") == 1 and v.snapshot("WO-00002") is None


def test_the_followup_worklist_holds_handled_or_closed_orders_with_a_reporter_not_called_back():
    v = OrderView()
    for i, status, visits in ((1, "closed", []), (2, "closed", [{"report_id": "R-2", "satisfaction": "satisfied"}]),
                              (3, "handled", []), (4, "dispatched", [])):
        rec = order(i, status=status)
        rec["snapshot"]["visits"] = visits
        rec["snapshot"]["closed_at"] = rec["snapshot"]["created_at"] if status == "closed" else None
        rec["snapshot"]["handled_at"] = rec["snapshot"]["created_at"]
        v.add_state(rec)
    v.add_state(order(5, status="closed", sources=("iot",)))            # no reporter: nobody to call
    page = ask(v, followup=True, sort="followup")
    assert ids(page) == ["WO-00001", "WO-00003"]                         # the earlier closure first
    assert v.followup_at("WO-00001") == (T0 + timedelta(hours=1 + 48)).timestamp()
    assert ask(v, followup=False).total == 3


def test_department_none_is_the_facets_none_the_orders_without_a_lead(view):
    page = ask(view, department="none", facets=True)
    assert ids(page) == ["WO-00005"] and page.total == ask(view, facets=True).facets["department"]["none"]
