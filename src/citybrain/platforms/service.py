"""``citybrain platforms run``: status callbacks to other platforms, a consumer group of its own.

It reads ``workorders.events``, asks ``callbacks_for`` which cases each change reaches, and
POSTs each callback (HMAC-signed) to its platform's webhook, retrying with backoff up to
the platform's budget; then a record on ``deadletter`` (reason ``callback_failed``).  The
state of every callback is on the compacted ``platforms.callbacks`` topic, read back whole
at start: a callback ``sent`` or ``failed`` is never called again, whatever is redelivered.
The callbacks of one case go in version order; cases run side by side.  A batch's offsets
are committed once every callback of it has its outcome on that topic.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, ValidationError

from citybrain.kafka.admin import create_topics
from citybrain.kafka.clients import kafka_consumer, kafka_producer
from citybrain.kafka.topics import COMPACTED, Topics, TopicSpec
from citybrain.platforms.callbacks import (
    CALLBACK_HEADER,
    SIGNATURE_HEADER,
    SYSTEM_HEADER,
    TIMESTAMP_HEADER,
    Callback,
    callbacks_for,
    sign,
)
from citybrain.platforms.settings import Platform, PlatformsConfig
from citybrain.wire.models import DeadLetter, WorkOrderChange

log = logging.getLogger("citybrain.platforms")
CALLBACKS = Counter("citybrain_platform_callbacks", "Status callbacks to other platforms by system and outcome: "
                    "sent, retried, failed (dead after the budget), duplicate (already done), "
                    "skipped_unknown_system", ["system", "outcome"])

Status = Literal["queued", "retrying", "sent", "failed"]
DONE: frozenset[str] = frozenset({"sent", "failed"})
# 4xx answers that may pass (timeouts, too early, too many): retried; any other 4xx is final.
RETRYABLE_4XX = frozenset({408, 425, 429})


class CallbackRecord(BaseModel):
    """A ``platforms.callbacks`` record (key callback_id): a callback's latest state."""

    model_config = ConfigDict(extra="ignore")
    callback_id: str
    platform: str
    system: str
    external_id: str
    work_order_id: str
    version: int
    change: str
    status: Status
    at: datetime
    attempts: int = 0
    detail: str = ""


class CallbackFailed(Exception):
    def __init__(self, detail: str, final: bool = False):
        super().__init__(detail)
        self.final = final


def callbacks_topic(topics: Topics) -> str:
    return f"{topics.prefix}platforms.callbacks"


def now_utc() -> datetime:
    return datetime.now(UTC)


class CallbackBook:
    """Every callback's latest state; a done one is never undone (pure)."""

    def __init__(self) -> None:
        self.records: dict[str, CallbackRecord] = {}

    def done(self, cid: str) -> bool:
        rec = self.records.get(cid)
        return rec is not None and rec.status in DONE

    def apply(self, rec: CallbackRecord) -> None:
        old = self.records.get(rec.callback_id)
        if old is not None and old.status in DONE and rec.status not in DONE:
            return
        self.records[rec.callback_id] = rec


