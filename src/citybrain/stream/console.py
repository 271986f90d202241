"""The console's side of a worker (``worker.console``): the read models — order views,
history, 研判 windows, media — and the HTTP API over them, installed on the Faust app.

Each read model is a reader of its own topics; in a stage process (``worker.console =
false``) none of them runs, so their fetches and folds no longer share the hot path's
event loop, and the web server answers /metrics, /healthz and /readyz only (a JSON 404
naming why for anything else)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import faust
import mode
from aiohttp import web

from citybrain.config import Config
from citybrain.kafka.topics import MEDIA_RECORD_BYTES, Topics
from citybrain.stream.analytics import WindowsFeed
from citybrain.stream.area_warnings import WarningFeed
from citybrain.stream.logreader import TopicReader
from citybrain.stream.views import OrderLogViews
from citybrain.web.api import Api, error_response
from citybrain.web.auth import ReloadingTokens
from citybrain.web.media import MediaStore
from citybrain.web.warnings import WarningLayer

log = logging.getLogger("citybrain.worker")

# What a stage process serves itself (stream/app.py).
STAGE_PROCESS_PAGES = frozenset({"/metrics", "/healthz", "/readyz"})


def install_console(app: faust.App, config: Config, topics: Topics, bootstrap: str, data_dir: Path,
                    gid: str, devices: Callable, warning_feed: WarningFeed) -> OrderLogViews:
    """The read models as app tasks and the API on the app's web server; the order views
    returned (the readiness waits for them)."""
    views = OrderLogViews(config, topics, bootstrap, data_dir)
    views.devices = devices
    views.install(app)

    @app.service
    class EvaluationCheckpointAtStop(mode.Service):
        async def on_stop(self) -> None:   # a clean stop leaves no tail to fold
            views.save_checkpoint()
    tokens = ReloadingTokens(config.auth_path, set(config.desks))
    api = Api(config, topics, bootstrap, views.view, views.evaluation, tokens, config.city_map,
              ready=views.caught_up, devices=devices)
    api.device_health = views.device_health
    api.warning_layer = WarningLayer(warning_feed.book, warning_feed.shapes)   # GET /api/v1/warnings
    if views.history is not None:
        api.attach_history(views.history.store, views.history.caught_up)
    windows = WindowsFeed(bootstrap, topics, f"{gid}-analytics", data_dir, config.analytics,   # 研判 (stream/analytics.py)
                          history=views.history.store if views.history is not None else None)
    if views.history is not None:
        windows.history_caught_up = views.history.caught_up
    windows.install(app)
    api.attach_windows(windows.store, windows.caught_up)
    media = MediaStore(data_dir / "media")
    api.attach_media(media)
    api.install(app.web.web_app)  # type: ignore[attr-defined]  # faust's aiohttp driver
    media_log = TopicReader(bootstrap, topics.media, media.fold, "media",
                            consumer_options={"max_partition_fetch_bytes": MEDIA_RECORD_BYTES + 64 * 1024})

    @app.task
    async def read_media() -> None:
        await media_log.run()

    @app.service
    class ApiProducer(mode.Service):
        async def on_stop(self) -> None:
            await api.close()
    return views


def refer_to_console(web_app: web.Application) -> None:
    """A stage process's answer to any other page: a JSON 404 that says where the
    console is, not aiohttp's text page."""
    @web.middleware
    async def elsewhere(request: web.Request, handler):
        if request.path in STAGE_PROCESS_PAGES:
            return await handler(request)
        return error_response(404, "no_console",
                      f"本进程不服务控制台 this worker process serves no console (worker.console = false; "
                      f"CITYBRAIN_CONSOLE): ask a console process for {request.method} {request.path}")
    web_app.middlewares.append(elsewhere)
