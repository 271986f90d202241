"""设备完好率 on real Kafka and real workers (DESIGN §13, §15): what only they show. The
scenarios — silence → one fault at the limit, the recovery and its order closing itself,
the devices gauge, a camera's platform status, the rates' arithmetic, a restart and a lag
spike judged on the partition clock — run in one process in
tests/functional/test_device_health.py. Here the runner's real fetch positions and the
changelog topic: a worker killed and restarted, then frozen (a lag spike), while its
gauges report on finds none of them silent; the restarted worker knows from the
changelog that the silent gauge is offline (its next reading is a recovery); and
devices.liveness and workorders.events carry 联网率 and 完好率 to the API and /metrics."""

import asyncio
import signal
import time

import aiohttp
import orjson
import pytest
from aiokafka import TopicPartition

from citybrain.kafka.admin import partitions_of
from citybrain.kafka.clients import kafka_consumer, kafka_producer
from citybrain.paths import PROJECT_ROOT
from citybrain.promtext import samples
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, config_with, new_prefix, prepare, wait_for_metrics

pytestmark = pytest.mark.integration
ALIVE = ["WLV-UP-01", "WLV-UP-02"]
SILENT = "WLV-UP-03"
LIMIT = 4.0     # water_level in this test's config: every 2 s, offline after 2 intervals


class Gauges:
    """Water gauges reporting every second on one producer, like a gateway, until told otherwise."""

    def __init__(self, bootstrap, topics):
        self.bootstrap, self.topics, self.seq = bootstrap, topics, 0
        self.reporting = set(ALIVE) | {SILENT}

    async def run(self):
        producer = kafka_producer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            while True:
                self.seq += 1
                for d in sorted(self.reporting):
                    await producer.send(self.topics.iot, orjson.dumps(
                        {"device_id": d, "sensor_type": "water_level", "value": 0.01, "ts": iso(time.time()),
                         "seq": self.seq}), key=d.encode())
                await asyncio.sleep(1.0)
        finally:
            await producer.stop()


class Faults:
    """The device_fault events on events.normalized, read as they come."""

    def __init__(self, bootstrap, topic):
        self.bootstrap, self.topic, self.seen = bootstrap, topic, []

    async def __aenter__(self):
        self.consumer = kafka_consumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in await partitions_of(self.bootstrap, self.topic)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc):
        await self.consumer.stop()

    async def read(self, seconds: float = 0.3) -> list[dict]:
        """What has arrived, after reading for ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                self.seen += [e for e in (orjson.loads(r.value) for r in records) if e["category"] == "device_fault"]
            if time.monotonic() >= deadline:
                return self.seen

    async def until(self, predicate, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate(await self.read()):
            pass
        return self.seen


async def start(worker: WorkerProcess) -> WorkerProcess:
    """Started off the event loop: the gauges report on while it comes up."""
    worker.start(wait=False)
    return await asyncio.to_thread(worker.wait_ready, 90.0)


async def kpis(port: int, until, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    row: dict = {}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        while time.monotonic() < deadline:
            async with http.get("/api/v1/kpis", headers={"Authorization": "Bearer demo-operator"}) as r:
                if r.status == 200:
                    row = (await r.json())["device_health"]["*"]
                    if until(row):
                        return row
            await asyncio.sleep(0.5)
    raise AssertionError(f"not reached: {row}")


async def test_a_worker_away_finds_no_gauge_silent_and_keeps_what_it_knew(kafka_bootstrap, tmp_path):
    config = config_with(tmp_path, (PROJECT_ROOT / "config" / "lifecycle.toml").read_text(encoding="utf-8"))
    rules = (config / "sensor_rules.toml").read_text(encoding="utf-8")
    (config / "sensor_rules.toml").write_text(
        rules.replace("[water_level]", "[water_level]\ninterval_seconds = 2\noffline_after = 2", 1), encoding="utf-8")
    prefix = new_prefix("health")
    t = await prepare(kafka_bootstrap, prefix)
    gauges = Gauges(kafka_bootstrap, t)
    feeder = asyncio.create_task(gauges.run())
    worker = await start(WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w1", config_dir=config))
    try:
        async with Faults(kafka_bootstrap, t.events) as faults:
            # 1. One gauge falls silent: one fault; 联网率 loses it (devices.liveness) and
            #    完好率 too once its fault order opens (workorders.events).
            gauges.reporting.discard(SILENT)
            silent_at = time.time()
            seen = await faults.until(lambda es: any(e["kind"] == "alarm" for e in es))
            assert [(e["device_id"], e["kind"]) for e in seen] == [(SILENT, "alarm")]
            detected = time.time() - silent_at
            await kpis(worker.port, lambda row: (row["networked"], row["faulty"]) == (2, 1))

            # 2. Killed; the gauges report on while it is away and while a new worker starts
            #    and reads the backlog; 3. then frozen for twice the limit.
            worker.stop(signal.SIGKILL)
            await asyncio.sleep(LIMIT)
            started = time.monotonic()
            worker = await start(WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w2", config_dir=config))
            away = LIMIT + time.monotonic() - started
            await asyncio.sleep(LIMIT)
            worker.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(2 * LIMIT)
            worker.proc.send_signal(signal.SIGCONT)
            seen = await faults.read(1.5 * LIMIT)
            false_alarms = [e for e in seen if e["device_id"] in ALIVE]
            assert false_alarms == [], [(e["device_id"], e.get("description")) for e in false_alarms]

            # The restarted worker's views, from the topics: the API's rates and /metrics' (its
            # 10 s timer has run by now) agree.
            row = await kpis(worker.port, lambda row: (row["networked"], row["faulty"]) == (2, 1))

            def gauge(text, name):
                return next((v for lab, v in samples(text, name) if lab == {"kind": "*", "district": "*"}), None)
            text = await wait_for_metrics(
                worker, lambda s: gauge(s, "citybrain_device_intact_ratio") == row["intact_rate"]
                and gauge(s, "citybrain_device_networked_ratio") == row["networked_rate"], timeout=20)
            assert (gauge(text, "citybrain_device_intact_ratio"), gauge(text, "citybrain_device_networked_ratio")) \
                == (row["intact_rate"], row["networked_rate"])

            # 4. The silent gauge reports again: the restarted worker restored it as offline
            #    from the changelog, so this is its recovery (to a worker that had lost it,
            #    a device merely heard) — and it counts as networked again.
            gauges.reporting.add(SILENT)
            seen = await faults.until(lambda es: any(e["kind"] == "recovery" for e in es))
            assert [(e["device_id"], e["kind"]) for e in seen] == [(SILENT, "alarm"), (SILENT, "recovery")]
        await kpis(worker.port, lambda row: (row["networked"], row["faulty"]) == (3, 1))
        print(f"\n  device health: silent gauge detected after {detected:.1f}s (limit {LIMIT:.0f}s); "
              f"false offline after {away:.0f}s away and a {2 * LIMIT:.0f}s freeze: {len(false_alarms)}; "
              f"recovery from the restored state; 完好率 {row['intact_rate']:.2%} 联网率 {row['networked_rate']:.2%}")
    finally:
        feeder.cancel()
        worker.stop()
