"""设备完好率 through real Kafka and a real worker (DESIGN §13): a sensor that falls silent
raises one device fault and its next reading closes it; sensors that keep reporting are
never found silent — not after the worker was killed and restarted, not after it was
frozen (a lag spike) — and a camera's platform status opens and closes a fault."""

import asyncio
import signal
import time

import orjson
import pytest

from citybrain.promtext import samples
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, config_with, consume, decode, new_prefix, prepare, produce, wait_for_metrics
from .test_lifecycle_clocks import SHORT

pytestmark = pytest.mark.integration
ALIVE = ["WLV-UP-01", "WLV-UP-02"]
SILENT = "WLV-UP-03"
LIMIT = 6.0     # water_level: every 2 s, offline after 3 intervals (this test's config)


def reading(device, seq):
    return orjson.dumps({"device_id": device, "sensor_type": "water_level", "value": 0.01,
                         "ts": iso(time.time()), "seq": seq})


class Devices:
    """Gauges that report every second, like a gateway, until told otherwise."""

    def __init__(self, bootstrap, topics):
        self.bootstrap, self.topics, self.seq = bootstrap, topics, 0
        self.reporting = set(ALIVE) | {SILENT}
        self.task = None

    async def run(self):
        while True:
            self.seq += 1
            await produce(self.bootstrap, [(self.topics.iot, d.encode(), reading(d, self.seq))
                                           for d in sorted(self.reporting)])
            await asyncio.sleep(1.0)


async def health_events(bootstrap, topics):
    return [e for e in decode(await consume(bootstrap, topics.events, want=10**9, timeout=3, settle=0))
            if e["category"] == "device_fault"]


async def test_silence_restart_and_lag_spike(kafka_bootstrap, tmp_path):
    config = config_with(tmp_path, SHORT.replace("normal_minutes = 0.1", "normal_minutes = 0.05"))
    rules = (config / "sensor_rules.toml").read_text(encoding="utf-8")
    (config / "sensor_rules.toml").write_text(
        rules.replace("[water_level]", "[water_level]\ninterval_seconds = 2\noffline_after = 3", 1), encoding="utf-8")
    prefix = new_prefix("health")
    t = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w1", config_dir=config).start()
    devices = Devices(kafka_bootstrap, t)
    feeder = asyncio.create_task(devices.run())
    try:
        await asyncio.sleep(8)
        # 1. One gauge falls silent: one device fault, within its limit and a few seconds.
        devices.reporting.discard(SILENT)
        silent_at = time.time()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            faults = [e for e in await health_events(kafka_bootstrap, t) if e["kind"] == "alarm"]
            if faults:
                break
        assert [e["device_id"] for e in faults] == [SILENT]
        detected = time.time() - silent_at
        assert "silent since" in faults[0]["description"]

        def offline(text):
            return sum(v for lab, v in samples(text, "citybrain_devices") if lab["state"] == "offline")
        text = await wait_for_metrics(worker, lambda s: offline(s) == 1.0, timeout=20)
        assert offline(text) == 1.0

        # 2. The worker is killed; the other gauges report on for 3× their limit; a new
        #    worker reads the backlog: none of them is found silent.
        worker.stop(signal.SIGKILL)
        await asyncio.sleep(3 * LIMIT)
        worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w2", config_dir=config).start()
        await asyncio.sleep(2 * LIMIT)
        # 3. A lag spike: the worker frozen for 3× the limit while the gauges report on.
        worker.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(3 * LIMIT)
        worker.proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(2 * LIMIT)
        false_alarms = [e for e in await health_events(kafka_bootstrap, t)
                        if e["kind"] == "alarm" and e["device_id"] in ALIVE]
        assert false_alarms == [], [(e["device_id"], e.get("description"), e.get("ts")) for e in false_alarms]

        # 4. The silent gauge reports again: a recovery, and its fault order closes itself.
        devices.reporting.add(SILENT)
        deadline = time.monotonic() + 40
        closed = None
        while time.monotonic() < deadline and closed is None:
            changes = decode(await consume(kafka_bootstrap, t.workorder_events, want=10**9, timeout=2, settle=0))
            closed = next((c for c in changes if c["snapshot"]["category"] == "device_fault"
                           and c["type"] == "verified"), None)
        assert closed is not None and SILENT in closed["snapshot"]["finders"]
        recoveries = [e for e in await health_events(kafka_bootstrap, t) if e["kind"] == "recovery"]
        assert [e["device_id"] for e in recoveries] == [SILENT]

        # 5. A camera platform reports a fault, then the camera back online.
        status = [(t.device_status, b"CAM-UP-01", orjson.dumps({"device_id": "CAM-UP-01", "status": s,
                                                               "ts": iso(time.time() - 5 + i)}))
                  for i, s in enumerate(("online", "fault", "online"))]
        await produce(kafka_bootstrap, status)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cams = [e for e in await health_events(kafka_bootstrap, t) if e.get("camera_id") == "CAM-UP-01"]
            if len(cams) >= 2:
                break
        assert [e["kind"] for e in cams] == ["alarm", "recovery"]
        print(f"\n  device health: silent gauge detected after {detected:.1f}s (limit {LIMIT:.0f}s); "
              f"false offline after a kill (+{3 * LIMIT:.0f}s away) and a {3 * LIMIT:.0f}s freeze: "
              f"{len(false_alarms)}; recovered and closed itself; camera fault → recovery")
    finally:
        feeder.cancel()
        worker.stop()


