"""A stage process (worker.console = false) serves its own pages and answers any other with
a JSON 404 that names why — an operator who points a browser at it learns where to go."""

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from citybrain.stream.console import STAGE_PROCESS_PAGES, refer_to_console


async def test_a_stage_process_refers_the_console_elsewhere_and_keeps_its_own_pages():
    app = web.Application()
    for page in STAGE_PROCESS_PAGES:
        app.router.add_get(page, lambda request: web.json_response({"status": "ok"}))
    refer_to_console(app)
    async with TestClient(TestServer(app)) as client:
        for page in ("/metrics", "/healthz", "/readyz"):
            assert (await client.get(page)).status == 200
        for method, path in (("GET", "/"), ("GET", "/api/v1/workorders"), ("POST", "/api/v1/reports")):
            r = await client.request(method, path)
            body = orjson.loads(await r.read())
            assert (r.status, r.content_type, body["error"]["reason"]) == (404, "application/json", "no_console")
            assert path in body["error"]["detail"] and "worker.console" in body["error"]["detail"]
