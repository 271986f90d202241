"""``citybrain bench console``: the operators' console at city volume, measured as a person
feels it (issue 35's targets).

A history with 10,000 open orders is written to a fresh prefix (``simulate.history``), a
worker serves it, and:

- the API: list, filter, search and facet requests, one at a time — p50/p99 per kind;
- Chromium: sign-in to a board showing the exact total (first paint), then 100 order
  changes a second streaming in for a minute — the main thread's long tasks (blocked
  share, the longest);
- a cut: the console reaches the worker through a proxy that drops every connection and
  refuses new ones for 10 s while changes go on; after the reconnect, the rows on the
  board are compared with what the API says for the same page: rows wrong, total wrong.

``--keep`` leaves the worker serving the history (the URL and token are printed) until
Ctrl-C, for a person to open the console on a city-sized board."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson

from citybrain.config import Config
from citybrain.kafka.clients import kafka_producer
from citybrain.kafka.topics import Topics
from citybrain.wire.models import OPEN_STATUSES
from citybrain.worker_process import WorkerProcess
from citybrain_tools.bench.common import fresh_topics
from citybrain_tools.bench.history import write_history
from citybrain_tools.bench.stats import percentiles
from citybrain_tools.local_kafka.broker import free_port

TOKEN = "demo-operator"   # the SAMPLE operator token (config/auth.toml)
TARGETS = {"first_paint_s": 1.0, "api_p99_ms": 100.0, "facets_p99_ms": 100.0, "blocked_share": 0.10,
           "longest_task_ms": 100.0, "rows_wrong_after_cut": 0}
OPEN = ",".join(OPEN_STATUSES)


class CutProxy:
    """A TCP proxy on 127.0.0.1 in front of a port that can cut every connection and
    refuse new ones for a while — what a dropped network does to an open stream (the
    browser's offline switch does not close one)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.base_events.Server | None = None
        self.open: set[asyncio.StreamWriter] = set()
        self.cut_off = False

    async def start(self) -> CutProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()
                self.open.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> int:
        """Drop every connection now (a reset, not a polite close); new ones are closed at
        once until ``restore``. Returns how many were dropped."""
        self.cut_off = True
        n = len(self.open)
        for w in list(self.open):
            transport = w.transport
            if transport is not None:
                transport.abort()
        self.open.clear()
        return n

    def restore(self) -> None:
        self.cut_off = False

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


def get(port: int, path: str, token: str = TOKEN) -> tuple[float, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - started, orjson.loads(body)


def open_orders(port: int) -> list[dict]:
    """Every open order's snapshot, paged through the API."""
    out, cursor = [], None
    while True:
        path = f"/api/v1/workorders?status={OPEN}&limit=500" + (f"&cursor={cursor}" if cursor else "")
        _, body = get(port, path)
        out += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return out


class LiveChanges:
    """Order changes written to ``workorders.state`` as the fuse stage would: an open
    order moves on (accepted, handled, closed), is supervised or commented, and now and
    then a new one is made — each a new version of a whole snapshot."""

    def __init__(self, bootstrap: str, topics: Topics, orders: list[dict], seed: int = 7):
        self.bootstrap, self.topic = bootstrap, topics.workorder_state
        self.orders = {o["work_order_id"]: {k: v for k, v in o.items() if k not in ("overdue", "overdue_at")}
                       for o in orders}
        self.open = [wo for wo, o in self.orders.items() if o["status"] in OPEN_STATUSES]
        self.rng = random.Random(seed)
        self.sent = 0
        self.new = 0

    def _next(self) -> tuple[str, dict, str]:
        r = self.rng.random()
        now = datetime.now(UTC).isoformat()
        if r < 0.1 or not self.open:
            base = self.orders[self.rng.choice(list(self.orders))]
            self.new += 1
            wo = f"{base['work_order_id'].rsplit('-', 1)[0]}-live{self.new:06d}"
            snap = {**base, "work_order_id": wo, "version": 1, "status": "dispatched", "created_at": now,
                    "supervision_level": 0, "closed_at": None}
            self.orders[wo] = snap
            self.open.append(wo)
            return wo, snap, "created"
        wo = self.rng.choice(self.open)
        snap = dict(self.orders[wo])
        snap["version"] += 1
        step = {"dispatched": ("accepted", "accepted"), "accepted": ("handled", "handled"),
                "handled": ("closed", "verified"), "registered": ("dispatched", "dispatched")}
        if r < 0.6:
            snap["status"], kind = step[snap["status"]]
            if snap["status"] == "closed":
                snap["closed_at"] = now
                self.open.remove(wo)
        elif r < 0.8:
            snap["supervision_level"] = min(3, snap.get("supervision_level", 0) + 1)
            kind = "supervised"
        else:
            snap["notes"] = [*(snap.get("notes") or []), f"巡查备注 {self.sent}"]
            kind = "commented"
        self.orders[wo] = snap
        return wo, snap, kind

    async def run(self, rate: float, seconds: float, stop: asyncio.Event | None = None) -> int:
        producer = kafka_producer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        started = time.monotonic()
        sent = 0
        try:
            while (elapsed := time.monotonic() - started) < seconds and not (stop and stop.is_set()):
                for _ in range(int(elapsed * rate) - sent):
                    wo, snap, kind = self._next()
                    at = datetime.now(UTC).isoformat()
                    record = {"work_order_id": wo, "version": snap["version"], "at": at, "snapshot": snap,
                              "steps": [{"version": snap["version"], "type": kind, "at": at, "status": snap["status"],
                                         "actor": {"id": "bench", "role": "system"}, "supervision": None,
                                         "note": None}], "steps_omitted": 0}
                    await producer.send(self.topic, orjson.dumps(record), key=wo.encode())
                    self.sent += 1
                    sent += 1
                await asyncio.sleep(0.01)
            await producer.flush()
        finally:
            await producer.stop()
        return self.sent


# -- the browser ---------------------------------------------------------------------

LONG_TASKS = """() => { window.__long = []; new PerformanceObserver((l) => { for (const e of l.getEntries())
  window.__long.push(e.duration); }).observe({type: "longtask", buffered: false}); }"""
ROWS = """() => [...document.querySelectorAll('[data-testid=rows] tr')].map((tr) =>
  [tr.dataset.wo, Number(tr.dataset.version), tr.dataset.status])"""


async def browser_session(base: str, port_for_truth: int, changes: LiveChanges | None, proxy: CutProxy | None,
                          artifacts: Path, load_seconds: float = 60.0, rate: float = 100.0,
                          cut_seconds: float = 10.0) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                           args=["--no-sandbox", "--disable-background-networking"])
        page = await (await browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(base + "/")
        await page.fill("[data-testid=token]", TOKEN)
        started = time.perf_counter()
        await page.click("[data-testid=sign-in]")
        await page.wait_for_selector("[data-testid=total]", timeout=30000)
        await page.wait_for_selector("[data-testid=rows] tr", timeout=30000)
        out["first_paint_s"] = round(time.perf_counter() - started, 3)
        total_shown = int((await page.inner_text("[data-testid=total]")).replace(",", ""))
        _, truth = get(port_for_truth, f"/api/v1/workorders?status={OPEN}&limit=1&facets=true")
        out["total_shown"], out["total_open"] = total_shown, truth["total"]
        out["overdue_shown"] = int((await page.inner_text("[data-testid=overdue-count]")).replace(",", ""))
        out["overdue_open"] = truth["facets"]["overdue"].get("true", 0)
        await page.screenshot(path=str(artifacts / "console-city-volume.png"))
        if changes is not None:
            await page.evaluate(LONG_TASKS)
            t0 = time.perf_counter()
            await changes.run(rate, load_seconds)
            window = time.perf_counter() - t0
            long = await page.evaluate("() => window.__long")
            out["load"] = {"rate": rate, "seconds": round(window, 1), "changes": changes.sent,
                           "long_tasks": len(long), "blocked_s": round(sum(long) / 1000, 2),
                           "blocked_share": round(sum(long) / 1000 / window, 4),
                           "longest_task_ms": round(max(long), 1) if long else 0.0}
            await page.screenshot(path=str(artifacts / "console-city-volume-live.png"))
        if proxy is not None and changes is not None:
            before = changes.sent
            dropped = proxy.cut()
            await page.wait_for_selector("[data-testid=live].off", timeout=15000)
            await changes.run(rate, cut_seconds)   # changes go on while the console is cut off
            await page.screenshot(path=str(artifacts / "console-city-volume-cut.png"))
            proxy.restore()
            await page.wait_for_selector("[data-testid=live].on", timeout=30000)
            await asyncio.sleep(4.0)              # the debounced reload after the replay
            rows = await page.evaluate(ROWS)
            _, truth = get(port_for_truth, f"/api/v1/workorders?status={OPEN}&limit=100&offset=0")
            want = {o["work_order_id"]: (o["version"], o["status"]) for o in truth["items"]}
            got = {wo: (v, s) for wo, v, s in rows}
            wrong = sum(1 for wo in set(want) | set(got) if want.get(wo) != got.get(wo))
            total_shown = int((await page.inner_text("[data-testid=total]")).replace(",", ""))
            out["cut"] = {"seconds": cut_seconds, "connections_dropped": dropped,
                          "changes_during_cut": changes.sent - before, "rows_compared": len(want),
                          "rows_wrong": wrong, "total_shown": total_shown, "total_truth": truth["total"]}
            await page.screenshot(path=str(artifacts / "console-city-volume-after-cut.png"))
        out["page_errors"] = errors
        await browser.close()
    return out


# -- the API ---------------------------------------------------------------------------

def api_latency(port: int, requests: int, seed: int) -> dict:
    rng = random.Random(seed)
    _, first = get(port, f"/api/v1/workorders?status={OPEN}&limit=200")
    sample = first["items"]
    kinds = {
        "board": lambda: f"/api/v1/workorders?status={OPEN}&limit=100&facets=true",
        "filter": lambda: "/api/v1/workorders?" + urllib.parse.urlencode(rng.choice([
            {"status": OPEN, "overdue": "true", "sort": "due", "limit": 100},
            {"status": OPEN, "department": "water", "priority": "high,urgent", "limit": 100},
            {"status": OPEN, "district": "370306", "supervision": "1,2,3", "limit": 100},
            {"category": "road_damage", "limit": 100, "offset": 400},
            {"status": "closed", "sort": "-updated", "limit": 100}])),
        "search": lambda: "/api/v1/workorders?" + urllib.parse.urlencode(
            {"q": rng.choice(sample)["work_order_id"][-8:] if rng.random() < 0.5 else
             rng.choice(["积水", "道路", "R-", "370306002"]), "limit": 50}),
        "facets": lambda: f"/api/v1/workorders/facets?status={OPEN}",
        "detail": lambda: f"/api/v1/workorders/{rng.choice(sample)['work_order_id']}",
    }
    out = {}
    for kind, path in kinds.items():
        times = [get(port, path())[0] for _ in range(requests)]
        out[kind] = percentiles(times)
    return out


async def bench(bootstrap: str, days: int, per_day: int, open_target: int, requests: int, load_seconds: float,
                rate: float, cut_seconds: float, seed: int = 1, keep: bool = False,
                artifacts: Path = Path("var/bench")) -> dict:
    artifacts.mkdir(parents=True, exist_ok=True)
    config = Config()
    topics, _ = await fresh_topics(bootstrap, "console")
    print(f"▶ 控制台基准 console at city volume on {topics.prefix}: {days} days × {per_day:,}, "
          f"{open_target:,} open", flush=True)
    result: dict = {"days": days, "orders_per_day": per_day, "open_target": open_target, "targets": TARGETS}
    result["written"] = await write_history(bootstrap, topics, config, days, per_day, open_target, seed)
    state = Path(tempfile.mkdtemp(prefix="citybrain-bench-console-"))
    port = free_port()
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CITYBRAIN_TOPIC_PREFIX=topics.prefix,
               CITYBRAIN_WEB_PORT=str(port), CITYBRAIN_STATE_DIR=str(state))
    worker = WorkerProcess(env, port, state / "worker.log", data_dir=state / "worker-data")
    proxy = CutProxy(port)
    try:
        started = time.monotonic()
        await asyncio.to_thread(lambda: worker.start().wait_ready(1800))
        result["ready_s"] = round(time.monotonic() - started, 1)
        print(f"  就绪 ready in {result['ready_s']} s; API …", flush=True)
        result["api"] = await asyncio.to_thread(api_latency, port, requests, seed)
        result["rss_mb"] = round(worker.rss_mb(), 1)
        await proxy.start()
        orders = await asyncio.to_thread(open_orders, port)
        changes = LiveChanges(bootstrap, topics, orders, seed=seed)
        print(f"  浏览器 Chromium: first paint, {rate:g} changes/s for {load_seconds:g} s, a {cut_seconds:g} s cut …",
              flush=True)
        result["browser"] = await browser_session(f"http://127.0.0.1:{proxy.port}", port, changes, proxy,
                                                  artifacts, load_seconds, rate, cut_seconds)
        result["rss_after_mb"] = round(worker.rss_mb(), 1)
        if keep:
            print(f"\n  控制台 console: http://127.0.0.1:{port}/  token {TOKEN}  (prefix {topics.prefix}); "
                  "Ctrl-C 结束 to stop", flush=True)
            with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
                while worker.poll() is None:
                    await asyncio.sleep(1)
    finally:
        await proxy.stop()
        worker.stop()
    return result


def report(result: dict) -> str:
    b, api = result.get("browser", {}), result.get("api", {})
    lines = [f"控制台基准 console at city volume: {result['days']} days × {result['orders_per_day']:,} orders, "
             f"targets {TARGETS}",
             f"  worker ready {result.get('ready_s')} s, RSS {result.get('rss_mb')} MB → {result.get('rss_after_mb')} MB "
             "after the browser run",
             "  API (sequential, one client)   n    p50 ms  p99 ms  max ms"]
    for kind, p in api.items():
        lines.append(f"    {kind:<28} {p.get('n', 0):>4} {p.get('p50_ms', '-'):>8} {p.get('p99_ms', '-'):>7} "
                     f"{p.get('max_ms', '-'):>7}")
    lines.append(f"  board first paint {b.get('first_paint_s')} s; total shown {b.get('total_shown')} of "
                 f"{b.get('total_open')} open; overdue shown {b.get('overdue_shown')} of {b.get('overdue_open')}")
    if "load" in b:
        ld = b["load"]
        lines.append(f"  live load {ld['changes']} changes in {ld['seconds']} s: main thread blocked "
                     f"{ld['blocked_s']} s ({ld['blocked_share']:.1%}), {ld['long_tasks']} long tasks, "
                     f"longest {ld['longest_task_ms']} ms")
    if "cut" in b:
        c = b["cut"]
        lines.append(f"  cut {c['seconds']} s ({c['connections_dropped']} connections dropped, "
                     f"{c['changes_during_cut']} changes meanwhile): rows wrong after reconnect "
                     f"{c['rows_wrong']} of {c['rows_compared']}; total {c['total_shown']} vs {c['total_truth']}")
    lines.append(f"  page errors: {len(b.get('page_errors', []))}; screenshots var/bench/console-city-volume*.png")
    return "\n".join(lines)
