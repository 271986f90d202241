"""研判 windows through real Kafka (issue 37 item 1): scripted orders are opened, returned,
reworked, closed and left to fall overdue through one worker; a change of the log is
delivered twice (at-least-once, with a later timestamp). Then the raw workorders.events
topic, folded offline with the same domain function, equals what the worker serves on
GET /api/v1/analytics/windows and what it published on the compacted analytics.windows."""

import asyncio
import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest

from citybrain.domain.aggregates import fold, key_text
from citybrain.paths import PROJECT_ROOT
from citybrain_tools.sample.sites import EAST_DIP, RESTAURANT, UNDERPASS

from .kafka_helpers import WorkerProcess, config_with, consume, decode, new_prefix, prepare, produce

pytestmark = pytest.mark.integration
CN = ZoneInfo("Asia/Shanghai")
OPERATOR = "demo-operator"


def short_clocks(tmp):
    """Every stage's accept limit 4 natural seconds: an order left dispatched falls overdue."""
    text = (PROJECT_ROOT / "config" / "lifecycle.toml").read_text(encoding="utf-8")
    text = re.sub(r'basis = "working"', 'basis = "natural"', text)
    text = re.sub(r"accept_hours = [\d.]+", "accept_hours = 0.0011", text)
    return config_with(tmp, text)


def report(rid, site, e, category):
    lon, lat = site.offset(e, 0)
    return {"report_id": rid, "reporter_id": f"rep-{rid}", "category": category, "description": "市民上报",
            "lon": lon, "lat": lat}


async def call(http, method, path, body=None):
    async with http.request(method, path, headers={"Authorization": f"Bearer {OPERATOR}"},
                            data=orjson.dumps(body) if body is not None else None) as r:
        return r.status, await r.json(content_type=None)


async def until(probe, what: str, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last and last[0]:
            return last[1]
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last[1] if last else None}")


def expected_items(windows, granularity):
    return sorted(({"window_start": k[0], "category": k[2], "district": k[3], "street": k[4], **v}
                   for k, v in windows.items() if k[1] == granularity),
                  key=lambda i: (i["window_start"], i["category"], i["district"], i["street"]))


async def test_windows_equal_a_replay_of_the_log(kafka_bootstrap, tmp_path):
    prefix = new_prefix("windows")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, config_dir=short_clocks(tmp_path)).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{worker.port}") as http:
            async def order_of(rid):
                status, body = await call(http, "GET", f"/api/v1/reports/{rid}")
                return status == 200, body.get("work_order_id")

            async def status_of(wo, wanted):
                _, body = await call(http, "GET", f"/api/v1/workorders/{wo}")
                status = body.get("work_order", {}).get("status")
                return status == wanted, status

            async def do(wo, n, action, wanted, **extra):
                assert (await call(http, "POST", f"/api/v1/workorders/{wo}/commands",
                                   {"command_id": f"aw-{wo[-6:]}-{n}", "action": action, **extra}))[0] == 202
                await until(lambda: status_of(wo, wanted), f"{wo} {action}")

            for body in (report("AW-a", RESTAURANT, 0, "waterlogging"), report("AW-b", EAST_DIP, 0, "waterlogging"),
                         report("AW-c", RESTAURANT, 40, "manhole_cover"), report("AW-d", UNDERPASS, 0, "waterlogging")):
                assert (await call(http, "POST", "/api/v1/reports", body))[0] == 202
            a, b, c, d = [await until(lambda r=r: order_of(r), r) for r in ("AW-a", "AW-b", "AW-c", "AW-d")]
            for wo in (a, b, c, d):
                await until(lambda wo=wo: status_of(wo, "dispatched"), f"{wo} dispatched")
            # a: accepted, handled, 核查不通过 (rework), handled again, 结案; b: 退回; c, d: left to run late.
            await do(a, 1, "accept", "accepted")
            await do(a, 2, "handle", "handled")
            await do(a, 3, "reject_verification", "accepted", note="未清理干净")
            await do(a, 4, "handle", "handled")
            await do(a, 5, "verify", "closed")
            await do(b, 1, "return", "registered", note="非本部门")

            async def log_holds():
                log = decode(await consume(kafka_bootstrap, topics.workorder_events, want=10**9, timeout=2, settle=0))
                late = {x["work_order_id"] for x in log if x["type"] == "supervised"}
                return {c, d} <= late, log
            log = await until(log_holds, "c and d supervised")

        # At-least-once: the first change of a delivered again, two hours later.
        first = next(x for x in log if x["work_order_id"] == a and x["version"] == 1)
        again = {**first, "at": (datetime.fromisoformat(first["at"]) + timedelta(hours=2)).isoformat()}
        await produce(kafka_bootstrap, [(topics.workorder_events, a.encode(), orjson.dumps(again))])
        log = decode(await consume(kafka_bootstrap, topics.workorder_events, want=len(log) + 1, timeout=20, settle=1))
        replayed = fold(log)          # the whole topic, offline, by the same function
        totals = {m: sum(v[m] for k, v in replayed.items() if k[1] == "day")
                  for m in ("opened", "closed", "overdue", "returned", "reworked")}
        assert totals["opened"] == 4 and totals["closed"] == 1 and totals["returned"] == 1
        assert totals["reworked"] == 1 and totals["overdue"] >= 2, totals

        now = datetime.now(CN)
        span = {"from": (now - timedelta(days=2)).isoformat(), "to": (now + timedelta(days=1)).isoformat()}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{worker.port}") as http:
            for granularity in ("day", "hour"):
                want = expected_items(replayed, granularity)

                async def served(granularity=granularity, want=want):
                    status, body = await call(http, "GET", "/api/v1/analytics/windows?" + "&".join(
                        f"{k}={v.replace('+', '%2B')}" for k, v in {**span, "granularity": granularity}.items()))
                    return status == 200 and body["items"] == want, body
                await until(served, f"the API's {granularity} windows")
            status, trends = await call(http, "GET", f"/api/v1/analytics/trends?date={now.date().isoformat()}")
            assert status == 200 and trends["weeks"] == 8
            rows = {(r["category"], r["district"]): r["count"] for r in trends["items"]}
            day_opened: dict = {}
            for k, v in replayed.items():
                if k[1] == "day" and k[0] == now.replace(hour=0, minute=0, second=0, microsecond=0).isoformat():
                    day_opened[(k[2], k[3])] = day_opened.get((k[2], k[3]), 0) + v["opened"]
            assert rows == day_opened
            status, bad = await call(http, "GET", "/api/v1/analytics/windows?granularity=week")
            assert status == 400 and bad["error"]["field"] == "granularity"

        async def published():
            records = await consume(kafka_bootstrap, topics.analytics_windows, want=10**9, timeout=2, settle=0)
            latest = {r.key.decode(): orjson.loads(r.value) for r in records}
            want = {key_text(k): {"window_start": k[0], "granularity": k[1], "category": k[2], "district": k[3],
                                  "street": k[4], **v} for k, v in replayed.items()}
            return latest == want, (len(latest), len(want))
        await until(published, "analytics.windows")
    finally:
        worker.stop()
