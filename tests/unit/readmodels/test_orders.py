"""Every worker's order view: latest snapshot, filters, keyset paging, timeline."""

from dataclasses import replace
from datetime import datetime

import orjson
import pytest

from citybrain.readmodels.orders import OrderView
from citybrain.readmodels.query import OrderQuery, Scope, decode_cursor

NOW = datetime.fromisoformat("2026-11-22T12:00:00+00:00").timestamp()

_steps: dict[str, list[dict]] = {}


def change(wo, version, kind, status, created, at, department="water", grid="370306002001016", note=None):
    """The workorders.state record after this change: the snapshot and every step so far."""
    steps = [s for s in _steps.get(wo, []) if s["version"] < version]
    steps.append({"version": version, "type": kind, "at": at, "actor": {"id": "citybrain", "role": "system"},
                  "status": status, "supervision": None, "note": note})
    _steps[wo] = steps
    return {"work_order_id": wo, "version": version, "at": at, "steps": list(steps), "steps_omitted": 0,
            "snapshot": {"work_order_id": wo, "status": status, "department": department, "created_at": created,
                         "location": {"grid_code": grid, "street_code": grid[:9]}}}


@pytest.fixture
def view():
    _steps.clear()
    v = OrderView()
    for i in range(7):
        created = f"2026-11-22T0{i}:00:00+00:00"
        v.add_state(change(f"WO-{i}", 1, "created", "registered", created, created, department=None))
        v.add_state(change(f"WO-{i}", 2, "dispatched", "dispatched", created, created,
                            department="water" if i % 2 else "fire"))
    return v


def test_latest_snapshot_and_redelivery(view):
    assert view.snapshot("WO-3")["status"] == "dispatched"
    view.add_state(change("WO-3", 1, "created", "registered", "x", "x"))      # older: ignored
    assert view.snapshot("WO-3")["status"] == "dispatched" and view.snapshot("nope") is None
    view.compact()
    assert view.snapshot("WO-3")["department"] == "water" and view.orders["WO-3"].packed


def ask(view, **kw):
    cursor = kw.pop("cursor", None)
    q = OrderQuery(**kw)
    if cursor is not None:
        q = replace(q, cursor=decode_cursor(cursor, q.sort))
    return view.query(q, now=NOW)


def ids(page):
    return [o["work_order_id"] for o in page.items]


def test_filters_and_keyset_paging_newest_first(view):
    page = ask(view, limit=3)
    assert ids(page) == ["WO-6", "WO-5", "WO-4"] and page.next_cursor and page.total == 7
    page2 = ask(view, limit=3, cursor=page.next_cursor)
    page3 = ask(view, limit=3, cursor=page2.next_cursor)
    assert ids(page2) + ids(page3) == ["WO-3", "WO-2", "WO-1", "WO-0"] and page3.next_cursor is None
    assert {*ids(ask(view, department="water"))} == {"WO-1", "WO-3", "WO-5"}
    assert ask(view, status=frozenset({"registered"})).items == [] and ask(view, status=frozenset({"registered"})).total == 0
    only_water = ask(view, scope=Scope(department="water"), limit=2)
    assert ids(only_water) == ["WO-5", "WO-3"] and only_water.total == 3
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor("garbage", "-created")
    with pytest.raises(ValueError, match="sort"):
        decode_cursor(page.next_cursor, "due")


def test_offset_pages_and_other_sorts(view):
    assert ids(ask(view, sort="created", limit=2, offset=2)) == ["WO-2", "WO-3"]
    assert ids(ask(view, sort="created", limit=10, offset=6)) == ["WO-6"]
    assert ask(view, sort="created", limit=2, offset=6).next_cursor is None
    assert ask(view, sort="created", limit=2, offset=4).next_cursor is not None


def test_timeline_carries_refusals_and_each_note_once(view):
    at = "2026-11-22T08:00:00+00:00"
    view.add_state(change("WO-1", 3, "accepted", "accepted", "c", at))
    view.add_state(change("WO-1", 4, "commented", "accepted", "c", "2026-11-22T08:05:00+00:00", note="n1"))
    view.add_state(change("WO-1", 5, "handled", "handled", "c", "2026-11-22T08:10:00+00:00"))
    rejection = {"command": {"command_id": "c9", "work_order_id": "WO-1", "action": "accept",
                             "actor": {"id": "f", "role": "department", "department": "fire"}},
                 "reason": "out_of_scope", "detail": "not yours", "status": "accepted",
                 "at": "2026-11-22T08:06:00+00:00"}
    view.add_rejection(rejection)
    view.add_rejection(rejection)                      # redelivered: shown once
    lines = view.timeline("WO-1")
    assert [line["type"] for line in lines][-4:] == ["accepted", "commented", "accept", "handled"]
    assert [line["note"] for line in lines if line["kind"] == "change"][-3:] == [None, "n1", None]
    assert lines[-2]["kind"] == "refusal" and lines[-2]["reason"] == "out_of_scope"


async def test_subscribers_get_changes_and_slow_ones_are_dropped(view):
    import asyncio
    fast, slow = asyncio.Queue(), asyncio.Queue(maxsize=1)
    view.subscribers |= {fast, slow}
    for v in (3, 4):
        view.add_state(change("WO-2", v, "accepted", "accepted", "c", f"2026-11-22T09:0{v}:00+00:00"))
    assert fast.qsize() == 2 and slow not in view.subscribers
    msg = fast.get_nowait()
    assert (msg["kind"], msg["work_order_id"], msg["snapshot"]["status"]) == ("change", "WO-2", "accepted")
    assert orjson.dumps(msg)


def test_old_closed_orders_leave_the_view(view):
    view.add_state(change("WO-1", 3, "cancelled", "cancelled", "c", "2026-11-01T00:00:00+00:00"))
    view.add_state(change("WO-2", 3, "cancelled", "cancelled", "c", "2026-11-21T00:00:00+00:00"))
    assert view.evict_closed("2026-11-15T00:00:00+00:00") == 1
    assert view.snapshot("WO-1") is None and view.snapshot("WO-2") is not None and view.snapshot("WO-3")
