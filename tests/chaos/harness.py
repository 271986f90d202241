"""The chaos suite's harness: one seeded input set, produced to a fresh topic prefix per
scenario while faults happen; every output read ``read_committed``; a verifier in the
spirit of Kafka's own EOS system test compares a run with the clean reference run.

Outcomes are compared by content, not offsets (records without a key land on any
partition): normalised events by ``event_id``, dead letters by (source, reason, SHA-256
of the original), work orders by their incident — the set of event ids they gathered —
with their final status and department (an order's id derives from whichever of its
events reached fusion first, which partition interleaving may change).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import TopicPartition

from citybrain.config import Config
from citybrain.kafka.admin import partitions_of
from citybrain.kafka.clients import kafka_consumer, stop_quietly
from citybrain.kafka.topics import Topics
from citybrain_tools.sample.registry_builder import load
from citybrain_tools.simulate.traffic import CitySimulator

from ..integration.kafka_helpers import input_producer, send_acknowledged

SEED, RATE, DURATION = 11, 100, 24      # ≈ 2,500 records with the three scripted incidents


def seeded_input(start: float, rate: float = RATE, duration: float = DURATION) -> list[tuple[str, bytes | None, bytes]]:
    cfg = Config()
    sim = CitySimulator(load(cfg.registry_path), seed=SEED, rate=rate, duration=duration, start=start)
    return [(r.source, r.key, r.value) for r in sim.records()]


async def produce_paced(bootstrap: str, topics: Topics, records, seconds: float, chunks: int = 24) -> None:
    """The same records in the same order, spread over ``seconds`` so faults land mid-stream.
    One producer for the whole stream, as a field source keeps one: a producer started
    afresh while a node hangs may learn no leader for a partition before its batch expires,
    and aiokafka fails that batch with NotLeaderForPartitionError (message_accumulator's
    drain_by_nodes) — twice in fresh clones of the commands-under-a-hang test."""
    target = {"iot": topics.iot, "video": topics.video, "report": topics.reports}
    size = -(-len(records) // chunks)
    producer = input_producer(bootstrap)
    await producer.start()
    try:
        for i in range(0, len(records), size):
            await send_acknowledged(producer, [(target[s], k, v) for s, k, v in records[i:i + size]])
            await asyncio.sleep(seconds / chunks)
    finally:
        await stop_quietly(producer)


@dataclass
class Outcome:
    events: Counter = field(default_factory=Counter)        # event_id → copies on events.normalized
    dead: Counter = field(default_factory=Counter)          # (source, reason, sha256) → copies
    versions: dict = field(default_factory=dict)            # work_order_id → Counter(version)
    snapshots: dict = field(default_factory=dict)           # work_order_id → latest snapshot
    dispatch: Counter = field(default_factory=Counter)      # (work_order_id, version) → copies on dispatch.*
    # (receipt, the order's source record's Kafka time) of each dispatch (bench/collector.py)
    dispatch_at: list = field(default_factory=list)
    # (work_order_id, version) → digest of its first copy; repeats by (same bytes?, change type)
    first_copy: dict = field(default_factory=dict)
    repeat_kinds: Counter = field(default_factory=Counter)
    # ("event", event_id) or ("dead", key) → when each of its copies arrived (monotonic): how
    # far back a restart's replay reached
    copies_at: dict = field(default_factory=dict)

    def incidents(self) -> dict[frozenset, tuple[str, str | None]]:
        return {frozenset(e["event_id"] for e in s["events"]): (s["status"], s["department"])
                for s in self.snapshots.values()}

    def size(self) -> tuple[int, int, int]:
        return len(self.events), sum(self.dead.values()), len(self.snapshots)


class OutputReader:
    """Follows every output topic of a prefix (read_committed) into an ``Outcome``."""

    def __init__(self, bootstrap: str, topics: Topics):
        self.bootstrap, self.topics = bootstrap, topics
        self.outcome = Outcome()
        self.last_change = time.monotonic()
        self._task: asyncio.Task | None = None

    async def start(self) -> OutputReader:
        departments = [d.code for d in Config().taxonomy.departments]
        names = [self.topics.events, self.topics.deadletter, self.topics.workorder_events,
                 *(self.topics.dispatch(d) for d in departments)]
        tps = [TopicPartition(n, p) for n in names for p in await partitions_of(self.bootstrap, n)]
        self.consumer = kafka_consumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
        await self.consumer.start()
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        o, t = self.outcome, self.topics
        while True:
            batch = await self.consumer.getmany(timeout_ms=300, max_records=5000)
            for tp, records in batch.items():
                now = self.last_change = time.monotonic()
                for m in records:
                    doc = orjson.loads(m.value)
                    if tp.topic == t.events:
                        o.events[doc["event_id"]] += 1
                        o.copies_at.setdefault(("event", doc["event_id"]), []).append(now)
                    elif tp.topic == t.deadletter:
                        key = (doc["source"], doc["reason"], doc["original_sha256"])
                        o.dead[key] += 1
                        o.copies_at.setdefault(("dead", key), []).append(now)
                    elif tp.topic == t.workorder_events:
                        wo = doc["work_order_id"]
                        o.versions.setdefault(wo, Counter())[doc["version"]] += 1
                        digest = hashlib.sha256(m.value).digest()
                        first = o.first_copy.setdefault((wo, doc["version"]), digest)
                        if o.versions[wo][doc["version"]] > 1:
                            o.repeat_kinds[("same bytes" if first == digest else "rebuilt", doc.get("type"))] += 1
                        if doc["version"] >= o.snapshots.get(wo, {}).get("version", 0):
                            o.snapshots[wo] = doc["snapshot"]
                    else:
                        o.dispatch[(doc["work_order_id"], doc["version"])] += 1
                        ingested = (doc.get("snapshot") or {}).get("source_ingested_at")
                        if doc.get("type") == "dispatched" and ingested:
                            o.dispatch_at.append((time.time(), datetime.fromisoformat(ingested).timestamp()))

    async def quiet(self, seconds: float, until=None, timeout: float = 180.0) -> None:
        """Wait until nothing new arrived for ``seconds`` (and ``until()`` holds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_change >= seconds and (until is None or until()):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"outputs did not settle within {timeout:.0f}s: {self.outcome.size()}")

    async def stop(self) -> Outcome:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self.consumer.stop()
        return self.outcome


