"""``citybrain bench history``: does a year of orders make restarts slow or memory grow?

Per history length (e.g. 30 and 365 days at 3,000 orders a day, 10k open): a synthetic
history (``simulate.history``) is written to a fresh prefix's ``workorders.events`` and
``workorders.state``; then a worker is started (its first start folds the whole log into
the evaluation), stopped cleanly and started again — the restart a city does every week.
Measured: time from start to ``/readyz``, the worker's RSS, the API's list and detail
latency (sequential requests from one client), and ``citybrain kpis`` for a past month,
from the worker's checkpoint and by a full replay (the two must agree).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from citybrain.config import Config
from citybrain.kafka.clients import kafka_producer
from citybrain.kafka.topics import Topics
from citybrain.progress import Progress
from citybrain.worker_process import WorkerProcess
from citybrain_tools.bench.common import fresh_topics
from citybrain_tools.bench.stats import percentiles
from citybrain_tools.local_kafka.broker import free_port
from citybrain_tools.simulate.history import estimate_records, generate

TOKEN = "demo-operator"   # the sample operator token (config/auth.toml, docs/console.md)
TARGETS = {"restart_ready_s": 60.0, "rss_mb": 500.0, "api_p99_ms": 50.0, "growth_vs_30_days": 0.20}


async def write_history(bootstrap: str, topics: Topics, config: Config, days: int, per_day: int,
                        open_orders: int, seed: int) -> dict:
    producer = kafka_producer(bootstrap_servers=bootstrap, compression_type="zstd", linger_ms=50,
                                max_batch_size=1 << 20, max_request_size=8 << 20, acks=1)
    await producer.start()
    progress = Progress(f"写入历史 writing {days} days × {per_day:,} orders", total=estimate_records(days, per_day))
    started = time.monotonic()
    n = size = 0
    target = {"events": topics.workorder_events, "state": topics.workorder_state}
    try:
        for record in generate(config, days, per_day, open_orders, seed=seed):
            await producer.send(target[record.topic], record.value, key=record.key,
                                timestamp_ms=record.timestamp_ms)
            n += 1
            size += len(record.value)
            if n % 20_000 == 0:
                progress.update(n, f"{n:,} records, {size / 1e9:.2f} GB")
        await producer.flush()
    finally:
        await producer.stop()
        progress.update(n, f"{n:,} records, {size / 1e9:.2f} GB", force=True)
        progress.close()
    return {"records": n, "gb": round(size / 1e9, 2), "seconds": round(time.monotonic() - started, 1)}


def _get(port: int, path: str) -> tuple[float, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - started, orjson.loads(body)


def api_latency(port: int, requests: int, seed: int) -> dict:
    """List pages (newest first, open orders, one department, page 2) and the detail of
    random orders from them, one request at a time."""
    rng = random.Random(seed)
    lists = ["/api/v1/workorders?limit=50", "/api/v1/workorders?status=dispatched,accepted,handled&limit=50",
             "/api/v1/workorders?department=water&limit=50"]
    list_times, detail_times, ids = [], [], []
    for i in range(requests):
        took, body = _get(port, lists[i % len(lists)])
        list_times.append(took)
        ids += [o["work_order_id"] for o in body.get("items", [])]
        if body.get("next_cursor") and i % 10 == 0:
            took, _ = _get(port, f"/api/v1/workorders?limit=50&cursor={body['next_cursor']}")
            list_times.append(took)
    for _ in range(requests):
        took, _ = _get(port, f"/api/v1/workorders/{rng.choice(ids)}")
        detail_times.append(took)
    return {"list": percentiles(list_times), "detail": percentiles(detail_times), "orders_seen": len(set(ids))}


def kpis(env: dict, period: str, data_dir: Path | None) -> tuple[float, dict]:
    args = [sys.executable, "-m", "citybrain", "kpis", "--period", period, "--json"]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    started = time.monotonic()
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"citybrain kpis failed ({out.returncode}): {out.stderr[-2000:]}")
    return round(time.monotonic() - started, 2), orjson.loads(out.stdout.strip().splitlines()[-1])["figures"]


def _ready(worker: WorkerProcess, timeout: float) -> float:
    started = time.monotonic()
    worker.start()
    worker.wait_ready(timeout)
    return round(time.monotonic() - started, 2)


async def measure(bootstrap: str, days: int, per_day: int, open_orders: int, requests: int, seed: int,
                  keep: bool = False) -> dict:
    config = Config()
    topics, _ = await fresh_topics(bootstrap, f"history{days}")
    print(f"▶ {days} 天历史 days of history on {topics.prefix}", flush=True)
    row: dict = {"days": days, "orders_per_day": per_day, "open_target": open_orders}
    row["written"] = await write_history(bootstrap, topics, config, days, per_day, open_orders, seed)
    state = Path(tempfile.mkdtemp(prefix="citybrain-bench-history-"))
    port = free_port()
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CITYBRAIN_TOPIC_PREFIX=topics.prefix,
               CITYBRAIN_WEB_PORT=str(port), CITYBRAIN_STATE_DIR=str(state))
    data_dir = state / "worker-data"
    worker = WorkerProcess(env, port, state / "worker.log", loglevel="info", data_dir=data_dir)
    try:
        print("  首次启动 first start (the evaluation folds the whole log) …", flush=True)
        row["first_start_ready_s"] = await asyncio.to_thread(_ready, worker, 3600)
        row["first_start_rss_mb"] = round(worker.rss_mb(), 1)
        row["first_start_peak_rss_mb"] = round(worker.rss_mb("VmHWM"), 1)
        worker.stop()
        print("  重启 restart …", flush=True)
        row["restart_ready_s"] = await asyncio.to_thread(_ready, worker, 3600)
        row["restart_rss_mb"] = round(worker.rss_mb(), 1)
        row["restart_peak_rss_mb"] = round(worker.rss_mb("VmHWM"), 1)
        found = re.findall(r"evaluation checkpoint: (\d+) days of figures, (\d+) open orders",
                           worker.log_path.read_text(errors="replace"))
        row["open_orders"] = int(found[-1][1]) if found else None
        row["api"] = await asyncio.to_thread(api_latency, port, requests, seed)
        row["rss_after_api_mb"] = round(worker.rss_mb(), 1)
        month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        worker.stop()   # the checkpoint is complete at a clean stop
        print(f"  综合评价 kpis {month} …", flush=True)
        row["kpis_period"] = month
        row["kpis_checkpoint_s"], from_checkpoint = await asyncio.to_thread(kpis, env, month, data_dir)
        row["kpis_full_replay_s"], from_replay = await asyncio.to_thread(kpis, env, month, None)
        row["kpis_match"] = from_checkpoint == from_replay
        row["kpis_closed"] = from_replay.get("*", {}).get("closed", 0)
        if keep:   # the history left in place, served, for a person and a browser
            await asyncio.to_thread(_ready, worker, 3600)
            print(f"  {summary(row)}\n\n  控制台 console: http://127.0.0.1:{port}/  token {TOKEN}  "
                  f"(prefix {topics.prefix}, {days} days); Ctrl-C 结束 to stop", flush=True)
            with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
                while worker.poll() is None:
                    await asyncio.sleep(1)
    finally:
        worker.stop()
    print(f"  {summary(row)}", flush=True)
    return row


def summary(row: dict) -> str:
    api = row.get("api", {})
    return (f"{row['days']} d: restart→ready {row.get('restart_ready_s')} s (first start {row.get('first_start_ready_s')} s), "
            f"RSS {row.get('restart_rss_mb')} MB (peak {row.get('restart_peak_rss_mb')}, "
            f"{row.get('rss_after_api_mb')} after the API load), {row.get('open_orders')} open, "
            f"API list p99 {api.get('list', {}).get('p99_ms')} ms, detail p99 {api.get('detail', {}).get('p99_ms')} ms, "
            f"kpis {row.get('kpis_checkpoint_s')} s from the checkpoint vs {row.get('kpis_full_replay_s')} s full replay "
            f"({'same figures' if row.get('kpis_match') else 'FIGURES DIFFER'})")


async def bench(bootstrap: str, days: list[int], per_day: int, open_orders: int, requests: int,
                seed: int = 1, keep: bool = False) -> dict:
    """``keep``: the last history is left in place with a worker serving it (until Ctrl-C)."""
    rows = [await measure(bootstrap, d, per_day, open_orders, requests, seed, keep=keep and d == days[-1])
            for d in days]
    result = {"targets": TARGETS, "rows": rows}
    base = next((r for r in rows if r["days"] == 30), None)
    if base is not None:
        for r in rows:
            r["growth_vs_30_days"] = {k: round(r[k] / base[k] - 1, 3) for k in ("restart_ready_s", "restart_rss_mb")
                                      if base.get(k)}
    return result


def report(result: dict) -> str:
    lines = ["历史基准 history benchmark (targets: restart→ready ≤ 60 s, RSS ≤ 500 MB, both within 20% of 30 days; "
             "API p99 ≤ 50 ms)"]
    for r in result["rows"]:
        lines.append("  " + summary(r))
        if "growth_vs_30_days" in r:
            lines.append(f"      vs 30 days: {r['growth_vs_30_days']}")
        lines.append(f"      written: {r['written']}")
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    days = [r["days"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = (("seconds", "restart_ready_s", "restart → ready", "first_start_ready_s", "first start (full fold)",
               f"target {TARGETS['restart_ready_s']:g} s", TARGETS["restart_ready_s"]),
              ("MB", "restart_rss_mb", "RSS after restart", "restart_peak_rss_mb", "peak RSS during the restart",
               f"target {TARGETS['rss_mb']:g} MB", TARGETS["rss_mb"]))
    for ax, (unit, key, label, key2, label2, target_label, target) in zip(axes, panels, strict=True):
        ax.plot(days, [r[key] for r in rows], "o-", label=label)
        ax.plot(days, [r[key2] for r in rows], "s--", label=label2)
        ax.axhline(target, color="grey", linestyle=":", label=target_label)
        ax.set_xlabel("days of history")
        ax.set_ylabel(unit)
        ax.legend(fontsize=8)
    fig.suptitle(f"Worker restart and memory vs history ({rows[0]['orders_per_day']:,} orders/day)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
