"""The HTTP API against a running worker and the real broker: every route, every role,
every refusal (DESIGN §7). What a report, a command and the clock do through the routes
is in tests/functional/test_api.py, with no broker."""

import asyncio
import json
import os
import socket
import time
import uuid

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citybrain.domain.pseudonym import from_environment
from citybrain.promtext import samples
from citybrain_tools.sample.sites import EAST_DIP, UNDERPASS

from .kafka_helpers import WorkerProcess, new_prefix, prepare

pytestmark = pytest.mark.integration

OPERATOR, WATER, CITY, GRID, GATEWAY = ("demo-operator", "demo-water", "demo-city-mgmt", "demo-grid-0107",
                                         "demo-gateway")


@pytest.fixture(scope="module")
async def served(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("api")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("api")).start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{worker.port}") as http:
        yield http, worker, topics
    worker.stop()


async def call(http, method, path, token=None, body=None, raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    async with http.request(method, path, headers=headers, data=data) as r:
        return r.status, await r.json(content_type=None)


def raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    """One request as raw bytes (headers no client library would send), the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def report(rid, site=UNDERPASS, e=10, n=-10, **extra):
    lon, lat = site.offset(e, n)
    return {"report_id": rid, "category": "waterlogging", "description": "下穿通道积水", "lon": lon, "lat": lat,
            "photos": [f"https://grid.example.invalid/{rid}.jpg"], **extra}


async def wait_order(http, token, predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = await call(http, "GET", "/api/v1/workorders?status=registered,dispatched,accepted,handled,"
                                  "closed,cancelled&limit=500", token)
        assert status == 200, body
        found = [o for o in body["items"] if predicate(o)]
        if found:
            return found[0]
        await asyncio.sleep(0.3)
    raise AssertionError("the order did not appear")


async def test_probes_and_errors_are_json(served):
    http, worker, _ = served
    for path in ("/healthz", "/readyz"):
        async with http.get(path) as r:
            assert r.status == 200
    async with http.get("/metrics") as r:
        assert r.status == 200 and "citybrain_ingested_total" in await r.text()
    assert await call(http, "GET", "/api/v1/nothing-here") == (404, {"error": {
        "status": 404, "reason": "not_found", "detail": "no route GET /api/v1/nothing-here", "field": None}})
    status, body = await call(http, "DELETE", "/api/v1/reports", OPERATOR)
    assert status == 405 and body["error"]["reason"] == "method_not_allowed"
    async with http.get("/") as r:
        assert r.status == 200 and "一网统管" in await r.text()
    async with http.get("/static/vendor/leaflet/leaflet.js") as r:
        assert r.status == 200                                  # vendored, no CDN
    async with http.get("/city.geojson") as r:
        assert r.status == 200 and len((await r.json(content_type=None))["features"]) == 938


async def test_orders_list_detail_and_scope(served):
    http, worker, _ = served
    await call(http, "POST", "/api/v1/reports", GRID, report("R-L1", e=-20, n=15))
    order = await wait_order(http, OPERATOR, lambda o: o["status"] == "dispatched" and o["department"] == "water")
    wo = order["work_order_id"]
    assert "overdue" in order
    # Departments see their own orders only.
    status, body = await call(http, "GET", "/api/v1/workorders", WATER)
    assert status == 200 and wo in {o["work_order_id"] for o in body["items"]}
    status, body = await call(http, "GET", "/api/v1/workorders", CITY)
    assert status == 200 and wo not in {o["work_order_id"] for o in body["items"]}
    status, body = await call(http, "GET", "/api/v1/workorders?department=water", CITY)
    assert (status, body["error"]["reason"], body["error"]["field"]) == (403, "out_of_scope", "department")
    assert (await call(http, "GET", f"/api/v1/workorders/{wo}", CITY))[0] == 403
    # Grid members: within their prefix.
    status, body = await call(http, "GET", "/api/v1/workorders", GRID)
    assert status == 200 and all(o["location"]["grid_code"].startswith("370306002001") for o in body["items"])
    assert (await call(http, "GET", "/api/v1/workorders?grid=370306005", GRID))[0] == 403
    assert (await call(http, "GET", "/api/v1/workorders", GATEWAY))[1]["error"]["reason"] == "forbidden_role"
    # Validation of the query.
    for q, field in (("status=lost", "status"), ("limit=0", "limit"), ("since=tuesday", "since"),
                     ("since=2026-11-22T10:00:00", "since"), ("cursor=zzz", "cursor"), ("grid=abc", "grid"),
                     ("district=370399", "district"), ("category=nope", "category"), ("priority=extreme", "priority"),
                     ("overdue=maybe", "overdue"), ("q2=x", "q2"), ("sort=name", "sort"), ("offset=-3", "offset")):
        status, body = await call(http, "GET", f"/api/v1/workorders?{q}", OPERATOR)
        assert (status, body["error"]["field"]) == (400, field), q
    # Districts: the order is in 周村区, not in 张店区.
    in_district = {d: {o["work_order_id"] for o in (await call(
        http, "GET", f"/api/v1/workorders?district={d}", OPERATOR))[1]["items"]} for d in ("370306", "370303")}
    assert wo in in_district["370306"] and wo not in in_district["370303"]
    # The order with its timeline; unknown ids.
    status, body = await call(http, "GET", f"/api/v1/workorders/{wo}", WATER)
    assert status == 200 and [e["type"] for e in body["timeline"]][:2] == ["created", "dispatched"]
    assert (await call(http, "GET", "/api/v1/workorders/WO-none-0", OPERATOR))[0] == 404


async def test_cursor_paging_walks_every_order_once(served):
    http, worker, _ = served
    for i in range(4):   # four spots 400 m apart: four orders
        await call(http, "POST", "/api/v1/reports", OPERATOR,
                   report(f"R-P{i}", site=EAST_DIP, e=400 * i, n=0, category="road_damage", reporter_id="op-1"))
    await wait_order(http, OPERATOR, lambda o: o["category"] == "road_damage"
                     and abs(o["location"]["lon"] - EAST_DIP.offset(1200, 0)[0]) < 1e-4)
    seen, cursor = [], None
    while True:
        status, body = await call(http, "GET", "/api/v1/workorders?limit=2&status=dispatched,registered"
                                  + (f"&cursor={cursor}" if cursor else ""), OPERATOR)
        assert status == 200 and len(body["items"]) <= 2
        seen += [o["work_order_id"] for o in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) >= 4 and body["total"] == len(seen)
    # The same filters' facet counts, in one call, agree with the list's total.
    status, facets = await call(http, "GET", "/api/v1/workorders/facets?status=dispatched,registered", OPERATOR)
    assert status == 200 and facets["total"] == len(seen) == sum(facets["facets"]["status"].values())
    assert facets["facets"]["category"]["road_damage"] >= 4
    # Search and filters narrow it server-side; the total is exact.
    status, body = await call(http, "GET", "/api/v1/workorders?category=road_damage&q=R-P2&facets=true", OPERATOR)
    assert status == 200 and body["total"] == 1 and "R-P2" in str(body["items"][0]["evidence"] or body["items"][0])
    assert body["facets"]["category"] == {"road_damage": 1} and "overdue_at" in body["items"][0]


async def test_kpis(served):
    http, worker, _ = served
    status, body = await call(http, "GET", "/api/v1/kpis?period=2026-11", OPERATOR)
    assert status == 200 and body["period"] == "2026-11" and isinstance(body["figures"], dict)
    assert set(body["by_district"]) <= {"*", "370306", "370302", "370303", "370321"}
    status, body = await call(http, "GET", "/api/v1/kpis", WATER)
    assert status == 200 and set(body["figures"]) <= {"water"} and body["by_district"] == {}
    assert (await call(http, "GET", "/api/v1/kpis", GRID))[0] == 403
    status, body = await call(http, "GET", "/api/v1/kpis?period=2026-13-45x", OPERATOR)
    assert (status, body["error"]["field"]) == (400, "period")


async def test_stream_delivers_changes_in_scope(served):
    http, worker, _ = served

    async def listen(token, into, ready):
        async with http.get("/api/v1/stream", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            ready.set()
            async for line in r.content:
                if line.startswith(b"data: "):
                    into.append(orjson.loads(line[6:]))

    ops, city = [], []
    r1, r2 = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(listen(OPERATOR, ops, r1)), asyncio.create_task(listen(CITY, city, r2))]
    await asyncio.wait_for(asyncio.gather(r1.wait(), r2.wait()), 10)
    assert (await call(http, "GET", "/api/v1/stream"))[0] == 401
    await call(http, "POST", "/api/v1/reports", GRID, report("R-S1", e=-60, n=-60))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("R-S1" in str(m.get("snapshot", {}).get("evidence")) for m in ops):
        await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    assert ops[0]["kind"] == "hello" and ops[0]["id"]                  # where the stream starts
    changes = [m for m in ops if m["kind"] == "change"]
    assert any("R-S1" in str(m["snapshot"]["evidence"]) for m in changes) and all(m["id"] for m in changes)
    assert not any(m["snapshot"]["department"] != "city_mgmt" for m in city if "snapshot" in m)   # only its own


async def read_events(http, token, last_event_id=None, until=lambda events: False, seconds=5.0):
    """The stream's events (kind, id, data) until ``until`` holds or the time is up."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    events: list[dict] = []

    async def run():
        async with http.get("/api/v1/stream", headers=headers) as r:
            event = {}
            async for line in r.content:
                line = line.decode().rstrip("\n")
                if not line:
                    if event:
                        events.append(event)
                        if until(events):
                            return
                    event = {}
                elif line.startswith(("id: ", "event: ", "data: ")):
                    k, _, v = line.partition(": ")
                    event[k] = orjson.loads(v) if k == "data" else v
    try:
        await asyncio.wait_for(run(), seconds)
    except TimeoutError:
        pass
    return events


async def test_a_reconnect_with_last_event_id_replays_what_changed_meanwhile(served):
    http, worker, _ = served
    hello = await read_events(http, OPERATOR, until=lambda ev: ev[-1]["event"] == "hello")
    last = hello[-1]["id"]
    assert hello[-1]["data"]["id"] == last
    # While nobody listens, a report becomes an order.
    await call(http, "POST", "/api/v1/reports", GRID, report("R-S2", e=-90, n=90))
    order = await wait_order(http, OPERATOR, lambda o: "R-S2" in str(o["evidence"]))
    events = await read_events(http, OPERATOR, last, until=lambda ev: ev[-1]["event"] == "hello")
    replayed = [e["data"] for e in events if e["event"] == "change"]
    assert order["work_order_id"] in {m["work_order_id"] for m in replayed}, events
    assert events[-1]["data"]["replayed"] == len(replayed) >= 1
    # Another worker's (or an earlier run's) id cannot be answered: the client reloads.
    stale = await read_events(http, OPERATOR, "0.1", until=lambda ev: True)
    assert stale[0]["event"] == "reload"


async def test_refusals_are_counted_and_tokens_never_logged(served):
    http, worker, _ = served
    await call(http, "GET", "/api/v1/workorders", "a-wrong-token")
    text = await asyncio.to_thread(worker.metrics)
    reasons = {lab["reason"]: v for lab, v in samples(text, "citybrain_auth_refusals_total")}
    assert {"missing_token", "bad_token", "forbidden_role", "out_of_scope"} <= set(reasons)
    routes = {(lab["route"], lab["code"]) for lab, _ in samples(text, "citybrain_api_requests_total")}
    assert ("/api/v1/reports", "202") in routes and ("/api/v1/workorders", "403") in routes
    log = worker.log_path.read_text(encoding="utf-8", errors="replace")
    assert "拒绝访问 refused" in log
    for token in ("demo-operator", "demo-water", "demo-grid-0107", "a-wrong-token", "not-a-token"):
        assert token not in log


async def test_field_app_flow_report_to_verification_by_the_same_grid_member(served):
    """A grid member's report through the API becomes an order; the department handles it;
    the same grid member verifies it on site: 结案."""
    http, worker, _ = served
    status, body = await call(http, "POST", "/api/v1/reports", GRID,
                              report("R-F1", site=UNDERPASS, e=30, n=-30, category="garbage_overflow",
                                     description="垃圾桶满溢"))
    assert status == 202, body
    order = await wait_order(http, GRID, lambda o: "R-F1" in str(o["evidence"]))
    wo, dept = order["work_order_id"], order["department"]
    token = {"city_mgmt": CITY, "water": WATER}[dept]
    for n, action in enumerate(("accept", "handle")):
        assert (await call(http, "POST", f"/api/v1/workorders/{wo}/commands", token,
                           {"command_id": f"F-{n}", "action": action}))[0] == 202
    await wait_order(http, GRID, lambda o: o["work_order_id"] == wo and o["status"] == "handled")
    assert (await call(http, "POST", f"/api/v1/workorders/{wo}/commands", GRID,
                       {"command_id": "F-v", "action": "verify", "note": "现场核查已清运"}))[0] == 202
    closed = await wait_order(http, GRID, lambda o: o["work_order_id"] == wo and o["status"] == "closed")
    body = (await call(http, "GET", f"/api/v1/workorders/{wo}", GRID))[1]
    verified = [e for e in body["timeline"] if e["type"] == "verified"]
    assert closed["status"] == "closed" and verified and verified[0]["actor"] == "grid:GM-0107(370306002001)"


async def test_a_reporter_follows_the_order_and_a_visit_is_recorded(served, kafka_bootstrap):
    """反馈 and 回访 (DESIGN §13): every change of the order reaches the reporter on
    notifications.reporters, the report's status is served to the grid member's app, and
    an unsatisfied visit before closure sends the order back for rework."""
    from .kafka_helpers import consume_all, decode
    http, worker, topics = served
    rid = f"R-follow-{uuid.uuid4().hex[:6]}"
    status, body = await call(http, "POST", "/api/v1/reports", GRID,
                              report(rid, UNDERPASS, 60, 40, category="garbage_overflow", description="垃圾桶满溢"))
    assert status == 202, body
    order = await wait_order(http, OPERATOR, lambda o: any(e.get("report_id") == rid for e in o["events"]))
    wo = order["work_order_id"]
    for token in (GRID, GATEWAY, OPERATOR):
        status, body = await call(http, "GET", f"/api/v1/reports/{rid}", token)
        assert status == 200 and body["work_order_id"] == wo and body["status_zh"], (token, body)
    assert (await call(http, "GET", f"/api/v1/reports/{rid}", WATER))[0] == 403          # a department: no
    status, body = await call(http, "GET", "/api/v1/reports/R-never-sent", GRID)
    assert status == 404 and body["error"]["field"] == "report_id"
    for i, (action, token, extra) in enumerate([("accept", CITY, {}), ("handle", CITY, {}),
                                                ("visit", OPERATOR, {"satisfaction": "unsatisfied",
                                                                     "report_id": rid, "note": "仍有积水"})]):
        status, body = await call(http, "POST", f"/api/v1/workorders/{wo}/commands", token,
                                  {"command_id": f"{rid}-{i}", "action": action, **extra})
        assert status == 202, body
        await asyncio.sleep(1.0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = await call(http, "GET", f"/api/v1/reports/{rid}", GRID)
        if body.get("visits"):
            break
        await asyncio.sleep(0.5)
    assert body["status"] == "accepted" and body["visits"][0]["satisfaction"] == "unsatisfied"
    assert [s["type"] for s in body["steps"]][-3:] == ["accepted", "handled", "visited"]
    # (the visit is served from workorders.state, written with its notification: all there now)
    notes = [n for n in decode(await consume_all(kafka_bootstrap, topics.reporter_notifications))
             if n["report_id"] == rid]
    assert [n["change"] for n in notes] == ["created", "dispatched", "accepted", "handled", "visited"]
    # 假名化 (DESIGN §16): the reporter is named by its pseudonym, never its clear id — on
    # notifications.reporters and in every byte of the order's records on workorders.events,
    # workorders.state and its dispatch topic, and on events.normalized
    rp = from_environment(os.environ)("GM-0107")
    assert {n["reporter_id"] for n in notes} == {rp} and all("工单号 " + wo in n["message"] for n in notes)
    long_lived = [topics.workorder_events, topics.workorder_state, topics.dispatch("city_mgmt"), topics.events]
    mine = [r.value for topic in long_lived
            for r in await consume_all(kafka_bootstrap, topic, quiet=0.5)
            if r.value and (wo.encode() in r.value or rid.encode() in r.value)]
    assert len(mine) >= 6 and not [v for v in mine if b"GM-0107" in v]
    assert any(rp.encode() in v for v in mine)
    print(f"\n  reporter {rid}: {len(notes)} notifications; unsatisfied visit → rework")


async def test_a_street_desk_gets_its_streets_orders_and_works_them(served, kafka_bootstrap):
    """属地处置 (DESIGN §13): street vending in 青年路街道 goes to its street desk's topic; the
    desk's token sees the orders of its street and works the ones sent to it."""
    from citybrain.config import Config

    from .kafka_helpers import consume_all, decode
    http, worker, topics = served
    city = Config().city_map
    grid = next(g for g in city.grid_codes if g.startswith("370306003"))
    point = city.grid_polygon(grid).representative_point()
    rid = f"R-desk-{uuid.uuid4().hex[:6]}"
    status, body = await call(http, "POST", "/api/v1/reports", OPERATOR,
                              {"report_id": rid, "reporter_id": "HL-1", "channel": "hotline_12345",
                               "category": "street_vending", "description": "占道经营", "lon": point.x, "lat": point.y})
    assert status == 202, body
    desk = "demo-street-qingnian"
    order = await wait_order(http, desk, lambda o: any(e.get("report_id") == rid for e in o["events"]))
    assert order["department"] == "street.370306003" and order["route_rule"].startswith("override:370306003")
    [sent] = [d for d in decode(await consume_all(kafka_bootstrap, topics.dispatch("street.370306003")))
              if d["work_order_id"] == order["work_order_id"]]
    assert (sent["type"], sent["role"]) == ("dispatched", "lead")
    wo = order["work_order_id"]
    status, body = await call(http, "POST", f"/api/v1/workorders/{wo}/commands", desk,
                              {"command_id": f"{rid}-a", "action": "accept"})
    assert status == 202, body
    accepted = await wait_order(http, desk, lambda o: o["work_order_id"] == wo and o["status"] == "accepted")
    assert accepted["status"] == "accepted"
    # Out of its street: not seen.
    status, body = await call(http, "GET", "/api/v1/workorders?limit=500", desk)
    assert status == 200 and body["items"] and all(o["location"]["street_code"] == "370306003"
                                                   or o["department"] == "street.370306003" for o in body["items"])
    assert (await call(http, "GET", f"/api/v1/workorders/{wo}", WATER))[0] == 403


async def test_generated_credentials_and_bodies_never_5xx_nor_echoed(served):
    """Whatever bytes a client puts in Authorization, or in a report body: a 4xx, and the
    credential never comes back in the answer (hypothesis, raw HTTP)."""
    http, worker, _ = served
    seen: list[bytes] = []

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(token=st.binary(min_size=1, max_size=200).filter(lambda b: b"\r" not in b and b"\n" not in b))
    def credentials(token):
        status, body = raw_http(worker.port, b"GET /api/v1/workorders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n")
        assert 400 <= status < 500, (token, status, body[:200])
        if len(token) >= 8:
            seen.append(token)
            assert token not in body

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                               | st.text(max_size=20),
                               lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                             max_size=4),
                               max_leaves=20)

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(doc=st.dictionaries(st.sampled_from(["report_id", "category", "description", "lon", "lat", "ts",
                                                "grid_code", "photos", "channel", "reporter_id", "extra"]),
                               json_values, max_size=8))
    def bodies(doc):
        raw = json.dumps(doc).encode()
        status, body = raw_http(worker.port, b"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Authorization: Bearer demo-grid-0107\r\nContent-Type: application/json\r\n"
                                b"Content-Length: " + str(len(raw)).encode() + b"\r\nConnection: close\r\n\r\n" + raw)
        assert status < 500, (doc, status, body[:300])
        if status >= 400:
            assert orjson.loads(body)["error"]["reason"]   # a JSON error with its reason

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(params=st.dictionaries(st.sampled_from(["status", "department", "grid", "street", "district", "since",
                                                   "limit", "cursor", "emergency", "period", "by"]),
                                  st.text(max_size=40), max_size=4),
           path=st.sampled_from(["/api/v1/workorders", "/api/v1/kpis", "/api/v1/workorders/WO-x",
                                 "/api/v1/reports/R-x"]))
    def queries(params, path):
        from urllib.parse import quote
        query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params.items())
        status, body = raw_http(worker.port, f"GET {path}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                             f"Authorization: Bearer {OPERATOR}\r\nConnection: close\r\n\r\n".encode())
        assert status < 500, (path, params, status, body[:300])
        if status >= 400:
            assert orjson.loads(body)["error"]["reason"]

    credentials()
    bodies()
    queries()
    # Past aiohttp's 8,190-byte header limit: refused before any route — and not echoed.
    long_token = b"L0ngT0ken" * 1000
    status, body = raw_http(worker.port, b"GET /api/v1/workorders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Authorization: Bearer " + long_token + b"\r\nConnection: close\r\n\r\n")
    assert 400 <= status < 500 and b"L0ngT0ken" not in body, (status, body[:300])
    seen.append(b"L0ngT0ken")
    log = worker.log_path.read_text(errors="replace").encode("utf-8", "surrogateescape")
    leaked = [t for t in seen if t in log]
    assert leaked == [], leaked[:3]


async def test_per_token_limits_answer_429_with_retry_after(served):
    """A token past its live streams, or past its request rate, is told to come back
    later: a 429 with Retry-After and the reason — the others are not affected."""
    http, worker, _ = served
    headers = {"Authorization": f"Bearer {CITY}"}
    streams = [await http.get("/api/v1/stream", headers=headers) for _ in range(8)]
    try:
        assert all(r.status == 200 for r in streams)
        async with http.get("/api/v1/stream", headers=headers) as r:
            body = await r.json(content_type=None)
            assert (r.status, body["error"]["reason"], r.headers["Retry-After"]) == (429, "too_many_streams", "5")
        async with http.get("/api/v1/stream", headers={"Authorization": f"Bearer {WATER}"}) as r:
            assert r.status == 200                 # another token has its own streams
    finally:
        for r in streams:
            r.close()
    await asyncio.sleep(2.5)                       # a client gone is noticed within a second
    async with http.get("/api/v1/stream", headers=headers) as r:
        assert r.status == 200                     # the streams given back are free again

    async def one():
        async with http.get("/api/v1/workorders?limit=1", headers=headers) as r:
            return r.status, r.headers.get("Retry-After"), await r.read()

    answers = await asyncio.gather(*(one() for _ in range(400)))
    limited = [a for a in answers if a[0] == 429]
    assert limited and all(a[1] and int(a[1]) >= 1 for a in limited), {a[0] for a in answers}
    assert orjson.loads(limited[0][2])["error"]["reason"] == "rate_limited"
    assert {a[0] for a in answers} <= {200, 429}
    await asyncio.sleep(5)                         # refilled for the tests after this one
    assert (await call(http, "GET", "/api/v1/workorders?limit=1", CITY))[0] == 200


async def test_map_layers_clusters_devices_and_cameras_near_an_order(served):
    http, worker, _ = served
    await call(http, "POST", "/api/v1/reports", GRID, report("R-MAP-1", e=-30, n=30))
    order = await wait_order(http, OPERATOR, lambda o: "R-MAP-1" in str(o["evidence"]))
    status, listed = await call(http, "GET", "/api/v1/workorders?status=dispatched,registered&limit=1", OPERATOR)
    status, body = await call(http, "GET", "/api/v1/workorders/map?status=dispatched,registered&zoom=12", OPERATOR)
    assert status == 200 and body["total"] == listed["total"] == sum(c["count"] for c in body["cells"])
    status, water = await call(http, "GET", "/api/v1/workorders/map?zoom=12", WATER)          # its scope only
    status, water_list = await call(http, "GET", "/api/v1/workorders?limit=1", WATER)
    assert water["total"] == water_list["total"]
    for q, field in (("zoom=40", "zoom"), ("bbox=1,2", "bbox"), ("colour=red", "colour")):
        status, body = await call(http, "GET", f"/api/v1/workorders/map?{q}", OPERATOR)
        assert (status, body["error"]["field"]) == (400, field), q
    # Cameras within 300 m of the order at the underpass (the SAMPLE registry has CAM-UP-01/02 there).
    status, body = await call(http, "GET", f"/api/v1/workorders/{order['work_order_id']}/cameras", OPERATOR)
    assert status == 200 and body["cameras"] and all(c["distance_m"] <= 300 for c in body["cameras"])
    assert [c["distance_m"] for c in body["cameras"]] == sorted(c["distance_m"] for c in body["cameras"])
    status, body = await call(http, "GET", f"/api/v1/workorders/{order['work_order_id']}/cameras?radius_m=0", OPERATOR)
    assert (status, body["error"]["field"]) == (400, "radius_m")
    loc = order["location"]
    bbox = f"{loc['lon'] - 0.01},{loc['lat'] - 0.01},{loc['lon'] + 0.01},{loc['lat'] + 0.01}"
    status, body = await call(http, "GET", f"/api/v1/devices?kind=camera&bbox={bbox}", OPERATOR)
    assert status == 200 and body["total"] >= 1 and {d["health"] for d in body["items"]} <= {"ok", "fault"}
    assert (await call(http, "GET", "/api/v1/devices", GRID))[0] == 403
