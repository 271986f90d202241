"""The hot-path benchmark (`citybrain bench dispatch`).

1. Latency at fixed offered loads: simulated city traffic at L records/s for D s; a
   consumer outside the worker reads every ``dispatch.*`` record and takes
   (receipt time − the source record's Kafka timestamp, which its producer stamped).
   Beside it, in the same run on the same broker, a plain aiokafka
   consume → parse → produce loop over the same kind of traffic, measured the same way.
2. Maximum sustained throughput: a backlog drained by one worker, then by the loop.
3. State size: throughput and worker memory with 1k / 10k / 100k open orders.
Writes a JSON result and a PNG chart.  A measurement, never a test assertion.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from citybrain.kafka.clients import kafka_consumer
import orjson
from aiokafka import AIOKafkaProducer

from citybrain.bench.common import BenchWorker, fresh_topics, percentiles, produce_backlog
from citybrain.config import Config
from citybrain.progress import Progress
from citybrain.sample.registry_builder import load
from citybrain.sample.sites import UNDERPASS
from citybrain.simulate.runner import run as run_simulation
from citybrain.simulate.traffic import CitySimulator, iso


def _source_ts(value: bytes) -> float:
    """The dispatch record's source Kafka timestamp (ours) or the stamp the loop copied."""
    doc = orjson.loads(value)
    if "snapshot" in doc:
        return datetime.fromisoformat(doc["snapshot"]["source_ingested_at"]).timestamp()
    return doc["_source_ts"]


async def _collect(bootstrap: str, topics: list[str], stop: asyncio.Event, out: list[float]) -> None:
    consumer = kafka_consumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=5,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await asyncio.sleep(0.5)  # let the assignment settle before traffic starts
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for records in batch.values():
                out.extend(now - _source_ts(m.value) for m in records)
    finally:
        await consumer.stop()


async def _baseline_loop(bootstrap: str, sources: list[str], out_topic: str, stop: asyncio.Event,
                         counter: list[int], group: str) -> None:
    """The plainest correct loop: consume in a group, parse, produce every record, commit.
    Reports and alerts go to the "dispatch" topic the latency is read from, the rest to a
    sink topic, so the loop does the I/O the worker does at least once per record."""
    consumer = kafka_consumer(*sources, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=5, max_poll_records=1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks="all",
                                max_request_size=2 * 1024 * 1024)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            futures = []
            for records in batch.values():
                for m in records:
                    try:
                        doc = orjson.loads(m.value)
                    except orjson.JSONDecodeError:
                        doc = None
                    counter[0] += 1
                    counter[1] = counter[1] or time.monotonic()
                    counter[2] = time.monotonic()
                    if isinstance(doc, dict) and ("report_id" in doc or "alert_id" in doc):
                        # The loop's "dispatch": what our worker would dispatch at most.
                        doc["_source_ts"] = m.timestamp / 1000.0
                        futures.append(await producer.send(out_topic, orjson.dumps(doc), key=m.key))
                    else:
                        futures.append(await producer.send(out_topic + ".sink", m.value, key=m.key))
            if futures:
                await asyncio.gather(*futures)
            if batch:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


def _sim(rate: float, duration: float, seed: int, start: float) -> CitySimulator:
    return CitySimulator(load(Config().registry_path), seed=seed, rate=rate, duration=duration,
                         start=start)


async def latency_at(bootstrap: str, rate: float, duration: float, seed: int) -> dict:
    # Ours.
    topics, _ = await fresh_topics(bootstrap, "lat")
    worker = await BenchWorker(bootstrap, topics).ready()
    cfg = Config()
    dispatch_topics = [topics.dispatch(d.code) for d in cfg.taxonomy.departments]
    try:
        lat: list[float] = []
        stop = asyncio.Event()
        collector = asyncio.create_task(_collect(bootstrap, dispatch_topics, stop, lat))
        await asyncio.sleep(1.0)
        sent = await run_simulation(_sim(rate, duration, seed, time.time()), bootstrap, topics,
                                    progress=Progress(f"  ours {rate:g}/s", total=duration))
        await asyncio.sleep(3.0)
        stop.set()
        await collector
        ours = {"sent": sent["sent"], "rss_mb": round(worker.rss_mb(), 1), **percentiles(lat)}
    finally:
        worker.stop()
    # The baseline loop, same traffic shape, same broker.
    topics, (out_topic, _) = await fresh_topics(bootstrap, "latb", ["baseline.dispatch", "baseline.dispatch.sink"])
    lat = []
    stop = asyncio.Event()
    counter = [0, 0.0, 0.0]
    collector = asyncio.create_task(_collect(bootstrap, [out_topic], stop, lat))
    loop = asyncio.create_task(_baseline_loop(bootstrap, [topics.iot, topics.video, topics.reports],
                                              out_topic, stop, counter, f"{topics.prefix}loop"))
    await asyncio.sleep(2.0)
    sent = await run_simulation(_sim(rate, duration, seed, time.time()), bootstrap, topics,
                                progress=Progress(f"  loop {rate:g}/s", total=duration))
    await asyncio.sleep(3.0)
    stop.set()
    await asyncio.gather(collector, loop)
    return {"rate": rate, "ours": ours, "baseline": {"sent": sent["sent"], **percentiles(lat)}}


