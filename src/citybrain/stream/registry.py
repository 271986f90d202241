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
from citybrain.domain.normalize import validation_failure
from citybrain.domain.registry import Device
from citybrain.stream.logreader import TopicReader
from citybrain.wire.models import RegistryRecord

log = logging.getLogger("citybrain.registry")

OnBad = Callable[..., Awaitable[None]]  # (message, reason, detail, field, exception type)


class RegistryCache:
    def __init__(self, bootstrap: str, topic: str, on_bad: OnBad | None = None,
                 max_record_bytes: int = 65536):
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_bad = on_bad
        self.max_record_bytes = max_record_bytes
        self.devices: dict[str, Device] = {}
        self.loaded = asyncio.Event()

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    async def apply(self, msg) -> None:
        """Every worker reads the whole registry: a record that could stop one stops all
        of them, so every record ends here as a device, a tombstone or a dead letter."""
        try:
            device_id = msg.key.decode("utf-8", "replace") if msg.key is not None else None
            if msg.value is None:  # tombstone: the id is retired and forgotten
                if device_id:
                    self.devices.pop(device_id, None)
                return
            if len(msg.value) > self.max_record_bytes:
                return await self._bad(msg, "too_large", f"record is {len(msg.value)} bytes; the limit is "
                                                         f"{self.max_record_bytes}")
            try:
                rec = RegistryRecord.model_validate(orjson.loads(msg.value))
            except orjson.JSONDecodeError as e:
                return await self._bad(msg, "not_json", f"not JSON: {e}")
            except ValidationError as e:
                reason, field, _ = validation_failure(e)
                return await self._bad(msg, reason, str(e).splitlines()[0], field)
            self.devices[rec.device_id] = Device.of(rec)
        except Exception as e:  # noqa: BLE001 - one record never stops the reader
            log.exception("台账记录内部错误 internal error on registry record %s[%d]@%d", msg.topic,
                          msg.partition, msg.offset)
            await self._bad(msg, "internal_error", f"{type(e).__name__}: {e}", exc=type(e).__name__)

    async def _bad(self, msg, reason: str, detail: str, field: str | None = None, exc: str | None = None) -> None:
        if self.on_bad:
            try:
                await self.on_bad(msg, reason, detail, field, exc)
            except Exception:  # noqa: BLE001 - the dead letter could not be sent: logged, not fatal
                log.exception("死信发送失败 could not send the dead letter of %s[%d]@%d", msg.topic,
                              msg.partition, msg.offset)

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
