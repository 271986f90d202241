"""The console's 综合评价 KPI screen in headless Chromium (Debian's, driven by Playwright)
against a running worker and the real broker: reports become orders in two districts,
the departments work them through the API (one returned, one visited), the evaluation
shows them closed, and the KPI tab renders the month's tables and ECharts canvases — for
the operator (every department, district and category), a department (its own row only) and a
grid member (no tab).  Screenshots go to test-artifacts/console-kpi-*.png."""

import asyncio
import re
import time

import aiohttp
import orjson
import pytest
from playwright.async_api import async_playwright, expect

from citybrain.config import Config
from citybrain_tools.sample.sites import EAST_DIP, RESTAURANT, UNDERPASS
from citybrain_tools.simulate.traffic import iso

from .browser import CHROMIUM
from .browser import signed_in as browser_signed_in
from .kafka_helpers import ARTIFACTS, WorkerProcess, new_prefix, prepare, produce

pytestmark = pytest.mark.integration
OPERATOR, WATER, CITY, GRID = "demo-operator", "demo-water", "demo-city-mgmt", "demo-grid-0107"


@pytest.fixture(scope="module")
async def console(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("kpi")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("kpi")).start()
    base = f"http://127.0.0.1:{worker.port}"
    async with async_playwright() as pw, aiohttp.ClientSession(base) as http:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser, base, http, topics
        finally:
            await browser.close()
            worker.stop()


async def call(http, method, path, token, body=None):
    data = orjson.dumps(body) if body is not None else None
    async with http.request(method, path, headers={"Authorization": f"Bearer {token}"}, data=data) as r:
        return r.status, await r.json(content_type=None)


async def wait_for(http, path, token, predicate, timeout=45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = await call(http, "GET", path, token)
        if status == 200 and (found := predicate(body)):
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"{path}: not so within {timeout} s (last: {status} {str(body)[:400]})")


async def order_of(http, report_id):
    return await wait_for(http, "/api/v1/workorders?status=registered,dispatched,accepted,handled,closed&limit=500",
                          OPERATOR, lambda b: next((o for o in b["items"]
                                                    if any(e.get("report_id") == report_id for e in o["events"])), None))


async def step(http, wo, token, action, status, n, **extra):
    """One command, then wait until the order shows the status it leads to."""
    code, body = await call(http, "POST", f"/api/v1/workorders/{wo}/commands", token,
                            {"command_id": f"{wo}-{n}-{action}", "action": action, **extra})
    assert code == 202, body
    await wait_for(http, f"/api/v1/workorders/{wo}", OPERATOR,
                   lambda b: b["work_order"]["status"] == status and b["work_order"])


def other_district_point() -> tuple[float, float, str]:
    """A point inside a grid of a district other than the sample sites' (370306)."""
    city = Config().city_map
    code = next(g for g in city.grid_codes if not g.startswith("370306"))
    p = city.grid_polygon(code).representative_point()
    return p.x, p.y, code[:6]


async def signed_in(browser, base, token, path="/"):
    return await browser_signed_in(browser, base, token, path, console_errors=True)


def shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"console-kpi-{name}.png")


async def screenshots(page, name: str) -> None:
    """The screen as an operator sees it (900 px: the KPI section scrolls, the page does
    not), scrolled to its end, and whole (a viewport as tall as the section)."""
    kpi = page.locator("#kpi")
    await page.screenshot(path=shot(name))
    assert await kpi.evaluate("k => k.scrollHeight > k.clientHeight")                 # it scrolls
    await kpi.evaluate("k => k.scrollTo(0, k.scrollHeight)")
    await expect(page.locator("#kpi-chart-devices canvas")).to_be_in_viewport()
    await page.screenshot(path=shot(name + "-end"))
    await kpi.evaluate("k => k.scrollTo(0, 0)")
    tall = await page.evaluate("document.querySelector('#kpi').scrollHeight + document.querySelector('#kpi')"
                               ".getBoundingClientRect().top + 4")
    await page.set_viewport_size({"width": 1440, "height": int(tall)})
    await page.wait_for_timeout(300)
    await page.screenshot(path=shot(name + "-whole"))
    await page.set_viewport_size({"width": 1440, "height": 900})


async def canvases(page) -> list[dict]:
    """Every chart's canvas on the KPI screen, with its size and whether anything is drawn on it."""
    return await page.locator("#kpi .kpi-chart canvas").evaluate_all("""els => els.map(c => {
        const r = c.getBoundingClientRect();
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < px.length; i += 4 * 16) if (px[i] > 0) painted++;
        return {chart: c.closest('.kpi-chart').id, w: r.width, h: r.height, painted};
    })""")


