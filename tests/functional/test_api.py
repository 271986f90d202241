"""The HTTP API over the stages in one process (tests/functional/city.py): what a report,
a command and the clock do to an order, seen through the routes — moved here from
tests/integration/test_api.py, where each case waited on a worker and the broker."""

import json
import uuid

import orjson
import pytest

from citybrain_tools.sample.sites import EAST_DIP, UNDERPASS

OPERATOR, WATER, CITY, GRID, GATEWAY = ("demo-operator", "demo-water", "demo-city-mgmt", "demo-grid-0107",
                                         "demo-gateway")


async def call(http, method, path, token=None, body=None, raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    async with http.request(method, path, headers=headers, data=data) as r:
        return r.status, await r.json(content_type=None)


@pytest.fixture(scope="module")
def own_grid(config) -> str:
    """A grid of the grid member's own prefix (demo-grid-0107)."""
    return next(g for g in config.city_map.grid_codes if g.startswith("370306002001"))


def report(rid, site=UNDERPASS, e=10, n=-10, **extra):
    lon, lat = site.offset(e, n)
    return {"report_id": rid, "category": "waterlogging", "description": "下穿通道积水", "lon": lon, "lat": lat,
            "photos": [f"https://grid.example.invalid/{rid}.jpg"], **extra}


async def the_order(http, token, rid) -> dict:
    status, body = await call(http, "GET", "/api/v1/workorders?status=registered,dispatched,accepted,handled,"
                              "closed,cancelled&limit=500", token)
    assert status == 200, body
    found = [o for o in body["items"] if rid in str(o["evidence"])]
    assert len(found) == 1, body
    return found[0]


async def test_reports_roles_and_validation(http, city, own_grid):
    cases = [
        (None, report("R-a1"), 401, "missing_token", "Authorization"),
        ("not-a-token", report("R-a2"), 401, "bad_token", "Authorization"),
        (WATER, report("R-a3"), 403, "forbidden_role", None),
        (GRID, report("R-a4", site=EAST_DIP, e=900, n=900), 403, "out_of_scope", "lon"),
        (GRID, report("R-a5", reporter_id="GM-9999"), 403, "out_of_scope", "reporter_id"),
        (GRID, {**report("R-a6"), "lon": 190.0}, 422, "invalid_field", "lon"),
        (GRID, {k: v for k, v in report("R-a7").items() if k != "category"}, 422, "invalid_field", "category"),
        (GRID, report("R-a8", category="ufo"), 422, "unknown_category", "category"),
        (OPERATOR, {**report("R-a9", reporter_id="op-1"), "ts": "yesterday"}, 422, "invalid_field", "ts"),
        # Operators and grid members report as themselves by default; a gateway relays others.
        (GATEWAY, report("R-a10"), 422, "invalid_field", "reporter_id"),
        # Scope is judged on where the point is: naming a grid of its own prefix does not help.
        (GRID, report("R-a11", site=EAST_DIP, e=900, n=900, grid_code=own_grid), 403, "out_of_scope", "lon"),
        # What the pipeline would dead-letter is refused here.
        (OPERATOR, report("R-a12", reporter_id="op-1", grid_code="370306999999999"), 422, "invalid_field",
         "grid_code"),
        (OPERATOR, report("R-a13", reporter_id="op-1", ts="2099-01-01T00:00:00+08:00"), 422, "future_timestamp",
         "ts"),
        # ts is RFC 3339 text (a number is not read as epoch seconds), and not from year 0001.
        (OPERATOR, report("R-a14", reporter_id="op-1", ts=1764000000), 422, "invalid_field", "ts"),
        (OPERATOR, report("R-a15", reporter_id="op-1", ts="0001-01-01T00:00:00+00:00"), 422, "invalid_field", "ts"),
    ]
    for token, body, status, reason, field in cases:
        got_status, got = await call(http, "POST", "/api/v1/reports", token, body)
        assert (got_status, got["error"]["reason"], got["error"]["field"]) == (status, reason, field), (body, got)
    assert (await call(http, "POST", "/api/v1/reports", GRID, raw=b"{nope"))[1]["error"]["reason"] == "not_json"
    assert (await call(http, "POST", "/api/v1/reports", GRID, raw=b"[1]"))[0] == 400
    deep: object = 1
    for _ in range(300):   # ~300 levels: parsed, but past what can be serialised again
        deep = {"x": deep}
    status, body = await call(http, "POST", "/api/v1/reports", GRID,
                              raw=json.dumps({**report("R-deep"), "extra": deep}).encode())
    assert (status, body["error"]["reason"], body["error"]["field"]) == (422, "invalid_field", "extra")
    big = {**report("R-big"), "description": "x" * 70_000}
    status, body = await call(http, "POST", "/api/v1/reports", GRID, body=big)
    assert (status, body["error"]["reason"], body["error"]["field"]) == (413, "too_large", "body")
    assert city.on(city.topics.reports) == []          # nothing refused was sent
    # Accepted: the grid member's own report, and one through the gateway — each on
    # ingest.reports once, and each one order.
    status, body = await call(http, "POST", "/api/v1/reports", GRID, report("R-ok1"))
    assert status == 202 and body["grid_code"].startswith("370306002001")
    assert (await call(http, "POST", "/api/v1/reports", GATEWAY,
                       report("R-ok2", reporter_id="hotline-12345", channel="hotline_12345")))[0] == 202
    assert [r["report_id"] for r in city.on(city.topics.reports)] == ["R-ok1", "R-ok2"]
    assert (await the_order(http, OPERATOR, "R-ok1"))["work_order_id"] == \
        (await the_order(http, OPERATOR, "R-ok2"))["work_order_id"]     # one place, one incident: fused


async def test_commands_roles_replay_and_timeline(http, city):
    await call(http, "POST", "/api/v1/reports", GRID, report("R-C1", e=40, n=40))
    order = await the_order(http, WATER, "R-C1")
    assert order["status"] == "dispatched" and order["department"] == "water"
    assert [d["work_order_id"] for d in city.on(city.topics.dispatch("water"))] == [order["work_order_id"]]
    wo = order["work_order_id"]
    path = f"/api/v1/workorders/{wo}/commands"
    status, body = await call(http, "POST", path, CITY, {"command_id": "x1", "action": "accept"})
    assert (status, body["error"]["reason"]) == (403, "out_of_scope")
    status, body = await call(http, "POST", path, GRID, {"command_id": "x2", "action": "accept"})
    assert (status, body["error"]["reason"], body["error"]["field"]) == (403, "forbidden_role", "action")
    status, body = await call(http, "POST", path, WATER, {"command_id": "x3", "action": "accept",
                                                          "actor": {"id": "op", "role": "operator"}})
    assert (status, body["error"]["field"]) == (422, "actor")             # the actor is the token's
    status, body = await call(http, "POST", path, WATER, {"command_id": "x4", "action": "teleport"})
    assert (status, body["error"]["field"]) == (422, "action")
    assert (await call(http, "POST", path, GATEWAY, {"command_id": "x5", "action": "accept"}))[0] == 403
    assert city.on(city.topics.commands) == []          # no refused command was sent
    cid = f"acc-{uuid.uuid4().hex[:6]}"
    assert (await call(http, "POST", path, WATER, {"command_id": cid, "action": "accept", "note": "已签收"}))[0] == 202
    assert (await call(http, "POST", path, WATER, {"command_id": cid, "action": "accept"}))[0] == 202   # replayed
    body = (await call(http, "GET", f"/api/v1/workorders/{wo}", OPERATOR))[1]
    kinds = [(e["kind"], e["type"], e.get("reason")) for e in body["timeline"]]
    assert ("change", "accepted", None) in kinds and ("refusal", "accept", "duplicate_command") in kinds
    assert body["work_order"]["status"] == "accepted"
    assert sum(1 for k in kinds if k[:2] == ("change", "accepted")) == 1     # the replay changed nothing


async def test_a_month_of_deadlines_in_milliseconds(http, city):
    """An order nobody accepts: on each of its clocks (签收 accept, 总时限 order) supervision
    climbs street → district → city once, as the fake clock passes 1×, 1.5× and 2× the
    limit; the API calls it overdue; a month later nothing more has happened; a late accept
    is still taken."""
    await call(http, "POST", "/api/v1/reports", GRID, report("R-M1", e=-60, n=60))
    order = await the_order(http, OPERATOR, "R-M1")
    wo = order["work_order_id"]
    assert order["overdue"] is False and order["status"] == "dispatched"
    levels = ("street", "district", "city")
    city.advance(hours=30 * 24, step_minutes=15)
    steps = [s["supervision"] for lv in levels for s in city.on(city.topics.supervision(lv))
             if s["work_order_id"] == wo]
    for clock in ("accept", "order"):
        mine = [s for s in steps if s["clock"] == clock]
        assert [s["level"] for s in mine] == list(levels), steps          # once each, in order
        assert [s["share"] for s in mine] == [1.0, 1.5, 2.0]
        assert [s["due_at"] for s in mine] == sorted(s["due_at"] for s in mine)
    body = (await call(http, "GET", f"/api/v1/workorders/{wo}", OPERATOR))[1]
    assert body["work_order"]["overdue"] is True
    assert body["work_order"]["supervision_level"] == 3                  # 市级督办
    assert sorted(body["work_order"]["supervision_steps"]) == sorted(
        f"{c}@{x}" for c in ("accept", "order") for x in ("1", "1.5", "2"))
    assert sum(1 for e in body["timeline"] if e["type"] == "supervised") == 6
    assert (await call(http, "POST", f"/api/v1/workorders/{wo}/commands", WATER,
                       {"command_id": "late-accept", "action": "accept", "note": "补签收"}))[0] == 202
    assert (await the_order(http, OPERATOR, "R-M1"))["status"] == "accepted"
