"""A signed-webhook receiver on 127.0.0.1, as a platform or a person's endpoint would be:
POST /ok checks the HMAC signature (401 if wrong) and keeps the body with the headers
asked for; POST /fail always answers 500 and keeps the id header."""

import contextlib

import orjson
from aiohttp import web

from citybrain.notify.channels import SIGNATURE_HEADER, verify
from citybrain_tools.local_kafka.broker import free_port


@contextlib.asynccontextmanager
async def signed_receiver(secret: str, id_header: str, keep: dict[str, str], down: str = "receiver down"):
    """Yields (base URL, accepted bodies, failed ids); ``keep``: field name → header,
    added to each accepted body; ``down``: the text of /fail's 500."""
    got: list[dict] = []
    failures: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(secret.encode(), body, request.headers.get(SIGNATURE_HEADER)):
            return web.Response(status=401, text="bad signature")
        got.append({**{name: request.headers.get(header) for name, header in keep.items()}, **orjson.loads(body)})
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.Response:
        failures.append(request.headers.get(id_header, ""))
        return web.Response(status=500, text=down)

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/fail", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", got, failures
    finally:
        await runner.cleanup()
