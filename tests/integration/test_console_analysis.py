"""The console's 研判 screen (issue 37 item 5) in headless Chromium against one worker and
the real broker.  Before the worker starts, the log holds eight weeks of history — five
garbage orders on the same weekday each week (today's baseline), three road orders
yesterday (one closed) — and a month of manhole orders at one spot on workorders.state
(a 高发 hotspot for the history store).  Then four reports become today's orders through
the pipeline; one is closed and one returned through the API.  The screen must show what
the API answers: per-day opened/closed bars, today's garbage count flagged as an anomaly
against its baseline of five, the hotspot in the list and as a heat layer, and 完好率 /
联网率 by kind and district — with no console errors.  With the analytics routes answering
404, the parts they feed say 暂无数据 and the others still draw.  Screenshots:
test-artifacts/console-analysis-*.png."""

import asyncio
import math
import random
import re
import time
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
from playwright.async_api import async_playwright, expect

from citybrain.config import Config
from citybrain_tools.sample.sites import EAST_DIP, RESTAURANT, UNDERPASS
from citybrain_tools.simulate.traffic import iso

from .browser import CHROMIUM, signed_in
from .kafka_helpers import ARTIFACTS, WorkerProcess, new_prefix, prepare, produce

pytestmark = pytest.mark.integration
OPERATOR, WATER, CITY = "demo-operator", "demo-water", "demo-city-mgmt"
CN = ZoneInfo("Asia/Shanghai")
SPOT = (117.8010, 36.7420)          # five missing manholes within 30 m over the month


@cache
def city_map():
    """Loaded once: each Config builds its map afresh (~0.05 s of shapely each)."""
    return Config().city_map


def place_of(lon: float, lat: float) -> dict:
    p = city_map().locate(lon, lat)
    return {"lon": lon, "lat": lat, "district_code": p.district_code, "street_code": p.street_code,
            "community_code": p.community_code, "grid_code": p.grid_code}


def snapshot(wo: str, category: str, lon: float, lat: float, at: str, status: str, version: int) -> dict:
    return {"work_order_id": wo, "version": version, "status": status, "category": category,
            "category_name": category, "priority": "normal", "department": "city_mgmt", "created_at": at,
            "opened_at": at, "due_at": at, "source_ingested_at": at, "fusion_group": wo, "route_rule": "test",
            "time_limit_hours": 24, "description": "", "events": [], "finders": [f"R-{wo}"],
            "location": place_of(lon, lat)}


def change(wo, kind, version, at, category, lon, lat, status) -> dict:
    return {"work_order_id": wo, "version": version, "type": kind, "at": at,
            "actor": {"role": "system", "id": "history"},
            "snapshot": snapshot(wo, category, lon, lat, at, status, version)}


def noon(day: date) -> str:
    return datetime(day.year, day.month, day.day, 12, tzinfo=CN).isoformat()


def history(today: date) -> list[dict]:
    """workorders.events before the worker: the baseline and yesterday."""
    lon, lat = RESTAURANT.offset(400, 400)
    out = []
    for week in range(1, 9):                       # 5 garbage orders on each of 8 same weekdays
        day = today - timedelta(weeks=week)
        for i in range(5):
            out.append(change(f"WO-hist-g{week}-{i}", "created", 1, noon(day), "garbage_overflow", lon, lat,
                              "registered"))
    yesterday = today - timedelta(days=1)
    for i in range(3):                             # 3 road orders yesterday, the first closed
        out.append(change(f"WO-hist-r{i}", "created", 1, noon(yesterday), "road_damage", lon, lat, "registered"))
    out.append(change("WO-hist-r0", "verified", 2, noon(yesterday), "road_damage", lon, lat, "closed"))
    return out


def manholes(rng: random.Random) -> list[dict]:
    """workorders.state: the hotspot's orders, over the last four weeks."""
    out = []
    for i in range(5):
        b, m = rng.uniform(0, 2 * math.pi), rng.uniform(0, 30)
        created = datetime.fromtimestamp(time.time() - rng.uniform(1, 27) * 86400, UTC).isoformat()
        snap = snapshot(f"WO-manhole-hs{i}", "manhole_cover", SPOT[0] + m * math.sin(b) / 89_000,
                        SPOT[1] + m * math.cos(b) / 111_195, created, "closed", 3)
        out.append({"work_order_id": snap["work_order_id"], "version": 3, "at": created, "snapshot": snap,
                    "steps": [], "steps_omitted": 0})
    return out


async def call(http, method, path, token=OPERATOR, body=None):
    data = orjson.dumps(body) if body is not None else None
    async with http.request(method, path, headers={"Authorization": f"Bearer {token}"}, data=data) as r:
        return r.status, await r.json(content_type=None)


