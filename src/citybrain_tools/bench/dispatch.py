"""The hot-path benchmark (`citybrain bench dispatch`).

1. Latency at fixed offered loads: simulated city traffic at L records/s for D s; a
   consumer outside the worker, in a process of its own (bench/collector.py), reads every
   ``dispatch.*`` record and takes (receipt time − the source record's Kafka timestamp,
   which its producer stamped).
   Beside it, in the same run on the same broker, a plain aiokafka
   consume → parse → produce loop over the same kind of traffic, measured the same way.
2. Maximum sustained throughput: a backlog drained by one worker, then by the loop.
3. State size: throughput and worker memory with 1k / 10k / 100k open orders.
Writes a JSON result and a PNG chart.  A measurement, never a test assertion.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from citybrain.config import Config
from citybrain.kafka.clients import HOT_PATH_PRODUCER, kafka_consumer, kafka_producer
from citybrain.progress import Progress
from citybrain_tools.bench.brokergc import read_pauses, spanned
from citybrain_tools.bench.collector import CollectorProcess
from citybrain_tools.bench.common import ONE_PROCESS, BenchWorkers, WorkerShape, fresh_topics, produce_backlog
from citybrain_tools.bench.stats import percentiles, tail
from citybrain_tools.sample.registry_builder import load
from citybrain_tools.sample.sites import UNDERPASS
from citybrain_tools.simulate.runner import AckLatency
from citybrain_tools.simulate.runner import run as run_simulation
from citybrain_tools.simulate.traffic import CitySimulator, iso


def windows(samples: list[tuple[float, float]], start: float, count: int, seconds: float) -> dict:
    """Percentiles per window of receipt time (every window reported, not the best), the
    whole run's from ``start``, the spread of the windows' p99, and apart from them the
    warm-up's (whatever came before ``start``)."""
    per = [percentiles([lat for at, lat in samples if start + i * seconds <= at < start + (i + 1) * seconds])
           for i in range(count)]
    p99s = [w["p99_ms"] for w in per if w.get("n")]
    whole = percentiles([lat for at, lat in samples if at >= start])
    return {**whole, "warmup": percentiles([lat for at, lat in samples if at < start]), "windows": per, "worst_window_p99_ms": max(p99s) if p99s else None,
            "best_window_p99_ms": min(p99s) if p99s else None,
            "p99_spread_ms": round(max(p99s) - min(p99s), 2) if p99s else None}


PAD = b"x" * 850   # a probe record of an event's size
BESIDE_RATE = 100.0   # probes a second sent beside ours: the broker's hop under the same load


class Probes:
    """Probe records at ``rate`` from the bench process to ``probe``, each keyed by its send
    time, received by a collector process of their own: the broker's floor (``echo_floor``,
    on an idle box) or its hop beside ours (``floor_beside``, the same broker on the same two
    cores while ours runs — the last hop's reference under the same load)."""

    def __init__(self, bootstrap: str, probe: str, rate: float):
        """``probe``: a topic of the run's own (``fresh_topics`` drops the last run's)."""
        self.bootstrap, self.probe, self.rate = bootstrap, probe, rate

    async def start(self, seconds: float, progress: Progress | None = None) -> Probes:
        self.collector = await CollectorProcess(self.bootstrap, [self.probe], kind="probe").start()
        self.producer = kafka_producer(bootstrap_servers=self.bootstrap, **HOT_PATH_PRODUCER)
        await self.producer.start()
        self.task = asyncio.create_task(self._send(seconds, progress))
        return self

    async def _send(self, seconds: float, progress: Progress | None) -> tuple[int, AckLatency]:
        acks = AckLatency()
        started, sent = time.time(), 0
        while (elapsed := time.time() - started) < seconds:
            due = int(elapsed * self.rate) - sent
            for _ in range(due):
                (await self.producer.send(self.probe, PAD, key=repr(time.time()).encode())).add_done_callback(
                    acks.on_ack)
            sent += max(due, 0)
            if progress is not None:
                progress.update(elapsed)
            await asyncio.sleep(0.002)
        if progress is not None:
            progress.close()
        return sent, acks

    async def sent(self) -> None:
        """Every probe sent."""
        await self.task

    async def finish(self, started: float, count: int, seconds: float) -> dict:
        """The receipts' windows from ``started``, and the sends' acknowledgements."""
        try:
            sent, acks = await self.task
        finally:
            await self.producer.stop()
            got = await self.collector.finish()
        return {"sent": sent, "source_ack_ms": acks.percentiles(), **windows(got["samples"], started, count, seconds)}


