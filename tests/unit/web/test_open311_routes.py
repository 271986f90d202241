"""The Open311 routes in process (no Kafka: what would be sent is captured): a POST is the
report POST /api/v1/reports would send, a GET answers before and after the order exists,
refusals are the spec's errors with the spec's statuses, nothing personal leaves in clear
but the phone the report model carries."""

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from citybrain.config import Config
from citybrain.readmodels.orders import OrderView
from citybrain.web.auth import TokenRegistry
from citybrain.web.limits import RequestRate
from citybrain.web.open311 import Open311
from citybrain.wire.models import IncidentReport

GATEWAY, OPERATOR, WATER = "demo-gateway", "demo-operator", "demo-water"


@dataclass
class FakeApi:
    config: Config
    view: OrderView = field(default_factory=OrderView)
    sent: list = field(default_factory=list)
    history: object = None          # the history routes (web.history), on a worker with a data dir

    def __post_init__(self):
        self.city = self.config.city_map
        self.departments = self.config.desks
        self.tokens = TokenRegistry.load(self.config.auth_path)
        self.rate = RequestRate(1000, 1000)
        self.topics = SimpleNamespace(reports="ingest.reports")

    async def _send(self, topic, key, value):
        self.sent.append((topic, key, orjson.loads(value)))


@pytest.fixture
async def client(config):
    api = FakeApi(config)
    app = web.Application()
    Open311(api).install(app.router)
    async with TestClient(TestServer(app)) as c:
        c.api = api
        yield c


async def post(c, fmt="json", **fields):
    r = await c.post(f"/open311/v2/requests.{fmt}", data=fields)
    return r.status, (await r.read())


def order_state(rid, status="dispatched", department="water", version=2):
    now = datetime.now(UTC)
    snap = {"work_order_id": "WO-1", "version": version, "status": status, "category": "waterlogging",
            "category_name": "路面积水", "priority": "high", "department": department, "description": "积水",
            "address": None, "opened_at": now.isoformat(), "created_at": now.isoformat(),
            "due_at": (now + timedelta(hours=12)).isoformat(),
            "location": {"lon": 117.87, "lat": 36.745, "district_code": "370306", "street_code": "370306003",
                         "community_code": "370306003001", "grid_code": "370306003001001"},
            "events": [{"event_id": "e1", "source": "report", "kind": "report", "report_id": rid,
                        "occurred_at": now.isoformat(), "lon": 117.87, "lat": 36.745, "evidence": []}]}
    steps = [{"version": 1, "type": "created", "at": now.isoformat(), "actor": {"id": "s", "role": "system"},
              "status": "registered"},
             {"version": 2, "type": "dispatched", "at": now.isoformat(), "actor": {"id": "s", "role": "system"},
              "status": status}]
    return {"work_order_id": "WO-1", "version": version, "at": now.isoformat(), "snapshot": snap, "steps": steps}