async def max_throughput(bootstrap: str, records: int, seed: int) -> dict:
    topics, (out_topic, _) = await fresh_topics(bootstrap, "max", ["baseline.dispatch", "baseline.dispatch.sink"])
    await produce_backlog(bootstrap, topics, records, seed, "  backlog")
    total = records
    worker = await BenchWorker(bootstrap, topics).ready()
    try:
        # Ours is done when the last record is normalised *and* fused (two stages).
        ours = await _drain(worker.pipeline, total, "  ours drain", worker)
        ours["rss_mb"] = round(worker.rss_mb(), 1)
    finally:
        worker.stop()
    stop = asyncio.Event()
    counter = [0, 0.0, 0.0]   # records, first and last processing time (the loop's own clock)
    loop = asyncio.create_task(_baseline_loop(bootstrap, [topics.iot, topics.video, topics.reports],
                                              out_topic, stop, counter, f"{topics.prefix}loop"))
    await _drain(lambda: counter[0], total, "  loop drain")
    stop.set()
    await loop
    elapsed = max(counter[2] - counter[1], 1e-9)
    base = {"records": counter[0], "seconds": round(elapsed, 2), "rate": round(counter[0] / elapsed, 1)}
    return {"records": total, "ours": ours, "baseline": base,
            "ratio": round(ours["rate"] / base["rate"], 3)}


async def _drain(count, total: int, title: str, worker: BenchWorker | None = None) -> dict:
    progress = Progress(title, total=total)
    first = None
    n = 0
    while True:
        if worker is not None and worker.proc.poll() is not None:
            progress.close()
            raise RuntimeError(f"工作进程退出 the worker exited with code {worker.proc.returncode} during "
                               f"'{title.strip()}'; see {worker.log_path}")
        n = count()
        now = time.monotonic()
        if n and first is None:
            first, first_n = now, n
        progress.update(n, f"{n:,}/{total:,}")
        if n >= total * 0.995:
            break
        await asyncio.sleep(0.2)
    progress.close()
    elapsed = max(now - first, 1e-9)
    return {"records": n - first_n, "seconds": round(elapsed, 2), "rate": round((n - first_n) / elapsed, 1)}


# Categories whose fusion radius is under the lattice spacing: none of these fuse.
STATE_CATEGORIES = ["road_damage", "garbage_overflow", "street_vending", "illegal_construction",
                    "manhole_cover", "streetlight_fault", "illegal_parking", "fallen_person", "other"]


