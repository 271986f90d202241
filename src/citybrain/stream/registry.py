"""Every worker's copy of the compacted ``registry.devices`` topic, and the registry's
dead letters.

Each worker reads *all* partitions (no consumer group): normalisation on any
partition may need any device.  ``loaded`` is set once the topic has been read to
the end offsets seen at start, so agents never judge a device unknown merely
because the registry was still loading.  What a record does to the copy is
domain/registry_records.py: the latest record under each key, nothing else, so every
worker — and every worker after compaction — holds the same registry.

An unusable record is judged alike by every copy, but its dead letter is written once,
not once per worker and start: ``RegistryDeadLetters`` reads the topic again in a
consumer group of its own (``<group>-registry-deadletters``), so each partition has one
owner, which sends the partition's dead letters and commits past them once they are
acknowledged (at least once: a crash between the two sends a record's dead letter again,
as the stages' do).  A rebalance does not: the batch in hand is sent and committed before
the partitions are given up, and a batch fetched between a revocation and the next
assignment is handed back (the consumer seeks to its first record), neither sent nor lost.
Measured: two workers starting together sent one wrong-key record's dead letter twice, the
first member's commit refused by the second's join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from pydantic_core import to_json

from citybrain import metrics
from citybrain.domain.normalize import OriginalKept, dead_letter, dead_letter_key
from citybrain.domain.registry import Device
from citybrain.domain.registry_records import RegistryEntry, apply_entry, internal_error, read_registry_record
from citybrain.kafka.clients import kafka_consumer
from citybrain.stream.logreader import TopicReader
from citybrain.stream.records import record_meta
from citybrain.stream.registrycopy import RegistryCopy

log = logging.getLogger("citybrain.registry")

OnDead = Callable[..., Awaitable[None]]  # (message, RegistryEntry): send the dead letter, wait for its ack


def judge(msg, max_record_bytes: int) -> RegistryEntry:
    """The verdict on one record; never raises (a bug is an ``internal_error`` verdict)."""
    try:
        return read_registry_record(msg.key, msg.value, max_record_bytes)
    except Exception as e:  # noqa: BLE001 - one record never stops a reader
        log.exception("台账记录内部错误 internal error on registry record %s[%d]@%d", msg.topic,
                      msg.partition, msg.offset)
        return internal_error(msg.key, e)


class RegistryCache:
    """``copy``: the registry on local disk (stream/registrycopy.py): a start reads it and
    the topic from the offsets it reflects; it is written once loaded, then at most every
    ``save_every`` seconds while records come."""

    def __init__(self, bootstrap: str, topic: str, max_record_bytes: int = 65536,
                 copy: RegistryCopy | None = None, save_every: float = 60.0):
        self.bootstrap = bootstrap
        self.topic = topic
        self.max_record_bytes = max_record_bytes
        self.devices: dict[str, Device] = {}
        self.loaded = asyncio.Event()
        self.copy, self.save_every = copy, save_every
        self.reader: TopicReader | None = None
        self.saved_at = 0.0
        self.saved_offsets: dict[int, int] | None = None   # what the copy on disk reflects
        self.saving: asyncio.Task | None = None

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def apply(self, msg) -> RegistryEntry:
        """Every worker reads the whole registry: a record that could stop one stops all
        of them, so every record ends here as a device, a tombstone or a refusal."""
        entry = judge(msg, self.max_record_bytes)
        before = apply_entry(self.devices, entry)
        if entry.dead and before is not None:
            log.warning("设备台账记录不可用 %s forgotten: its latest registry record (%s[%d]@%d) is a dead letter "
                        "(%s: %s)", entry.key, msg.topic, msg.partition, msg.offset, entry.reason, entry.detail[:200])
        return entry

    def _publish_gauges(self) -> None:
        counts = Counter((d.kind, d.status) for d in self.devices.values())
        for kind in ("sensor", "camera"):
            for status in ("active", "retired"):
                metrics.REGISTRY_DEVICES.labels(kind, status).set(counts.get((kind, status), 0))

    def _apply_batch(self, records) -> None:
        for msg in records:
            self.apply(msg)
        # While loading, once at the end (``_loaded``): counting every device after each
        # batch was quadratic — measured 1.7 s of a 160k-device registry's 4 s load.
        if self.loaded.is_set():
            self._publish_gauges()
            if time.monotonic() - self.saved_at >= self.save_every:
                self._save()

    def _loaded(self) -> None:
        self._publish_gauges()
        self.loaded.set()
        self._save()
        metrics.REGISTRY_LOADED.set(1)
        log.info("设备台账已加载 registry loaded: %d devices/cameras from %s", len(self.devices), self.topic)

    async def run(self) -> None:
        start: dict[int, int] = {}
        if self.copy is not None:
            found = await asyncio.to_thread(self.copy.load, self.topic)
            if found is not None:
                self.devices, start = found
                self.saved_offsets = dict(start)
                log.info("设备台账本地副本 local registry copy: %d devices/cameras, reading %s from offsets %s",
                         len(self.devices), self.topic, start)
        self.reader = TopicReader(self.bootstrap, self.topic, self._apply_batch, "registry", self._loaded,
                                  start_offsets=(lambda: start) if start else None,
                                  on_start_rejected=self._start_over)
        await self.reader.run()

    def _start_over(self) -> None:
        log.warning("设备台账本地副本不符 the local registry copy is ahead of %s (a re-created topic?): "
                    "reading it from the beginning", self.topic)
        self.devices.clear()

    def _save(self) -> None:
        """The registry as it stands after the batches applied so far, in a thread (the
        devices are immutable: a shallow copy of the dict is a consistent cut)."""
        if self.copy is None or self.reader is None or (self.saving is not None and not self.saving.done()):
            return
        offsets = dict(self.reader.positions)
        if offsets == self.saved_offsets:   # a restart that read no record: the copy stands (no
            return                          # ~0.3 s of GIL-bound writing beside the stages' start)
        self.saved_at, self.saved_offsets = time.monotonic(), offsets
        copy, devices = self.copy, dict(self.devices)
        self.saving = asyncio.create_task(asyncio.to_thread(copy.save, self.topic, devices, offsets))
        self.saving.add_done_callback(_log_failed_save)


def _log_failed_save(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:   # a cache: the next start reads the topic
        log.warning("设备台账本地副本未写入 local registry copy not written: %r", task.exception())


def dead_letter_sender(app: Any, deadletter_topic: str, source: str, keep_bytes: int, keep_original: OriginalKept,
                       dead_log: Any) -> Callable[[Any, Any], Awaitable[None]]:
    """What ``RegistryDeadLetters`` calls with each dead entry of a table topic (the
    registry, the area warnings): the record's dead letter, sent by the Faust app's
    producer and acknowledged, then logged (``DeadLetterLog``) and counted."""

    async def send(msg: Any, entry: Any) -> None:
        if entry.reason is None:   # (only dead entries come here)
            return
        dead = dead_letter(source, msg.value, record_meta(msg), entry.reason, entry.detail, entry.field,
                           keep_bytes=keep_bytes, exception_type=entry.exception_type, keep_original=keep_original)
        await app.producer.send_and_wait(deadletter_topic, dead_letter_key(msg.key), to_json(dead),
                                         partition=None, timestamp=None, headers=None)
        dead_log.note(source, entry.reason, entry.detail)
        metrics.count_dead(source, entry.reason)

    return send


class RegistryDeadLetters:
    """The registry's dead letters, each written by one worker: the owner of its partition
    in the group ``group_id`` (see the module's note)."""

    RETRY_SECONDS = 2.0

    def __init__(self, bootstrap: str, topic: str, group_id: str, on_dead: OnDead,
                 max_record_bytes: int = 65536, verdict: Callable[[Any], Any] | None = None,
                 name: str = "registry"):
        self.bootstrap, self.topic, self.group_id = bootstrap, topic, group_id
        self.on_dead, self.max_record_bytes, self.name = on_dead, max_record_bytes, name
        # Another compacted topic read whole by every worker (ingest.warnings) brings its own
        # verdict, shaped like RegistryEntry (dead, reason, detail, field, exception_type).
        self.verdict = verdict or (lambda msg: judge(msg, self.max_record_bytes))
        self._handling = asyncio.Lock()   # a batch's dead letters and commit, or a revocation
        self._between_generations = False  # revoked, not yet assigned again
        self.handed_back = 0

    async def run(self) -> None:
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the duty waits and rejoins; the worker goes on
                log.exception("死信读取失败 %s dead letters: reading %s failed; rejoining in %.0f s",
                              self.name, self.topic, self.RETRY_SECONDS)
                await asyncio.sleep(self.RETRY_SECONDS)

    async def _run(self) -> None:
        consumer = kafka_consumer(bootstrap_servers=self.bootstrap, group_id=self.group_id,
                                  enable_auto_commit=False, auto_offset_reset="earliest",
                                  client_id=f"citybrain-{self.name}-deadletters")
        consumer.subscribe([self.topic], listener=_HandOver(self))
        await consumer.start()
        try:
            while True:
                await self.step(consumer)
        finally:
            await consumer.stop()

    async def step(self, consumer) -> None:
        """One fetch, handled — unless it came between a revocation and the next assignment
        (aiokafka may still return the old assignment's records then): handed back."""
        batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
        if not batches:
            return
        async with self._handling:
            if self._between_generations:
                self._hand_back(batches, consumer)
            else:
                await self.handle(batches, consumer)

    def _hand_back(self, batches: dict[TopicPartition, list], consumer) -> None:
        """Neither sent nor committed; the fetch position of a partition still (or again)
        assigned goes back to the batch's first record, so nothing is skipped."""
        self.handed_back += 1
        for tp, records in batches.items():
            try:
                consumer.seek(tp, records[0].offset)
            except IllegalStateError:
                pass   # not ours now: its next owner reads from the last commit

    async def revoked(self) -> None:
        """Before the partitions go (aiokafka awaits this before it rejoins, heartbeats going
        on): the batch in hand is sent and committed first, in the generation that fetched it
        — Kafka takes a commit of that generation while the group prepares to rebalance."""
        async with self._handling:
            self._between_generations = True

    def assigned(self) -> None:
        self._between_generations = False

    async def handle(self, batches: dict[TopicPartition, list], consumer) -> None:
        """Dead letters for a fetched batch, each acknowledged, then the offsets past it.
        A commit refused by a rebalance is not an error: the partition's new owner reads
        from the last commit (those dead letters may be sent twice)."""
        offsets = {}
        for tp, records in batches.items():
            for msg in records:
                entry = self.verdict(msg)
                if entry.dead:
                    await self.on_dead(msg, entry)
            offsets[tp] = records[-1].offset + 1
        try:
            await consumer.commit(offsets)
        except KafkaError as e:
            log.info("registry dead letters: commit not taken (%s: %s); the partition's owner reads on from "
                     "the last commit", type(e).__name__, e)


class _HandOver(ConsumerRebalanceListener):
    def __init__(self, duty: RegistryDeadLetters):
        self.duty = duty

    async def on_partitions_revoked(self, revoked) -> None:
        await self.duty.revoked()

    async def on_partitions_assigned(self, assigned) -> None:
        self.duty.assigned()