async def echo_floor(bootstrap: str, rate: float, count: int, seconds: float, warmup: float = 0.0) -> dict:
    """The broker's own floor: one produce → consume hop on a probe topic at the same rate,
    with the stages' producer settings (``HOT_PATH_PRODUCER``), records of an
    event's size, received by the collector process like ours and the loop's."""
    topics, (probe,) = await fresh_topics(bootstrap, "floor", ["floor.probe"])
    probes = await Probes(bootstrap, probe, rate).start(
        warmup + count * seconds, Progress(f"  floor {rate:g}/s", total=warmup + count * seconds))
    started = time.time()   # the sending task's first turn
    try:
        await probes.sent()
        await asyncio.sleep(2.0)
    finally:
        floor = await probes.finish(started + warmup, count, seconds)
    return floor


async def _baseline_loop(bootstrap: str, sources: list[str], out_topic: str, stop: asyncio.Event,
                         counter: list[float], group: str) -> None:
    """The plainest correct loop: consume in a group, parse, produce every record, commit.
    Reports and alerts go to the "dispatch" topic the latency is read from, the rest to a
    sink topic, so the loop does the I/O the worker does at least once per record."""
    consumer = kafka_consumer(*sources, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=5, max_poll_records=1000)
    producer = kafka_producer(bootstrap_servers=bootstrap, **HOT_PATH_PRODUCER,
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


# The traffic source sends like the floor's producer (its linger, every 2 ms), so that
# the floor is one hop of exactly what the source's records cross; the simulator's own
# defaults (linger 5 ms, bursts every 20 ms) added ~5 ms to ours and the loop alike.
SOURCE: dict[str, Any] = {"linger_ms": HOT_PATH_PRODUCER["linger_ms"], "pace_every": 0.002}


def _sim(rate: float, duration: float, seed: int, start: float) -> CitySimulator:
    return CitySimulator(load(Config().registry_path), seed=seed, rate=rate, duration=duration,
                         start=start)


async def latency_at(bootstrap: str, rate: float, count: int, seconds: float, seed: int,
                     warmup: float = 10.0, shape: WorkerShape = ONE_PROCESS, floor_beside: bool = False) -> dict:
    """Ours, the plain loop and the broker's echo floor at one offered load, one after
    the other on the same broker, each for ``count`` windows of ``seconds`` after
    ``warmup`` seconds of the same traffic (reported apart: right after a start the
    broker's new topics and every client's first requests are slower — measured, the
    floor's own first 15 s had p99 16 ms against 3.5 ms after).  ``floor_beside``: probes
    beside ours too (``Probes`` at ``BESIDE_RATE``; off by default: their sender and collector process
    share the two cores with ours)."""
    duration = warmup + count * seconds
    # Ours.
    topics, (probe,) = await fresh_topics(bootstrap, "lat", ["floor.probe"])
    worker = await BenchWorkers(bootstrap, topics, shape).ready()
    cfg = Config()
    dispatch_topics = [topics.dispatch(code) for code in cfg.desks]
    try:
        collector = await CollectorProcess(bootstrap, dispatch_topics, trace=[topics.fusion_inbox]).start()
        beside = await Probes(bootstrap, probe, BESIDE_RATE).start(duration) if floor_beside else None
        started = time.time()
        try:
            sent = await run_simulation(_sim(rate, duration, seed, started), bootstrap, topics,
                                        progress=Progress(f"  ours {rate:g}/s", total=duration), **SOURCE)
            await asyncio.sleep(3.0)
        finally:
            got = await collector.finish()
            beside_floor = ({"rate": BESIDE_RATE, **await beside.finish(started + warmup, count, seconds)}
                            if beside is not None else None)
        each = worker.pages()   # a process's own series (gc, event loop) read apart
        text = "\n".join(each)
        ours = {"sent": sent["sent"], "source_ack_ms": sent["ack_ms"], "rss_mb": round(worker.rss_mb(), 1), "stage_processes": shape.stage_processes,
                "stage_latency": stage_latency(text), "gc": per_process(gc_pauses, each),
                "stage_wait": stage_latency(text, "citybrain_stage_wait_seconds_bucket"),
                # exactly_once: a lane's transaction, begin → committed; at_least_once: an
                # offset commit's round trip
                "commits": stage_latency(text, "citybrain_commit_latency_seconds_bucket"),
                "event_loop_lag": [stage_latency(t, "citybrain_event_loop_lag_seconds_bucket").get("?") for t in each],
                "last_hop": percentiles([v for at, v in got["last_hop"] if at >= started + warmup]),
                "floor_beside": beside_floor,
                "hops": split_by_hop(hops := [h for h in got["hops"] if h[0] >= started + warmup]),
                "broker_gc": broker_gc(bootstrap, hops, started + warmup, started + duration),
                **windows(got["samples"], started + warmup, count, seconds)}
    finally:
        worker.stop()
    # The baseline loop, same traffic shape, same broker.
    topics, (out_topic, _) = await fresh_topics(bootstrap, "latb", ["baseline.dispatch", "baseline.dispatch.sink"])
    stop = asyncio.Event()
    counter = [0, 0.0, 0.0]
    collector = await CollectorProcess(bootstrap, [out_topic]).start()
    loop = asyncio.create_task(_baseline_loop(bootstrap, topics.ingest,
                                              out_topic, stop, counter, f"{topics.prefix}loop"))
    await asyncio.sleep(2.0)
    started = time.time()
    try:
        sent = await run_simulation(_sim(rate, duration, seed, started), bootstrap, topics,
                                    progress=Progress(f"  loop {rate:g}/s", total=duration), **SOURCE)
        await asyncio.sleep(3.0)
    finally:
        stop.set()
        got = await collector.finish()
        await loop
    baseline = {"sent": sent["sent"], "source_ack_ms": sent["ack_ms"], **windows(got["samples"], started + warmup, count, seconds)}
    floor = await echo_floor(bootstrap, rate, count, seconds, warmup)
    ratio = (round(ours["p99_ms"] / floor["p99_ms"], 2) if ours.get("p99_ms") and floor.get("p99_ms") else None)
    return {"rate": rate, "ours": ours, "baseline": baseline, "floor": floor, "p99_over_floor": ratio}


HOPS = ("normalise", "fuse", "last")


def broker_gc(bootstrap: str, rows: list[tuple[float, float, float, float]], since: float,
              until: float) -> dict | None:
    """The local broker's collector pauses over the windows and the dispatches whose path
    spanned one (bench/brokergc.py); None against any other broker (no log of its pauses)."""
    from citybrain_tools.local_kafka import local_broker
    broker = local_broker()
    if broker.bootstrap() != bootstrap:
        return None
    paused = read_pauses(broker.log_file.with_name("gc.log"), since, until)
    return None if paused is None else spanned(rows, paused, since, until)


def split_by_hop(rows: list[tuple[float, float, float, float]]) -> dict:
    """Where a dispatch's time goes, hop by hop (collector.hops: receipt, then source →
    normalise's send, → fuse's send, → receipt): each hop's percentiles over every
    dispatch, and over the tail alone — the dispatches at or past the whole's p99 — each
    hop's median there and how many of the tail it is the largest hop of."""
    if not rows:
        return {"n": 0}
    p99, slowest = tail(rows)
    out: dict = {"n": len(rows), "tail_n": len(slowest), "tail_from_ms": round(p99 * 1000, 2)}
    for i, hop in enumerate(HOPS, start=1):
        in_tail = sorted(r[i] for r in slowest)
        out[hop] = {**percentiles([r[i] for r in rows]),
                    "tail_p50_ms": round(in_tail[len(in_tail) // 2] * 1000, 2),
                    "tail_largest": sum(1 for r in slowest if r[i] == max(r[1:]))}
    return out


def gc_pauses(metrics_text: str) -> dict:
    """Collector passes per generation during the run: count and total ms."""
    from citybrain.promtext import samples as prom_samples
    out: dict = {}
    for name, key in (("citybrain_gc_pause_seconds_count", "passes"), ("citybrain_gc_pause_seconds_sum", "ms")):
        for labels, value in prom_samples(metrics_text, name):
            row = out.setdefault(f"gen{labels.get('generation')}", {})
            row[key] = int(value) if key == "passes" else round(value * 1000, 1)
    return out


def per_process(read, texts: list[str]) -> dict:
    """``read`` of each process's /metrics: as it is for one process, keyed p1, p2, … apart
    for more (a series every process has, like gc passes, would otherwise mix)."""
    if len(texts) == 1:
        return read(texts[0])
    return {f"p{i} {k}": v for i, t in enumerate(texts, start=1) for k, v in read(t).items()}


def stage_latency(metrics_text: str, name: str = "citybrain_stage_latency_seconds_bucket") -> dict:
    """Each stage's p50/p99 from its histogram buckets (upper bounds); a histogram without
    a stage label comes under "?"."""
    from citybrain.promtext import samples as prom_samples
    buckets: dict[str, list[tuple[float, float]]] = {}
    for labels, value in prom_samples(metrics_text, name):
        le = labels.get("le")
        bound = float("inf") if le in (None, "+Inf") else float(le)
        buckets.setdefault(labels.get("stage", "?"), []).append((bound, value))
    out = {}
    for stage, rows in buckets.items():
        rows.sort()
        total = rows[-1][1] if rows else 0
        def q(p: float, rows=rows, total=total) -> float | None:
            return next((round(le * 1000, 1) for le, c in rows if total and c >= p * total), None)
        out[stage] = {"n": int(total), "p50_ms_at_most": q(0.5), "p99_ms_at_most": q(0.99)}
    return out


async def max_throughput(bootstrap: str, records: int, seed: int, shape: WorkerShape = ONE_PROCESS) -> dict:
    topics, (out_topic, _) = await fresh_topics(bootstrap, "max", ["baseline.dispatch", "baseline.dispatch.sink"])
    await produce_backlog(bootstrap, topics, records, seed, "  backlog")
    total = records
    worker = await BenchWorkers(bootstrap, topics, shape).ready()
    try:
        # Ours is done when the last record is normalised *and* fused (two stages).
        ours = await _drain(worker.pipeline, total, "  ours drain", worker)
        ours["rss_mb"] = round(worker.rss_mb(), 1)
    finally:
        worker.stop()
    stop = asyncio.Event()
    counter = [0, 0.0, 0.0]   # records, first and last processing time (the loop's own clock)
    loop = asyncio.create_task(_baseline_loop(bootstrap, topics.ingest,
                                              out_topic, stop, counter, f"{topics.prefix}loop"))
    await _drain(lambda: counter[0], total, "  loop drain")
    stop.set()
    await loop
    elapsed = max(counter[2] - counter[1], 1e-9)
    base = {"records": counter[0], "seconds": round(elapsed, 2), "rate": round(counter[0] / elapsed, 1)}
    return {"records": total, "ours": ours, "baseline": base,
            "ratio": round(ours["rate"] / base["rate"], 3)}


# A drain is polled every DRAIN_POLL_SECONDS: a shorter one than this is reported with a
# warning (a 60,000-record drain took 1.2–2.7 s by 2026-11-24 evening).
SHORT_DRAIN_SECONDS = 10.0


DRAIN_POLL_SECONDS = 1.0


async def _drain(count, total: int, title: str, worker: BenchWorkers | None = None) -> dict:
    """A backlog drained: the rate from the first poll that saw records to the last one
    that still saw the drain under way, so neither the start-up before nor the idle poll
    after counts.  Polled once a second: ours is counted from the worker's /metrics, and a
    page rendered every 0.2 s was ~5 % of the worker's CPU in a drain (py-spy), which a
    Prometheus scraping every 15 s never costs."""
    progress = Progress(title, total=total)
    first: float | None = None
    first_n, cpu0 = 0, 0.0
    n = 0
    busy: tuple[float, int, float] | None = None   # the last poll with the drain under way
    while True:
        if worker is not None and (code := worker.poll()) is not None:
            progress.close()
            raise RuntimeError(f"工作进程退出 the worker exited with code {code} during "
                               f"'{title.strip()}'; see {worker.log_path}")
        n = count()
        now = time.monotonic()
        cpu = worker.cpu_seconds() if worker is not None else 0.0
        if n and first is None:
            first, first_n, cpu0 = now, n, cpu
        progress.update(n, f"{n:,}/{total:,}")
        if n >= total * 0.995:
            break
        if first is not None and now > first:
            busy = (now, n, cpu)
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    progress.close()
    if busy is None:   # done within a poll: the end is the best there is
        busy = (now, n, cpu)
    end, end_n, cpu1 = busy
    elapsed = max(end - (first if first is not None else end), 1e-9)
    out = {"records": end_n - first_n, "seconds": round(elapsed, 2), "rate": round((end_n - first_n) / elapsed, 1)}
    if worker is not None:   # the worker's CPU share while draining: is it CPU-bound or waiting?
        out["cpu_share"] = round((cpu1 - cpu0) / elapsed, 2)
    return out


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


async def state_size(bootstrap: str, open_orders: int, probe_records: int, seed: int,
                     shape: WorkerShape = ONE_PROCESS) -> dict:
    """Open `open_orders` orders that cannot fuse, then measure memory and throughput."""
    points = _state_points(open_orders)
    topics, _ = await fresh_topics(bootstrap, f"state{open_orders}")
    worker = await BenchWorkers(bootstrap, topics, shape).ready()
    try:
        rss_empty = worker.rss_mb()
        producer = kafka_producer(bootstrap_servers=bootstrap, linger_ms=20)
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
    for who, style, name in (("ours", "-", "citybrain"), ("baseline", "--", "aiokafka loop"),
                             ("floor", ":", "broker echo floor")):
        for p, color in (("p50_ms", "tab:green"), ("p99_ms", "tab:red"), ("worst_window_p99_ms", "tab:purple")):
            shown = [(r.get(who) or {}).get(p) for r in rows]   # a missing figure: a gap (NaN)
            ax.plot(rates, [float("nan") if v is None else v for v in shown], style, color=color, marker="o",
                    label=f"{name} {p.replace('_ms', '')}")
    ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("offered load (records/s)")
    ax.set_ylabel("dispatch latency (ms)")
    ax.set_title("Dispatch latency vs offered load — citybrain, plain aiokafka loop, broker floor")
    ax.set_yscale("log")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def bench(bootstrap: str, rates: list[float], window_seconds: float, max_records: int,
                state_sizes: list[int], seed: int = 1, windows_per_load: int = 5, throughput_runs: int = 3,
                warmup: float = 10.0, shape: WorkerShape = ONE_PROCESS, floor_beside: bool = False) -> dict:
    """``shape``: the worker's processes (bench/common.py); ``floor_beside``: the floor's
    hop also measured while ours runs (``Probes``)."""
    result: dict = {"windows": windows_per_load, "window_s": window_seconds, "warmup_s": warmup, "latency": [],
                    "max_throughput": None, "stage_processes": shape.stage_processes,
                    "console_apart": shape.console_apart, "shape": shape.describe()}
    for rate in rates:
        print(f"① 延迟 latency at {rate:g} records/s, {warmup:g} s warm-up + {windows_per_load} × "
              f"{window_seconds:g} s …", flush=True)
        result["latency"].append(await latency_at(bootstrap, rate, windows_per_load, window_seconds, seed, warmup,
                                                  shape, floor_beside))
    if max_records and throughput_runs:
        runs = []
        for i in range(throughput_runs):
            print(f"② 最大吞吐 max throughput over {max_records:,} records, run {i + 1}/{throughput_runs} …", flush=True)
            runs.append(await max_throughput(bootstrap, max_records, seed + i, shape))
        ratios = sorted(r["ratio"] for r in runs)
        result["max_throughput"] = {"runs": runs, "median_ratio": ratios[len(ratios) // 2]}
    result["state"] = []
    for n in state_sizes:
        print(f"③ 状态规模 {n:,} open orders …", flush=True)
        result["state"].append(await state_size(bootstrap, n, 20000, seed, shape))
    return result


def report(result: dict) -> str:
    where = result.get("shape") or WorkerShape(result.get("stage_processes", 1)).describe()
    lines = [f"派单延迟 dispatch latency (ms, receipt − source Kafka timestamp; {where}; {result.get('windows')} windows × "
             f"{result.get('window_s'):g} s per load after {result.get('warmup_s', 0):g} s of warm-up; the floor: "
             "one produce → consume hop)",
             "  load/s  who      n      p50    p99    max  | window p99: worst  best  spread | every window's p99"
             " | warm-up p99 | source's own produce → ack p99 / max"]
    for r in result["latency"]:
        for who, label in (("ours", "ours"), ("baseline", "loop"), ("floor", "floor")):
            w = r.get(who) or {}
            per = " ".join(str(x.get("p99_ms", "-")) for x in w.get("windows", []))
            lines.append(f"  {r['rate']:>6g}  {label:<5} {w.get('n', 0):>7} {w.get('p50_ms', '-'):>6} "
                         f"{w.get('p99_ms', '-'):>6} {w.get('max_ms', '-'):>6} | {w.get('worst_window_p99_ms', '-'):>17} "
                         f"{w.get('best_window_p99_ms', '-'):>5} {w.get('p99_spread_ms', '-'):>6} | {per}"
                         f" | {(w.get('warmup') or {}).get('p99_ms', '-')}"
                         f" | {(w.get('source_ack_ms') or {}).get('p99_ms', '-')} / {(w.get('source_ack_ms') or {}).get('max_ms', '-')}")
        lines.append(f"          ours p99 / floor p99 = {r.get('p99_over_floor')}; stages (bucket bounds): "
                     + ", ".join(f"{st} p50≤{v['p50_ms_at_most']} p99≤{v['p99_ms_at_most']} ms"
                                 for st, v in (r["ours"].get("stage_latency") or {}).items())
                     + "; waits before the fetch: "
                     + ", ".join(f"{st} p50≤{v['p50_ms_at_most']} p99≤{v['p99_ms_at_most']} ms"
                                 for st, v in (r["ours"].get("stage_wait") or {}).items())
                     + "; commits (exactly_once: a transaction, begin → committed; at_least_once: an offset commit): "
                     + ", ".join(f"{st} n {v['n']} p50≤{v['p50_ms_at_most']} p99≤{v['p99_ms_at_most']} ms"
                                 for st, v in (r["ours"].get("commits") or {}).items())
                     + f"; event-loop lag {r['ours'].get('event_loop_lag')}"
                     + "; last hop (fuse's produce → receipt) p50 {} p99 {} ms".format(
                         (r["ours"].get("last_hop") or {}).get("p50_ms"), (r["ours"].get("last_hop") or {}).get("p99_ms"))
                     + "; gc " + ", ".join(f"{g} {v.get('passes')} passes {v.get('ms')} ms"
                                           for g, v in sorted((r["ours"].get("gc") or {}).items())))
        beside, last = r["ours"].get("floor_beside") or {}, r["ours"].get("last_hop") or {}
        if beside.get("p99_ms"):
            per = " ".join(str(x.get("p99_ms", "-")) for x in beside.get("windows", []))
            lines.append(f"          the floor's hop beside ours (a probe at {beside['rate']:g}/s while ours ran): "
                         f"p50 {beside.get('p50_ms')} p99 {beside['p99_ms']} ms (every window's p99: {per}); "
                         f"last hop p99 / this p99 = {round(last['p99_ms'] / beside['p99_ms'], 2) if last.get('p99_ms') else '-'}"
                         f", / the floor alone's = {round(last['p99_ms'] / r['floor']['p99_ms'], 2) if last.get('p99_ms') and (r.get('floor') or {}).get('p99_ms') else '-'}")
        h = r["ours"].get("hops") or {}
        if h.get("n"):
            lines.append(f"          hops (ms; source → normalise sent → fuse sent → receipt; tail = the "
                         f"{h['tail_n']} dispatches ≥ {h['tail_from_ms']}): " + "; ".join(
                             f"{hop} p50 {h[hop]['p50_ms']} p99 {h[hop]['p99_ms']}, in the tail p50 "
                             f"{h[hop]['tail_p50_ms']} and largest in {h[hop]['tail_largest']}" for hop in HOPS))
        g = r["ours"].get("broker_gc") or {}
        if g:
            p = g["pauses"]
            lines.append(f"          broker GC pauses in the windows (var/kafka/gc.log): n {p['n']}"
                         + (f", p50 {p['p50_ms']} max {p['max_ms']} ms" if p["n"] else "")
                         + f", {p['share_of_time'] * 100:.2f} % of the time; dispatches whose path spanned one: "
                         f"tail {g.get('tail_spanning', '-')} of {g.get('tail_n', '-')}, "
                         f"all {g.get('all_spanning', '-')} of {g.get('all_n', '-')}")
    m = result.get("max_throughput")
    if m:
        runs = "; ".join(f"ours {x['ours']['rate']:,.0f}/s (worker CPU {x['ours'].get('cpu_share', '-')} of a core) "
                         f"loop {x['baseline']['rate']:,.0f}/s ({x['ratio']:.2f})"
                         for x in m["runs"])
        lines.append(f"最大吞吐 max throughput: {runs}; median ratio {m['median_ratio']:.2f}")
        # Only ours is polled: the loop's rate is taken from its own first and last record.
        short = min(x["ours"]["seconds"] for x in m["runs"])
        if short < SHORT_DRAIN_SECONDS:
            # 0: the backlog was drained before the first poll (the stages start before /readyz).
            off = f"±{DRAIN_POLL_SECONDS / short:.0%}" if short > 0 else "all of it (drained before the first poll)"
            lines.append(f"  ⚠ 排空过快 a drain took {short:.1f} s: ours is read from the worker's metrics every "
                         f"{DRAIN_POLL_SECONDS:g} s, so a drain under {SHORT_DRAIN_SECONDS:g} s is off by up to "
                         f"{off}; give --records a larger backlog (300,000 drains in 5–15 s here)")
    for s in result.get("state", []):
        lines.append(f"状态 state {s['open_orders']:,} open orders (opened in {s['open_seconds']}s): "
                     f"RSS {s['rss_empty_mb']} → {s['rss_loaded_mb']} MB, probe {s['probe_rate']:,.0f} records/s")
    return "\n".join(lines)
