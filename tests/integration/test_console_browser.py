"""The operator console in headless Chromium (Debian's, driven by Playwright) against a
running worker and the real broker: an order appears live, an operator triages and
dispatches an unroutable one and follows it to closure, a department accepts and
handles it.  Screenshots go to test-artifacts/."""

import time

import orjson
import pytest
from playwright.async_api import async_playwright, expect

from citybrain_tools.sample.sites import EAST_DIP
from citybrain_tools.simulate.traffic import iso

from .browser import CHROMIUM, signed_in
from .kafka_helpers import ARTIFACTS, WorkerProcess, new_prefix, prepare, produce

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def console(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("console")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("console")).start()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser, f"http://127.0.0.1:{worker.port}", topics
        finally:
            await browser.close()
            worker.stop()


def shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"console-{name}.png")


async def test_operator_sees_orders_live_triages_and_follows_to_closure(console, kafka_bootstrap):
    browser, base, t = console
    op = await signed_in(browser, base, "demo-operator")
    await expect(op.locator("[data-testid=who]")).to_contain_text("operator")

    # 1. A camera sees ponding: the order appears on the open board without a reload.
    alert = {"alert_id": "VA-C1", "camera_id": "CAM-UP-01", "algorithm": "road_ponding", "confidence": 0.92,
             "ts": iso(time.time() - 20), "snapshot_url": "https://video.example.invalid/VA-C1.jpg"}
    await produce(kafka_bootstrap, [(t.video, b"CAM-UP-01", orjson.dumps(alert))])
    water_row = op.locator("tr[data-wo^='WO-flooding-']")
    await expect(water_row).to_have_count(1, timeout=30000)
    await expect(water_row).to_contain_text("水务 water")
    await op.screenshot(path=shot("1-live-board"))

    # 2. An unroutable report (其他) stays registered: the operator triages and dispatches it.
    lon, lat = EAST_DIP.offset(900, 900)
    report = {"report_id": "R-C-other", "reporter_id": "GM-0931", "category": "other", "description": "不明异味",
              "ts": iso(time.time() - 10), "lon": lon, "lat": lat}
    await produce(kafka_bootstrap, [(t.reports, b"GM-0931", orjson.dumps(report))])
    triage = op.locator("tr[data-wo^='WO-other-']")
    await expect(triage).to_have_count(1, timeout=30000)
    await expect(triage).to_have_attribute("data-status", "registered")
    wo = await triage.get_attribute("data-wo")
    await triage.click()
    await expect(op.locator("[data-testid=detail-title]")).to_contain_text(wo)
    await op.select_option("[data-testid=dispatch-department]", "city_mgmt")
    await op.fill("[data-testid=note]", "异味来源为垃圾站，转城管")
    await op.click("button[data-action=dispatch]")
    await expect(op.locator("[data-testid=detail-status]")).to_contain_text("dispatched", timeout=20000)
    await expect(op.locator("[data-testid=detail-department]")).to_contain_text("city_mgmt")
    await op.screenshot(path=shot("2-triaged"))

    # 3. The department sees only its own orders and accepts, then handles.
    dept = await signed_in(browser, base, "demo-city-mgmt", "/department")
    mine = dept.locator(f"tr[data-wo='{wo}']")
    await expect(mine).to_have_count(1, timeout=20000)
    await expect(dept.locator("tr[data-wo^='WO-flooding-']")).to_have_count(0)    # water's, not theirs
    await mine.click()
    await expect(dept.locator("button[data-action=dispatch]")).to_have_count(0)
    await dept.click("button[data-action=accept]")
    await expect(dept.locator("[data-testid=detail-status]")).to_contain_text("accepted", timeout=20000)
    await dept.fill("[data-testid=note]", "已清运垃圾站，异味消除")
    await dept.click("button[data-action=handle]")
    await expect(dept.locator("[data-testid=detail-status]")).to_contain_text("handled", timeout=20000)
    await dept.screenshot(path=shot("3-department-handled"))

    # 4. The operator sees it handled (live) and verifies: 结案.
    await expect(op.locator(f"tr[data-wo='{wo}']")).to_have_attribute("data-status", "handled", timeout=20000)
    await op.locator(f"tr[data-wo='{wo}']").click()
    await op.click("button[data-action=verify]")
    await expect(op.locator("[data-testid=detail-status]")).to_contain_text("closed", timeout=20000)
    await op.select_option("[data-testid=f-status]", "closed")
    await expect(op.locator(f"tr[data-wo='{wo}']")).to_have_count(1, timeout=10000)
    timeline = op.locator("[data-testid=timeline] li")
    await expect(timeline.filter(has_text="核查结案")).to_have_count(1)
    types = await timeline.evaluate_all("els => els.map(e => e.dataset.type)")
    assert types == ["created", "dispatched", "accepted", "handled", "verified"], types
    await op.screenshot(path=shot("4-closed"))
    # 回访: the reporter of the closed order is now on the follow-up worklist, with its due time.
    await op.click("[data-testid=queue-followup]")
    await expect(op.locator(f"tr[data-wo='{wo}']")).to_have_count(1, timeout=10000)
    await expect(op.locator(f"tr[data-wo='{wo}'] [data-testid=clock]")).to_contain_text("回访")
    await op.screenshot(path=shot("4b-followup"))
    await op.click("[data-testid=queue-all]")
    assert op.errors == [] and dept.errors == []


