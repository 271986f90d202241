"""at_least_once: a replay does not send again what its previous owner already put on the
dispatch topics (issue 38: "a SIGKILL mid-drain replays ≤ 5 s of work, duplicate dispatch
records ≤ 2 per kill").

A batch's outputs go out before its changelog writes, and its offsets are committed after
those (stream/at_least_once.py): a worker killed in between leaves orders dispatched whose
state never reached the changelog, and the replay from the committed offsets re-creates
them — the same order id and version (ids derive from the first event), dispatched again.
Measured at a kill (tests/chaos/test_backlog_kills.py): every repeated dispatch belonged
to an order the changelog did not hold at the kill; under a backlog, 47–1,800 a run of
three kills.  No ordering of the two writes removes that window without Kafka
transactions (state first loses the dispatch when the kill lands between them).

So when partitions are claimed, the guard reads back what the dispatch topics received
since the first uncommitted input could have been handled — the Kafka time of the record
at each claimed partition's committed offset, less ``MARGIN`` for clocks — and the replay
drops a dispatch record whose (topic, order, version) is already there.  Only what is on
the topic is dropped, so nothing is lost; a record that landed after the read-back (none:
its producer died with the previous owner) would simply be sent again.

A clean hand-over (a revocation, a stop: every output acknowledged, then the offsets
committed) replays nothing, so its commit says so (``HANDED_OVER``, the commit's
metadata) and the next owner reads nothing back for those partitions: a rolling restart's
every rebalance otherwise held the first batch for a consumer's start and five seconds of
dispatch records.  The new owner clears the mark (commits the same offset without it)
before it sends anything, so a kill of that owner is guarded again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from citybrain.kafka.admin import partitions_of_topics
from citybrain.kafka.clients import kafka_admin, kafka_consumer
from citybrain.kafka.reading import read_until
from citybrain.stream.output import Output

log = logging.getLogger("citybrain.stage")

Key = tuple[str, bytes, int]   # topic, work_order_id, version
HANDED_OVER = "citybrain:handed-over"   # a clean hand-over's commit metadata: nothing past it was handled
Committed = dict[TopicPartition, tuple[int | None, str]]   # offset (None: no commit) and its metadata
Commits = Callable[[list[TopicPartition]], Coroutine[Any, Any, Committed]]
Unmark = Callable[[dict[TopicPartition, int]], Awaitable[None]]


class MarkNotCleared(Exception):
    """The new owner could not clear a hand-over's mark: it must not handle anything yet
    (a kill would leave the mark and the next owner unguarded) — the stage recovers."""


def change_key(topic: str, key: bytes | None, value: bytes | None) -> Key | None:
    """A dispatch record's dedupe key (DESIGN §11: work_order_id + version)."""
    if key is None or value is None:
        return None
    try:
        version = orjson.loads(value)["version"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return (topic, key, version) if isinstance(version, int) else None


class ReplayGuard:
    MARGIN = 5.0     # seconds: producers' clocks on other machines
    KEEP = 600.0     # seconds a read-back is held (a replay is over long before)
    TIMEOUT = 30.0   # seconds a read-back may take before the replay goes on without it

    def __init__(self, bootstrap: str, topics: frozenset[str], group_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic, commits: Commits | None = None):
        """``commits``: the group's committed offsets and metadata (by default asked of the
        broker for ``group_id``, on the read-back's own loop)."""
        if commits is None and not group_id:
            # Group "" has no commits: every claim would read back from the topics' start.
            raise ValueError("a replay guard needs the stage's group_id (or its commits)")
        self.bootstrap, self.topics, self.group_id, self.clock = bootstrap, topics, group_id, clock
        self.commits = commits or self._group_commits
        self.seen = set()
        self.read_at = 0.0
        self.dropped = 0
        self.reading: asyncio.Task | None = None   # the read-back in flight

    @property
    def seen(self) -> frozenset[Key]:
        """What the read-backs found on the guarded topics (held ``KEEP`` seconds);
        replaced, never changed in place (its orders are kept beside it)."""
        return self._seen

    @seen.setter
    def seen(self, keys: Iterable[Key]) -> None:
        # Its orders too: an output whose order is not among them is passed without
        # parsing its JSON (every dispatch record for the ``KEEP`` seconds after a read-back).
        self._seen = frozenset(keys)
        self.orders = {(topic, key) for topic, key, _ in self._seen}

    async def unsent(self, outputs: list[Output]) -> list[Output]:
        """``outputs`` less those already on their topics (after the read-back in flight)."""
        if self.reading is not None:
            try:
                await self.reading
            except MarkNotCleared:
                self.reading = None
                raise
            except Exception as e:  # noqa: BLE001 - without it the replay may send a few twice, never lose any
                log.warning("重放去重失败 replay guard read-back failed (%r): a replay may dispatch some twice", e)
            self.reading = None
        return [o for o in outputs if not self.repeats(o)] if self.seen else outputs

    def repeats(self, o: Output) -> bool:
        """Whether ``o`` is already on its topic (and so is not sent again)."""
        if not self.seen or o.topic not in self.topics:
            return False
        if self.clock() - self.read_at > self.KEEP:
            self.seen = set()
            return False
        if (o.topic, o.key) not in self.orders or change_key(o.topic, o.key, o.value) not in self.seen:
            return False
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            log.info("重放去重 replay guard: %d dispatch records already on their topics not sent again", self.dropped)
        return True

    def claim(self, inputs: Iterable[TopicPartition], unmark: Unmark) -> None:
        """Partitions about to be replayed from their committed offsets: read back, beside
        the state's restore, what the guarded topics received since the first of those
        records (``unsent`` waits for it) — none for a partition handed over cleanly, whose
        mark ``unmark`` clears (commits its offset again without it) first."""
        inputs = list(inputs)
        if inputs and self.topics:
            self.reading = asyncio.create_task(
                asyncio.wait_for(self._read_back(self.reading, inputs, unmark), self.TIMEOUT))

    async def _read_back(self, before: asyncio.Task | None, inputs: list[TopicPartition], unmark: Unmark) -> None:
        if before is not None:   # an earlier claim's, still in flight
            await asyncio.gather(before, return_exceptions=True)
        started = time.monotonic()
        # On an event loop of its own: at a restart the worker's loop is busy restoring state
        # and draining, and every round trip of the read waited for it (measured under a
        # backlog at load 10–20: ~10 s for 300 records, the fuse stage's first batch behind it).
        try:   # the marks first, whatever the read-back does: none may outlive this claim
            committed: Committed = await asyncio.to_thread(asyncio.run, self.commits(inputs))
            handed = {tp: off for tp, (off, mark) in committed.items() if mark == HANDED_OVER and off is not None}
            if handed:
                await unmark(handed)
        except Exception as e:
            raise MarkNotCleared(f"the hand-over marks of {len(inputs)} partitions not cleared: {e!r}") from e
        commits = {tp: off for tp, (off, _) in committed.items() if tp not in handed}
        keys, note = await asyncio.to_thread(asyncio.run, self._read(commits))
        note = f"{len(handed)} of {len(inputs)} partitions handed over cleanly" + (f"; {note}" if note else "")
        if keys:
            self.seen = self.seen | keys
            self.read_at = self.clock()
        log.info("重放去重 replay guard: %s (%d keys) in %.2f s", note, len(keys), time.monotonic() - started)

    async def _group_commits(self, tps: list[TopicPartition]) -> Committed:
        admin = kafka_admin(bootstrap_servers=self.bootstrap, client_id="citybrain-replay-guard")
        await admin.start()
        try:
            found = await admin.list_consumer_group_offsets(self.group_id, partitions=tps)
        finally:
            await admin.close()
        out: Committed = {}
        for tp in tps:
            at = found.get(tp)
            out[tp] = (None, "") if at is None or at.offset < 0 else (at.offset, at.metadata or "")
        return out

    async def _read(self, commits: dict[TopicPartition, int | None]) -> tuple[set[Key], str]:
        """The guarded topics' keys since the first input past ``commits``; and what was read."""
        started = time.monotonic()
        keys: set[Key] = set()
        if not commits:
            return keys, "nothing read back"
        consumer = kafka_consumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                  isolation_level="read_uncommitted", client_id="citybrain-replay-guard",
                                  fetch_max_wait_ms=20)
        await consumer.start()
        try:
            since, partitions = await asyncio.gather(self._first_uncommitted(consumer, commits),
                                                     partitions_of_topics(self.bootstrap, sorted(self.topics)))
            if since is None:
                return keys, "nothing past the others' commits"
            found_at = time.monotonic() - started
            start_ms = max(0, int((since - self.MARGIN) * 1000))
            tps = [TopicPartition(t, p) for t in sorted(self.topics) for p in partitions.get(t, ())]
            if not tps:
                return keys, ""
            # Assigned first: for partitions it holds no metadata of, aiokafka's offset lookup
            # waits out metadata retries — measured 3.5 s for 210 dispatch partitions, 1.6 s in
            # each rebalance of a rolling restart; 8 ms assigned.
            consumer.assign(tps)
            found, end = await asyncio.gather(consumer.offsets_for_times({tp: start_ms for tp in tps}),
                                              consumer.end_offsets(tps))
            begin = {tp: at.offset for tp, at in found.items() if at is not None and at.offset < end[tp]}
            if not begin:
                return keys, f"nothing on the dispatch topics since {self.MARGIN:.0f} s before the first uncommitted input"
            consumer.assign(list(begin))
            for tp, offset in begin.items():
                consumer.seek(tp, offset)
            located, rounds = time.monotonic() - started, [0]

            def fetched(n: int) -> None:
                rounds[0] += 1

            def take(tp: TopicPartition, records: list[ConsumerRecord]) -> None:
                for m in records:
                    k = change_key(tp.topic, m.key, m.value)
                    if k is not None:
                        keys.add(k)
            n = await read_until(consumer, {tp: end[tp] for tp in begin}, take, after_batch=fetched)
            return keys, (f"read back {n} dispatch records of {len(begin)} partitions from {self.MARGIN:.0f} s "
                          f"before the first uncommitted input (found at {found_at:.2f} s, the offsets at "
                          f"{located:.2f} s, {rounds[0]} fetches)")
        finally:
            await consumer.stop()

    @staticmethod
    async def _first_uncommitted(consumer, commits: dict[TopicPartition, int | None]) -> float | None:
        """The Kafka time (epoch seconds) of the earliest record at a committed offset
        (``commits``) — none where a partition has nothing past its commit."""
        inputs = list(commits)
        consumer.assign(inputs)   # their metadata first (see ``_read``)
        first, end = await asyncio.gather(consumer.beginning_offsets(inputs), consumer.end_offsets(inputs))
        at = {}
        for tp, c in commits.items():
            pos = first[tp] if c is None else max(c, first[tp])
            if pos < end[tp]:
                at[tp] = pos
        if not at:
            return None
        consumer.assign(list(at))
        for tp, pos in at.items():
            consumer.seek(tp, pos)
        times: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 10
        while len(times) < len(at) and time.monotonic() < deadline:
            batch = await consumer.getmany(*[tp for tp in at if tp not in times], timeout_ms=200, max_records=1)
            for tp, records in batch.items():
                if records and tp not in times:
                    times[tp] = records[0].timestamp
        if len(times) < len(at):   # a record not fetched in time: read back from its partition's start
            return 0.0
        return min(times.values()) / 1000