def _state_points(n: int, spacing_m: float = 100.0):
    """n (category, lon, lat) inside the district, no two of one category within reach."""
    city = Config().city_map
    out = []
    side = 130
    for cat in STATE_CATEGORIES:
        for i in range(side * side):
            lon, lat = UNDERPASS.offset((i % side - side // 2) * spacing_m, (i // side - side // 2) * spacing_m)
            if city.locate(lon, lat) is not None:
                out.append((cat, lon, lat))
                if len(out) == n:
                    return out
    return out


async def state_size(bootstrap: str, open_orders: int, probe_records: int, seed: int) -> dict:
    """Open `open_orders` orders that cannot fuse, then measure memory and throughput."""
    points = _state_points(open_orders)
    topics, _ = await fresh_topics(bootstrap, f"state{open_orders}")
    worker = await BenchWorker(bootstrap, topics).ready()
    try:
        rss_empty = worker.rss_mb()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        await producer.start()
        try:
            ts = iso(time.time() - 120)
            futures = []
            for i, (cat, lon, lat) in enumerate(points):
                body = {"report_id": f"S-{i}", "reporter_id": "GM-1", "category": cat,
                        "ts": ts, "lon": lon, "lat": lat}
                futures.append(await producer.send(topics.reports, orjson.dumps(body), key=b"GM-1"))
                if len(futures) >= 5000:
                    await asyncio.gather(*futures)
                    futures.clear()
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        # Fusion is the second stage: wait until it has decided on every report.
        started = time.monotonic()
        await _drain(worker.fused, len(points), f"  opening {len(points):,} orders", worker)
        open_seconds = time.monotonic() - started
        opened = worker.opened()
        rss_loaded = worker.rss_mb()
        before = worker.received()
        await run_simulation(_sim(probe_records / 60.0, 60.0, seed, time.time() - 120), bootstrap, topics,
                             paced=False)
        probe = await _drain(lambda: worker.received() - before, probe_records, "  probe", worker)
        return {"open_orders": opened, "open_seconds": round(open_seconds, 1),
                "rss_empty_mb": round(rss_empty, 1), "rss_loaded_mb": round(rss_loaded, 1),
                "rss_after_probe_mb": round(worker.rss_mb(), 1), "probe_rate": probe["rate"]}
    finally:
        worker.stop()


def chart(result: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["latency"]
    if not rows:
        return
    rates = [r["rate"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5))
    for who, style in (("ours", "-"), ("baseline", "--")):
        for p, color in (("p50_ms", "tab:green"), ("p95_ms", "tab:orange"), ("p99_ms", "tab:red")):
            ax.plot(rates, [r[who].get(p) for r in rows], style, color=color, marker="o",
                    label=f"{'citybrain' if who == 'ours' else 'aiokafka loop'} {p[:3]}")
    ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("offered load (records/s)")
    ax.set_ylabel("dispatch latency (ms)")
    ax.set_title("Dispatch latency vs offered load — citybrain worker vs plain aiokafka loop")
    ax.set_yscale("log")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def bench(bootstrap: str, rates: list[float], duration: float, max_records: int,
                state_sizes: list[int], seed: int = 1) -> dict:
    result: dict = {"duration_s": duration, "latency": [], "max_throughput": None}
    for rate in rates:
        print(f"① 延迟 latency at {rate:g} records/s …", flush=True)
        result["latency"].append(await latency_at(bootstrap, rate, duration, seed))
    if max_records:
        print(f"② 最大吞吐 max throughput over {max_records:,} records …", flush=True)
        result["max_throughput"] = await max_throughput(bootstrap, max_records, seed)
    result["state"] = []
    for n in state_sizes:
        print(f"③ 状态规模 {n:,} open orders …", flush=True)
        result["state"].append(await state_size(bootstrap, n, 20000, seed))
    return result


def report(result: dict) -> str:
    lines = ["派单延迟 dispatch latency (ms, receipt − source Kafka timestamp)",
             "  load/s   ours n   p50    p95    p99    max   | loop n   p50    p95    p99    max"]
    for r in result["latency"]:
        o, b = r["ours"], r["baseline"]
        lines.append(f"  {r['rate']:>6g} {o.get('n', 0):>7} {o.get('p50_ms', '-'):>6} {o.get('p95_ms', '-'):>6} "
                     f"{o.get('p99_ms', '-'):>6} {o.get('max_ms', '-'):>6} | {b.get('n', 0):>6} "
                     f"{b.get('p50_ms', '-'):>6} {b.get('p95_ms', '-'):>6} {b.get('p99_ms', '-'):>6} "
                     f"{b.get('max_ms', '-'):>6}")
    m = result.get("max_throughput")
    if m:
        lines.append(f"最大吞吐 max throughput: ours {m['ours']['rate']:,.0f}/s, loop "
                     f"{m['baseline']['rate']:,.0f}/s, ratio {m['ratio']:.2f}")
    for s in result.get("state", []):
        lines.append(f"状态 state {s['open_orders']:,} open orders (opened in {s['open_seconds']}s): "
                     f"RSS {s['rss_empty_mb']} → {s['rss_loaded_mb']} MB, probe {s['probe_rate']:,.0f} records/s")
    return "\n".join(lines)
