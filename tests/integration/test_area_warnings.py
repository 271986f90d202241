"""区域预警 through real Kafka and one worker (DESIGN §15, issue 37 item 4): a red rainstorm
warning for 周村区 escalates an open waterlogging order there, leaves one in 淄川区 alone,
makes a new one there start at red; the API shows it; once its valid_to (amended to
earlier) has passed, a new order starts at its normal level and nothing raised is released.
A warning naming a district the city does not have is a dead letter."""

import asyncio
import time

import orjson
import pytest
from playwright.async_api import async_playwright, expect

from citybrain_tools.bench.console import get
from citybrain_tools.simulate.traffic import iso

from .browser import CHROMIUM, signed_in
from .kafka_helpers import ARTIFACTS, consume, decode, produce, worker_on_new_topics

pytestmark = pytest.mark.integration

ZHOUCUN, ZICHUAN = "370306", "370302"
# Each point ~870 m from the next: four separate incidents (waterlogging fuses within 150 m).
A, C, D = (117.90989, 36.77375), (117.92944, 36.77375), (117.91966, 36.77375)   # 周村区
B = (117.755, 36.605)                                                             # 淄川区


def report(rid, where, at):
    return orjson.dumps({"report_id": rid, "reporter_id": "GM-0107", "category": "waterlogging", "ts": iso(at),
                         "lon": where[0], "lat": where[1], "description": "路面积水 ponding"})


def warning(valid_to, **extra):
    now = time.time()
    return orjson.dumps({"warning_id": "SD-ZB-2026-RS-001", "issuer": "淄博市气象台", "kind": "rainstorm",
                         "level": "red", "area": {"district_codes": [ZHOUCUN]}, "valid_from": iso(now - 60),
                         "valid_to": iso(valid_to), "ts": iso(now), "title": "暴雨红色预警信号", **extra})


async def changes(bootstrap, topic, done, timeout=40.0) -> dict[str, list[dict]]:
    """Every order's changes on ``topic`` by the report that opened it, once ``done(by_report)``."""
    deadline = time.monotonic() + timeout
    while True:
        by_wo: dict[str, list[dict]] = {}
        for c in decode(await consume(bootstrap, topic, want=10**9, timeout=1.5, settle=0)):
            by_wo.setdefault(c["work_order_id"], []).append(c)
        by_report = {cs[0]["snapshot"]["events"][0]["report_id"]: sorted(cs, key=lambda c: c["version"])
                     for cs in by_wo.values()}
        if done(by_report) or time.monotonic() > deadline:
            return by_report
        await asyncio.sleep(0.5)


def escalated(cs):
    return [c for c in cs if c["type"] == "escalated"]


@pytest.fixture
async def running(kafka_bootstrap, tmp_path, request):
    async with worker_on_new_topics(kafka_bootstrap, request.node.name, tmp_path) as running:
        yield running


