"""``citybrain notifier``: run the delivery service, or acknowledge a delivery."""

from __future__ import annotations

import asyncio
import signal
import sys

from citybrain.cli.common import broker_address, http_served, load_config


def cmd_notifier(args) -> int:
    from citybrain.kafka.topics import Topics
    from citybrain.notify.app import build
    from citybrain.notify.service import acknowledge

    cfg = load_config()
    bootstrap = broker_address()
    if args.action == "ack":
        if not args.delivery_id:
            sys.exit("错误 error: notifier ack needs a delivery id (回执号 D-…)")
        rec = asyncio.run(acknowledge(bootstrap, Topics(cfg.settings.kafka.topic_prefix), args.delivery_id,
                                      args.by or "cli"))
        if rec is None:
            print(f"未找到 no delivery {args.delivery_id}", file=sys.stderr)
            return 1
        print(f"已签收 acknowledged {rec.delivery_id}: {rec.work_order_id} v{rec.version} ({rec.person}, {rec.channel})")
        return 0

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        notifier = build(bootstrap, cfg)

        def application():
            from citybrain.notify.http import app
            from citybrain.web.auth import ReloadingTokens
            return app(notifier, ReloadingTokens(cfg.auth_path, {d.code for d in cfg.taxonomy.departments}))
        async with http_served(application, args.http_host, args.http_port, "通知服务 notifier: ack and metrics"):
            await notifier.run(stop)

    asyncio.run(run())
    return 0
