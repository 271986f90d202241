"""The window store: deltas add up, dirty rows until published, queries and trends' sums,
dedupe entries and positions survive a reopen."""

from datetime import datetime

from citybrain.readmodels.windows import WindowStore

D1, D2 = "2026-12-01T00:00:00+08:00", "2026-12-02T00:00:00+08:00"
H9 = "2026-12-01T09:00:00+08:00"


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_deltas_add_up_and_stay_dirty_until_published(tmp_path):
    store = WindowStore(tmp_path / "a.sqlite3")
    key = (D1, "day", "waterlogging", "370306", "370306002")
    store.apply({key: [1, 0, 0, 0, 0]}, {"WO-1": (0b10, 0)}, (), {0: 5}, 739586)
    store.apply({key: [1, 1, 0, 1, 0], (H9, "hour", "waterlogging", "370306", "370306002"): [2, 0, 0, 0, 0]},
                {"WO-1": (0b110, 739586)}, (), {0: 9, 1: 3}, 739586)
    (row,) = store.query("day", ts(D1), ts(D2))
    assert row == {"window_start": D1, "granularity": "day", "category": "waterlogging", "district": "370306",
                   "street": "370306002", "opened": 2, "closed": 1, "overdue": 0, "returned": 1, "reworked": 0}
    dirty = store.dirty()
    assert len(dirty) == 2
    store.apply({key: [1, 0, 0, 0, 0]}, {}, (), {0: 10}, 739586)   # changes while being sent …
    store.published(dirty)
    assert [r[1] for r in store.dirty()] == ["day"]                   # … so it stays dirty
    store.published(store.dirty())
    assert store.dirty() == []
    store.close()
    again = WindowStore(tmp_path / "a.sqlite3")
    assert again.positions() == {0: 10, 1: 3}
    assert again.dedupe_entries() == ([("WO-1", 0b110, 739586)], 739586)


def test_queries_filter_and_trends_sum_over_streets(tmp_path):
    store = WindowStore(tmp_path / "a.sqlite3")
    deltas = {(D1, "day", "waterlogging", "370306", "370306002"): [3, 0, 0, 0, 0],
              (D1, "day", "waterlogging", "370306", "370306001"): [2, 0, 0, 0, 0],
              (D1, "day", "manhole_cover", "370303", "370303001"): [1, 0, 0, 0, 0],
              (D2, "day", "waterlogging", "370306", "370306002"): [7, 0, 0, 0, 0]}
    store.apply(deltas, {}, ["WO-gone"], {}, 0)
    assert len(store.query("day", ts(D1), ts(D2))) == 3
    assert [r["street"] for r in store.query("day", ts(D1), ts(D2) + 1, street="370306002")] == \
        ["370306002", "370306002"]
    assert store.query("day", ts(D1), ts(D2), category="manhole_cover", district="370306") == []
    assert sorted(store.opened_by_day([ts(D1), ts(D2)], district="370306")) == [
        (ts(D1), "waterlogging", "370306", 5), (ts(D2), "waterlogging", "370306", 7)]
    assert store.prune(ts(D2)) == 3 and len(store.query("day", 0, ts(D2) + 1)) == 1
