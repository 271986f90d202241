"""Whether this worker reaches the Kafka cluster: a metadata request every few seconds.
Behind ``/readyz`` (a worker that cannot reach the broker is not ready, though it keeps
running and resumes by itself) and ``citybrain_broker_up``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from citybrain import metrics
from citybrain.kafka.clients import kafka_client

log = logging.getLogger("citybrain.broker")


class BrokerWatch:
    def __init__(self, bootstrap: str, every: float = 2.0, timeout: float = 3.0):
        self.bootstrap, self.every, self.timeout = bootstrap, every, timeout
        self.up = True
        self.down_since: float | None = None
        self.on_back: list[Callable[[], None]] = []   # told when the broker answers again

    def _set(self, up: bool) -> None:
        if up and not self.up:
            down = time.monotonic() - self.down_since if self.down_since is not None else 0.0
            log.warning("Kafka 已恢复 broker reachable again after %.0fs", down)
            for back in self.on_back:
                back()
        elif not up and self.up:
            self.down_since = time.monotonic()
            log.error("Kafka 不可达 broker unreachable: not ready until it answers again "
                      "(the stages wait and resume by themselves)")
        self.up = up
        metrics.BROKER_UP.set(1 if up else 0)

    async def run(self) -> None:
        client = kafka_client(bootstrap_servers=self.bootstrap, client_id="citybrain-brokerwatch",
                                request_timeout_ms=int(self.timeout * 1000))
        try:
            while True:
                try:
                    if not client.cluster.brokers():
                        await asyncio.wait_for(client.bootstrap(), self.timeout)
                    # Time to ask each node in turn (aiokafka does, each for ``timeout``): one
                    # hung node of three (bench failover ``hang``) is not the cluster gone —
                    # cut off at the first, the watch read "unreachable" and the worker unready.
                    nodes = max(1, len(client.cluster.brokers()))
                    await asyncio.wait_for(client.fetch_all_metadata(), self.timeout * nodes)
                    self._set(True)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - any failure to answer is "down"
                    self._set(False)
                await asyncio.sleep(self.every)
        finally:
            await client.close()
