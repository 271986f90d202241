"""高发 through real Kafka (issue 37 item 2): a month of orders on workorders.state with
planted repeats — three spots where manholes keep going missing — and sparse background
makes exactly those three hotspots, in the API, on analytics.hotspots and on the console's map."""

import math
import random
import shutil
import time
from datetime import UTC, datetime
from functools import cache

import orjson
import pytest
from playwright.async_api import async_playwright, expect

from citybrain.config import Config
from citybrain.domain.geo import distance_m
from citybrain.kafka.clients import kafka_producer
from citybrain.paths import PROJECT_ROOT
from citybrain_tools.bench.console import get

from .kafka_helpers import ARTIFACTS, WorkerProcess, consume, new_prefix, prepare

pytestmark = pytest.mark.integration
SITES = [(117.8010, 36.7420), (117.8480, 36.8010), (117.9500, 36.7030)]


@cache
def city_map():
    """Loaded once: each Config builds its map afresh (~0.05 s of shapely idle, 0.5 s on a
    loaded box), and this file places ~600 points — it was most of the test's minutes."""
    return Config().city_map


def snapshot(i, category, lon, lat, created, status="closed"):
    place = city_map().locate(lon, lat)
    iso = datetime.fromtimestamp(created, UTC).isoformat()
    snap = {"work_order_id": f"WO-{category}-hs{i:05d}", "version": 3, "status": status, "category": category,
            "category_name": category, "priority": "normal", "department": "city_mgmt", "created_at": iso,
            "due_at": iso, "description": "", "events": [], "finders": [f"R-{i}"],
            "location": {"lon": lon, "lat": lat, "district_code": place.district_code,
                         "street_code": place.street_code, "community_code": place.community_code,
                         "grid_code": place.grid_code}}
    return {"work_order_id": snap["work_order_id"], "version": 3, "at": iso, "snapshot": snap, "steps": [],
            "steps_omitted": 0}


def month(rng):
    now = time.time()
    out, i = [], 0
    for lon, lat in SITES:                        # 5 missing manholes within 30 m, over the month
        for _ in range(5):
            b, m = rng.uniform(0, 2 * math.pi), rng.uniform(0, 30)
            out.append(snapshot(i, "manhole_cover", lon + m * math.sin(b) / 89_000, lat + m * math.cos(b) / 111_195,
                                now - rng.uniform(0, 28) * 86400))
            i += 1
    while i < 15 + 300:                          # background, anywhere in the city
        lon, lat = 117.70 + rng.uniform(0, 0.40), 36.60 + rng.uniform(0, 0.30)
        if city_map().locate(lon, lat) is None:
            continue
        out.append(snapshot(i, rng.choice(["manhole_cover", "noise", "road_damage"]), lon, lat,
                            now - rng.uniform(0, 28) * 86400))
        i += 1
    return out


async def test_planted_repeats_make_exactly_their_hotspots(kafka_bootstrap, tmp_path):
    prefix = new_prefix("hotspots")
    topics = await prepare(kafka_bootstrap, prefix)
    records = month(random.Random(5))
    producer = kafka_producer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for r in records:
            await producer.send(topics.workorder_state, orjson.dumps(r), key=r["work_order_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    config = tmp_path / "config"                 # hotspots found again every 2 s, not every minute
    shutil.copytree(PROJECT_ROOT / "config", config)
    toml = config / "analytics.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("hotspot_seconds = 60", "hotspot_seconds = 2"),
                    encoding="utf-8")
    assert Config(config).analytics.windows.hotspot_seconds == 2
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, config_dir=config).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:            # the history store has read the topic
            _, h = get(worker.port, "/api/v1/history?limit=1")
            if h["complete"] and h["total"] == len(records):
                break
            time.sleep(0.5)
        _, body = get(worker.port, "/api/v1/hotspots")
        found = body["hotspots"]
        print(f"\n  hotspots: {len(records)} orders, {body['total']} hotspots from the {body['source']} "
              f"in {body['took_ms']} ms")
        assert body["source"] == "history" and len(found) == 3, found
        for h in found:
            assert h["category"] == "manhole_cover" and h["count"] == 5
            assert min(distance_m(h["lon"], h["lat"], lon, lat) for lon, lat in SITES) <= 30
        _, one = get(worker.port, "/api/v1/hotspots?category=noise")
        assert one["total"] == 0
        # analytics.hotspots: the same three, keyed by their ids (category + centre order).
        deadline, held = time.monotonic() + 30, {}
        while time.monotonic() < deadline and len(held) < 3:
            held = {r.key.decode(): orjson.loads(r.value)
                    for r in await consume(kafka_bootstrap, topics.analytics_hotspots, want=3, timeout=3, settle=0.5)}
        assert set(held) == {h["hotspot_id"] for h in found}, held
        for h in found:
            rec = held[h["hotspot_id"]]
            assert rec["centre"]["work_order_id"] == h["work_order_ids"][0] and rec["orders"] == h["work_order_ids"]
            assert (rec["category"], rec["count"], rec["radius"]) == ("manhole_cover", 5, 50)
            assert datetime.fromisoformat(rec["first"]) <= datetime.fromisoformat(rec["last"])
            assert datetime.fromisoformat(rec["first"]) == datetime.fromisoformat(h["first"])
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                               args=["--no-sandbox"])
            page = await (await browser.new_context(viewport={"width": 1600, "height": 900})).new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"http://127.0.0.1:{worker.port}/")
            await page.fill("[data-testid=token]", "demo-operator")
            await page.click("[data-testid=sign-in]")
            await page.get_by_label("高发 hotspots").check()
            await expect(page.locator("[data-testid=hotspot]")).to_have_count(3, timeout=15000)
            await page.locator("[data-testid=hotspot]").first.click()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "console-hotspots.png"))
            await browser.close()
            assert errors == []
    finally:
        worker.stop()
