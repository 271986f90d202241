"""GET /api/v1/analytics/windows and /trends (contract: docs/analytics.md): the items from
the window store, city-local windows, a 400 naming the field for every bad parameter, 503
without a store."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from multidict import MultiDict

from citybrain.domain.trends import TrendSettings, baseline_days
from citybrain.readmodels.windows import WindowStore
from citybrain.web.analytics import Windows
from citybrain.web.auth import Refused

CN = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 12, 3)


def start(d: date) -> str:
    return datetime(d.year, d.month, d.day, tzinfo=CN).isoformat()


@pytest.fixture
def windows(tmp_path):
    store = WindowStore(tmp_path / "a.sqlite3")
    deltas = {(start(d), "day", "waterlogging", "370306", "370306002"): [2, 1, 0, 0, 0]
              for d in baseline_days(DAY, 8)}
    deltas[(start(DAY), "day", "waterlogging", "370306", "370306002")] = [6, 0, 1, 0, 0]
    deltas[(start(DAY), "day", "waterlogging", "370306", "370306001")] = [4, 0, 0, 0, 0]
    deltas[("2026-12-03T09:00:00+08:00", "hour", "waterlogging", "370306", "370306001")] = [4, 0, 0, 0, 0]
    store.apply(deltas, {}, (), {}, 0)
    yield Windows(lambda: store, lambda: ["waterlogging", "manhole_cover"], lambda: True,
                  TrendSettings(k=3.0, weeks=8))
    store.close()


async def test_day_windows_in_a_range(windows):
    got = await windows.answer_windows(MultiDict({"granularity": "day", "from": "2026-12-03T00:00:00+08:00",
                                                  "to": "2026-12-04T00:00:00+08:00"}))
    assert got["granularity"] == "day" and got["from"] == "2026-12-03T00:00:00+08:00"
    assert got["items"] == [
        {"window_start": "2026-12-03T00:00:00+08:00", "category": "waterlogging", "district": "370306",
         "street": "370306001", "opened": 4, "closed": 0, "overdue": 0, "returned": 0, "reworked": 0},
        {"window_start": "2026-12-03T00:00:00+08:00", "category": "waterlogging", "district": "370306",
         "street": "370306002", "opened": 6, "closed": 0, "overdue": 1, "returned": 0, "reworked": 0}]
    utc = await windows.answer_windows(MultiDict({"granularity": "hour", "from": "2026-12-03T01:00:00Z",
                                                  "to": "2026-12-03T02:00:00Z", "street": "370306001"}))
    assert [i["window_start"] for i in utc["items"]] == ["2026-12-03T09:00:00+08:00"]


async def test_trends_against_the_same_weekday(windows):
    got = await windows.answer_trends(MultiDict({"date": "2026-12-03"}))
    assert (got["date"], got["weeks"], got["k"]) == ("2026-12-03", 8, 3.0)
    assert got["items"] == [{"category": "waterlogging", "district": "370306", "count": 10,
                             "baseline_mean": 2.0, "baseline_sd": 0.0, "z": 8.0, "anomaly": True}]
    assert (await windows.answer_trends(MultiDict({"date": "2026-12-03", "district": "370303"})))["items"] == []
    next_week = (await windows.answer_trends(MultiDict({"date": (DAY + timedelta(days=7)).isoformat()})))["items"]
    assert [(r["count"], r["baseline_mean"]) for r in next_week] == [(0, 3.0)]   # 7 × 2 and the 10 above
    assert (await windows.answer_trends(MultiDict({"date": (DAY + timedelta(days=1)).isoformat()})))["items"] == []


@pytest.mark.parametrize(("query", "field"), [
    ({"from": "2026-12-01T00:00:00+08:00", "to": "2026-12-02T00:00:00+08:00"}, "granularity"),
    ({"granularity": "week", "from": "2026-12-01T00:00:00+08:00", "to": "2026-12-02T00:00:00+08:00"}, "granularity"),
    ({"granularity": "day", "to": "2026-12-02T00:00:00+08:00"}, "from"),
    ({"granularity": "day", "from": "yesterday", "to": "2026-12-02T00:00:00+08:00"}, "from"),
    ({"granularity": "day", "from": "2026-12-01T00:00:00", "to": "2026-12-02T00:00:00+08:00"}, "from"),
    ({"granularity": "day", "from": "2026-12-02T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}, "to"),
    ({"granularity": "hour", "from": "2026-01-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}, "to"),
    ({"granularity": "day", "from": "2026-12-01T00:00:00+08:00", "to": "2026-12-02T00:00:00+08:00",
      "category": "nope"}, "category"),
    ({"granularity": "day", "from": "2026-12-01T00:00:00+08:00", "to": "2026-12-02T00:00:00+08:00",
      "district": "37030"}, "district"),
    ({"granularity": "day", "from": "2026-12-01T00:00:00+08:00", "to": "2026-12-02T00:00:00+08:00",
      "street": "x"}, "street"),
    ({"granularity": "day", "from": "2026-12-01T00:00:00+08:00", "to": "2026-12-02T00:00:00+08:00",
      "department": "water"}, "department"),
])
async def test_bad_window_parameters_name_the_field(windows, query, field):
    with pytest.raises(Refused) as e:
        await windows.answer_windows(MultiDict(query))
    assert (e.value.status, e.value.field) == (400, field)


@pytest.mark.parametrize(("query", "field"), [({"date": "2026-13-01"}, "date"), ({"category": "x"}, "category"),
                                              ({"district": "abc"}, "district"), ({"weeks": "4"}, "weeks")])
async def test_bad_trend_parameters_name_the_field(windows, query, field):
    with pytest.raises(Refused) as e:
        await windows.answer_trends(MultiDict(query))
    assert (e.value.status, e.value.field) == (400, field)


async def test_without_a_store_503():
    bare = Windows(lambda: None, lambda: [], lambda: False, TrendSettings())
    with pytest.raises(Refused) as e:
        await bare.answer_trends(MultiDict())
    assert e.value.status == 503
