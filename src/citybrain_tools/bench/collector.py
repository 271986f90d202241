"""The dispatch benchmark's receiving end, in a process of its own.

Measured (docs/performance.md, issue 13): the collector read every department's topic —
32 desks × 6 partitions — with one consumer, in the benchmark's own event loop beside the
traffic source.  The broker's echo floor received by a consumer that also held 192 idle
partitions had p50 8–11 ms against 2.9 ms alone (aiokafka lists every partition in every
fetch, and parses every partition of every answer in Python).  So a dispatch's receipt
measured the collector as much as the worker, and ours alone paid for it: the loop's and
the floor's consumers held 6 partitions.  Now each topic is read by a consumer of its own,
as each department reads its own, in a process of its own, for ours, the loop and the floor
alike.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from citybrain.kafka.clients import HOT_PATH_CONSUMER_REQUEST_TIMEOUT_MS, kafka_consumer

# A fetch is answered as soon as a record arrives (fetch_min_bytes 1); the wait bounds only
# the polls of an idle topic, which the Java client's default keeps cheap.
FETCH_MAX_WAIT_MS = 500


def dispatch_source_ts(value: bytes, key: bytes | None = None) -> float | None:
    """The dispatch record's source Kafka timestamp (ours) or the stamp the loop copied.
    Only a ``dispatched`` change is a dispatch: an assisting department's ``assist_added``
    shares the topic, and one an escalation adds seconds later (a gauge climbing to orange)
    would count its wait for the level as dispatch latency (the 8 s maxima of runs since
    issue 14)."""
    doc = orjson.loads(value)
    if "snapshot" in doc:
        if doc.get("type") != "dispatched":
            return None
        return datetime.fromisoformat(doc["snapshot"]["source_ingested_at"]).timestamp()
    return float(doc["_source_ts"])


def probe_source_ts(value: bytes, key: bytes | None = None) -> float | None:
    """The floor's probe record: its key is the send time."""
    return float(key) if key is not None else None


KINDS: dict[str, Callable[[bytes, bytes | None], float | None]] = {
    "dispatch": dispatch_source_ts, "probe": probe_source_ts}


def opener_event_id(value: bytes) -> str | None:
    """The event a dispatched order was opened by (the first of its events)."""
    events = orjson.loads(value).get("snapshot", {}).get("events") or ()
    return events[0]["event_id"] if events else None


def hops(dispatches: list[tuple[float, float, float, str | None]],
         inbox: dict[str, float]) -> list[tuple[float, float, float, float]]:
    """Each dispatch's latency in its three hops, (receipt, normalise, fuse, last) in
    seconds: source → the fusion inbox record's Kafka timestamp (stamped when the
    normalise stage sent it), → the dispatch's own timestamp (when the fuse stage sent
    it), → receipt.  A dispatch whose inbox record was not seen is left out."""
    out = []
    for receipt, source, dispatched, event_id in dispatches:
        at = inbox.get(event_id) if event_id is not None else None
        if at is not None:
            out.append((receipt, at - source, dispatched - at, receipt - dispatched))
    return out


async def _follow(bootstrap: str, topics: list[str], take: Callable[[float, ConsumerRecord], None],
                  stop: Callable[[], bool], on_ready: Callable[[], None]) -> None:
    """Each record on ``topics`` from their ends until ``stop()``, handed to ``take`` with
    its receipt time; one consumer per topic (the module doc)."""
    # A department's reader set up as ours are for a hung broker (kafka/clients.py): its
    # metadata refresh may go to the hung node too, and with aiokafka's 40 s it learnt of
    # the new leaders only when that node answered again (bench failover ``hang``).
    consumers = [kafka_consumer(t, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest",
                                fetch_max_wait_ms=FETCH_MAX_WAIT_MS, enable_auto_commit=False,
                                request_timeout_ms=HOT_PATH_CONSUMER_REQUEST_TIMEOUT_MS)
                 for t in topics]

    async def ready(consumer: AIOKafkaConsumer, topic: str) -> None:
        """Every partition assigned and at its end before the traffic starts."""
        await consumer.start()
        while not (parts := consumer.partitions_for_topic(topic)) or len(consumer.assignment()) < len(parts):
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)

    async def read(consumer: AIOKafkaConsumer) -> None:
        while not stop():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for records in batch.values():
                for m in records:
                    take(now, m)
    try:
        await asyncio.gather(*(ready(c, t) for c, t in zip(consumers, topics, strict=True)))
        on_ready()
        await asyncio.gather(*(read(c) for c in consumers))
    finally:
        await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)