@dataclass
class Verdict:
    records: int
    lost: int                 # reference outcomes missing from the run (events + dead letters)
    unexpected: int           # outcomes the reference does not have
    duplicate_outcomes: int   # extra copies of events / dead letters
    incidents_differ: int     # incidents (event sets) whose final state or department differ, or missing
    version_skips: int        # orders whose versions on workorders.events are not 1..n
    version_repeats: int      # (order, version) seen more than once on workorders.events
    duplicate_dispatch: int   # (order, version) seen more than once on dispatch.*

    def line(self, name: str, extra: str = "") -> str:
        return (f"CHAOS {name}: records={self.records} lost={self.lost} unexpected={self.unexpected} "
                f"duplicate_outcomes={self.duplicate_outcomes} incidents_differ={self.incidents_differ} "
                f"version_skips={self.version_skips} version_repeats={self.version_repeats} "
                f"duplicate_dispatch={self.duplicate_dispatch} {extra}").rstrip()


def differences(reference: Outcome, run: Outcome, records=(), most: int = 5) -> list[str]:
    """A few of what a run lost, repeated or got wrong against the reference, for a failing
    test's output."""
    lost_events = sorted(set(reference.events) - set(run.events))
    lines = [f"lost {len(lost_events)} events, e.g. {lost_events[:most]}"] if lost_events else []
    sent = sent_copies(records)
    ref_dead = expected_dead(reference, sent)
    lost_dead = ref_dead - run.dead
    by_reason = Counter()
    for (source, reason, _), n in lost_dead.items():
        by_reason[f"{source}/{reason}"] += n
    lines += [f"lost dead letters by reason {dict(by_reason)}; of {len(lost_dead)} distinct originals, "
              f"{sum(1 for k in lost_dead if run.dead[k] == 0)} with no copy at all; (reference, run, sent) copies: "
              f"{[(reference.dead[k], run.dead[k], sent[k[2]]) for k in list(lost_dead)[:most]]}"] if lost_dead else []
    repeated_events = sorted(k for k, c in run.events.items() if c > 1)
    lines += [f"{len(repeated_events)} events more than once, e.g. "
              f"{[(k, run.events[k]) for k in repeated_events[:most]]}"] if repeated_events else []
    repeated_dead = [(k, ref_dead[k], c) for k, c in run.dead.items() if k in ref_dead and c > ref_dead[k]]
    lines += [f"{len(repeated_dead)} dead letters more often than the reference, e.g. (source, reason, "
              f"sha256[:12]) reference, run: {[((s, r, h[:12]), n, c) for (s, r, h), n, c in repeated_dead[:most]]}"
              ] if repeated_dead else []
    repeated_versions = [(wo, v, c) for wo, vs in run.versions.items() for v, c in vs.items() if c > 1]
    lines += [f"{len(repeated_versions)} order versions more than once, e.g. {repeated_versions[:most]}, "
              f"by (copy, change) {dict(run.repeat_kinds)}"] if repeated_versions else []
    ref_inc, run_inc = reference.incidents(), run.incidents()
    lines += [f"incident of {len(k)} events {sorted(k)[:3]}: reference {v}, run {run_inc.get(k)}"
              for k, v in list((k, v) for k, v in ref_inc.items() if run_inc.get(k) != v)[:most]]
    return lines


