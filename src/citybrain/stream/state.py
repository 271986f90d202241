"""A stage's state: key → value bytes per input partition, held in memory (compressed
where asked) and backed by a compacted changelog topic with the same partition numbers;
written with the batch that changed it (or lazily, within ``lazy_seconds``), read back
from the changelog — or a local RocksDB copy and the changelog's tail — when the
partition is assigned."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from citybrain import metrics, packing
from citybrain.kafka.clients import kafka_consumer
from citybrain.kafka.reading import read_until, seek_to_first
from citybrain.stream.localstore import LocalStore
from citybrain.stream.output import Output

log = logging.getLogger("citybrain.stage")


class ValueTooLarge(ValueError):
    """A state value past the changelog's record limit (refused before anything changes)."""


def _exact_size(value: bytes) -> bytes:
    return bytes(memoryview(value))


class ChangelogState:
    """key → value bytes per partition, backed by a compacted changelog topic."""

    MAX_VALUE_BYTES = 900_000   # below the broker's default record limit (1 MB)

    def __init__(self, name: str, topic: str, lazy_seconds: float = 2.0, compress: bool = False,
                 encode: Callable[[Any], bytes] | None = None, clock: Callable[[], float] = time.monotonic):
        """``compress``: hold values compressed in memory (``citybrain.packing``: work-order
        snapshots 1.3 KB of JSON → a few hundred bytes, for ~10 µs per read).  ``encode``:
        how ``set_later`` turns a value into its bytes.  ``clock``: when a lazy change was
        made (monotonic seconds; a fake in tests)."""
        self.name, self.topic = name, topic
        # Held values are copied to their exact size: orjson's output carries a 4 KB
        # buffer whatever its length (110k sensors' states: 450 MB instead of 10).
        self._pack = packing.pack if compress else _exact_size
        self._unpack = packing.unpack if compress else (lambda v: v)
        self.data: dict[int, dict[str, bytes]] = {}
        self.dirty: dict[int, dict[str, bytes | None]] = {}   # None: a tombstone
        self.lazy: dict[int, dict[str, bytes]] = {}
        self.lazy_seconds = lazy_seconds
        self.clock = clock
        # (when, partition, key) of each key as it became lazy or deferred, oldest first:
        # each is due ``lazy_seconds`` after its own first change.  Draining every lazy key
        # at one instant sent ~1,250 device states in one batch every 2 s at 1,000
        # readings/s — ~20 ms with the event loop blocked, the normalise hop's tail.
        self.lazy_since: deque[tuple[float, int, str]] = deque()
        self.store: LocalStore | None = None   # set by the runner where worker.store is rocksdb://
        # Lazy changes kept as values, made bytes only when read or due (set_later).
        self.encode = encode
        self.deferred: dict[int, dict[str, Any]] = {}

    def get(self, partition: int, key: str) -> bytes | None:
        if key in self.deferred.get(partition, ()):
            self._settle(partition, key)
        v = self.data.get(partition, {}).get(key)
        return None if v is None else self._unpack(v)

    def set(self, partition: int, key: str, value: bytes, lazy: bool = False) -> None:
        """``lazy``: a change that may reach the changelog a little later (at most
        ``lazy_seconds``) — for values whose loss in a crash a replay repairs."""
        if len(value) > self.MAX_VALUE_BYTES:
            raise ValueTooLarge(f"{self.name}[{key}] would be {len(value)} bytes; the changelog "
                                f"takes at most {self.MAX_VALUE_BYTES}")
        self.data.setdefault(partition, {})[key] = self._pack(value)
        held, was_deferred = self.deferred.get(partition), False
        if held is not None and key in held:
            del held[key]
            was_deferred = True
        pending = self.dirty.get(partition)
        if lazy and pending is not None and key in pending:
            pending[key] = value   # rides along with the eager write already due
        elif lazy:
            part = self.lazy.setdefault(partition, {})
            if not was_deferred and key not in part:
                self.lazy_since.append((self.clock(), partition, key))
            part[key] = value
        else:
            self.dirty.setdefault(partition, {})[key] = value
            self.lazy.get(partition, {}).pop(key, None)

    def set_later(self, partition: int, key: str, value: Any) -> None:
        """A lazy change kept as ``value`` and made bytes (``encode``) only when the key is
        read or the lazy drain is due: a device's dedupe marks move with every reading,
        and most are overwritten before they are due — encoding and copying each was
        ~1.5 µs of a reading.  ``value`` is read when it is encoded: it must still hold
        what was meant then (an immutable value, or the key set again whenever it changes)."""
        if self.encode is None:
            raise TypeError(f"{self.name}: set_later needs the state made with encode=")
        if key in self.dirty.get(partition, ()):
            self.set(partition, key, self.encode(value), lazy=True)   # rides along with the eager write
            return
        part = self.deferred.setdefault(partition, {})
        if key not in part and key not in self.lazy.get(partition, ()):
            self.lazy_since.append((self.clock(), partition, key))
        part[key] = value

    def _settle(self, partition: int, key: str | None = None) -> None:
        """Deferred values (one key's, or the partition's) to bytes, as lazy changes."""
        part = self.deferred.get(partition)
        if not part:
            return
        assert self.encode is not None   # set_later is only for states made with one
        items = [(key, part[key])] if key is not None else list(part.items())
        for k, value in items:
            self._set_encoded(partition, k, value, lazy=True)   # which takes it out of deferred
        if not part:
            self.deferred.pop(partition, None)

    def _set_encoded(self, partition: int, key: str, value: Any, lazy: bool) -> None:
        """A deferred value made bytes and set.  One that encodes past the changelog's
        limit is dropped (a tombstone, logged and counted), not raised: it is encoded after
        the record that made it was handled — in a drain or in another key's read — where
        raising would stop the stage or dead-letter an unrelated record, and a lazy value
        is by contract one whose loss a replay repairs."""
        assert self.encode is not None   # set_later is only for states made with one
        try:
            self.set(partition, key, self.encode(value), lazy=lazy)
        except ValueTooLarge as e:
            log.error("状态值过大 state value too large, dropped (the key starts afresh): %s", e)
            metrics.child(metrics.STATE_DROPPED, self.name).inc()
            self.delete(partition, key)

    def delete(self, partition: int, key: str) -> None:
        """Forget a key: a tombstone on the changelog, so a restore forgets it too."""
        self.deferred.get(partition, {}).pop(key, None)
        self.data.get(partition, {}).pop(key, None)
        self.lazy.get(partition, {}).pop(key, None)
        self.dirty.setdefault(partition, {})[key] = None

    def values(self, partition: int):
        self._settle(partition)
        return (self._unpack(v) for v in self.data.get(partition, {}).values())

    def items(self, partition: int):
        self._settle(partition)
        return ((k, self._unpack(v)) for k, v in self.data.get(partition, {}).items())

    def drain(self, everything: bool = False) -> list[Output]:
        """The changed keys since the last drain, once each, for the changelog; a lazy
        one when ``lazy_seconds`` have passed since its first change not yet drained
        (``everything``: all of them now, at a hand-over)."""
        if everything:
            for p in list(self.deferred):
                self._settle(p)
            for p, kv in self.lazy.items():
                self.dirty.setdefault(p, {}).update(kv)
            self.lazy = {}
            self.lazy_since.clear()
        else:
            self._drain_due(self.clock())
        out = [Output(self.topic, k.encode(), v, p) for p, kv in self.dirty.items() for k, v in kv.items()]
        self.dirty = {}
        return out

    def _drain_due(self, now: float) -> None:
        """The lazy and deferred keys that are due, into ``dirty``.  An entry whose key has
        meanwhile been written eagerly, deleted or dropped finds nothing and is skipped."""
        since, oldest = self.lazy_since, now - self.lazy_seconds
        while since and since[0][0] <= oldest:
            _, p, key = since.popleft()
            part = self.deferred.get(p)
            if part is not None and key in part:
                self._set_encoded(p, key, part[key], lazy=False)   # held and due now, as an eager write
                if not part:
                    self.deferred.pop(p, None)
                continue
            part = self.lazy.get(p)
            if part is not None and key in part:
                self.dirty.setdefault(p, {})[key] = part.pop(key)
                if not part:
                    del self.lazy[p]

    def drop(self, partitions: AbstractSet[int]) -> None:
        for p in partitions:
            self.data.pop(p, None)
            self.dirty.pop(p, None)
            self.lazy.pop(p, None)
            self.deferred.pop(p, None)

    async def restore(self, bootstrap: str, partitions: AbstractSet[int]) -> tuple[int, int]:
        """Read the partitions' state back: from the local copy and the changelog's tail
        when a usable copy exists, else the whole changelog.  Returns (changelog records
        read, keys taken from the local copy)."""
        if not partitions:
            return 0, 0
        # read_committed: under exactly_once only what committed with its offsets counts.
        consumer = kafka_consumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                  client_id=f"citybrain-restore-{self.name}")
        await consumer.start()
        local = 0

        def take(tp: TopicPartition, records: list[ConsumerRecord]) -> None:
            part = self.data[tp.partition]
            for m in records:
                key = m.key.decode()
                if m.value is None:
                    part.pop(key, None)
                else:
                    part[key] = self._pack(m.value)

        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            start = await seek_to_first(consumer, tps)
            for tp in tps:
                self.deferred.pop(tp.partition, None)   # what the changelog holds is the state now
                copy = self.store.load(tp.partition) if self.store is not None else None
                if copy is not None and start[tp] <= copy[1] <= end[tp]:
                    self.data[tp.partition] = copy[0]
                    local += len(copy[0])
                    consumer.seek(tp, copy[1])
                else:
                    self.data[tp.partition] = {}
            n = await read_until(consumer, end, take, max_records=10000)
        finally:
            await consumer.stop()
        return n, local

    async def save_local(self, bootstrap: str, partitions: AbstractSet[int]) -> None:
        """At a clean hand-over (everything acknowledged and committed): the partitions'
        state to the local copy, with the changelog offset it reflects."""
        if self.store is None or not partitions:
            return
        for p in partitions:
            self._settle(p)
        consumer = kafka_consumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                  client_id=f"citybrain-save-{self.name}")
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions) if p in self.data]
            end = await consumer.end_offsets(tps) if tps else {}
        finally:
            await consumer.stop()
        for tp in tps:
            self.store.save(tp.partition, self.data[tp.partition], end[tp])
