"""立案 from the console through a running worker and the real broker (DESIGN §14): a hotline
report with only an address is located by the gazetteer, becomes an order that keeps the
address and the caller's masked contact; an address that names nothing is a 422
needs_location; the address lookup and the category limits the console's picker shows."""

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import get_args

import aiohttp
import orjson
import pytest

from citybrain.domain.lifecycle import IRREVERSIBLE
from citybrain.domain.pseudonym import from_environment
from citybrain.wire import enums
from citybrain.wire.models import LifecycleAction

from .kafka_helpers import WorkerProcess, new_prefix, prepare, produce

pytestmark = pytest.mark.integration

OPERATOR, WATER, GATEWAY = "demo-operator", "demo-water", "demo-gateway"


@pytest.fixture(scope="module")
async def served(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("addr")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("addr")).start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{worker.port}") as http:
        http.kafka = (kafka_bootstrap, topics)   # type: ignore[attr-defined]
        yield http
    worker.stop()


async def call(http, method, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, path, headers=headers,
                            data=orjson.dumps(body) if body is not None else None) as r:
        return r.status, await r.json(content_type=None)


async def test_a_report_by_address_becomes_an_order_with_the_address_and_masked_contact(served):
    http = served
    status, body = await call(http, "POST", "/api/v1/reports", OPERATOR, {
        "channel": "hotline_12345", "category": "road_damage", "description": "路面塌陷一个坑",
        "address": "周村区青年路88号门口", "contact_phone": "13812345678"})
    assert status == 202, body
    rid = body["report_id"]
    assert rid.startswith("R-") and len(rid) == 38                  # made by the server
    located = body["located"]
    assert (located["name"], located["kind"]) == ("青年路", "road")
    assert (located["lon"], located["lat"]) == pytest.approx((117.870, 36.745))
    assert body["grid_code"].startswith("370306003")                # 青年路街道

    wo = await order_of(http, rid)
    status, got = await call(http, "GET", f"/api/v1/workorders/{wo}", OPERATOR)
    assert status == 200, got
    order = got["work_order"]
    assert order["address"] == "周村区青年路88号门口"
    assert order["reporter_contact"] == "138****5678"
    assert "12345678" not in orjson.dumps(got).decode()              # never the clear number
    assert order["location"]["street_code"] == "370306003" and order["department"] == "housing"
    # the operator token's id (as its pseudonym: DESIGN §16), not the caller
    assert order["events"][0]["finder"] == from_environment(os.environ)("operator")
    # The list carries them too (the board's search covers the address).
    status, page = await call(http, "GET", "/api/v1/workorders?q=青年路88号", OPERATOR)
    assert status == 200 and [o["work_order_id"] for o in page["items"]] == [wo]


async def order_of(http, rid: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s, got = await call(http, "GET", f"/api/v1/reports/{rid}", OPERATOR)
        if s == 200:
            return got["work_order_id"]
        await asyncio.sleep(0.3)
    raise AssertionError(f"report {rid} did not become an order")


async def test_an_address_that_names_nothing_needs_a_location(served):
    http = served
    for address in ("火星路1号", "周村区"):       # nothing known; a whole district is not a location
        status, body = await call(http, "POST", "/api/v1/reports", OPERATOR, {
            "category": "road_damage", "address": address, "contact_phone": "13812345678"})
        assert (status, body["error"]["reason"], body["error"]["field"]) == (422, "needs_location", "address"), body
    # Neither a point nor an address: the point is missing, as before.
    status, body = await call(http, "POST", "/api/v1/reports", OPERATOR, {"category": "road_damage"})
    assert (status, body["error"]["field"]) == (422, "lon")


async def test_the_address_lookup_and_the_category_limits(served):
    http = served
    status, body = await call(http, "GET", "/api/v1/places?q=周村古商城东门&limit=3", WATER)
    assert status == 200 and body["located"]["name"] == "周村古商城"
    assert body["candidates"][0]["codes"]["street_code"] == "370306002"
    status, body = await call(http, "GET", "/api/v1/places?q=青年路&lmit=3", GATEWAY)
    assert (status, body["error"]["field"]) == (400, "lmit")
    status, body = await call(http, "GET", "/api/v1/places?limit=3", OPERATOR)
    assert (status, body["error"]["field"]) == (400, "q")
    assert (await call(http, "GET", "/api/v1/places?q=青年路"))[0] == 401
    status, meta = await call(http, "GET", "/api/v1/meta", OPERATOR)
    assert status == 200
    assert meta["category_limits"]["gas_leak"]["priority"] == "urgent"
    assert meta["category_limits"]["gas_leak"]["department"] == "gas_utility"
    assert meta["category_limits"]["waterlogging"]["time_limit_hours"] == 12
    # every enumeration, as the wire models spell it, with its labels: the console's only copy
    assert meta["enums"] == {**enums.for_console(), "irreversible": sorted(IRREVERSIBLE)}
    assert meta["enums"]["actions"] == list(get_args(LifecycleAction))


async def test_a_platforms_report_that_cannot_be_located_waits_in_triage(served):
    """On ingest.reports itself (a platform or gateway publishing to Kafka, not the API): an
    address the gazetteer cannot locate opens an order registered for triage, flagged
    needs_location at a placeholder (the district its address names), routed nowhere."""
    http = served
    bootstrap, topics = http.kafka
    rid, rid2 = f"R-{uuid.uuid4()}", f"R-{uuid.uuid4()}"
    base = {"reporter_id": "HL-9", "channel": "hotline_12345", "category": "road_damage",
            "ts": datetime.now(UTC).isoformat(), "contact_phone": "0533-6123456"}
    await produce(bootstrap, [
        (topics.reports, b"HL-9", orjson.dumps({**base, "report_id": rid, "address": "周村区某小区南门"})),
        # The same placeholder point again: another caller, not the same incident.
        (topics.reports, b"HL-9", orjson.dumps({**base, "report_id": rid2, "address": "周村区另一处"}))])
    wo, wo2 = await order_of(http, rid), await order_of(http, rid2)
    assert wo != wo2
    status, got = await call(http, "GET", f"/api/v1/workorders/{wo}", OPERATOR)
    order = got["work_order"]
    assert (order["status"], order["department"], order["route_rule"], order["needs_location"]) == (
        "registered", None, "needs_location", True)
    assert order["location"]["district_code"] == "370306" and order["address"] == "周村区某小区南门"
    assert order["reporter_contact"] == "0533-****3456"
    status, page = await call(http, "GET", "/api/v1/workorders?status=registered&category=road_damage", OPERATOR)
    assert {wo, wo2} <= {o["work_order_id"] for o in page["items"]}
