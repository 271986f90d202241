"""Every worker's order view: latest snapshot, filters, keyset paging, timeline."""

import orjson
import pytest

from citybrain.readmodels.orders import OrderView

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


def test_filters_and_keyset_paging_newest_first(view):
    page, cursor = view.query(limit=3)
    assert [o["work_order_id"] for o in page] == ["WO-6", "WO-5", "WO-4"] and cursor
    page2, cursor2 = view.query(limit=3, cursor=cursor)
    page3, cursor3 = view.query(limit=3, cursor=cursor2)
    assert [o["work_order_id"] for o in page2 + page3] == ["WO-3", "WO-2", "WO-1", "WO-0"] and cursor3 is None
    water, _ = view.query(department="water")
    assert {o["work_order_id"] for o in water} == {"WO-1", "WO-3", "WO-5"}
    assert view.query(status={"registered"})[0] == []
    only_odd = view.query(visible=lambda s: s["department"] == "water", limit=2)
    assert [o["work_order_id"] for o in only_odd[0]] == ["WO-5", "WO-3"]
    with pytest.raises(ValueError, match="cursor"):
        view.query(cursor="garbage")


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