class PlatformRelay:
    def __init__(self, bootstrap: str, topics: Topics, config: PlatformsConfig, partitions: int = 6,
                 clock: Callable[[], datetime] = now_utc):
        self.bootstrap, self.topics, self.config, self.partitions, self.clock = (
            bootstrap, topics, config, partitions, clock)
        self.platforms = config.by_system()
        self.book = CallbackBook()
        self.ready = asyncio.Event()
        self.producer: Any = None
        self.session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.seen = 0   # workorders.events records handled

    async def _write(self, rec: CallbackRecord) -> None:
        self.book.apply(rec)
        await (await self.producer.send(callbacks_topic(self.topics), rec.model_dump_json().encode(),
                                        key=rec.callback_id.encode()))

    async def _rebuild(self) -> None:
        from citybrain.kafka.reading import read_topic_to_end

        def read(m) -> None:
            if m.value is None:
                return
            try:
                self.book.apply(CallbackRecord.model_validate_json(m.value))
            except ValidationError as e:
                log.warning("无效回调记录 unreadable callback record at %s/%d: %s", m.partition, m.offset,
                            str(e)[:200])
        await read_topic_to_end(self.bootstrap, callbacks_topic(self.topics), read, "回调 callbacks")

    async def run(self, stop: asyncio.Event) -> None:
        await create_topics(self.bootstrap, [TopicSpec(callbacks_topic(self.topics), self.partitions,
                                                       dict(COMPACTED))])
        await self._rebuild()
        log.info("平台回调已恢复 platform relay rebuilt %d callbacks", len(self.book.records))
        self.producer = kafka_producer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0,
                                       client_id="citybrain-platforms")
        await self.producer.start()
        self.session = aiohttp.ClientSession()
        consumer = kafka_consumer(self.topics.workorder_events, bootstrap_servers=self.bootstrap,
                                  group_id=self.topics.prefix + self.config.group, enable_auto_commit=False,
                                  client_id="citybrain-platforms")
        try:
            await consumer.start()
            self.ready.set()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=300, max_records=500)
                records = [r for recs in batches.values() for r in recs]
                if records:
                    await self.handle(records)
                    await consumer.commit()
                    self.seen += len(records)
        finally:
            await consumer.stop()
            await self.producer.stop()
            await self.session.close()

    async def handle(self, records: list) -> None:
        by_case: dict[tuple[str, str], dict[str, tuple[Callback, Any]]] = {}
        for r in records:
            if r.value is None:
                continue
            try:
                change = WorkOrderChange.model_validate_json(r.value)
            except ValidationError as e:
                log.warning("无法解析 unreadable change %s/%d/%d: %s", r.topic, r.partition, r.offset, str(e)[:200])
                continue
            calls, unknown = callbacks_for(change, self.platforms)
            for system in unknown:
                CALLBACKS.labels(system, "skipped_unknown_system").inc()
            for cb in calls:
                by_case.setdefault(cb.case, {})[cb.callback_id] = (cb, r)

        async def in_order(calls: dict[str, tuple[Callback, Any]]) -> None:
            for cb, source in sorted(calls.values(), key=lambda c: (c[0].work_order_id, c[0].version)):
                await self.deliver(cb, source)
        await asyncio.gather(*(in_order(calls) for calls in by_case.values()))

    def _record(self, cb: Callback, status: Status, attempts: int = 0, detail: str = "") -> CallbackRecord:
        return CallbackRecord(callback_id=cb.callback_id, platform=cb.platform, system=cb.system,
                              external_id=cb.external_id, work_order_id=cb.work_order_id, version=cb.version,
                              change=cb.change, status=status, at=self.clock(), attempts=attempts, detail=detail)

    async def post(self, platform: Platform, cb: Callback) -> str:
        key = platform.key()
        if not key:
            raise CallbackFailed(f"no HMAC key ({platform.secret_env} is not set)")
        assert self.session is not None
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(key, cb.body),
                   CALLBACK_HEADER: cb.callback_id, TIMESTAMP_HEADER: str(int(time.time())),
                   SYSTEM_HEADER: cb.system}
        try:
            async with self.session.post(platform.url, data=cb.body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=platform.timeout_seconds)) as resp:
                text = (await resp.text())[:200]
                if resp.status >= 300:
                    final = 400 <= resp.status < 500 and resp.status not in RETRYABLE_4XX
                    raise CallbackFailed(f"HTTP {resp.status} {text}".strip(), final=final)
                return f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            raise CallbackFailed(f"{type(e).__name__}: {e}") from e

    async def deliver(self, cb: Callback, source: Any = None) -> None:
        if self.book.done(cb.callback_id):
            CALLBACKS.labels(cb.system, "duplicate").inc()
            return
        platform = self.platforms[cb.system]
        await self._write(self._record(cb, "queued"))
        detail = ""
        for attempt in range(1, platform.retry.attempts + 1):
            try:
                detail = await self.post(platform, cb)
            except CallbackFailed as e:
                detail = str(e)[:500]
                if attempt < platform.retry.attempts and not e.final:
                    CALLBACKS.labels(cb.system, "retried").inc()
                    await self._write(self._record(cb, "retrying", attempt, detail))
                    await asyncio.sleep(platform.retry.delay(attempt))
                    continue
                await self._dead(cb, source, attempt, detail)
                return
            await self._write(self._record(cb, "sent", attempt, detail))
            CALLBACKS.labels(cb.system, "sent").inc()
            self.sent += 1
            return

    async def _dead(self, cb: Callback, source: Any, attempts: int, detail: str) -> None:
        await self._write(self._record(cb, "failed", attempts, detail))
        CALLBACKS.labels(cb.system, "failed").inc()
        at = self.clock()
        dead = DeadLetter(
            reason="callback_failed", source="callback",
            detail=f"callback {cb.callback_id} to {cb.platform} ({cb.system} {cb.external_id}, {cb.change}) "
                   f"failed after {attempts} attempt{'s' if attempts != 1 else ''}: {detail}",
            source_topic=getattr(source, "topic", self.topics.workorder_events),
            source_partition=getattr(source, "partition", -1), source_offset=getattr(source, "offset", -1),
            source_timestamp=(datetime.fromtimestamp(source.timestamp / 1000, UTC)
                              if getattr(source, "timestamp", None) else None),
            original_key_b64=base64.b64encode(cb.work_order_id.encode()).decode(),
            original_b64=base64.b64encode(cb.body).decode(), original_kept="full",
            original_size=len(cb.body), original_sha256=hashlib.sha256(cb.body).hexdigest(), dead_at=at)
        await (await self.producer.send(self.topics.deadletter, dead.model_dump_json().encode(),
                                        key=cb.callback_id.encode()))
        log.error("平台回调失败 callback %s to %s failed after %d attempts: %s", cb.callback_id, cb.platform,
                  attempts, detail)
