"""The map's layers: clusters cover every matching order once, devices carry their health,
cameras near an order are within the radius, nearest first."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.domain.geo import distance_m
from citybrain.domain.registry import Device
from citybrain.readmodels.orders import OrderView
from citybrain.readmodels.query import OrderQuery, Scope
from citybrain.web.auth import Refused
from citybrain.web.maplayers import cameras_near, cell_degrees, devices_in, parse_bbox, radius

NOW = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def state(i, lon, lat, status="dispatched", category="waterlogging", finders=(), department="water"):
    snap = {"work_order_id": f"WO-{i}", "version": 1, "status": status, "category": category, "department": department,
            "created_at": "2026-11-30T00:00:00+00:00", "due_at": "2026-11-30T12:00:00+00:00",
            "finders": list(finders), "events": [],
            "location": {"lon": lon, "lat": lat, "grid_code": "370306002001016", "street_code": "370306002"}}
    return {"work_order_id": f"WO-{i}", "version": 1, "at": snap["created_at"], "steps": [], "snapshot": snap}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(117.7, 118.1), st.floats(36.6, 36.9)), max_size=60), st.integers(8, 18))
def test_clusters_hold_every_match_once(points, zoom):
    v = OrderView()
    for i, (lon, lat) in enumerate(points):
        v.add_state(state(i, lon, lat))
    total, cells = v.clusters(OrderQuery(), cell_degrees(str(zoom)), now=NOW)
    assert total == len(points) == sum(c["count"] for c in cells)
    assert sum(c["overdue"] for c in cells) == len(points)               # all due before NOW
    singles = [c["work_order_id"] for c in cells if c["count"] == 1]
    assert len(set(singles)) == len(singles)


def test_clusters_honour_filters_scope_and_bbox():
    v = OrderView()
    v.add_state(state(1, 117.80, 36.74))
    v.add_state(state(2, 117.80001, 36.74001, department="roads"))
    v.add_state(state(3, 118.05, 36.80))
    total, cells = v.clusters(OrderQuery(scope=Scope(department="water")), cell_degrees("14"), now=NOW)
    assert total == 2 and {c.get("work_order_id") for c in cells} == {"WO-1", "WO-3"}
    total, cells = v.clusters(OrderQuery(), cell_degrees("12"), bbox=(117.7, 36.7, 117.9, 36.8), now=NOW)
    assert total == 2 and len(cells) == 1 and cells[0]["count"] == 2


def test_devices_carry_their_health_from_open_fault_orders():
    v = OrderView()
    v.add_state(state(9, 117.8, 36.74, category="device_fault", finders=("CAM-1",)))
    cams = [Device("CAM-1", "camera", None, 117.8, 36.74, "water", "active", None),
            Device("CAM-2", "camera", None, 117.801, 36.74, None, "active", None),
            Device("CAM-3", "camera", None, 117.9, 36.74, None, "retired", None),
            Device("WL-1", "sensor", "water_level", 117.8, 36.74, "water", "active", None)]
    got = devices_in(cams, v.faulty, "camera", None)
    assert [(d["device_id"], d["health"]) for d in got["items"]] == [("CAM-1", "fault"), ("CAM-2", "ok")]
    closed = state(9, 117.8, 36.74, status="closed", category="device_fault", finders=("CAM-1",))
    closed["version"] = closed["snapshot"]["version"] = 2
    v.add_state(closed)
    assert v.faulty == {} and devices_in(cams, v.faulty, None, None)["total"] == 3
    near = cameras_near(cams, v.faulty, 117.8, 36.74, 300)
    assert [c["device_id"] for c in near] == ["CAM-1", "CAM-2"]
    assert all(c["distance_m"] <= 300 for c in near) and near[1]["distance_m"] == pytest.approx(
        distance_m(117.8, 36.74, 117.801, 36.74), abs=0.1)


@pytest.mark.parametrize("call, field", [(lambda: parse_bbox("1,2,3"), "bbox"), (lambda: parse_bbox("5,0,1,1"), "bbox"),
                                         (lambda: cell_degrees("99"), "zoom"), (lambda: radius("9999"), "radius_m"),
                                         (lambda: devices_in([], {}, "drone", None), "kind")])
def test_bad_parameters_name_themselves(call, field):
    with pytest.raises(Refused) as e:
        call()
    assert (e.value.status, e.value.field) == (400, field)