async def test_post_sends_the_report_and_get_answers_before_and_after_the_order(client):
    status, body = await post(client, api_key=GATEWAY, service_code="waterlogging", lat="36.745", long="117.87",
                              description="积水很深 电话13812345678", email="zhang@example.cn", first_name="三",
                              last_name="张", phone="13812345678", account_id="u-7",
                              media_url="https://m.example/p.jpg", jurisdiction_id="370300")
    assert status == 200, body
    answer = orjson.loads(body)
    rid = answer[0]["service_request_id"]
    assert rid.startswith("R-") and answer[0]["account_id"] == "u-7" and "12" in answer[0]["service_notice"]
    [(topic, key, doc)] = client.api.sent
    assert (topic, key) == ("ingest.reports", b"open311:u-7")
    report = IncidentReport.model_validate(doc)            # the topic's own model takes it
    assert (report.report_id, report.category, report.channel, report.contact_phone, report.photos) == (
        rid, "waterlogging", "citizen_app", "13812345678", ["https://m.example/p.jpg"])
    assert report.extra_fields() == {}
    assert "zhang@example.cn" not in orjson.dumps(doc).decode() and "张" not in orjson.dumps(doc).decode()

    r = await client.get(f"/open311/v2/requests/{rid}.json", params={"api_key": GATEWAY})
    [got] = await r.json()
    assert (got["status"], got["status_notes"], got["agency_responsible"]) == ("open", "已受理 received", None)
    assert "13812345678" not in got["description"] and "138****5678" in got["description"]   # masked

    client.api.view.add_state(order_state(rid))
    r = await client.get(f"/open311/v2/requests/{rid}.xml", params={"api_key": GATEWAY})
    root = ET.fromstring(await r.read())
    assert r.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert (root.tag, root[0].tag) == ("service_requests", "request")
    req = root[0]
    assert (req.findtext("status"), req.findtext("agency_responsible")) == ("open", "水务")
    assert req.findtext("status_notes").startswith("已派遣至处置部门 dispatched; 工单 work order WO-1")
    assert req.findtext("expected_datetime")

    client.api.view.add_state(order_state(rid, status="closed", version=3))
    r = await client.get("/open311/v2/requests.json", params={"api_key": OPERATOR, "status": "closed"})
    assert [x["service_request_id"] for x in await r.json()] == [rid]
    r = await client.get("/open311/v2/requests.json", params={"api_key": GATEWAY, "status": "open"})
    assert await r.json() == []
    r = await client.get(f"/open311/v2/tokens/{rid}.json", params={"api_key": GATEWAY})
    assert await r.json() == [{"service_request_id": rid, "token": rid}]


async def test_an_address_string_is_located_by_the_gazetteer(client):
    status, body = await post(client, "xml", api_key=GATEWAY, service_code="road_damage",
                              address_string="周村区青年路88号门口")
    assert status == 200, body
    [(_, key, doc)] = client.api.sent
    assert (doc["lon"], doc["lat"], doc["address"]) == (117.87, 36.745, "周村区青年路88号门口")
    assert key.startswith(b"open311-anon:R-")
    status, body = await post(client, api_key=GATEWAY, service_code="road_damage", address_string="某处某地")
    [err] = orjson.loads(body)
    assert status == 400 and err["code"] == 400 and err["description"].startswith("address_string:")
    grid = client.api.city.grid_codes[0]
    assert (await post(client, api_key=GATEWAY, service_code="road_damage", address_id=grid))[0] == 200


@pytest.mark.parametrize(("fields", "status", "starts"), [
    ({"service_code": "waterlogging", "lat": "36.745", "long": "117.87"}, 403, "api_key was not provided"),
    ({"api_key": "nope", "service_code": "waterlogging", "lat": "36.745", "long": "117.87"}, 403, "invalid api_key"),
    ({"api_key": WATER, "service_code": "waterlogging", "lat": "36.745", "long": "117.87"}, 403, "api_key of role"),
    ({"api_key": GATEWAY, "lat": "36.745", "long": "117.87"}, 400, "service_code"),
    ({"api_key": GATEWAY, "service_code": "ufo", "lat": "36.745", "long": "117.87"}, 400, "service_code"),
    ({"api_key": GATEWAY, "service_code": "fire", "lat": "30", "long": "100"}, 400, "lat/long"),
    ({"api_key": GATEWAY, "service_code": "fire", "lat": "36.745", "long": "117.87", "jurisdiction_id": "110000"},
     404, "jurisdiction_id"),
])
async def test_refusals_are_the_specs_errors(client, fields, status, starts):
    got_status, body = await post(client, **fields)
    [err] = orjson.loads(body)
    assert (got_status, err["code"]) == (status, status) and err["description"].startswith(starts), err
    assert client.api.sent == []