async def test_a_red_rainstorm_warning_raises_orders_in_its_district_and_ends_by_itself(kafka_bootstrap, running):
    t, worker = running
    now = time.time()
    await produce(kafka_bootstrap, [(t.reports, b"GM-0107", report("R-A", A, now - 30)),
                                    (t.reports, b"GM-0107", report("R-B", B, now - 30))])
    seen = await changes(kafka_bootstrap, t.workorder_events, lambda by: {"R-A", "R-B"} <= set(by))
    assert [c["snapshot"]["priority"] for c in (seen["R-A"][-1], seen["R-B"][-1])] == ["high", "high"]

    await produce(kafka_bootstrap, [
        (t.warnings, b"SD-ZB-BAD", orjson.dumps({**orjson.loads(warning(now + 3600)), "warning_id": "SD-ZB-BAD",
                                                  "area": {"district_codes": ["370399"]}})),
        (t.warnings, b"SD-ZB-2026-RS-001", warning(now + 3600))])
    # The open order in 周村区 is escalated, the warning named; 淄川区's is not.
    seen = await changes(kafka_bootstrap, t.workorder_events,
                         lambda by: any(c["snapshot"]["emergency_level"] for c in by["R-A"]))
    [up, *_] = escalated(seen["R-A"])
    assert up["escalation"] | {"priority_from": None} == {
        "reason": "area_warning", "area_warning": "SD-ZB-2026-RS-001", "warning_from": None, "warning_to": "red",
        "priority_from": None, "priority_to": "urgent", "emergency_from": None, "emergency_to": "III"}
    assert "区域预警" in up["snapshot"]["notes"][-1] and "淄博市气象台 暴雨红色预警" in up["snapshot"]["notes"][-1]
    assert up["snapshot"]["area_warnings"] == {"SD-ZB-2026-RS-001": "red"}
    assert "emergency" in [a["department"] for a in seen["R-A"][-1]["snapshot"]["assists"]]

    # A new order in 周村区 starts at red (urgent from 立案); the console's layer shows the area.
    await produce(kafka_bootstrap, [(t.reports, b"GM-0107", report("R-C", C, time.time()))])
    seen = await changes(kafka_bootstrap, t.workorder_events,
                         lambda by: "R-C" in by and any(c["snapshot"]["emergency_level"] for c in by["R-C"]))
    created = seen["R-C"][0]["snapshot"]
    assert (created["warning_level"], created["priority"], created["area_warnings"]) == (
        "red", "urgent", {"SD-ZB-2026-RS-001": "red"})
    assert seen["R-C"][-1]["snapshot"]["emergency_level"] == "III"
    assert escalated(seen["R-B"]) == [] and seen["R-B"][-1]["snapshot"]["warning_level"] is None
    _, layer = await asyncio.to_thread(get, worker.port, "/api/v1/warnings", "demo-operator")
    assert layer["total"] == 1
    [feature] = layer["features"]
    assert feature["properties"]["level"] == "red" and feature["properties"]["kind_zh"] == "暴雨"
    assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    async with async_playwright() as pw:      # the console's map shows the area, with a 中文 legend
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await signed_in(browser, f"http://127.0.0.1:{worker.port}", "demo-operator", console_errors=True)
            shown = page.locator("[data-testid=area-warning]")
            await expect(shown).to_have_count(1, timeout=15000)
            assert await shown.get_attribute("data-level") == "red"
            await expect(page.locator("[data-testid=warning-legend]")).to_contain_text("红色暴雨预警 淄博市气象台")
            assert await page.locator("#map").get_attribute("data-warnings") == "1"
            await page.screenshot(path=str(ARTIFACTS / "area-warning-console.png"))
            assert page.errors == []
        finally:
            await browser.close()

    # Amended: valid_to moved to 2 s from now.  Once it has passed, a new order in 周村区
    # starts at its normal level; nothing the warning raised is released.
    ends = time.time() + 2
    await produce(kafka_bootstrap, [(t.warnings, b"SD-ZB-2026-RS-001", warning(ends))])
    await asyncio.sleep(max(0.0, ends - time.time()) + 1.0)
    await produce(kafka_bootstrap, [(t.reports, b"GM-0107", report("R-D", D, time.time()))])
    seen = await changes(kafka_bootstrap, t.workorder_events, lambda by: "R-D" in by)
    plain = seen["R-D"][-1]["snapshot"]
    assert (plain["warning_level"], plain["priority"], plain["area_warnings"], plain["emergency_level"]) == (
        None, "high", {}, None)
    assert [c["type"] for c in seen["R-A"] if c["type"] == "deescalated"] == []
    assert seen["R-A"][-1]["snapshot"]["warning_level"] == "red"
    _, layer = await asyncio.to_thread(get, worker.port, "/api/v1/warnings", "demo-operator")
    assert layer["total"] == 0

    dead = [d for d in decode(await consume(kafka_bootstrap, t.deadletter, want=1, timeout=20, settle=0.5))
            if d["source"] == "warning"]
    assert [(d["reason"], d["field"]) for d in dead] == [("out_of_area", "area.district_codes.0")]
    print(f"\n  area warning: open order escalated {up['escalation']['warning_to']}/{up['escalation']['priority_to']}"
          f"/{up['escalation']['emergency_to']}, new order started red, after valid_to a new order high; "
          f"1 dead letter")
