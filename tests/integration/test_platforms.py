"""Platform adapters through real Kafka (docs/integration.md): a 12345 case handed over by the
gateway keeps its case id on its order, and its public changes go back to a local receiver,
signed, each once — even after the callback consumer restarts and reads everything again; a
receiver failing every time ends on `deadletter` with its reason."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import orjson
import pytest

from citybrain.platforms.callbacks import CALLBACK_HEADER, SYSTEM_HEADER
from citybrain.platforms.service import PlatformRelay, callbacks_topic
from citybrain.platforms.settings import PlatformsConfig
from citybrain_tools.sample.sites import EAST_DIP, UNDERPASS

from .kafka_helpers import WorkerProcess, consume, decode, new_prefix, prepare
from .receivers import signed_receiver

pytestmark = pytest.mark.integration

OPERATOR, WATER, CITY, GATEWAY = "demo-operator", "demo-water", "demo-city-mgmt", "demo-gateway"
SECRET = "test-12345-callback-key"
CASE = {"system": "12345", "id": "HL-20261204-0001"}


def receiver():
    """POST /ok checks the signature (401 if wrong) and keeps the callback; /fail answers 500."""
    return signed_receiver(SECRET, CALLBACK_HEADER, {"header_id": CALLBACK_HEADER, "header_system": SYSTEM_HEADER},
                           down="platform down")


def platforms(base: str, group: str) -> PlatformsConfig:
    return PlatformsConfig.model_validate({"group": group, "platform": [
        {"name": "hotline", "system": "12345", "url": f"{base}/ok", "secret_env": "TEST_PLATFORM_SECRET",
         "changes": ["registered", "dispatched", "closed", "cancelled", "merged"],
         "retry": {"attempts": 4, "backoff_seconds": 0.05}},
        {"name": "szcg", "system": "szcg", "url": f"{base}/fail", "secret_env": "TEST_PLATFORM_SECRET",
         "changes": ["registered"], "retry": {"attempts": 3, "backoff_seconds": 0.05}}]})


async def call(http, method, path, token, body=None):
    async with http.request(method, path, headers={"Authorization": f"Bearer {token}"},
                            data=orjson.dumps(body) if body is not None else None) as r:
        return r.status, await r.json(content_type=None)


async def until(predicate, timeout=60.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def order_of(http, report_id):
    status, body = await call(http, "GET", "/api/v1/workorders?status=registered,dispatched,accepted,handled,"
                              "closed,cancelled&limit=500", OPERATOR)
    assert status == 200, body
    return next((o for o in body["items"] if any(e.get("report_id") == report_id for e in o["events"])), None)


def report(rid, site, category, **extra):
    lon, lat = site.offset(10, -10)
    return {"report_id": rid, "reporter_id": "hotline-12345", "channel": "hotline_12345", "category": category,
            "description": "市民来电反映", "lon": lon, "lat": lat, **extra}


async def test_a_hotline_case_hears_its_orders_public_changes_once(kafka_bootstrap, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PLATFORM_SECRET", SECRET)
    prefix = new_prefix("platforms")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "w").start()
    try:
        async with receiver() as (base, got, failures), \
                aiohttp.ClientSession(f"http://127.0.0.1:{worker.port}") as http:
            stop = asyncio.Event()
            relay = PlatformRelay(kafka_bootstrap, topics, platforms(base, "relay-1"), partitions=3)
            task = asyncio.create_task(relay.run(stop))
            await asyncio.wait_for(relay.ready.wait(), 60)

            # only a gateway hands another platform's case over
            status, body = await call(http, "POST", "/api/v1/reports", OPERATOR,
                                      report("R-PA0", UNDERPASS, "waterlogging", external_ref=CASE))
            assert (status, body["error"]["reason"], body["error"]["field"]) == (403, "forbidden_role",
                                                                                 "external_ref")
            status, body = await call(http, "POST", "/api/v1/reports", GATEWAY,
                                      report("R-PA1", UNDERPASS, "waterlogging", external_ref=CASE))
            assert status == 202, body
            # a 数字城管 case through Open311, its case id as GeoReport v2 attributes
            lon, lat = EAST_DIP.offset(10, -10)
            async with http.post("/open311/v2/requests.json", data={
                    "api_key": GATEWAY, "jurisdiction_id": "370300", "service_code": "garbage_overflow",
                    "lat": str(lat), "long": str(lon), "description": "垃圾满溢",
                    "attribute[external_system]": "szcg", "attribute[external_id]": "SZ-0042"}) as r:
                assert r.status == 200, await r.text()
                rid = (await r.json())[0]["service_request_id"]
            szcg = await until(lambda: order_of(http, rid), what="the order of the Open311 request")
            assert szcg["external_refs"] == [{"system": "szcg", "id": "SZ-0042", "report_id": rid}]

            order = await until(lambda: order_of(http, "R-PA1"), what="the order of R-PA1")
            wo = order["work_order_id"]
            assert order["external_refs"] == [{**CASE, "report_id": "R-PA1"}]
            await until(lambda: _changes(got, wo, {"registered", "dispatched"}), what="registered and dispatched")

            # worked to closure through the API: accept, handle (the department), verify (operator)
            dept = {"water": WATER, "city_mgmt": CITY}[order["department"]]
            for n, (token, action) in enumerate(((dept, "accept"), (dept, "handle"), (OPERATOR, "verify"))):
                status, body = await call(http, "POST", f"/api/v1/workorders/{wo}/commands", token,
                                          {"command_id": f"PA-{n}", "action": action, "note": "已处理"})
                assert status == 202, body
                if action != "verify":
                    want = {"accept": "accepted", "handle": "handled"}[action]

                    async def reached(want=want):
                        o = await order_of(http, "R-PA1")
                        return o is not None and o["status"] == want
                    await until(reached, what=want)
            await until(lambda: _changes(got, wo, {"registered", "dispatched", "closed"}), what="closed")

            # the failing platform: its budget spent, then deadletter with the reason
            dead = decode(await consume(kafka_bootstrap, topics.deadletter, want=1, timeout=60))
            dead = [d for d in dead if d["reason"] == "callback_failed"]
            assert len(dead) == 1 and dead[0]["source"] == "callback"
            assert "SZ-0042" in dead[0]["detail"] and "3 attempts" in dead[0]["detail"]
            assert "HTTP 500 platform down" in dead[0]["detail"]
            assert orjson.loads(__import__("base64").b64decode(dead[0]["original_b64"]))["external_id"] == "SZ-0042"
            assert len(failures) == 3 and len(set(failures)) == 1

            seen = relay.seen
            stop.set()
            await asyncio.wait_for(task, 30)

            # A restart under a new group reads workorders.events from its start again: the
            # callbacks book (platforms.callbacks) says every one is done — nothing is called twice.
            stop2 = asyncio.Event()
            relay2 = PlatformRelay(kafka_bootstrap, topics, platforms(base, "relay-2"), partitions=3)
            task2 = asyncio.create_task(relay2.run(stop2))

            async def caught_up():
                return relay2.seen >= seen
            await until(caught_up, what="the second relay to read every change again")
            await asyncio.sleep(1.0)
            stop2.set()
            await asyncio.wait_for(task2, 30)
            assert relay2.sent == 0

            mine = [g for g in got if g["external_id"] == CASE["id"]]
            assert Counter(g["change"] for g in mine) == {"registered": 1, "dispatched": 1, "closed": 1}
            assert len({g["callback_id"] for g in mine}) == 3
            for g in mine:
                assert g["header_id"] == g["callback_id"] and g["header_system"] == "12345"
                assert g["work_order_id"] == wo and g["system"] == "12345" and g["report_id"] == "R-PA1"
            closed = next(g for g in mine if g["change"] == "closed")
            assert closed["status"] == "closed" and closed["closed_at"] and closed["change_name"]
            versions = [g["version"] for g in mine]
            assert versions == sorted(versions)
            assert len(failures) == 3   # a dead callback is not tried again either

            book = decode(await consume(kafka_bootstrap, callbacks_topic(topics), want=1, timeout=20))
            final = {}
            for rec in book:
                final[rec["callback_id"]] = rec["status"]
            assert sorted(final.values()) == ["failed", "sent", "sent", "sent"]
    finally:
        worker.stop()


async def _changes(got: list[dict], wo: str, want: set[str]) -> bool:
    return want <= {g["change"] for g in got if g["work_order_id"] == wo}


async def test_the_relay_process_serves_its_metrics_and_stops_on_sigterm(kafka_bootstrap, tmp_path):
    """``citybrain platforms run --http-port`` as deployed (docker-compose.yml, deploy/k8s):
    Prometheus reads its callbacks counter; a SIGTERM (a rolling update) stops it cleanly."""
    import os
    import signal
    import subprocess
    import sys

    from citybrain_tools.local_kafka.broker import free_port

    topics = await prepare(kafka_bootstrap, new_prefix("platforms-cli"))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "citybrain", "platforms", "run", "--http-port", str(port)],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CITYBRAIN_TOPIC_PREFIX": topics.prefix,
             "CITYBRAIN_PLATFORM_12345_SECRET": SECRET, "CITYBRAIN_PLATFORM_SZCG_SECRET": SECRET},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async def metrics():
            try:
                async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    return await r.text() if r.status == 200 else None
            except aiohttp.ClientError:
                return None
        text = await until(metrics, timeout=60, what="the relay's /metrics")
        assert "# TYPE citybrain_platform_callbacks_total counter" in text
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert f"metrics (/metrics) on http://127.0.0.1:{port}" in out
    finally:
        if proc.poll() is None:
            proc.kill()