async def clean_run(bootstrap: str, topics: Topics, worker, records) -> Outcome:
    """The input once with no fault — the reference a chaos run is compared with: read from
    the start, ``worker`` (not started) started, the records paced over 6 s, and read until
    nothing new came for 8 s."""
    reader = await OutputReader(bootstrap, topics).start()
    worker.start()
    try:
        await produce_paced(bootstrap, topics, records, seconds=6)
        await reader.quiet(8)
    finally:
        worker.stop()
    return await reader.stop()


REPORT: list[str] = []   # printed at the end of the pytest run (tests/conftest.py)


def sent_copies(records) -> Counter:
    """SHA-256 of each original sent (source, key, value) → how many times it was sent."""
    return Counter(hashlib.sha256(value).hexdigest() for _, _, value in records)


def expected_dead(reference: Outcome, sent: Counter) -> Counter:
    """Dead letters a run must have: the reference's, but never more copies of an original
    than were sent — a reference run is a worker too, and one that replayed a batch (a
    rebalance on a loaded box) counted some dead letters twice, which read as a later
    run's losses (events are compared as sets and never were)."""
    return Counter({k: min(n, sent[k[2]]) for k, n in reference.dead.items()})


def verify(reference: Outcome, run: Outcome, records) -> Verdict:
    """``records``: the input sent (source, key, value)."""
    ref_dead = expected_dead(reference, sent_copies(records))
    lost = len(set(reference.events) - set(run.events)) + sum((ref_dead - run.dead).values())
    unexpected = len(set(run.events) - set(reference.events)) + len(set(run.dead) - set(ref_dead))
    dups = (sum(c - 1 for c in run.events.values() if c > 1)
            + sum(max(0, c - ref_dead[k]) for k, c in run.dead.items() if k in ref_dead))
    ref_inc, run_inc = reference.incidents(), run.incidents()
    differ = sum(1 for k, v in ref_inc.items() if run_inc.get(k) != v) + len(set(run_inc) - set(ref_inc))
    skips = sum(1 for v in run.versions.values() if set(v) != set(range(1, max(v) + 1)))
    repeats = sum(c - 1 for v in run.versions.values() for c in v.values() if c > 1)
    return Verdict(len(records), lost, unexpected, dups, differ, skips, repeats,
                   sum(c - 1 for c in run.dispatch.values() if c > 1))