async def test_wrong_token_is_refused_in_the_console(console):
    browser, base, _ = console
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(base + "/")
    await page.fill("[data-testid=token]", "not-a-token")
    await page.click("[data-testid=sign-in]")
    await expect(page.locator("#login-error")).to_contain_text("401", timeout=10000)
    await expect(page.locator("#app")).to_be_hidden()


async def test_an_assisting_department_works_its_part_and_the_operator_raises_an_emergency(console, kafka_bootstrap):
    browser, base, t = console
    report = {"report_id": "R-C-gas", "reporter_id": "GM-0107", "category": "gas_leak",
              "description": "闻到燃气味 smell of gas", "ts": iso(time.time() - 10), "lon": 117.8625, "lat": 36.7935}
    await produce(kafka_bootstrap, [(t.reports, b"GM-0107", orjson.dumps(report))])

    # 1. Fire assists the gas utility: its view lists the order, it accepts and handles its part.
    fire = await signed_in(browser, base, "demo-fire", "/department")
    row = fire.locator("tr[data-wo^='WO-gas_leak-']")
    await expect(row).to_have_count(1, timeout=30000)
    await expect(row.locator("[data-testid=row-assists]")).to_contain_text("fire")
    wo = await row.get_attribute("data-wo")
    await row.click()
    part = fire.locator("[data-testid=detail-assists] tr[data-part=fire]")
    await expect(part).to_have_attribute("data-part-status", "dispatched", timeout=20000)
    await expect(fire.locator("button[data-action=extend]")).to_have_count(0)     # the lead's, not a part's
    await fire.click("button[data-action=accept]")
    await expect(part).to_have_attribute("data-part-status", "accepted", timeout=20000)
    await expect(fire.locator("[data-testid=detail-status]")).to_contain_text("dispatched")   # the lead's own state
    await fire.fill("[data-testid=note]", "已警戒疏散 cordoned, evacuated")
    await fire.click("button[data-action=handle]")
    await expect(part).to_have_attribute("data-part-status", "handled", timeout=20000)
    await expect(fire.locator("[data-testid=timeline] li[data-type=assist_handled]")).to_have_count(1)
    await fire.screenshot(path=shot("5-assist-handled"))

    # 2. The operator sees lead and assists, raises the emergency level: emergency management
    #    joins, and the board filtered by emergency level shows the order.
    op = await signed_in(browser, base, "demo-operator")
    await expect(op.locator("[data-testid=devices]")).to_contain_text("设备完好率", timeout=15000)
    await op.locator(f"tr[data-wo='{wo}']").click()
    await expect(op.locator("[data-testid=detail-assists] tr[data-part=police]")).to_have_attribute(
        "data-part-status", "dispatched")
    await op.select_option("[data-testid=emergency-select]", "III")
    await op.click("button[data-action=set_emergency_level]")
    await expect(op.locator("[data-testid=detail-emergency]")).to_contain_text("III", timeout=20000)
    await expect(op.locator("[data-testid=detail-assists] tr[data-part=emergency]")).to_have_count(1)
    await op.select_option("[data-testid=f-emergency]", "I,II,III,IV")
    await expect(op.locator("[data-testid=rows] tr")).to_have_count(1, timeout=10000)
    await expect(op.locator(f"tr[data-wo='{wo}'] [data-testid=emergency-level]")).to_contain_text("Ⅲ级")
    await op.screenshot(path=shot("6-emergency"))
    assert fire.errors == [] and op.errors == []