async def wait_for(http, path, predicate, timeout=45.0):
    deadline = time.monotonic() + timeout
    status, body = None, None
    while time.monotonic() < deadline:
        status, body = await call(http, "GET", path)
        if status == 200 and (found := predicate(body)):
            return found
        await asyncio.sleep(0.4)
    raise AssertionError(f"{path}: not so within {timeout} s (last: {status} {str(body)[:400]})")


async def step(http, wo, token, action, status, n, **extra):
    code, body = await call(http, "POST", f"/api/v1/workorders/{wo}/commands", token,
                            {"command_id": f"{wo}-{n}-{action}", "action": action, **extra})
    assert code == 202, body
    await wait_for(http, f"/api/v1/workorders/{wo}", lambda b: b["work_order"]["status"] == status)


def shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"console-analysis-{name}.png")


async def series(page, chart_id: str) -> dict:
    """The chart's categories and each series' data, as ECharts holds them."""
    return await page.evaluate("""id => {
        const o = echarts.getInstanceByDom(document.getElementById(id)).getOption();
        const axis = (o.xAxis[0].type === 'category' ? o.xAxis[0] : o.yAxis[0]).data;
        return {axis, series: Object.fromEntries(o.series.map(s => [s.name,
            s.data.map(d => d !== null && typeof d === 'object' ? d.value : d)]))};
    }""", chart_id)


async def canvases(page) -> list[dict]:
    return await page.locator("#analysis .an-chart canvas").evaluate_all("""els => els.map(c => {
        const r = c.getBoundingClientRect();
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < px.length; i += 4 * 16) if (px[i] > 0) painted++;
        return {chart: c.closest('.an-chart').id, w: r.width, h: r.height, painted};
    })""")


async def whole(page, name: str) -> None:
    sec = page.locator("#analysis")
    await page.screenshot(path=shot(name))
    tall = await sec.evaluate("s => s.scrollHeight + s.getBoundingClientRect().top + 4")
    await page.set_viewport_size({"width": 1440, "height": int(tall)})
    await page.wait_for_timeout(400)
    await page.screenshot(path=shot(name + "-whole"))
    await page.set_viewport_size({"width": 1440, "height": 900})