async def test_services_discovery_and_not_found(client, config):
    r = await client.get("/open311/v2/services.json")
    services = await r.json()
    assert [s["service_code"] for s in services] == [c.code for c in config.taxonomy.categories]
    water = next(s for s in services if s["service_code"] == "waterlogging")
    assert (water["service_name"], water["group"], water["metadata"], water["type"]) == (
        "路面积水", "水务", False, "realtime")
    r = await client.get("/open311/v2/services/fire.xml")
    assert ET.fromstring(await r.read()).tag == "service_definition"
    r = await client.get("/open311/v2/services/ufo.json")
    assert r.status == 404 and (await r.json())[0]["code"] == 404
    r = await client.get("/open311/discovery.json")
    d = await r.json()
    assert d["endpoints"][0]["url"].endswith("/open311/v2")
    assert d["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    r = await client.get("/open311/v2/services.json", params={"jurisdiction_id": "999"})
    assert r.status == 404
    r = await client.get("/open311/v2/requests/R-nope.json", params={"api_key": GATEWAY})
    assert r.status == 404 and "R-nope" in (await r.json())[0]["description"]
    r = await client.get("/open311/v2/requests.json")
    assert r.status == 403                                   # reads need a key unless public_reads
    r = await client.get("/open311/v2/nothing.json")
    assert r.status == 404 and (await r.json())[0]["code"] == 404
    r = await client.delete("/open311/v2/requests.json")
    assert (r.status, r.headers["Allow"], (await r.json())[0]["code"]) == (405, "GET, POST", 405)
    r = await client.post("/open311/v2/services/fire.xml")
    assert (r.status, r.headers["Allow"], ET.fromstring(await r.read()).tag) == (405, "GET", "errors")
    r = await client.get("/open311/v2/services.html")
    assert r.status == 404 and ET.fromstring(await r.read()).tag == "errors"
    r = await client.post("/open311/v2/requests.json", json={"api_key": GATEWAY})
    assert r.status == 400 and "form-encoded" in (await r.json())[0]["description"]


def _config(**open311):
    from citybrain.config import Open311Settings
    cfg = Config()
    cfg.settings = cfg.settings.model_copy(update={"open311": Open311Settings(**open311)})
    return cfg


async def test_the_settings():
    from pydantic import ValidationError

    from citybrain.config import Settings
    with pytest.raises(ValidationError, match="jurisdiction"):
        Settings.model_validate({"city": {"geography": "g", "registry": "r"}, "open311": {"jurisdiction": "x"}})
    with pytest.raises(ValidationError, match="jurisdiction_id"):
        Settings.model_validate({"city": {"geography": "g", "registry": "r"},
                                 "open311": {"jurisdiction_id": "a b"}})
    assert Config().settings.open311.jurisdiction_id == "370300"

    off = web.Application()
    Open311(FakeApi(_config(enabled=False))).install(off.router)
    assert not list(off.router.resources())                      # disabled: no route at all

    app = web.Application()
    api = FakeApi(_config(public_reads=True, jurisdiction_id="", base_url="https://open311.city.example/open311"))
    Open311(api).install(app.router)
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/open311/v2/requests.json")
        assert (r.status, await r.json()) == (200, [])          # public reads: no api_key needed
        r = await c.get("/open311/v2/services.json", params={"jurisdiction_id": "370300"})
        assert r.status == 200                                   # empty: the city layer's code
        r = await c.get("/open311/discovery.json")
        assert (await r.json())["endpoints"][0]["url"] == "https://open311.city.example/open311/v2"


async def test_a_request_whose_order_left_the_view_comes_from_the_history_store(client, tmp_path):
    from citybrain.readmodels.history import HistoryStore
    store = HistoryStore(tmp_path / "history.sqlite3")
    try:
        closed = order_state("R-0ld-report-1", status="closed", version=5)
        closed["snapshot"]["closed_at"] = closed["at"]
        store.apply([(0, 0, closed)])
        client.api.history = SimpleNamespace(store=store)
        r = await client.get("/open311/v2/requests/R-0ld-report-1.json", params={"api_key": GATEWAY})
        [got] = await r.json()
        assert (got["status"], got["agency_responsible"], got["expected_datetime"]) == ("closed", "水务", None)
        assert got["status_notes"] == "已办结 closed; 工单 work order WO-1"
        r = await client.get("/open311/v2/requests/R-0ld.json", params={"api_key": GATEWAY})
        assert r.status == 404                         # a substring of an id is not the request
    finally:
        store.close()