async def test_the_operator_narrows_the_board_to_one_district_of_the_city(console, kafka_bootstrap):
    """A city of several districts (DESIGN §13): one worker serves them all; the board's
    district filter shows one district's orders, its streets only, and the map its outline."""
    browser, base, t = console
    now = time.time()
    reports = [  # a pothole in 张店区 (370303) and one in 周村区 (370306)
        {"report_id": "R-D-zd", "reporter_id": "GM-0303", "category": "road_damage", "description": "路面坑洼 张店",
         "ts": iso(now - 10), "lon": 118.02, "lat": 36.80},
        {"report_id": "R-D-zc", "reporter_id": "GM-0306", "category": "road_damage", "description": "路面坑洼 周村",
         "ts": iso(now - 10), "lon": 117.80, "lat": 36.74},
    ]
    await produce(kafka_bootstrap, [(t.reports, r["reporter_id"].encode(), orjson.dumps(r)) for r in reports])
    op = await signed_in(browser, base, "demo-operator")
    potholes = op.locator("[data-testid=rows] tr[data-wo^='WO-road_damage-']")
    await expect(potholes).to_have_count(2, timeout=30000)
    await op.select_option("[data-testid=f-district]", "370303")
    await expect(potholes).to_have_count(1, timeout=10000)
    await expect(potholes).to_contain_text("张店区")
    streets = await op.locator("[data-testid=f-street] option").all_inner_texts()
    assert streets[1:] and all("370303" in s for s in streets[1:]), streets
    await potholes.click()
    await expect(op.locator("[data-testid=detail-where]")).to_contain_text("张店区")
    await op.select_option("[data-testid=f-district]", "")
    await expect(potholes).to_have_count(2, timeout=10000)
    await op.screenshot(path=shot("7-districts"))
    assert op.errors == []


async def test_the_operator_merges_a_duplicate_and_splits_an_order(console, kafka_bootstrap):
    """Issue 35 item 4 from the console: a duplicate merged into its original (a reason and a
    second click), a finding split off into a new order; each side links to the other."""
    browser, base, t = console
    now = time.time()
    a, b = EAST_DIP.offset(-1500, 1500), EAST_DIP.offset(-1500, -1500)   # two spots 3 km apart: two orders
    reports = [{"report_id": rid, "reporter_id": rep, "category": "road_damage", "description": desc,
                "ts": iso(now - 10), "lon": lon, "lat": lat}
               for rid, rep, desc, (lon, lat) in (("R-M-orig", "GM-1001", "井盖缺失 原单", a),
                                                  ("R-M-dup", "GM-1002", "井盖缺失 重复", b),
                                                  ("R-M-twin", "GM-1003", "井盖缺失 同点", a))]
    await produce(kafka_bootstrap, [(t.reports, r["reporter_id"].encode(), orjson.dumps(r)) for r in reports])
    op = await signed_in(browser, base, "demo-operator")
    await op.fill("[data-testid=f-q]", "井盖缺失")
    rows = op.locator("[data-testid=rows] tr")
    await expect(rows).to_have_count(2, timeout=30000)
    original = await op.locator("[data-testid=rows] tr", has_text="R-M").count()  # noqa: F841 - rows carry ids only
    orders = await rows.evaluate_all("els => els.map(e => e.dataset.wo)")
    # Which row is which: the original holds two reports (R-M-orig and R-M-twin fused).
    details = {}
    for wo in orders:
        await op.goto(f"{base}/#/orders/{wo}")
        await expect(op.locator("[data-testid=detail-title]")).to_contain_text(wo)
        details[wo] = await op.locator("[data-testid=detail]").inner_text()
    orig = next(wo for wo, text in details.items() if "2 条事件" in text)
    dup = next(wo for wo in orders if wo != orig)

    # Merge the duplicate: refused without a reason, then confirmed with a second click.
    await op.goto(f"{base}/#/orders/{dup}")
    await expect(op.locator("[data-testid=detail-title]")).to_contain_text(dup)
    await op.fill("[data-testid=merge-into]", orig)
    await op.click("button[data-action=merge]")
    await expect(op.locator("#flash")).to_contain_text("须填写理由")
    await op.fill("[data-testid=note]", "同一井盖，市民重复上报")
    await op.click("button[data-action=merge]")
    await expect(op.locator("button[data-action=merge]")).to_contain_text("确认")
    await op.click("button[data-action=merge]")
    await expect(op.locator("[data-testid=detail-status]")).to_contain_text("merged", timeout=20000)
    await expect(op.locator("[data-testid=detail-related]")).to_contain_text(orig)
    await op.screenshot(path=shot("8-merged"))

    # The original now carries the duplicate's report; split one finding off it.
    await op.goto(f"{base}/#/orders/{orig}")
    await expect(op.locator("[data-testid=detail-related]")).to_contain_text(dup, timeout=20000)
    await op.select_option("[data-testid=split-evidence]", ["R-M-twin"])
    await op.fill("[data-testid=note]", "同点另一处破损，另立一单")
    await op.click("button[data-action=split]")
    split_into = op.locator("[data-testid=detail-related]", has_text="WO-")
    await expect(op.locator("[data-testid=detail]")).to_contain_text("拆出 split into", timeout=20000)
    await op.screenshot(path=shot("9-split"))
    new = (await split_into.last.inner_text()).strip()
    await op.goto(f"{base}/#/orders/{new}")
    await expect(op.locator("[data-testid=detail]")).to_contain_text("拆分自 split from", timeout=20000)
    await expect(op.locator("[data-testid=detail]")).to_contain_text(orig)
    assert op.errors == []