async def test_kpis_give_intact_and_networked_rates(kafka_bootstrap, tmp_path):
    """完好率 and 联网率 through Kafka, the worker and the API (DESIGN §15): a sensor that falls
    silent lowers 联网率 at once (devices.liveness) and 完好率 once its 设备故障 order opens; a
    camera counts as networked by its platform's status; the gauges say what the API says."""
    import aiohttp

    config = config_with(tmp_path, SHORT.replace("normal_minutes = 0.1", "normal_minutes = 0.05"))
    rules = (config / "sensor_rules.toml").read_text(encoding="utf-8")
    (config / "sensor_rules.toml").write_text(
        rules.replace("[water_level]", "[water_level]\ninterval_seconds = 2\noffline_after = 3", 1), encoding="utf-8")
    prefix = new_prefix("rates")
    t = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w1", config_dir=config).start()
    devices = Devices(kafka_bootstrap, t)
    feeder = asyncio.create_task(devices.run())
    await produce(kafka_bootstrap, [(t.device_status, b"CAM-UP-01", orjson.dumps(
        {"device_id": "CAM-UP-01", "status": "online", "ts": iso(time.time())}))])

    async def kpis(http, until, timeout=40.0):
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            async with http.get("/api/v1/kpis", headers={"Authorization": "Bearer demo-operator"}) as r:
                body = await r.json()
            if r.status == 200 and until(body["device_health"]["*"]):
                return body
            await asyncio.sleep(0.5)
        raise AssertionError(f"not reached: {body.get('device_health', {}).get('*')}")
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{worker.port}") as http:
            before = await kpis(http, lambda a: a["networked"] == 4 and a["faulty"] == 0)
            city = before["device_health"]["*"]
            assert before["device_health_by_kind_district"]["camera@" + _district_of(before, "camera")]["networked"] == 1
            devices.reporting.discard(SILENT)
            after = await kpis(http, lambda a: a["networked"] == 3 and a["faulty"] == 1)
            now = after["device_health"]["*"]
            assert now["registered"] == city["registered"] > 4
            assert now["networked_rate"] < city["networked_rate"]       # 联网率: the silent sensor
            assert now["intact_rate"] < city["intact_rate"] == 1.0       # 完好率: its device fault order
            sensors = [r for r in after["device_health_by_kind_district"].values()
                       if r["kind"] == "sensor" and r["faulty"] == 1]
            assert len(sensors) == 1 and sensors[0]["networked"] == 2
            assert after["device_health_by_district"][sensors[0]["district"]]["faulty"] == 1

            def gauge(text, name):
                return next((v for lab, v in samples(text, name) if lab == {"kind": "*", "district": "*"}), None)
            text = await wait_for_metrics(worker, lambda s: gauge(s, "citybrain_device_intact_ratio") == now["intact_rate"]
                                          and gauge(s, "citybrain_device_networked_ratio") == now["networked_rate"])
            assert (gauge(text, "citybrain_device_intact_ratio"), gauge(text, "citybrain_device_networked_ratio")) \
                == (now["intact_rate"], now["networked_rate"])
            print(f"\n  device rates: {city['registered']} registered; before 完好率 {city['intact_rate']:.2%} "
                  f"联网率 {city['networked_rate']:.2%}; after a silent sensor 完好率 {now['intact_rate']:.2%} "
                  f"联网率 {now['networked_rate']:.2%}")
    finally:
        feeder.cancel()
        worker.stop()


def _district_of(body, kind):
    return next(r["district"] for r in body["device_health_by_kind_district"].values()
                if r["kind"] == kind and r["networked"])
