"""``citybrain platforms``: run the status callbacks to other platforms, or check their file."""

from __future__ import annotations

import asyncio
import signal

from citybrain.cli.common import broker_address, http_served, load_config


def cmd_platforms(args) -> int:
    from citybrain.kafka.topics import Topics
    from citybrain.platforms.service import PlatformRelay
    from citybrain.platforms.settings import PlatformsConfig, platforms_path

    cfg = load_config()
    path = platforms_path(cfg.directory)
    platforms = PlatformsConfig.load(path)
    if args.action == "check":
        for p in platforms.platform:
            key = "set" if p.key() else "NOT SET"
            print(f"{p.name}: system {p.system} → {p.url} ({', '.join(p.changes)}; {p.retry.attempts} attempts; "
                  f"{p.secret_env} {key})")
        print(f"{len(platforms.platform)} platforms in {path}")
        return 0 if all(p.key() for p in platforms.platform) else 1

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        relay = PlatformRelay(broker_address(), Topics(cfg.settings.kafka.topic_prefix), platforms,
                              partitions=cfg.settings.kafka.partitions)
        print(f"平台回调 platform callbacks: {len(platforms.platform)} platforms from {path}", flush=True)
        async with http_served(metrics_application, args.http_host, args.http_port,
                               "平台回调 platform callbacks: metrics (/metrics)"):
            await relay.run(stop)

    asyncio.run(run())
    return 0


def metrics_application():
    """GET /metrics: the relay's callbacks counter (citybrain_platform_callbacks_total)."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    application = web.Application()
    application.router.add_get("/metrics", metrics)
    return application
