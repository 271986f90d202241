"""设备完好率 in one process on the city's own limits (moved from
tests/integration/test_device_health.py, where gauges reporting every second against a
6 s limit were waited out on a real worker): a gauge that falls silent raises one
device fault and its next reading closes it; gauges that keep reporting are never found
silent — not after the worker was killed and restarted, not after it was frozen (a lag
spike); a camera's platform status opens and closes a fault; 完好率 and 联网率 as the
API and the gauges give them."""

import pytest
from prometheus_client import REGISTRY

from citybrain.domain.device_health import offline_limit

from .health import HealthCity

ALIVE = {"WLV-UP-01", "WLV-UP-02"}
SILENT = "WLV-UP-03"
EVERY = 300.0      # the gauges report at their interval
OPERATOR = {"Authorization": "Bearer demo-operator"}


@pytest.fixture
def health(city):
    return HealthCity(city)


def limit(city) -> float:
    found = offline_limit(city.registry[SILENT], city.config.sensor_rules)
    assert found is not None
    return found


def devices_gauge(health: HealthCity, device: str, state: str) -> float:
    """citybrain_devices{district,kind,owner,state} of the device's series, as exported now."""
    health.stage.health.export()
    district, kind, owner = health.stage.health.labels[device]
    labels = {"district": district, "kind": kind, "owner": owner, "state": state}
    value = REGISTRY.get_sample_value("citybrain_devices", labels)
    assert value is not None, labels
    return value


def fault_changes(health: HealthCity, device: str) -> list[dict]:
    return [c for c in health.city.on(health.topics.workorder_events)
            if c["snapshot"]["category"] == "device_fault" and device in c["snapshot"]["finders"]]


def test_a_silent_gauge_is_one_fault_and_its_next_reading_closes_it(health, city):
    lim = limit(city)
    health.run(minutes=30, reporting=ALIVE | {SILENT}, every=EVERY)
    heard = health.sent(SILENT)
    assert health.faults() == []
    # Silent from now: not before its limit has passed …
    health.run(minutes=(heard + lim - city.clock()) / 60 - 1, reporting=ALIVE, every=EVERY)
    assert health.faults() == []
    # … and once it has, one fault (then none again while it stays silent).
    health.run(minutes=3 * lim / 60, reporting=ALIVE, every=EVERY)
    [fault] = health.faults("alarm")
    assert fault["device_id"] == SILENT and "silent since" in fault["description"]
    assert devices_gauge(health, SILENT, "offline") == 1.0
    assert devices_gauge(health, SILENT, "online") == 2.0      # the two others (same place)
    [opened] = fault_changes(health, SILENT)      # its 设备故障 order
    assert opened["type"] == "created" and opened["snapshot"]["status"] != "closed"

    # Its next reading: a recovery, and its fault order closes itself once the device has
    # stayed back for the auto-verify time.
    health.send(ALIVE | {SILENT})
    health.poll()
    [back] = health.faults("recovery")
    assert back["device_id"] == SILENT and "heard again after offline" in back["description"]
    assert devices_gauge(health, SILENT, "offline") == 0.0
    normal = city.config.lifecycle.auto_verify.normal_minutes
    health.run(minutes=normal + 5, reporting=ALIVE | {SILENT}, every=EVERY)
    closed = fault_changes(health, SILENT)[-1]
    assert (closed["type"], closed["snapshot"]["status"], closed["actor"]["role"]) == ("verified", "closed", "system")
    assert [e["device_id"] for e in health.faults()] == [SILENT, SILENT]


def test_a_killed_worker_restarted_finds_none_of_its_gauges_silent(city):
    health = HealthCity(city, batch=1)     # the backlog read one record at a time: the strictest
    lim = limit(city)
    health.run(minutes=30, reporting=ALIVE | {SILENT}, every=EVERY)
    health.run(minutes=2 * lim / 60, reporting=ALIVE, every=EVERY)
    assert [e["device_id"] for e in health.faults("alarm")] == [SILENT]
    # Killed straight after a batch: its lazily written "heard" marks never reach the changelog.
    health.send(ALIVE)
    health.poll()
    health.kill()
    health.run(minutes=3 * lim / 60, reporting=ALIVE, every=EVERY)     # they report on, unread
    assert health.position < len(health.log)
    health.restart()
    health.run(minutes=2 * lim / 60, reporting=ALIVE, every=EVERY)
    assert health.position == len(health.log)
    assert [e["device_id"] for e in health.faults("alarm")] == [SILENT]    # no false alarm, no second one
    # What it knew came back from the changelog: the silent gauge is still offline, so its
    # reading is a recovery (a device new to the stage would be just "heard").
    health.send({SILENT})
    health.poll()
    assert [e["device_id"] for e in health.faults("recovery")] == [SILENT]


