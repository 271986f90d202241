"""Every worker's copy of the compacted ``registry.devices`` topic.

Each worker reads *all* partitions (no consumer group): normalisation on any
partition may need any device.  ``loaded`` is set once the topic has been read to
the end offsets seen at start, so agents never judge a device unknown merely
because the registry was still loading.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import orjson
from pydantic import ValidationError

from citybrain import metrics
from citybrain.domain.normalize import field_path
from citybrain.stream.logreader import TopicReader
from citybrain.wire.models import RegistryRecord

log = logging.getLogger("citybrain.registry")

OnBad = Callable[[object, str, str | None], Awaitable[None]]  # (message, detail, field)


class RegistryCache:
    def __init__(self, bootstrap: str, topic: str, on_bad: OnBad | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_bad = on_bad
        self.devices: dict[str, RegistryRecord] = {}
        self.loaded = asyncio.Event()

    def get(self, device_id: str) -> RegistryRecord | None:
        return self.devices.get(device_id)

    async def apply(self, msg) -> None:
        device_id = msg.key.decode("utf-8", "replace") if msg.key is not None else None
        if msg.value is None:  # tombstone: the id is retired and forgotten
            if device_id:
                self.devices.pop(device_id, None)
            return
        try:
            rec = RegistryRecord.model_validate(orjson.loads(msg.value))
        except (orjson.JSONDecodeError, ValidationError) as e:
            field = None
            if isinstance(e, ValidationError):
                field = field_path(e.errors(include_url=False)[0]["loc"])
            if self.on_bad:
                await self.on_bad(msg, str(e).splitlines()[0], field)
            return
        self.devices[rec.device_id] = rec

    def _publish_gauges(self) -> None:
        counts = Counter((d.kind, d.status) for d in self.devices.values())
        for kind in ("sensor", "camera"):
            for status in ("active", "retired"):
                metrics.REGISTRY_DEVICES.labels(kind, status).set(counts.get((kind, status), 0))

    async def _apply_batch(self, records) -> None:
        for msg in records:
            await self.apply(msg)
        self._publish_gauges()

    def _loaded(self) -> None:
        self._publish_gauges()
        self.loaded.set()
        metrics.REGISTRY_LOADED.set(1)
        log.info("设备台账已加载 registry loaded: %d devices/cameras from %s", len(self.devices), self.topic)

    async def run(self) -> None:
        await TopicReader(self.bootstrap, self.topic, self._apply_batch, "registry", self._loaded).run()