async def collect(bootstrap: str, topics: list[str], kind: str, stop: Callable[[], bool],
                  on_ready: Callable[[], None] = lambda: None, keep: bool = False) -> dict[str, list]:
    """(receipt time, latency) of every record on ``topics`` from now until ``stop()``;
    ``last_hop``: receipt − the record's own Kafka timestamp (stamped by the producer that
    wrote it: for ours the fuse stage), which splits a dispatch's latency into the stages'
    part and the last hop's.  ``keep``: each dispatch's (receipt, source, dispatched,
    opening event) too, for ``hops``."""
    source_ts = KINDS[kind]
    samples: list[tuple[float, float]] = []
    last_hop: list[tuple[float, float]] = []
    dispatches: list[tuple[float, float, float, str | None]] = []

    def take(now: float, m: ConsumerRecord) -> None:
        if (ts := source_ts(m.value, m.key)) is None:
            return
        samples.append((now, now - ts))
        last_hop.append((now, now - m.timestamp / 1000.0))
        if keep:
            dispatches.append((now, ts, m.timestamp / 1000.0, opener_event_id(m.value)))
    await _follow(bootstrap, topics, take, stop, on_ready)
    return {"samples": samples, "last_hop": last_hop, "dispatches": dispatches}


async def trace(bootstrap: str, topics: list[str], stop: Callable[[], bool],
                on_ready: Callable[[], None] = lambda: None) -> dict[str, dict[str, float]]:
    """The Kafka timestamp of each event on ``topics`` (ours: the fusion inbox) by its id,
    which splits a dispatch's stages' part further (``hops``)."""
    inbox: dict[str, float] = {}

    def take(now: float, m: ConsumerRecord) -> None:
        inbox[orjson.loads(m.value)["event_id"]] = m.timestamp / 1000.0
    await _follow(bootstrap, topics, take, stop, on_ready)
    return {"inbox": inbox}


def _main(bootstrap: str, topics: list[str], kind: str, keep: bool, ready: Any, stop: Any, results: Any) -> None:
    # A failover run kills a broker on purpose: the client's retries (one error line per
    # fetch every 100 ms, thousands a run) would bury the report.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    out = asyncio.run(trace(bootstrap, topics, stop.is_set, ready.set) if kind == "trace"
                      else collect(bootstrap, topics, kind, stop.is_set, ready.set, keep))
    results.send(out)
    results.close()


class _Spawned:
    """One ``collect`` in a spawned process."""

    def __init__(self, bootstrap: str, topics: list[str], kind: str, keep: bool = False):
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop = ctx.Event(), ctx.Event()
        self.results, child_end = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_main, args=(bootstrap, topics, kind, keep, self.ready, self.stop, child_end),
                                   name=f"citybrain-bench-collector-{kind}", daemon=True)
        self.child_end = child_end

    async def start(self, timeout: float) -> None:
        self.process.start()
        self.child_end.close()   # the child holds its end now
        deadline = time.monotonic() + timeout
        while not self.ready.is_set():
            if not self.process.is_alive():
                raise RuntimeError(f"收集进程退出 the benchmark's collector exited with code {self.process.exitcode}")
            if time.monotonic() > deadline:
                raise TimeoutError("收集进程未就绪 the benchmark's collector was not ready in time")
            await asyncio.sleep(0.05)

    async def finish(self, timeout: float) -> dict[str, Any]:
        self.stop.set()
        ok = await asyncio.to_thread(self.results.poll, timeout)
        if not ok:
            self.process.kill()
            raise TimeoutError("收集进程无结果 the benchmark's collector gave no result in time")
        out: dict[str, Any] = self.results.recv()
        await asyncio.to_thread(self.process.join, 10)
        return out


class CollectorProcess:
    """``collect`` in a spawned process: ``await start()`` returns once it reads every
    partition from its end; ``await finish()`` stops it and returns its samples.  The
    ``trace`` topics are read in a second process: in the dispatch collector's loop their
    1,000 records/s (fetch decoding, a JSON parse each) delayed the receipts ours was
    measured by and the floor's were not."""

    def __init__(self, bootstrap: str, topics: list[str], kind: str = "dispatch", trace: Sequence[str] = ()):
        self.readers = [_Spawned(bootstrap, topics, kind, keep=bool(trace))]
        if trace:
            self.readers.append(_Spawned(bootstrap, list(trace), "trace"))
        self.process = self.readers[0].process

    async def start(self, timeout: float = 60.0) -> CollectorProcess:
        await asyncio.gather(*(r.start(timeout) for r in self.readers))
        return self

    async def finish(self, timeout: float = 60.0) -> dict[str, list]:
        got = await asyncio.gather(*(r.finish(timeout) for r in self.readers))
        out: dict[str, list] = {k: v for k, v in got[0].items() if k != "dispatches"}
        out["hops"] = hops(got[0]["dispatches"], got[1]["inbox"]) if len(got) > 1 else []
        return out
