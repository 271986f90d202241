"""Alertmanager (Debian's, the binary beside amtool) with the repository's config, its
webhook URL put in as the compose service does and its waits shortened: alerts posted as
Prometheus posts them reach a local webhook receiver — grouped per alert and place, a
worker's "not ready" held back while the same worker's broker is down, and resolved
alerts sent again as resolved."""

import asyncio
import subprocess
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import yaml
from aiohttp import web

from citybrain.paths import PROJECT_ROOT
from citybrain_tools.local_kafka.broker import free_port

from .kafka_helpers import ARTIFACTS

pytestmark = pytest.mark.integration
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"   # Debian's prometheus-alertmanager (ensure-test-tools.sh)
CONFIG = PROJECT_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def config_for(url: str) -> str:
    """The repository's config as the compose service renders it, with waits of seconds."""
    text = CONFIG.read_text(encoding="utf-8")
    placeholder = yaml.safe_load(text)["receivers"][0]["webhook_configs"][0]["url"]
    doc = yaml.safe_load(text.replace(placeholder, url))
    for route in [doc["route"], *doc["route"]["routes"]]:
        route.update(group_wait="1s", group_interval="2s")
    return yaml.safe_dump(doc, allow_unicode=True)


def alert(name: str, labels: dict, *, ends: datetime | None = None) -> dict:
    now = datetime.now(UTC)
    body = {"labels": {"alertname": name, "job": "citybrain", **labels},
            "annotations": {"summary": f"{name} 测试 test"}, "startsAt": (now - timedelta(minutes=2)).isoformat(),
            "generatorURL": "http://prometheus.test/graph"}
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body


async def test_alerts_reach_the_webhook_grouped_inhibited_and_resolved(tmp_path):
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/citybrain-alerts", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    (tmp_path / "alertmanager.yml").write_text(config_for(f"http://127.0.0.1:{hook_port}/citybrain-alerts"),
                                              encoding="utf-8")
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "alertmanager.log").open("w")
    am = subprocess.Popen([ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}",
                           f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                           "--cluster.listen-address="], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"{base}/-/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "alertmanager did not start"
                await asyncio.sleep(0.2)

            async def post(alerts):
                async with http.post(f"{base}/api/v2/alerts", json=alerts) as r:
                    assert r.status == 200, await r.text()

            async def until(predicate, what, timeout=20.0):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if predicate():
                        return
                    await asyncio.sleep(0.2)
                raise AssertionError(f"{what}: received {received}")

            # Worker w1 without Kafka is also not ready: only the cause is sent.  A level II
            # emergency goes out in a group of its own.
            # The cause fires first, as Prometheus sees it: Alertmanager's inhibitor keeps its
            # own copy of the alerts, updated apart from the dispatcher's — posted together,
            # under a loaded suite the symptom's group was once flushed (1 s) before the
            # inhibitor had the cause.
            await post([alert("CitybrainBrokerDown", {"instance": "w1:6066", "severity": "page"}),
                        alert("CitybrainMajorEmergency", {"emergency_level": "II", "severity": "page"})])
            await until(lambda: any(m["groupLabels"].get("alertname") == "CitybrainBrokerDown" for m in received),
                        "the cause")
            await post([alert("CitybrainWorkerNotReady", {"instance": "w1:6066", "severity": "page"})])
            await until(lambda: {a["labels"]["alertname"] for m in received for a in m["alerts"]}
                        >= {"CitybrainBrokerDown", "CitybrainMajorEmergency"}, "both groups")
            await asyncio.sleep(3)                              # a group interval: nothing else comes
            names = [a["labels"]["alertname"] for m in received for a in m["alerts"]]
            assert "CitybrainWorkerNotReady" not in names, received
            assert all(m["receiver"] == "citybrain-webhook" and m["status"] == "firing" for m in received)
            emergency = next(m for m in received if m["groupLabels"].get("alertname") == "CitybrainMajorEmergency")
            assert emergency["groupLabels"] == {"alertname": "CitybrainMajorEmergency", "emergency_level": "II"}
            assert emergency["alerts"][0]["annotations"]["summary"] == "CitybrainMajorEmergency 测试 test"

            # The broker is back: resolved, sent as such (send_resolved).
            await post([alert("CitybrainBrokerDown", {"instance": "w1:6066", "severity": "page"},
                              ends=datetime.now(UTC) - timedelta(seconds=1))])
            await until(lambda: any(m["status"] == "resolved" and m["groupLabels"].get("alertname")
                                    == "CitybrainBrokerDown" for m in received), "the resolved notification")
    finally:
        am.terminate()
        am.wait(timeout=30)
        log.close()
        await runner.cleanup()
