"""Open311 GeoReport v2 against a running worker and the real broker (DESIGN §16): this test
is a GeoReport v2 client — discovery, services, form-encoded POSTs (a point, and an address
the gazetteer locates), a request by id before and after its order exists, lists with the
spec's filters, XML with the spec's element names, and the spec's errors."""

import asyncio
import time
import xml.etree.ElementTree as ET

import aiohttp
import orjson
import pytest

from citybrain_tools.sample.sites import UNDERPASS

from .kafka_helpers import WorkerProcess, new_prefix, prepare

pytestmark = pytest.mark.integration

GATEWAY, OPERATOR = "demo-gateway", "demo-operator"
BASE = "/open311/v2"


@pytest.fixture(scope="module")
async def served(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("o311")
    await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("o311")).start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{worker.port}") as http:
        yield http
    worker.stop()


async def get(http, path, **params):
    async with http.get(path, params=params) as r:
        body = await r.read()
        return r.status, r.headers.get("Content-Type", ""), body


async def get_json(http, path, **params):
    status, _, body = await get(http, path, **params)
    return status, orjson.loads(body)


async def post(http, fmt="json", **form):
    async with http.post(f"{BASE}/requests.{fmt}", data=form) as r:     # application/x-www-form-urlencoded
        return r.status, await r.read()


async def until_agency(http, rid, timeout=45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = await get_json(http, f"{BASE}/requests/{rid}.json", api_key=GATEWAY)
        assert status == 200, body
        if body[0]["agency_responsible"]:
            return body[0]
        await asyncio.sleep(0.3)
    raise AssertionError(f"{rid} got no agency_responsible")


async def test_a_georeport_v2_client(served):
    http = served

    # Discovery and services, JSON and XML.
    status, d = await get_json(http, "/open311/discovery.json")
    assert status == 200 and d["endpoints"][0]["url"].endswith("/open311/v2")
    assert set(d["endpoints"][0]["formats"]) == {"text/xml", "application/json"}
    status, ctype, body = await get(http, "/open311/discovery.xml")
    assert ctype.startswith("text/xml") and ET.fromstring(body).tag == "discovery"
    status, services = await get_json(http, f"{BASE}/services.json", jurisdiction_id="370300")
    assert status == 200 and {"waterlogging", "road_damage"} <= {s["service_code"] for s in services}
    assert all(set(s) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
               for s in services)
    status, ctype, body = await get(http, f"{BASE}/services.xml")
    root = ET.fromstring(body)
    assert (root.tag, {c.tag for c in root}) == ("services", {"service"})
    status, ctype, body = await get(http, f"{BASE}/services/waterlogging.xml")
    assert status == 200 and ET.fromstring(body).findtext("service_code") == "waterlogging"

    # A request at a point, form-encoded, the gateway's token as api_key.
    lon, lat = UNDERPASS.offset(12, -8)
    status, body = await post(http, api_key=GATEWAY, jurisdiction_id="370300", service_code="waterlogging",
                              lat=str(lat), long=str(lon), description="下穿通道积水，车辆无法通行",
                              email="citizen@example.cn", first_name="三", last_name="张", phone="13812345678",
                              account_id="citizen-42", media_url="https://media.example/p1.jpg")
    assert status == 200, body
    [made] = orjson.loads(body)
    point_id = made["service_request_id"]
    assert point_id.startswith("R-") and made["account_id"] == "citizen-42" and made["service_notice"]
    status, first = await get_json(http, f"{BASE}/requests/{point_id}.json", api_key=GATEWAY)
    assert status == 200 and first[0]["status"] == "open"
    if first[0]["agency_responsible"] is None:       # before its order exists
        assert first[0]["status_notes"] == "已受理 received"

    # A request by address: the gazetteer locates it (青年路, 青年路街道), as POST /api/v1/reports would.
    status, body = await post(http, "xml", api_key=GATEWAY, service_code="road_damage",
                              address_string="周村区青年路88号门口", description="路面塌陷一个坑")
    assert status == 200, body
    root = ET.fromstring(body)
    assert (root.tag, root[0].tag) == ("service_requests", "request")
    address_id = root[0].findtext("service_request_id")

    # Once the orders exist: the department, the due time, the notes.
    by_point = await until_agency(http, point_id)
    assert by_point["agency_responsible"] == "水务" and by_point["expected_datetime"]
    assert by_point["status_notes"].startswith(("已派遣至处置部门 dispatched", "已立案"))
    assert by_point["media_url"] == "https://media.example/p1.jpg"
    assert (by_point["lat"], by_point["long"]) == pytest.approx((lat, lon))
    by_address = await until_agency(http, address_id)
    assert by_address["agency_responsible"] == "住建" and by_address["address"] == "周村区青年路88号门口"
    assert (by_address["lat"], by_address["long"]) == pytest.approx((36.745, 117.870))
    everything = orjson.dumps([by_point, by_address]).decode()
    assert "13812345678" not in everything and "citizen@example.cn" not in everything and "张" not in everything

    # Lists with the spec's filters.
    status, page = await get_json(http, f"{BASE}/requests.json", api_key=GATEWAY,
                                  service_request_id=f"{point_id},{address_id},R-none")
    assert status == 200 and [r["service_request_id"] for r in page] == [point_id, address_id]
    status, page = await get_json(http, f"{BASE}/requests.json", api_key=GATEWAY, service_code="road_damage",
                                  status="open")
    assert [r["service_request_id"] for r in page] == [address_id]
    status, page = await get_json(http, f"{BASE}/requests.json", api_key=GATEWAY, status="closed")
    assert page == []
    status, page = await get_json(http, f"{BASE}/requests.json", api_key=GATEWAY,
                                  start_date="2020-01-01T00:00:00Z", end_date="2020-02-01T00:00:00Z")
    assert page == []
    status, ctype, body = await get(http, f"{BASE}/requests.xml", api_key=GATEWAY)
    root = ET.fromstring(body)
    assert ctype.startswith("text/xml") and root.tag == "service_requests"
    assert {r.findtext("service_request_id") for r in root.findall("request")} == {point_id, address_id}
    assert [c.tag for c in root.find("request")][:3] == ["service_request_id", "status", "status_notes"]
    status, tokens = await get_json(http, f"{BASE}/tokens/{point_id}.json", api_key=GATEWAY)
    assert tokens == [{"service_request_id": point_id, "token": point_id}]

    # The spec's errors, with the spec's statuses.
    status, body = await post(http, api_key=GATEWAY, lat=str(lat), long=str(lon))
    assert status == 400 and orjson.loads(body)[0]["description"].startswith("service_code")
    status, body = await post(http, "xml", api_key="not-a-key", service_code="waterlogging", lat=str(lat),
                              long=str(lon))
    err = ET.fromstring(body)
    assert (status, err.tag, err[0].tag, err[0].findtext("code")) == (403, "errors", "error", "403")
    status, body = await get_json(http, f"{BASE}/requests/R-unknown.json", api_key=GATEWAY)
    assert status == 404 and body == [{"code": 404, "description": "service_request_id 'R-unknown' not found"}]
    status, body = await post(http, api_key=GATEWAY, jurisdiction_id="110000", service_code="waterlogging",
                              lat=str(lat), long=str(lon))
    assert status == 404 and "jurisdiction_id" in orjson.loads(body)[0]["description"]
    status, body = await get_json(http, f"{BASE}/requests.json", api_key=OPERATOR, jurisdiction_id="110000")
    assert status == 404
    status, body = await get_json(http, f"{BASE}/requests.json")
    assert status == 403 and "api_key" in body[0]["description"]