async def test_an_operator_files_a_phone_call_by_address_with_a_photo(console, tmp_path):
    """立案 from the console (issue 35 item 3): the address is looked up in the gazetteer and
    placed on the map, the category's limits are shown, a photo goes to the media store and
    shows as a thumbnail on the order, the caller's address is kept and their number masked."""
    browser, base, _ = console
    op = await signed_in(browser, base, "demo-operator")
    await op.click("[data-testid=new-case]")
    await op.fill("[data-testid=c-address]", "周村区青年路88号门口")
    await expect(op.locator("[data-testid=c-place]").first).to_be_visible(timeout=10000)
    await expect(op.locator("[data-testid=c-where]")).to_contain_text("青年路")
    await op.select_option("[data-testid=c-category]", "waterlogging")
    await expect(op.locator("[data-testid=c-limits]")).to_contain_text("时限")
    await op.fill("[data-testid=c-description]", "市民来电：门口积水约20厘米")
    await op.fill("[data-testid=c-phone]", "13812345678")
    photo = tmp_path / "ponding.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    await op.set_input_files("[data-testid=c-photos]", str(photo))
    await expect(op.locator("[data-testid=c-thumb]")).to_have_count(1, timeout=10000)
    await op.screenshot(path=shot("10-case-form"))
    await op.click("[data-testid=c-submit]")
    link = op.locator("[data-testid=c-order]")
    await expect(link).to_have_count(1, timeout=30000)
    await link.click()
    await expect(op.locator("[data-testid=detail-address]")).to_contain_text("青年路88号", timeout=15000)
    await expect(op.locator("[data-testid=detail-contact]")).to_contain_text("138****5678")
    assert "13812345678" not in await op.locator("[data-testid=detail]").inner_text()
    await expect(op.locator("[data-testid=evidence-thumb]")).to_have_count(1, timeout=10000)
    await op.screenshot(path=shot("11-case-filed"))
    # An address found, then changed to one nothing matches: the old point must not file it.
    await op.click("[data-testid=new-case]")
    await op.fill("[data-testid=c-address]", "周村古商城")
    await expect(op.locator("[data-testid=c-where]")).to_contain_text("周村古商城", timeout=10000)
    await op.fill("[data-testid=c-address]", "asdfqwer火星基地999")
    await expect(op.locator("[data-testid=c-where]")).to_contain_text("未定")
    await op.click("[data-testid=c-submit]")
    await expect(op.locator("[data-testid=c-result]")).to_contain_text("needs_location", timeout=10000)
    assert op.errors == []


async def test_a_console_left_open_says_the_worker_has_stopped(kafka_bootstrap, tmp_path):
    """After the demo (or any stop), an open console says the worker stopped — not a silent
    green "live" nor a bare network error — and comes back by itself when it returns."""
    prefix = new_prefix("console-stop")
    await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path).start()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            op = await signed_in(browser, f"http://127.0.0.1:{worker.port}", "demo-operator")
            worker.stop()                                    # SIGTERM, as the demo's end does
            live = op.locator("[data-testid=live]")
            await expect(live).to_have_class("live off", timeout=20000)
            await expect(live).to_contain_text("工作进程已停止", timeout=20000)
            await op.screenshot(path=shot("12-worker-stopped"))
            worker.start()
            await expect(live).to_have_class("live on", timeout=60000)
            assert op.errors == []
        finally:
            await browser.close()
            worker.stop()
