"""`citybrain bench failover` (issue 38 item 5): how long dispatching stops, and how long the
reports sent around a fault wait, for each fault a city meets.

Each run: fresh topics, worker processes, background city traffic (``rate`` records/s)
and a field report every ``probe_every`` seconds at a place of its own (each opens an order
and is dispatched at once); a collector in its own process takes every dispatch's receipt
and latency (receipt − its source record's Kafka time: bench/collector.py).  After
``before`` seconds the fault:

- ``restart``: the only worker SIGKILLed and started again at once (a supervisor's restart;
  the same instance id: static membership takes the partitions back without a rebalance);
- ``takeover``: one of two workers SIGKILLed for good (the other takes over once the
  session times out);
- ``handover``: one of two workers stopped with SIGTERM (it leaves the group; the other
  takes over at once);
- ``rolling``: two workers, each stopped with SIGTERM and started again in turn;
- ``leader``: with the local three-node cluster running, the node leading most
  ingest partitions SIGKILLed and started again 5 s later;
- ``hang``: with the local three-node cluster, that node frozen (SIGSTOP) for
  ``HANG_SECONDS`` and then let go (SIGCONT) — a hung broker, whose open connections answer
  nothing, where a crashed one's are refused.

With ``console_apart`` (``--console-apart``) the faulted workers are stage processes
(``CITYBRAIN_CONSOLE=false``) beside a console process of their own that no fault touches —
the shape of docker-compose.yml and deploy/k8s.

Reported per run, never a best-of: the dispatch gap (the longest time after the fault with
no dispatch received), when dispatching resumed, and the latency percentiles of the reports
sent in the ``window`` seconds after the fault (for ``rolling``: until both workers are back, and
2 s more) beside those dispatched before it.  A measurement,
never a test assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable

import orjson

from citybrain.config import Config
from citybrain.kafka.clients import HOT_PATH_PRODUCER, kafka_admin, kafka_producer
from citybrain.kafka.topics import Topics
from citybrain.progress import Progress
from citybrain_tools.bench.collector import CollectorProcess
from citybrain_tools.bench.common import BenchWorker, fresh_topics
from citybrain_tools.bench.dispatch import _sim, _state_points
from citybrain_tools.bench.stats import percentiles
from citybrain_tools.simulate.runner import run as run_simulation
from citybrain_tools.simulate.source import FieldSource
from citybrain_tools.simulate.traffic import iso

SCENARIOS = ("restart", "takeover", "handover", "rolling", "leader", "hang")
CLUSTER_SCENARIOS = ("leader", "hang")   # need the local three-node cluster
HANG_SECONDS = 15.0
NODE_MARKS = ("node", "controller")   # node ids among the marks, not moments
# A steady state whose p99 is already past this was overrun before the fault (the box could
# not carry the rate: three brokers' JVMs beside the workers on two cores, measured): what
# the reports wait after the fault then includes that backlog, not only the failover.
OVERRUN_BEFORE_MS = 1000.0
WORKERS = {"restart": 1, "takeover": 2, "handover": 2, "rolling": 2, "leader": 1, "hang": 1}


async def _probe_reports(bootstrap: str, topics: Topics, every: float, seconds: float, seed: int) -> int:
    """A field report every ``every`` seconds, each at a place no other report reaches (its
    own order, dispatched at once)."""
    points = _state_points(int(seconds / every) + 1)[seed % 7:]
    source = await FieldSource(lambda: kafka_producer(bootstrap_servers=bootstrap, **HOT_PATH_PRODUCER,
                                                      client_id="citybrain-bench-probe")).start()
    sent = 0

    done = asyncio.Event()

    async def follow_up() -> None:   # a failed report sent again at once, the pacing untouched
        while not done.is_set():
            await source.settle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.2)
    following = asyncio.create_task(follow_up())
    try:
        start = time.monotonic()
        for i, (category, lon, lat) in enumerate(points):
            due = start + i * every
            if due - start > seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            body = {"report_id": f"FO-{seed}-{i}", "reporter_id": "GM-FO", "category": category,
                    "ts": iso(time.time()), "lon": lon, "lat": lat}
            await source.send(topics.reports, orjson.dumps(body), b"GM-FO")
            sent += 1
        done.set()
        await following   # its last settle done: nothing is being sent again behind this one
        await source.settle()
    finally:
        following.cancel()
        await source.stop()
    return sent


async def _busiest_leader(bootstrap: str, topic: str) -> int:
    admin = kafka_admin(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    led = [p["leader"] for p in described["partitions"]]
    return max(set(led), key=led.count)


def unsettled(described: list[dict]) -> int:
    """Partitions not yet healed after a node came back: an in-sync replica missing, or a
    leader other than the preferred (first) replica — the controller moves it back soon
    (leader.imbalance.check.interval.seconds), a leader change in the middle of a run."""
    return sum(1 for topic in described for p in topic["partitions"]
               if set(p["isr"]) != set(p["replicas"]) or (p["replicas"] and p["leader"] != p["replicas"][0]))


SETTLE_SECONDS = 180.0
SETTLE_POLL_SECONDS = 2.0


async def settle_cluster(bootstrap: str, timeout: float = SETTLE_SECONDS) -> tuple[float, int]:
    """Before a cluster run: wait until every partition has all its replicas in sync and its
    preferred leader, so a run never begins while the last run's killed node still catches up
    or its leaders move back (that would measure the healing, not the next fault).  Returns
    the seconds waited and the partitions still unsettled at the end (0: settled)."""
    admin = kafka_admin(bootstrap_servers=bootstrap)
    await admin.start()
    started, left = time.monotonic(), -1
    try:
        while time.monotonic() - started < timeout:
            left = unsettled(await admin.describe_topics())
            if left == 0:
                break
            print(f"  等待集群恢复 waiting for the cluster to heal: {left} partitions not yet in sync "
                  f"with their preferred leader ({time.monotonic() - started:.0f} s)", flush=True)
            await asyncio.sleep(SETTLE_POLL_SECONDS)
    finally:
        await admin.close()
    return round(time.monotonic() - started, 1), left


def _fault(name: str, bootstrap: str, workers: list[BenchWorker], topics: Topics,
           marks: dict[str, float]) -> Callable[[], Awaitable[None]]:
    async def restart() -> None:
        workers[0].stop(signal.SIGKILL)
        workers[0].start()
        await workers[0].ready()
        marks["ready_again"] = time.time()

    async def takeover() -> None:
        workers[1].stop(signal.SIGKILL)

    async def handover() -> None:
        await asyncio.to_thread(workers[1].stop, signal.SIGTERM)
        marks["stopped"] = time.time()

    async def rolling() -> None:
        for i, w in enumerate(workers):
            await asyncio.to_thread(w.stop, signal.SIGTERM)
            w.start()
            await w.ready()
            marks[f"worker{i}_back"] = time.time()

    async def busiest():
        """The local cluster, and the node leading most ingest partitions (marked)."""
        from citybrain_tools.local_kafka import local_cluster
        marks["node"] = node = await _busiest_leader(bootstrap, topics.iot)
        return local_cluster(), node

    async def leader() -> None:
        cluster, node = await busiest()
        marks["controller"] = cluster.active_controller() or 0   # killing it costs an election first
        cluster.kill(node)
        await asyncio.sleep(5)
        await asyncio.to_thread(cluster.restart, node)
        marks["node_back"] = time.time()

    async def hang() -> None:
        cluster, node = await busiest()
        cluster.freeze(node)
        try:
            await asyncio.sleep(HANG_SECONDS)
        finally:
            cluster.thaw(node)
        marks["node_thawed"] = time.time()
    return {"restart": restart, "takeover": takeover, "handover": handover, "rolling": rolling,
            "leader": leader, "hang": hang}[name]


def summarize(samples: list[tuple[float, float]], fault_at: float, window: float) -> dict:
    """The dispatch gap after the fault, when dispatching resumed, and the latency of the
    reports sent in the ``window`` after it (source time = receipt − latency) beside
    those dispatched before it."""
    receipts = sorted(at for at, _ in samples if at >= fault_at)
    gaps = [(b - a, a) for a, b in zip([fault_at, *receipts], receipts, strict=False)]
    gap, gap_from = max(gaps, default=(0.0, fault_at))
    before = [lat for at, lat in samples if at < fault_at]   # the steady state: received before it
    around = [lat for at, lat in samples if fault_at <= at - lat < fault_at + window]
    return {"dispatch_gap_s": round(gap, 2), "gap_began_s_after_fault": round(gap_from - fault_at, 2),
            "first_dispatch_after_fault_s": round(receipts[0] - fault_at, 2) if receipts else None,
            "reports_before": percentiles(before), "reports_after_fault": percentiles(around)}


async def one_run(bootstrap: str, name: str, rate: float, before: float, after: float, probe_every: float,
                  window: float, seed: int, console_apart: bool = False) -> dict:
    if name == "rolling":   # two stops and starts: the traffic lasts them out, the window spans them
        after = max(after, 60.0)
    topics, _ = await fresh_topics(bootstrap, f"fo-{name}")
    stage_env = {"CITYBRAIN_CONSOLE": "false"} if console_apart else None
    workers = [BenchWorker(bootstrap, topics, stage_env) for _ in range(WORKERS[name])]
    console = [BenchWorker(bootstrap, topics, {"CITYBRAIN_STAGES": "none"})] if console_apart else []
    marks: dict[str, float] = {}
    try:
        await asyncio.gather(*(w.ready() for w in workers + console))
        dispatch_topics = [topics.dispatch(code) for code in Config().desks]
        collector = await CollectorProcess(bootstrap, dispatch_topics).start()
        seconds = before + after
        started = time.time()
        try:
            traffic = asyncio.create_task(run_simulation(
                _sim(rate, seconds, seed, started), bootstrap, topics,
                progress=Progress(f"  {name} {rate:g}/s", total=seconds)))
            probes = asyncio.create_task(_probe_reports(bootstrap, topics, probe_every, seconds, seed))
            await asyncio.sleep(before)
            fault_at = time.time()
            await _fault(name, bootstrap, workers, topics, marks)()
            marks["fault_done"] = time.time()
            if marks["fault_done"] - started > seconds - 3:
                print(f"  注意 the fault outlasted the traffic ({marks['fault_done'] - fault_at:.0f} s): "
                      "raise --after", flush=True)
            sent = await traffic
            probed = await probes
            await asyncio.sleep(5.0)
        finally:
            got = await collector.finish()
    finally:
        for w in workers + console:
            w.stop()
    result = {"scenario": name, "workers": len(workers), "console_apart": console_apart, "rate": rate, "traffic_sent": sent["sent"],
              "probe_reports": probed, "dispatches": len(got["samples"]),
              "window_s": round(span := max(window, marks["fault_done"] - fault_at + 2), 1) if name == "rolling"
              else window, **summarize(got["samples"], fault_at, span if name == "rolling" else window),
              "marks_s_after_fault": {k: (v if k in NODE_MARKS else round(v - fault_at, 2)) for k, v in marks.items()},
              "worker_logs": [str(w.log_path) for w in workers]}
    return result


async def bench(bootstrap: str, scenarios: list[str], runs: int, rate: float, before: float, after: float,
                probe_every: float, window: float, seed: int, console_apart: bool = False) -> dict:
    # The faults are on purpose: the traffic's and the probes' clients retry through them,
    # and their error lines (one per retry, thousands a leader kill) would bury the report.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    out: dict[str, list] = {}
    for name in scenarios:
        if name in CLUSTER_SCENARIOS:
            from citybrain_tools.local_kafka import local_cluster
            if local_cluster().bootstrap() != bootstrap:
                print(f"  跳过 {name}: needs the local three-node cluster (citybrain kafka start --nodes 3)",
                      flush=True)
                continue
            if Config().topic_retention.replication.factor < 2:
                # Run so (it was, once), a node's partitions had no other replica: the "gap" was
                # the node's whole absence (33 s), not a failover.
                print(f"  跳过 {name}: the topics would have one replica — set CITYBRAIN_REPLICATION_FACTOR=3 "
                      "CITYBRAIN_MIN_INSYNC_REPLICAS=2 (as `citybrain kafka start --nodes 3` says)", flush=True)
                continue
        for i in range(runs):
            print(f"▶ 故障 fault {name} run {i + 1}/{runs}", flush=True)
            settled = await settle_cluster(bootstrap) if name in CLUSTER_SCENARIOS else None
            run = await one_run(bootstrap, name, rate, before, after, probe_every, window, seed + i, console_apart)
            if settled is not None:
                run["cluster_settle"] = {"waited_s": settled[0], "unsettled": settled[1]}
            out.setdefault(name, []).append(run)
    return {"scenarios": out, "rate": rate, "probe_every_s": probe_every, "window_s": window,
            "console_apart": console_apart}


def report(result: dict) -> str:
    lines = [f"故障切换 failover: background {result['rate']:g} records/s, a field report every "
             f"{result['probe_every_s'] * 1000:g} ms; the latency of the reports sent after each fault beside "
             "those dispatched before it (every run)"
             + ("; the workers are stage processes, the console a process of its own no fault touches"
                if result.get("console_apart") else "")]
    for name, runs in result["scenarios"].items():
        for i, r in enumerate(runs, 1):
            a, b = r["reports_after_fault"], r["reports_before"]
            lines.append(
                f"  {name:<9} run {i}: 派发中断 dispatch gap {r['dispatch_gap_s']:.2f} s "
                f"(from +{r['gap_began_s_after_fault']:.2f} s); sent in the {r['window_s']:g} s after the fault p50 {a.get('p50_ms', '-')} "
                f"p99 {a.get('p99_ms', '-')} max {a.get('max_ms', '-')} ms (n {a['n']}); before p50 "
                f"{b.get('p50_ms', '-')} p99 {b.get('p99_ms', '-')} ms; marks {r['marks_s_after_fault']}; "
                f"worker logs {' '.join(r.get('worker_logs', []))}")
            if (settle := r.get("cluster_settle")) is not None:
                lines.append(f"    集群 the cluster before the run: healed after {settle['waited_s']:g} s" if not settle["unsettled"]
                             else f"    ⚠ 集群未恢复 the cluster had not healed in {settle['waited_s']:g} s: "
                                  f"{settle['unsettled']} partitions without all replicas in sync or their preferred leader")
            if b.get("p99_ms", 0) > OVERRUN_BEFORE_MS:
                lines.append(f"    ⚠ 故障前已积压 overrun before the fault: the reports dispatched before it already "
                             f"waited p99 {b['p99_ms']} ms (> {OVERRUN_BEFORE_MS:g}); the figures after it include "
                             "that backlog — measure the failover at a rate this box carries (--rate)")
    return "\n".join(lines)
