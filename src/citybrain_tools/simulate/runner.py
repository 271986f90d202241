"""Produces simulated traffic to Kafka at the chosen rate, with progress and a summary."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
)

from citybrain.display import wrap_items
from citybrain.kafka.clients import kafka_producer, stop_quietly
from citybrain.kafka.topics import Topics
from citybrain.progress import Progress
from citybrain_tools.bench.stats import percentiles
from citybrain_tools.simulate.traffic import CitySimulator, SimRecord


async def run(sim: CitySimulator, bootstrap: str, topics: Topics, *, paced: bool = True,
              progress: Progress | None = None, linger_ms: int = 5, pace_every: float = 0.02) -> dict:
    """Send every record; with ``paced`` each simulated second takes a wall second, sent
    in bursts at most ``pace_every`` seconds apart."""
    target = {"iot": topics.iot, "video": topics.video, "report": topics.reports, "device": topics.device_status}

    def new_producer():
        return kafka_producer(bootstrap_servers=bootstrap, linger_ms=linger_ms, max_request_size=2 * 1024 * 1024,
                              acks="all", client_id="citybrain-simulator")
    producer = new_producer()
    await producer.start()
    by_label: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    acks = AckLatency()
    sent = retried = 0
    pending: list[tuple[asyncio.Future, SimRecord]] = []

    async def enqueue(rec: SimRecord) -> None:
        """Hand ``rec`` to the producer; while its partition has no leader (a node killed or
        hung, until the cluster moves it) there may be no room for it: tried again, as a
        field gateway would, not given up (the bench's source once died of it)."""
        nonlocal retried
        while True:
            try:
                future = await producer.send(target[rec.source], rec.value, key=rec.key, timestamp_ms=None)
                break
            except KafkaTimeoutError:
                retried += 1
        future.add_done_callback(acks.on_ack)
        pending.append((future, rec))

    async def settle() -> None:
        """Every record handed over so far acknowledged; one whose batch expired unsent
        (no leader within the request timeout) or failed for a reason that passes (a
        leader being elected) is sent again."""
        nonlocal retried, producer
        while pending:
            batch = pending[:]
            pending.clear()
            await asyncio.gather(*(f for f, _ in batch), return_exceptions=True)
            failed: list[tuple[BaseException, SimRecord]] = []
            for f, rec in batch:
                if (error := f.exception()) is not None:
                    failed.append((error, rec))
            for error, _ in failed:
                if not (again(error) or isinstance(error, PRODUCER_STATE_ERRORS)):
                    raise error
            if any(isinstance(error, PRODUCER_STATE_ERRORS) for error, _ in failed):
                await stop_quietly(producer, 5.0)
                producer = new_producer()
                await producer.start()
            for _, rec in failed:
                retried += 1
                await enqueue(rec)

    async def send(rec: SimRecord) -> None:
        nonlocal sent
        await enqueue(rec)
        sent += 1
        by_label[rec.label] += 1
        by_source[rec.source] += 1
        if len(pending) >= 2000:
            await settle()
        if progress and sent % 200 == 0:
            rate = sent / max(time.monotonic() - start, 1e-6)
            progress.update(rec.at, f"已发送 sent {sent:,} ({rate:,.0f}/s)")

    start = time.monotonic()
    try:
        if paced:
            await _paced(sim, send, start, pace_every)
        else:
            for rec in sim.records():
                await send(rec)
        await settle()
        await producer.flush()
    finally:
        await producer.stop()
        if progress:
            progress.update(sim.duration, f"已发送 sent {sent:,}", force=True)
            progress.close()
    elapsed = time.monotonic() - start
    return {"sent": sent, "retried": retried, "seconds": round(elapsed, 2), "rate": round(sent / max(elapsed, 1e-6), 1),
            "ack_ms": acks.percentiles(),
            "by_source": dict(by_source), "by_label": dict(sorted(by_label.items()))}


# The idempotent producer's own sequence state broken — a leader lost with batches only it
# had: aiokafka does not reset its sequences as the Java client does (KIP-360); a producer
# anew, and what failed is sent again (an earlier copy may be on the topic: at least once).
PRODUCER_STATE_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch)


def again(error: BaseException | None) -> bool:
    """Whether a record whose send failed with ``error`` is worth sending again."""
    return isinstance(error, KafkaTimeoutError) or (isinstance(error, KafkaError) and error.retriable)


async def _paced(sim: CitySimulator, send, start: float, pace_every: float) -> None:
    """Each record sent when its simulated time comes, at most ``pace_every`` s late; the
    next records are generated a slice at a time between sends (≤ 1.5 s ahead), yielding
    to the event loop after each slice so the producer's sender keeps sending."""
    ready: deque[SimRecord] = deque()
    slices = sim.slices()
    exhausted = False
    while ready or not exhausted:
        elapsed = time.monotonic() - start
        if ready and ready[0].at - elapsed <= pace_every:
            await send(ready.popleft())
            continue
        if not exhausted and (not ready or ready[-1].at < elapsed + 1.5):
            item = next(slices, _END)
            if item is _END:
                exhausted = True
            elif isinstance(item, SimRecord):
                ready.append(item)
            else:
                await asyncio.sleep(0)
            continue
        await asyncio.sleep(ready[0].at - elapsed)


_END = object()


class AckLatency:
    """How long the source's records took from append (their CreateTime) to the
    broker's acknowledgement: what the source itself adds to every latency read from
    those timestamps."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def on_ack(self, future) -> None:
        if not future.cancelled() and future.exception() is None:
            self.samples.append(time.time() - future.result().timestamp / 1000.0)

    def percentiles(self) -> dict:
        return percentiles(self.samples)


def summary_text(result: dict) -> str:
    """The simulation's counts, every line within MAX_COLUMNS (display width)."""
    lines = [f"模拟完成 simulation done: {result['sent']:,} records in {result['seconds']}s "
             f"({result['rate']:,.0f}/s)",
             wrap_items("  按来源 by source: ", [f"{k}={v:,}" for k, v in result["by_source"].items()])]
    malformed = {k.split(":", 1)[1]: v for k, v in result["by_label"].items() if k.startswith("malformed:")}
    scenario = {k.split(":", 1)[1]: v for k, v in result["by_label"].items() if k.startswith("scenario:")}
    other = {k: v for k, v in result["by_label"].items() if ":" not in k}
    lines.append(wrap_items("  背景 background: ", [f"{k}={v:,}" for k, v in other.items()]))
    if scenario:
        lines.append(wrap_items("  剧本 scripted incidents: ", [f"{k}={v:,}" for k, v in scenario.items()]))
    if malformed:
        lines.append(wrap_items("  畸形 malformed (expect on deadletter): ",
                                [f"{k}={v:,}" for k, v in malformed.items()]))
    if result.get("retried"):
        lines.append(f"  重试 sent again: {result['retried']:,} (a partition without a leader for a while)")
    return "\n".join(lines)
