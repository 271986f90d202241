"""The notifier's own HTTP port: ``POST /api/v1/notifications/{delivery_id}/ack`` (签收回执)
and ``GET /metrics``.

A bearer token of ``config/auth.toml`` (read again when it changes, like the worker's):
an operator may acknowledge any delivery, a department token those at its department's
desk, a street token those at its street desk.  Errors as the worker's API gives them:
``{"error": {status, reason, detail, field}}``.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from citybrain.notify.service import Notifier
from citybrain.web.auth import Principal, Refused, ReloadingTokens


def _error(status: int, reason: str, detail: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": {"status": status, "reason": reason, "detail": detail, "field": field}},
                             status=status)


def may_ack(principal: Principal, desk: str) -> bool:
    if principal.role == "operator":
        return True
    if principal.role == "department":
        return desk == principal.department
    if principal.role == "street":
        return desk == f"street.{principal.street_code}"
    return False


def app(notifier: Notifier, tokens: ReloadingTokens) -> web.Application:
    async def ack(request: web.Request) -> web.Response:
        try:
            principal = tokens.authenticate(request.headers.get("Authorization"))
        except Refused as e:
            return _error(e.status, e.reason, e.detail, e.field)
        delivery_id = request.match_info["delivery_id"]
        rec = notifier.book.deliveries.get(delivery_id)
        if rec is None:
            return _error(404, "not_found", f"no delivery {delivery_id}", "delivery_id")
        if not may_ack(principal, rec.desk):
            return _error(403, "out_of_scope", f"delivery {delivery_id} is for desk {rec.desk}", "delivery_id")
        acked = await notifier.ack(delivery_id, principal.id)
        return web.json_response(acked.model_dump(mode="json"))

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    application = web.Application()
    application.router.add_post("/api/v1/notifications/{delivery_id}/ack", ack)
    application.router.add_get("/metrics", metrics)
    return application
