"""What every command shares: the configuration and the broker's address."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from citybrain.config import Config


def load_config() -> Config:
    return Config()


def broker_address() -> str:
    """The Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS, or the local broker this
    project started); exits with a message when there is none."""
    from citybrain.kafka.admin import NoBroker, bootstrap_servers
    try:
        return bootstrap_servers()
    except NoBroker as e:
        sys.exit(f"错误 error: {e}")


@contextlib.asynccontextmanager
async def http_served(application: Callable[[], Any], host: str, port: int | None, what: str) -> AsyncIterator[None]:
    """``application()`` (an aiohttp app) served on host:port while the block runs, its
    address printed as ``what``; nothing when ``port`` is not given."""
    if not port:
        yield
        return
    from aiohttp import web
    runner = web.AppRunner(application())
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"{what} on http://{host}:{port}", flush=True)
        yield
    finally:
        await runner.cleanup()