def test_a_lag_spike_is_not_silence(health, city):
    lim = limit(city)
    health.run(minutes=30, reporting=ALIVE, every=EVERY)
    health.freeze()
    health.run(minutes=3 * lim / 60, reporting=ALIVE, every=EVERY)     # the gauges report on
    behind = len(health.log) - health.position
    assert behind >= 3 * lim / EVERY * len(ALIVE) - len(ALIVE)
    health.thaw()
    health.run(minutes=2 * lim / 60, reporting=ALIVE, every=EVERY)
    assert health.position == len(health.log) and health.faults() == []
    # The same stage, kept up, does find a gauge that really stops.
    health.run(minutes=2 * lim / 60, reporting={"WLV-UP-01"}, every=EVERY)
    assert [e["device_id"] for e in health.faults("alarm")] == ["WLV-UP-02"]


def test_a_camera_platform_status_opens_and_closes_one_fault(health, city):
    for status in ("online", "fault", "offline", "online"):    # fault ↔ offline: still one fault
        health.status("CAM-UP-01", status)
        city.advance(minutes=1, step_minutes=1)
    cams = [e for e in health.faults() if e.get("camera_id") == "CAM-UP-01"]
    assert [e["kind"] for e in cams] == ["alarm", "recovery"]
    assert "平台报告故障" in cams[0]["description"] and "platform reports online (was offline)" in cams[1]["description"]


async def test_kpis_give_intact_and_networked_rates(city):
    """完好率 and 联网率 (DESIGN §15): a sensor that falls silent lowers 联网率 at once
    (devices.liveness) and 完好率 once its 设备故障 order opens; a camera counts as networked
    by its platform's status; the gauges say what the API says."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    health = HealthCity(city)
    lim = limit(city)
    health.status("CAM-UP-01", "online")
    health.run(minutes=10, reporting=ALIVE | {SILENT}, every=EVERY)
    app = web.Application()
    api = health.api()
    api.install(app)

    async def kpis(http) -> dict:
        r = await http.get("/api/v1/kpis", headers=OPERATOR)
        assert r.status == 200
        return await r.json()

    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"kind": "*", "district": "*"})

    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        before = await kpis(http)
        city_rates = before["device_health"]["*"]
        assert (city_rates["networked"], city_rates["faulty"], city_rates["intact_rate"]) == (4, 0, 1.0)
        cameras = [r for r in before["device_health_by_kind_district"].values()
                   if r["kind"] == "camera" and r["networked"]]
        assert [r["networked"] for r in cameras] == [1]

        health.run(minutes=lim / 60 + 10, reporting=ALIVE, every=EVERY)
        after = await kpis(http)
        now = after["device_health"]["*"]
        assert (now["networked"], now["faulty"]) == (3, 1)
        assert now["registered"] == city_rates["registered"] > 4
        assert now["networked_rate"] < city_rates["networked_rate"]     # 联网率: the silent sensor
        assert now["intact_rate"] < city_rates["intact_rate"]           # 完好率: its device fault order
        sensors = [r for r in after["device_health_by_kind_district"].values()
                   if r["kind"] == "sensor" and r["faulty"] == 1]
        assert len(sensors) == 1 and sensors[0]["networked"] == 2
        assert after["device_health_by_district"][sensors[0]["district"]]["faulty"] == 1

        health.views.export_device_health()     # the worker's 10 s timer
        assert (gauge("citybrain_device_intact_ratio"), gauge("citybrain_device_networked_ratio")) \
            == (now["intact_rate"], now["networked_rate"])
    await api.close()
