"""Operator commands through the HTTP API and real Kafka (DESIGN §14, issue 35 item 4):
recategorise, reprioritise, merge (across fusion groups: the survivor's partition checks,
the duplicate's closes, the survivor's absorbs) and split; the refusals with reasons."""

import asyncio
import time
from datetime import datetime, timedelta

import aiohttp
import orjson
import pytest

from citybrain.kafka.partitioner import murmur2
from citybrain_tools.sample.sites import EAST_DIP, RESTAURANT

from .kafka_helpers import WorkerProcess, consume_all, decode, new_prefix, partitions_of, prepare

pytestmark = pytest.mark.integration

OPERATOR, WATER = "demo-operator", "demo-water"


async def call(http, method, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, path, headers=headers,
                            data=orjson.dumps(body) if body is not None else None) as r:
        return r.status, await r.json(content_type=None)


def report(rid, site, e, n, category="waterlogging"):
    lon, lat = site.offset(e, n)
    return {"report_id": rid, "reporter_id": f"rep-{rid}", "category": category, "description": "市民上报",
            "lon": lon, "lat": lat, "photos": [f"https://grid.example.invalid/{rid}.jpg"]}


async def until(probe, what: str, timeout: float = 30.0):
    """Poll ``probe`` (async, returns a value or None) until it gives something."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def test_recategorise_reprioritise_merge_and_split(kafka_bootstrap, tmp_path):
    prefix = new_prefix("opcmd")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{worker.port}") as http:
            async def order_of_report(rid):
                status, body = await call(http, "GET", f"/api/v1/reports/{rid}", OPERATOR)
                return body["work_order_id"] if status == 200 else None

            async def order(wo, predicate=lambda o, t: True, what="the order"):
                async def probe():
                    status, body = await call(http, "GET", f"/api/v1/workorders/{wo}", OPERATOR)
                    if status == 200 and predicate(body["work_order"], body["timeline"]):
                        return body
                    return None
                return await until(probe, f"{wo}: {what}")

            async def command(wo, body, token=OPERATOR):
                return await call(http, "POST", f"/api/v1/workorders/{wo}/commands", token, body)

            for body in (report("OC-a1", RESTAURANT, 0, 0),                     # A: ponding, water
                         report("OC-c1", RESTAURANT, 40, 0, "manhole_cover"),   # C: another group, city_mgmt
                         report("OC-b1", EAST_DIP, 0, 0),                       # B: ponding 2 km away …
                         report("OC-b2", EAST_DIP, 20, 0)):                     # … a second report joins it
                assert (await call(http, "POST", "/api/v1/reports", OPERATOR, body))[0] == 202
            a = await until(lambda: order_of_report("OC-a1"), "order A")
            c = await until(lambda: order_of_report("OC-c1"), "order C")
            b = await until(lambda: order_of_report("OC-b2"), "order B")
            assert len({a, b, c}) == 3
            # A and C live on different partitions of the fusion inbox (their ids name their groups).
            n = len(await partitions_of(kafka_bootstrap, topics.fusion_inbox))
            assert len({(murmur2(wo.split("-")[1].encode()) & 0x7FFFFFFF) % n for wo in (a, c)}) == 2, (a, c, n)
            await order(b, lambda o, t: len(o["events"]) == 2 and o["status"] == "dispatched", "both reports")

            await order(c, lambda o, t: o["department"] == "city_mgmt" and o["status"] == "dispatched", "dispatched")
            # 改类: C is a road collapse, not a manhole — routed to housing, its limits re-applied.
            assert (await command(c, {"command_id": "oc-1", "action": "recategorise", "category": "road_damage",
                                      "note": "路面塌陷 the road caved in"}))[0] == 202
            body = await order(c, lambda o, t: o["department"] == "housing" and o["status"] == "dispatched",
                               "recategorised and dispatched to housing")
            snap, types = body["work_order"], [e["type"] for e in body["timeline"]]
            assert snap["category"] == "road_damage" and types[-2:] == ["recategorised", "dispatched"]
            # Road damage's limits (normal: working hours) from 立案, not the manhole's (high: natural).
            assert (snap["time_limit_basis"], snap["time_limit_hours"]) == ("working", 24)
            assert next(e for e in body["timeline"] if e["type"] == "recategorised")["label"] == "改类"

            # 调整优先级: A is urgent — its clocks follow (urgent: 4 natural hours from 立案).
            assert (await command(a, {"command_id": "oc-2", "action": "reprioritise", "priority": "urgent"}))[0] == 202
            snap = (await order(a, lambda o, t: o["priority"] == "urgent", "urgent"))["work_order"]
            assert datetime.fromisoformat(snap["due_at"]) == datetime.fromisoformat(snap["created_at"]) + timedelta(
                hours=4)

            # Irreversible commands need a reason, checked up front; a merge names another order.
            for body, field in (({"action": "cancel"}, "note"), ({"action": "merge", "into": c}, "note"),
                                ({"action": "merge", "into": a, "note": "dup"}, "into"),
                                ({"action": "merge", "note": "dup"}, "into")):
                status, got = await command(a, {"command_id": "oc-x", **body})
                assert (status, got["error"]["field"]) == (422, field), (body, got)
            assert (await command(a, {"command_id": "oc-w", "action": "merge", "into": c, "note": "x"},
                                  WATER))[0] == 403
            # Refused in the stream: into an order that does not exist.
            assert (await command(b, {"command_id": "oc-3", "action": "merge", "into": "WO-flooding-"
                                      + "0" * 20, "note": "重复"}))[0] == 202
            await order(b, lambda o, t: any(e.get("reason") == "unknown_work_order" for e in t), "refusal")

            # 并单: A (the ponding from the collapse) into C — across partitions.
            assert (await command(a, {"command_id": "oc-4", "action": "merge", "into": c,
                                      "note": "同一处：塌陷导致积水 one incident"}))[0] == 202
            merged = await order(a, lambda o, t: o["status"] == "merged", "merged")
            assert merged["work_order"]["merged_into"] == c and merged["work_order"]["events"] == []
            assert [e["label"] for e in merged["timeline"] if e["type"] == "merged"] == ["并单（并入他单）"]
            survivor = await order(c, lambda o, t: a in o["merged_from"], "absorbed")
            assert {e["report_id"] for e in survivor["work_order"]["events"]} == {"OC-c1", "OC-a1"}
            assert survivor["work_order"]["status"] == "dispatched"
            # The duplicate's reporter follows the survivor now.
            assert await until(lambda: _equals(order_of_report("OC-a1"), c), "the report on the survivor")
            status, rep = await call(http, "GET", "/api/v1/reports/OC-a1", OPERATOR)
            assert status == 200 and rep["work_order_id"] == c and rep["category"] == "road_damage"
            notes = [n for n in decode(await consume_all(kafka_bootstrap, topics.reporter_notifications))
                     if n["report_id"] == "OC-a1"]
            told = [n for n in notes if n["change"] == "merge_absorbed"]
            assert len(told) == 1 and told[0]["work_order_id"] == c and "已并入工单" in told[0]["message"]
            # Into an order that is closed (merged) now: refused.
            assert (await command(b, {"command_id": "oc-5", "action": "merge", "into": a, "note": "重复"}))[0] == 202
            await order(b, lambda o, t: any(e.get("command_id") == "oc-5" and e["reason"] == "not_allowed_in_state"
                                            for e in t), "refusal of a merge into a closed order")

            # 拆单: OC-b2 is another spot after all — a new order with it.
            assert (await command(b, {"command_id": "oc-6", "action": "split", "evidence": ["OC-nothing"]}))[0] == 202
            await order(b, lambda o, t: any(e.get("command_id") == "oc-6" and e["reason"] == "invalid_field"
                                            for e in t), "refusal of a split of what is not on it")
            assert (await command(b, {"command_id": "oc-7", "action": "split", "evidence": ["OC-b2"],
                                      "note": "不是同一处"}))[0] == 202
            body = await order(b, lambda o, t: o["split_into"], "split")
            [d] = body["work_order"]["split_into"]
            assert [e["report_id"] for e in body["work_order"]["events"]] == ["OC-b1"]
            assert body["work_order"]["evidence"] == ["https://grid.example.invalid/OC-b1.jpg"]
            new = (await order(d, lambda o, t: o["status"] == "dispatched", "the new order dispatched"))["work_order"]
            assert (new["split_from"], new["department"], [e["report_id"] for e in new["events"]]) == (
                b, "water", ["OC-b2"])
            assert new["evidence"] == ["https://grid.example.invalid/OC-b2.jpg"]
            assert await until(lambda: _equals(order_of_report("OC-b2"), d), "the split report on the new order")

            # The log tells the same story (workorders.events), each order's versions in order.
            changes = decode(await consume_all(kafka_bootstrap, topics.workorder_events))
            of = {wo: [ch["type"] for ch in changes if ch["work_order_id"] == wo] for wo in (a, b, c, d)}
            assert of[a][-1] == "merged" and "merge_absorbed" in of[c] and of[b][-1] == "split"
            assert of[d][:2] == ["created", "dispatched"]
            for wo in (a, b, c, d):
                versions = [ch["version"] for ch in changes if ch["work_order_id"] == wo]
                assert versions == list(range(1, len(versions) + 1)), wo
    finally:
        worker.stop()


async def _equals(awaitable, value) -> bool:
    return (await awaitable) == value
