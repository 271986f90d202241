"""Produces simulated traffic to Kafka at the chosen rate, with progress and a summary."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from citybrain.display import wrap_items
from citybrain.kafka.clients import kafka_producer
from citybrain.kafka.topics import Topics
from citybrain.progress import Progress
from citybrain_tools.bench.stats import percentiles
from citybrain_tools.simulate.source import FieldSource
from citybrain_tools.simulate.traffic import CitySimulator, SimRecord


async def run(sim: CitySimulator, bootstrap: str, topics: Topics, *, paced: bool = True,
              progress: Progress | None = None, linger_ms: int = 5, pace_every: float = 0.02) -> dict:
    """Send every record; with ``paced`` each simulated second takes a wall second, sent
    in bursts at most ``pace_every`` seconds apart."""
    target = {"iot": topics.iot, "video": topics.video, "report": topics.reports, "device": topics.device_status}
    acks = AckLatency()
    source = await FieldSource(lambda: kafka_producer(
        bootstrap_servers=bootstrap, linger_ms=linger_ms, max_request_size=2 * 1024 * 1024, acks="all",
        client_id="citybrain-simulator"), on_ack=acks.on_ack).start()
    by_label: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    sent = 0

    async def send(rec: SimRecord) -> None:
        nonlocal sent
        await source.send(target[rec.source], rec.value, rec.key)
        sent += 1
        by_label[rec.label] += 1
        by_source[rec.source] += 1
        if len(source.pending) >= 2000:
            await source.settle()
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
        await source.settle()
    finally:
        await source.stop()
        if progress:
            progress.update(sim.duration, f"已发送 sent {sent:,}", force=True)
            progress.close()
    elapsed = time.monotonic() - start
    return {"sent": sent, "retried": source.retried, "seconds": round(elapsed, 2), "rate": round(sent / max(elapsed, 1e-6), 1),
            "ack_ms": acks.percentiles(),
            "by_source": dict(by_source), "by_label": dict(sorted(by_label.items()))}


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
