"""A list's query string: every parameter known and checked, the field at fault named,
a principal's scope enforced (and the view's scope rule the same as may_see)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict

from citybrain.readmodels.orders import OrderView
from citybrain.readmodels.query import OrderQuery
from citybrain.web.auth import Principal, Refused, may_see
from citybrain.web.params import PARAMETERS, Vocabulary, order_query

VOCAB = Vocabulary(categories=["waterlogging", "road_damage"], departments=["water", "roads", "street.370306002"],
                   districts=["370306", "370303"])
OPERATOR = Principal("op", "值班员", "operator")
WATER = Principal("w", "水务", "department", department="water")
GRID = Principal("g", "网格员", "grid", grid_prefix="370306002001")


def parse(qs: str, p=OPERATOR):
    return order_query(MultiDict(pair.split("=", 1) for pair in qs.split("&") if pair), p, VOCAB)


def test_every_parameter_read():
    q = parse("status=registered,dispatched&category=waterlogging&priority=urgent,high&department=roads"
              "&assist=water&district=370306&street=370306002&grid=370306&warning=red,none&emergency=I"
              "&overdue=true&supervision=2,3&source=iot&created_from=2026-12-01T00:00:00 08:00"
              "&created_to=2026-12-02T00:00:00+08:00&since=2026-12-01T00:00:00Z&q=青年路&sort=due"
              "&limit=100&offset=200&facets=true")
    assert q.status == {"registered", "dispatched"} and q.category == {"waterlogging"}
    assert q.priority == {"urgent", "high"} and q.department == "roads" and q.assist == "water"
    assert (q.district, q.street, q.grid) == ("370306", "370306002", "370306")
    assert q.warning == {"red", "none"} and q.emergency == {"I"} and q.overdue is True
    assert q.supervision == {2, 3} and q.source == {"iot"} and q.q == "青年路" and q.sort == "due"
    assert (q.limit, q.offset, q.facets) == (100, 200, True)
    assert q.created_from is not None and q.updated_since is not None
    assert set(PARAMETERS) >= {"status", "q", "facets", "cursor"}


@pytest.mark.parametrize("qs, field", [
    ("category=waterlog", "category"), ("priority=extreme", "priority"), ("overdue=maybe", "overdue"),
    ("q2=x", "q2"), ("sort=name", "sort"), ("limit=501", "limit"), ("offset=-1", "offset"),
    ("department=police", "department"), ("assist=nobody", "assist"), ("district=370399", "district"),
    ("street=37030600", "street"), ("warning=purple", "warning"), ("emergency=V", "emergency"),
    ("supervision=4", "supervision"), ("source=fax", "source"), ("created_from=yesterday", "created_from"),
    ("created_to=2026-12-01T00:00:00", "created_to"), ("cursor=zzz", "cursor"), ("status=lost", "status"),
    ("status=open&status=closed", "status"), ("facets=2", "facets"), ("grid=abc", "grid"),
])
def test_a_bad_or_unknown_parameter_is_a_400_naming_it(qs, field):
    with pytest.raises(Refused) as e:
        parse(qs)
    assert (e.value.status, e.value.reason, e.value.field) == (400, "invalid_field", field)


def test_a_cursor_of_another_sort_is_refused():
    view = OrderView()
    for i in range(3):
        view.add_state({"work_order_id": f"WO-{i}", "version": 1, "at": f"2026-12-0{i + 1}T00:00:00+00:00",
                        "steps": [], "snapshot": {"work_order_id": f"WO-{i}", "status": "registered",
                                                  "created_at": f"2026-12-0{i + 1}T00:00:00+00:00",
                                                  "location": {"grid_code": "370306002001016",
                                                               "street_code": "370306002"}}})
    cursor = view.query(OrderQuery(limit=1)).next_cursor
    assert parse(f"cursor={cursor}").cursor is not None
    with pytest.raises(Refused, match="sort"):
        parse(f"cursor={cursor}&sort=due")


def test_scopes_are_enforced():
    assert parse("", WATER).department == "water" and parse("", GRID).grid == "370306002001"
    with pytest.raises(Refused) as e:
        parse("department=roads", WATER)
    assert (e.value.status, e.value.field) == (403, "department")
    with pytest.raises(Refused) as e:
        parse("grid=370303", GRID)
    assert (e.value.status, e.value.field) == (403, "grid")


codes = st.sampled_from(["370306002", "370306003", "370303001"])


@given(role=st.sampled_from(["operator", "department", "street", "grid", "gateway"]),
       dept=st.sampled_from(["water", "roads", "street.370306002"]), street=codes,
       lead=st.sampled_from([None, "water", "roads", "street.370306002"]),
       assists=st.lists(st.sampled_from(["water", "roads"]), max_size=2, unique=True),
       order_street=codes, grid_tail=st.sampled_from(["001016", "002001"]),
       prefix=st.sampled_from(["370306002001", "370306", "370303001"]))
def test_the_views_scope_agrees_with_may_see(role, dept, street, lead, assists, order_street, grid_tail, prefix):
    p = Principal("x", "x", role, department=dept if role in ("department", "street") else None,
                  street_code=street if role == "street" else None, grid_prefix=prefix if role == "grid" else None)
    snap = {"work_order_id": "WO-1", "status": "dispatched", "department": lead, "created_at": "2026-12-01T00:00:00+00:00",
            "assists": [{"department": a, "status": "dispatched"} for a in assists],
            "location": {"grid_code": order_street + grid_tail, "street_code": order_street}}
    view = OrderView()
    view.add_state({"work_order_id": "WO-1", "version": 1, "at": snap["created_at"], "steps": [], "snapshot": snap})
    assert view.orders["WO-1"].visible_to(p.scope()) == may_see(p, snap)
