"""The history routes' query handling: unknown parameters are a 400 naming them, scope as
the lists, an order out of scope a 403, no store a 503."""

from datetime import UTC, datetime, timedelta

import pytest
from multidict import MultiDict

from citybrain.readmodels.history import HistoryStore
from citybrain.readmodels.orders import OrderView
from citybrain.web.auth import Principal, Refused
from citybrain.web.history import HistoryRoutes
from citybrain.web.params import Vocabulary

from ..readmodels.test_history import state

VOCAB = Vocabulary(categories=["waterlogging", "manhole_cover"], departments=["water", "municipal"],
                   districts=["370306", "370303"])
OPERATOR = Principal("op", "值班员", "operator")
WATER = Principal("w", "水务", "department", department="water")
GRID = Principal("g", "网格员", "grid", grid_prefix="370306002001")
GATEWAY = Principal("gw", "网关", "gateway")
NOW = datetime.now(UTC)


@pytest.fixture
def routes(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.apply([
        (0, 0, state("WO-a", 1, description="丝绸路积水", created=NOW - timedelta(days=100))),
        (0, 1, state("WO-b", 1, description="丝绸路积水又来了", created=NOW - timedelta(days=1))),
        (0, 2, state("WO-c", 1, description="丝绸路井盖", category="manhole_cover", department="municipal",
                     grid="370306003001001", created=NOW - timedelta(days=2))),
    ])
    yield HistoryRoutes(store, lambda: True, OrderView(), lambda: VOCAB)
    store.close()


async def test_search_scoped_and_filtered(routes):
    got = await routes.search(OPERATOR, MultiDict(q="丝绸路"))
    assert (got["total"], got["search"], got["complete"]) == (3, "fts", True)
    assert [o["work_order_id"] for o in got["items"]] == ["WO-b", "WO-c", "WO-a"]
    assert (await routes.search(WATER, MultiDict(q="丝绸路")))["total"] == 2
    assert (await routes.search(GRID, MultiDict(q="丝绸路")))["total"] == 2
    assert (await routes.search(OPERATOR, MultiDict(q="丝绸路", category="manhole_cover")))["total"] == 1
    short = await routes.search(OPERATOR, MultiDict(q="积水"))
    assert (short["total"], short["search"]) == (1, "like")   # 2 characters: the last 30 days


@pytest.mark.parametrize(("query", "field"), [({"sort": "-created"}, "sort"), ({"qq": "x"}, "qq"),
                                              ({"category": "nope"}, "category"), ({"limit": "0"}, "limit"),
                                              ({"created_from": "yesterday"}, "created_from")])
async def test_bad_parameters_name_the_field(routes, query, field):
    with pytest.raises(Refused) as e:
        await routes.search(OPERATOR, MultiDict(query))
    assert (e.value.status, e.value.field) == (400, field)


async def test_nearby(routes):
    got = await routes.nearby(OPERATOR, "WO-b", MultiDict())
    assert (got["radius_m"], got["days"]) == (200.0, 30.0)
    assert got["items"] == []                      # WO-a is 100 days old; WO-c another category
    got = await routes.nearby(OPERATOR, "WO-b", MultiDict(days="120"))
    assert [o["work_order_id"] for o in got["items"]] == ["WO-a"]
    got = await routes.nearby(OPERATOR, "WO-a", MultiDict())   # an old order: the 30 days before it, and since
    assert [o["work_order_id"] for o in got["items"]] == ["WO-b"]
    for p, wo, query, status, field in [(OPERATOR, "WO-x", {}, 404, "id"), (WATER, "WO-c", {}, 403, "id"),
                                        (OPERATOR, "WO-a", {"radius_m": "0"}, 400, "radius_m"),
                                        (OPERATOR, "WO-a", {"days": "x"}, 400, "days"),
                                        (OPERATOR, "WO-a", {"q": "x"}, 400, "q"),
                                        (GATEWAY, "WO-a", {}, 403, None)]:
        with pytest.raises(Refused) as e:
            await routes.nearby(p, wo, MultiDict(query))
        assert (e.value.status, e.value.field) == (status, field)


async def test_without_a_store_503():
    routes = HistoryRoutes(None, lambda: False, OrderView(), lambda: VOCAB)
    with pytest.raises(Refused) as e:
        await routes.search(OPERATOR, MultiDict())
    assert e.value.status == 503