async def test_kpi_screen_shows_the_months_evaluation_with_charts(console, kafka_bootstrap):
    browser, base, http, t = console
    lon2, lat2, district2 = other_district_point()
    sent = [("R-K-w1", "waterlogging", "下穿通道积水", *UNDERPASS.offset(10, -10)),
            ("R-K-w2", "waterlogging", "低洼路段积水", *EAST_DIP.offset(20, 20)),
            ("R-K-w3", "waterlogging", "路面积水", lon2, lat2),
            ("R-K-g1", "garbage_overflow", "垃圾桶满溢", *RESTAURANT.offset(30, 0))]
    now = time.time()
    await produce(kafka_bootstrap, [(t.reports, b"GM-0107", orjson.dumps(
        {"report_id": rid, "reporter_id": "GM-0107", "category": cat, "description": text, "ts": iso(now - 30 + i),
         "lon": lon, "lat": lat})) for i, (rid, cat, text, lon, lat) in enumerate(sent)])
    w1, w2, w3, g1 = [await order_of(http, rid) for rid, *_ in sent]
    assert (w1["department"], w2["department"], w3["department"], g1["department"]) == \
        ("water", "water", "water", "city_mgmt")
    assert w3["location"]["district_code"] == district2

    # Water closes two (one in the other district) and returns one; city management closes
    # one whose reporter was called back satisfied.
    for o in (w1, w3):
        wo = o["work_order_id"]
        await step(http, wo, WATER, "accept", "accepted", 1)
        await step(http, wo, WATER, "handle", "handled", 2, note="已排水")
        await step(http, wo, OPERATOR, "verify", "closed", 3, note="核查通过")
    await step(http, w2["work_order_id"], WATER, "return", "registered", 1, note="非本部门职责 not ours")
    wo = g1["work_order_id"]
    await step(http, wo, CITY, "accept", "accepted", 1)
    await step(http, wo, CITY, "handle", "handled", 2, note="已清运")
    await step(http, wo, OPERATOR, "visit", "handled", 3, satisfaction="satisfied", report_id="R-K-g1", note="满意")
    await step(http, wo, OPERATOR, "verify", "closed", 4)

    figures = await wait_for(http, "/api/v1/kpis", OPERATOR, lambda b: (
        b["figures"].get("water", {}).get("closed") == 2 and b["figures"].get("city_mgmt", {}).get("closed") == 1
        and b["figures"]["city_mgmt"]["visits"] == 1 and b["figures"]["water"]["returns"] == 1 and b))
    assert figures["figures"]["water"]["return_rate"] == round(1 / 3, 4)
    assert figures["by_district"][district2]["closed"] == 1
    assert (figures["by_category"]["waterlogging"]["closed"], figures["by_category"]["garbage_overflow"]["closed"],
            figures["by_category"]["waterlogging"]["returns"]) == (2, 1, 1)

    # 1. The operator: every department and district, six charts drawn.
    op = await signed_in(browser, base, OPERATOR)
    tab = op.locator("[data-testid=tab-kpi]")
    await expect(tab).to_be_visible()
    await expect(op.locator("header [data-testid=views]")).to_be_visible()     # the tabs sit in the header
    await tab.click()
    await expect(op).to_have_url(re.compile(r"#/kpi$"))      # the board's filters may sit in ?…
    kpi = op.locator("[data-testid=kpi]")
    await expect(kpi).to_be_visible()
    await expect(op.locator("#board")).to_be_hidden()
    water = op.locator("[data-testid=kpi-departments] tr[data-key=water]")
    await expect(water).to_contain_text("水务", timeout=15000)
    await expect(water.locator("[data-field=closed]")).to_have_text("2")
    await expect(water.locator("[data-field=return_rate]")).to_have_text("33.3%")
    await expect(water.locator("[data-field=on_time_closure_rate]")).to_have_text("100.0%")
    await expect(water.locator("[data-field=satisfaction_rate]")).to_have_text("—")     # no visits: none, not 0%
    city = op.locator("[data-testid=kpi-departments] tr[data-key=city_mgmt]")
    await expect(city.locator("[data-field=closed]")).to_have_text("1")
    await expect(city.locator("[data-field=satisfaction_rate]")).to_have_text("100.0%")
    await expect(op.locator("[data-testid=kpi-departments] tr[data-key='*'] [data-field=closed]")).to_have_text("3")
    await expect(op.locator(f"[data-testid=kpi-districts] tr[data-key='{district2}'] [data-field=closed]")).to_have_text("1")
    await expect(op.locator("[data-testid=kpi-card-closed] b")).to_have_text("3")
    flooded = op.locator("[data-testid=kpi-categories] tr[data-key=waterlogging]")
    await expect(flooded.locator("[data-field=closed]")).to_have_text("2")
    await expect(flooded.locator("[data-field=return_rate]")).to_have_text("33.3%")
    await expect(op.locator("[data-testid=kpi-categories] tr[data-key=garbage_overflow]")).to_contain_text("100.0%")
    await expect(op.locator("[data-testid=kpi-devices] tr[data-key='*'] [data-field=intact_rate]")).to_contain_text("%")
    await expect(op.locator("[data-testid=kpi-status]")).to_contain_text("更新于")
    # The table stays within the screen: no sideways scrolling of the page or the table.
    assert await op.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert await op.locator("[data-testid=kpi-departments]").evaluate(
        "t => t.parentElement.scrollWidth <= t.parentElement.clientWidth + 1")
    await expect(op.locator("#kpi .kpi-chart canvas").first).to_be_visible()
    await op.wait_for_function("document.querySelectorAll('#kpi .kpi-chart canvas').length >= 9")
    await op.wait_for_timeout(300)
    drawn = await canvases(op)
    assert {c["chart"] for c in drawn} >= {"kpi-chart-dept-closed", "kpi-chart-dept-rates", "kpi-chart-dept-hours",
                                          "kpi-chart-district", "kpi-chart-district-hours", "kpi-chart-category",
                                          "kpi-chart-category-hours", "kpi-chart-trend", "kpi-chart-devices"}, drawn
    assert all(c["w"] > 100 and c["h"] > 100 and c["painted"] > 50 for c in drawn), drawn
    await screenshots(op, "1-operator")

    # An earlier month: nothing closed then; rates are — and the charts say so.
    months = await op.locator("[data-testid=kpi-period] option").evaluate_all("os => os.map(o => o.value)")
    assert len(months) == 13 and months[0] == figures["period"]
    await op.select_option("[data-testid=kpi-period]", months[1])
    await expect(water).to_have_count(0, timeout=10000)
    await expect(op.locator("[data-testid=kpi-departments]")).to_contain_text("暂无评价数据")
    await expect(op.locator("[data-testid=kpi-card-on_time_closure_rate] b")).to_have_text("—")
    await op.select_option("[data-testid=kpi-period]", months[0])
    await expect(water.locator("[data-field=closed]")).to_have_text("2", timeout=10000)

    # Back to the board: the tab, and a deep link to an order from the KPI screen.
    await op.click("[data-testid=tab-board]")
    await expect(op.locator("#board")).to_be_visible()
    await expect(kpi).to_be_hidden()
    await tab.click()
    await expect(kpi).to_be_visible()
    await op.evaluate(f"location.hash = '#/orders/{w1['work_order_id']}'")
    await expect(op.locator("#board")).to_be_visible()
    await expect(op.locator("[data-testid=detail-title]")).to_contain_text(w1["work_order_id"])
    await expect(op.locator("[data-testid=tab-board]")).to_have_class("active")

    # 2. A department: its own row only, no districts.
    dept = await signed_in(browser, base, WATER, "/department")
    await dept.click("[data-testid=tab-kpi]")
    rows = dept.locator("[data-testid=kpi-departments] tbody tr")
    await expect(rows).to_have_count(1, timeout=15000)
    await expect(rows.first).to_have_attribute("data-key", "water")
    await expect(rows.first.locator("[data-field=closed]")).to_have_text("2")
    await expect(dept.locator("#kpi-district-block")).to_be_hidden()
    await expect(dept.locator("#kpi-category-block")).to_be_hidden()
    assert (await call(http, "GET", "/api/v1/kpis", WATER))[1]["by_category"] == {}
    await expect(dept.locator("[data-testid=kpi-card-closed] b")).to_have_text("2")
    await dept.wait_for_function("document.querySelectorAll('#kpi .kpi-chart canvas').length >= 5")
    drawn = await canvases(dept)
    assert drawn and all(c["w"] > 100 and c["h"] > 100 and c["painted"] > 50 for c in drawn), drawn
    await screenshots(dept, "2-department")

    # 3. A grid member: no KPI tab (the API answers it 403).
    grid = await signed_in(browser, base, GRID)
    await expect(grid.locator("[data-testid=views]")).to_be_hidden()
    await expect(grid.locator("[data-testid=kpi]")).to_be_hidden()
    assert (await call(http, "GET", "/api/v1/kpis", GRID))[0] == 403

    assert op.errors == [] and dept.errors == [] and grid.errors == [], (op.errors, dept.errors, grid.errors)
