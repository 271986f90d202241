"""Photos for cases through the real broker and two workers (DESIGN §14 "Media"): an upload
to one worker is served by the other (the compacted media topic is the only shared store),
only images are taken, and a photo is read only by a token that may see an order carrying
it (or operators and the uploader)."""

import asyncio
import hashlib
import time

import aiohttp
import orjson
import pytest

from citybrain_tools.sample.sites import UNDERPASS

from .kafka_helpers import WorkerProcess, new_prefix, prepare

pytestmark = pytest.mark.integration
OPERATOR, GRID, WATER, FIRE = "demo-operator", "demo-grid-0107", "demo-water", "demo-fire"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


async def fetch(http, base, path, token, **kw):
    async with http.request(kw.pop("method", "GET"), base + path, headers={"Authorization": f"Bearer {token}",
                                                                         **kw.pop("headers", {})}, **kw) as r:
        body = await r.read()
        return r.status, body, r.headers


async def test_an_upload_to_one_worker_is_served_by_another_and_only_in_scope(kafka_bootstrap, tmp_path):
    prefix = new_prefix("media")
    topics = await prepare(kafka_bootstrap, prefix)
    a = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "a", name="a").start()
    b = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "b", name="b").start()
    base_a, base_b = f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}"
    try:
        async with aiohttp.ClientSession() as http:
            # Not images, too large, lying about their type: refused with the field.
            status, body, _ = await fetch(http, base_a, "/api/v1/media", GRID, method="POST", data=b"<svg/>",
                                          headers={"Content-Type": "image/png"})
            assert status == 415 and orjson.loads(body)["error"]["field"] == "body"
            status, body, _ = await fetch(http, base_a, "/api/v1/media", GRID, method="POST",
                                          data=b"\xff\xd8\xff" + b"\x00" * (5 * 1024 * 1024 + 10))
            assert status == 413
            status, body, _ = await fetch(http, base_a, "/api/v1/media", GRID, method="POST", data=PNG,
                                          headers={"Content-Type": "image/jpeg"})
            assert status == 415 and orjson.loads(body)["error"]["field"] == "Content-Type"
            assert (await fetch(http, base_a, "/api/v1/media", WATER, method="POST", data=PNG))[0] == 403

            status, body, _ = await fetch(http, base_a, "/api/v1/media", GRID, method="POST", data=PNG,
                                          headers={"Content-Type": "image/png"})
            assert status == 201, body
            up = orjson.loads(body)
            assert up["sha256"] == hashlib.sha256(PNG).hexdigest() and up["url"].endswith(".png")
            # The other worker has it from the topic within moments; the operator reads it there.
            deadline, status = time.monotonic() + 20, 0
            while time.monotonic() < deadline:
                status, got, headers = await fetch(http, base_b, up["url"], OPERATOR)
                if status == 200:
                    break
                await asyncio.sleep(0.3)
            assert status == 200 and got == PNG and headers["Content-Type"] == "image/png"
            # A department sees it only once an order of its own carries it.
            assert (await fetch(http, base_b, up["url"], WATER))[0] == 403
            lon, lat = UNDERPASS.offset(20, 20)
            report = {"report_id": "R-MEDIA-1", "category": "waterlogging", "description": "积水 附照片",
                      "lon": lon, "lat": lat, "photos": [up["url"]]}
            status, body, _ = await fetch(http, base_a, "/api/v1/reports", GRID, method="POST",
                                          data=orjson.dumps(report))
            assert status == 202, body
            deadline, status = time.monotonic() + 30, 0
            while time.monotonic() < deadline:
                status, got, _ = await fetch(http, base_b, up["url"], WATER)
                if status == 200:
                    break
                await asyncio.sleep(0.3)
            assert status == 200 and got == PNG
            assert (await fetch(http, base_b, up["url"], FIRE))[0] == 403          # not fire's order
            assert (await fetch(http, base_b, "/api/v1/media/" + "0" * 64 + ".png", OPERATOR))[0] == 404
            assert (await fetch(http, base_b, "/api/v1/media/../../etc/passwd", OPERATOR))[0] == 404
            assert (await fetch(http, base_b, up["url"], "nope"))[0] == 401
        print(f"\n  media: {len(PNG):,} bytes uploaded to worker a, served by worker b; topic {topics.media}")
    finally:
        a.stop()
        b.stop()