async def test_analysis_screen_draws_what_the_api_answers(kafka_bootstrap, tmp_path):
    prefix = new_prefix("analysis")
    t = await prepare(kafka_bootstrap, prefix)
    today = datetime.now(CN).date()
    past = history(today)
    await produce(kafka_bootstrap, [(t.workorder_events, c["work_order_id"].encode(), orjson.dumps(c)) for c in past])
    await produce(kafka_bootstrap, [(t.workorder_state, s["work_order_id"].encode(), orjson.dumps(s))
                                    for s in manholes(random.Random(7))])
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path).start()
    base = f"http://127.0.0.1:{worker.port}"
    try:
        async with aiohttp.ClientSession(base) as http, async_playwright() as pw:
            # Today through the pipeline: 2 waterlogging and 1 garbage in 370306, 1 waterlogging elsewhere.
            city = Config().city_map
            other = next(g for g in city.grid_codes if not g.startswith("370306"))
            p = city.grid_polygon(other).representative_point()
            sent = [("R-A-w1", "waterlogging", *UNDERPASS.offset(10, -10)),
                    ("R-A-w2", "waterlogging", *EAST_DIP.offset(20, 20)),
                    ("R-A-w3", "waterlogging", p.x, p.y),
                    ("R-A-g1", "garbage_overflow", *RESTAURANT.offset(30, 0))]
            now = time.time()
            await produce(kafka_bootstrap, [(t.reports, b"GM-0107", orjson.dumps(
                {"report_id": rid, "reporter_id": "GM-0107", "category": cat, "description": "上报", "ts": iso(now - 30 + i),
                 "lon": lon, "lat": lat})) for i, (rid, cat, lon, lat) in enumerate(sent)])
            reports = {rid for rid, *_ in sent}

            def of_reports(b):
                found = {e.get("report_id"): o for o in b["items"] for e in o["events"] if e.get("report_id") in reports}
                return len(found) == 4 and found
            by_report = await wait_for(http, "/api/v1/workorders?limit=200", of_reports)
            assert len({o["work_order_id"] for o in by_report.values()}) == 4      # four orders, none fused
            g1, w2 = by_report["R-A-g1"]["work_order_id"], by_report["R-A-w2"]["work_order_id"]
            await step(http, g1, CITY, "accept", "accepted", 1)
            await step(http, g1, CITY, "handle", "handled", 2, note="已清运")
            await step(http, g1, OPERATOR, "verify", "closed", 3)
            await step(http, w2, WATER, "return", "registered", 1, note="非本部门职责 not ours")

            first = today - timedelta(days=29)
            windows = f"/api/v1/analytics/windows?granularity=day&from={first}T00:00:00%2B08:00" \
                      f"&to={today + timedelta(days=1)}T00:00:00%2B08:00"

            def day_sums(b):
                sums: dict[str, dict[str, int]] = {}
                for it in b["items"]:
                    row = sums.setdefault(it["window_start"][:10], {"opened": 0, "closed": 0, "returned": 0})
                    for k in row:
                        row[k] += it[k]
                return sums
            sums = await wait_for(http, windows, lambda b: (
                (s := day_sums(b)).get(str(today)) == {"opened": 4, "closed": 1, "returned": 1} and s))
            assert sums[str(today - timedelta(days=1))] == {"opened": 3, "closed": 1, "returned": 0}
            assert all(sums[str(today - timedelta(weeks=w))]["opened"] == 5 for w in range(1, 5))
            opened_30 = sum(r["opened"] for r in sums.values())
            assert opened_30 == 4 + 3 + 4 * 5
            _, trends = await call(http, "GET", f"/api/v1/analytics/trends?date={today}")
            rows = {(r["category"], r["district"]): r for r in trends["items"]}
            garbage = rows[("garbage_overflow", "370306")]
            assert (garbage["count"], garbage["baseline_mean"], garbage["anomaly"]) == (1, 5.0, True)
            assert rows[("waterlogging", "370306")]["anomaly"] is False
            hotspots = await wait_for(http, "/api/v1/hotspots", lambda b: b["total"] >= 1 and b)
            assert [h["count"] for h in hotspots["hotspots"]] == [5], hotspots
            _, kpis = await call(http, "GET", "/api/v1/kpis")
            health = [r for r in kpis["device_health_by_kind_district"].values() if r["kind"] != "*"]
            assert health

            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                # 1. The operator opens the 研判 tab.
                op = await signed_in(browser, base, OPERATOR, console_errors=True)
                tab = op.locator("[data-testid=tab-analysis]")
                await expect(tab).to_be_visible()
                await tab.click()
                await expect(op).to_have_url(re.compile(r"#/analysis$"))
                await expect(op.locator("[data-testid=analysis]")).to_be_visible()
                await expect(op.locator("#board")).to_be_hidden()
                await expect(tab).to_have_class(re.compile(r"\bactive\b"))
                await expect(op.locator("[data-testid=tab-board]")).not_to_have_class(re.compile(r"\bactive\b"))
                await expect(op.locator("[data-testid=an-status]")).to_contain_text("更新于", timeout=15000)
                await expect(op.locator("[data-testid=an-card-opened] b")).to_have_text(str(opened_30))
                await expect(op.locator("[data-testid=an-card-closed] b")).to_have_text("2")
                await expect(op.locator("[data-testid=an-card-returned] b")).to_have_text("1")
                await expect(op.locator("[data-testid=an-card-anomalies] b")).to_have_text(
                    str(sum(r["anomaly"] for r in trends["items"])))
                await expect(op.locator("[data-testid=an-card-hotspots] b")).to_have_text("1")

                # Opened/closed per day: 30 city days, today last, as the API counts them.
                daily = await series(op, "an-chart-daily")
                assert len(daily["axis"]) == 30 and daily["axis"][-1] == str(today)[5:]
                days = [str(first + timedelta(days=i)) for i in range(30)]
                assert daily["series"]["立案 opened"] == [sums.get(d, {}).get("opened", 0) for d in days]
                assert daily["series"]["结案 closed"] == [sums.get(d, {}).get("closed", 0) for d in days]
                assert daily["series"]["立案 opened"][-2:] == [3, 4]

                # Trends: the garbage row flagged (low against its baseline of 5), in table and chart.
                row = op.locator("[data-testid=an-trends] tr[data-key='garbage_overflow@370306']")
                await expect(row).to_have_class("anomaly")
                await expect(row.locator("[data-field=count]")).to_have_text("1")
                await expect(row.locator("[data-field=baseline]")).to_have_text("5.0")
                await expect(row.locator("[data-field=anomaly]")).to_contain_text("异常 偏低")
                await expect(op.locator("[data-testid=an-trends] tr[data-key='waterlogging@370306'] "
                                        "[data-field=anomaly]")).to_have_text("—")
                shown = await series(op, "an-chart-trends")
                assert shown["series"]["当日 count"][0] == 1                     # the anomaly first
                assert len(trends["items"]) <= 12
                assert sorted(shown["series"]["当日 count"]) == sorted(r["count"] for r in trends["items"])

                # The hotspot: listed, and drawn as heat (three rings and a centre).
                await expect(op.locator("[data-testid=an-hotspot]")).to_have_count(1)
                await expect(op.locator("[data-testid=an-hotspot]")).to_contain_text("×5")
                await expect(op.locator("#an-map path.an-heat")).to_have_count(3)
                await expect(op.locator("#an-map path.an-heat-centre")).to_have_count(1)

                # Device health by kind × district: every row, the API's figures.
                await expect(op.locator("[data-testid=an-devices] tbody tr")).to_have_count(len(health))
                one = health[0]
                cell = op.locator(f"[data-testid=an-devices] tr[data-key='{one['kind']}@{one['district']}']")
                pct = "—" if one["intact_rate"] is None else f"{one['intact_rate'] * 100:.1f}%"
                await expect(cell.locator("[data-field=intact_rate]")).to_have_text(pct)
                bars = await series(op, "an-chart-devices")
                assert len(bars["axis"]) == len(health)
                ordered = sorted(health, key=lambda r: (r["kind"], r["district"]))
                assert bars["series"]["完好率 intact"] == [None if r["intact_rate"] is None
                                                         else round(r["intact_rate"] * 1000) / 10 for r in ordered]
                assert bars["series"]["联网率 networked"] == [None if r["networked_rate"] is None
                                                            else round(r["networked_rate"] * 1000) / 10 for r in ordered]

                drawn = await canvases(op)
                assert {c["chart"] for c in drawn} == {"an-chart-daily", "an-chart-trends", "an-chart-devices"}, drawn
                assert all(c["w"] > 200 and c["h"] > 150 and c["painted"] > 50 for c in drawn), drawn
                assert await op.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                await whole(op, "1-operator")

                # A district filter narrows the windows to it (the other district's order goes).
                await op.select_option("[data-testid=an-district]", "370306")
                await expect(op.locator("[data-testid=an-card-opened] b")).to_have_text(str(opened_30 - 1))

                # Back to the board, and again.
                await op.click("[data-testid=tab-board]")
                await expect(op.locator("#board")).to_be_visible()
                await expect(op.locator("[data-testid=analysis]")).to_be_hidden()
                await expect(op.locator("[data-testid=tab-board]")).to_have_class(re.compile(r"\bactive\b"))
                await expect(tab).not_to_have_class(re.compile(r"\bactive\b"))
                await op.click("[data-testid=tab-kpi]")
                await expect(op.locator("[data-testid=kpi]")).to_be_visible()
                await tab.click()
                await expect(op.locator("[data-testid=analysis]")).to_be_visible()
                await expect(op.locator("[data-testid=kpi]")).to_be_hidden()
                await expect(op.locator("[data-testid=tab-kpi]")).not_to_have_class(re.compile(r"\bactive\b"))
                assert op.errors == [], op.errors

                # 2. Analytics routes answering 404 (a worker before them): 暂无数据 where they feed,
                # the hotspots and device health still drawn.
                gone = await signed_in(browser, base, OPERATOR)
                await gone.route(re.compile(r".*/api/v1/analytics/.*"), lambda route: route.fulfill(
                    status=404, content_type="application/json",
                    body=orjson.dumps({"error": {"reason": "not_found", "detail": "no such route"}})))
                await gone.click("[data-testid=tab-analysis]")
                await expect(gone.locator("#an-chart-daily")).to_contain_text("暂无数据", timeout=15000)
                await expect(gone.locator("#an-chart-daily")).to_contain_text("404")
                await expect(gone.locator("#an-chart-trends")).to_contain_text("暂无数据")
                await expect(gone.locator("[data-testid=an-trends]")).to_contain_text("暂无数据")
                await expect(gone.locator("[data-testid=an-card-opened] b")).to_have_text("—")
                await expect(gone.locator("[data-testid=an-status]")).to_contain_text("2 项暂无数据")
                await expect(gone.locator("[data-testid=an-hotspot]")).to_have_count(1)
                await expect(gone.locator("[data-testid=an-devices] tbody tr")).to_have_count(len(health))
                assert {c["chart"] for c in await canvases(gone)} == {"an-chart-devices"}
                await whole(gone, "2-no-analytics-404")
                assert gone.errors == [], gone.errors

                # 3. A department: no 研判 tab (the routes are the operators').
                dept = await signed_in(browser, base, WATER, "/department")
                await expect(dept.locator("[data-testid=tab-kpi]")).to_be_visible()
                await expect(dept.locator("[data-testid=tab-analysis]")).to_be_hidden()
                assert (await call(http, "GET", "/api/v1/analytics/trends", WATER))[0] == 403
            finally:
                await browser.close()
    finally:
        worker.stop()
