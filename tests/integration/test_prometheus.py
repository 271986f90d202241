"""A real Prometheus (Debian's) scrapes a worker under simulated load, with simulated
people working the orders on short clocks; every dashboard expression and every
recording rule must return data (the dashboard's variables at All), every alert expression
must parse.  The dashboard's panels are rendered from Prometheus's answers to test-artifacts/dashboard.png."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from citybrain import observability
from citybrain.paths import PROJECT_ROOT
from citybrain_tools.local_kafka.broker import free_port

from .kafka_helpers import ARTIFACTS, WorkerProcess, config_with, new_prefix, prepare
from .test_lifecycle_clocks import SHORT

pytestmark = pytest.mark.integration
PROMETHEUS = "/usr/bin/prometheus"   # Debian's package (scripts/ensure-test-tools.sh)
RULES = PROJECT_ROOT / "deploy" / "prometheus" / "rules" / "citybrain.rules.yml"


def rules_every_second(tmp: Path) -> tuple[Path, list[str], list[str]]:
    """The repository's rules, evaluated every second instead of every 15 s."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        group["interval"] = "1s"
    path = tmp / "rules.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    records = [r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r]
    alerts = [r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r]
    return path, records, alerts


@pytest.fixture
async def prometheus_and_worker(kafka_bootstrap, tmp_path):
    prefix = new_prefix("prom")
    await prepare(kafka_bootstrap, prefix)
    config = config_with(tmp_path, SHORT)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, config_dir=config)
    rules, records, alerts = rules_every_second(tmp_path)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "citybrain", "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}]}],
    }))
    log = (ARTIFACTS / f"{prefix.rstrip('.')}-prometheus.log").open("w")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CITYBRAIN_TOPIC_PREFIX=prefix,
               CITYBRAIN_CONFIG_DIR=str(config))
    load = subprocess.Popen([sys.executable, "-m", "citybrain", "simulate", "--rate", "100", "--duration", "50",
                             "--respond", "--linger", "100"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # The scripted incidents run on the simulation's clock (escalation ~45 s in): the
        # worker starts meanwhile and reads them from Kafka, rather than before them.
        worker.start(wait=False)
        await asyncio.to_thread(worker.wait_ready, 90.0)
        yield f"http://127.0.0.1:{port}", worker, records, alerts
    finally:
        load.kill()
        prom.terminate()
        prom.wait(timeout=30)
        log.close()
        worker.stop()


async def query(http, base, expr):
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as r:
        body = await r.json()
        return r.status, body


async def test_every_dashboard_and_rule_expression_returns_data(prometheus_and_worker):
    base, worker, records, alerts = prometheus_and_worker
    exprs = observability.expressions() + records
    async with aiohttp.ClientSession() as http:
        # Some refused API calls, so the refusal panel has something to show.
        for token in ("wrong", "also-wrong"):
            async with http.get(f"http://127.0.0.1:{worker.port}/api/v1/workorders",
                                headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 401
        missing = exprs
        deadline = time.monotonic() + 150
        while missing and time.monotonic() < deadline:
            await asyncio.sleep(1.5)
            still = []
            for expr in missing:
                try:
                    status, body = await query(http, base, expr)
                except aiohttp.ClientError:
                    still.append(expr)
                    continue
                assert status == 200 and body["status"] == "success", (expr, body)
                values = [float(r["value"][1]) for r in body["data"]["result"]]
                if not any(v == v for v in values):      # no series, or only NaN (nothing closed yet …)
                    still.append(expr)
            missing = still
        assert missing == [], f"no data for: {missing}"
        for expr in alerts:                      # parse and evaluate; firing or not
            status, body = await query(http, base, expr)
            assert status == 200 and body["status"] == "success", (expr, body)
        await render_dashboard(http, base)


async def render_dashboard(http, base) -> None:
    """Each panel's queries over the last few minutes, drawn as the dashboard lays them out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager
    cjk = []
    for path in sorted(Path("/usr/share/fonts").glob("**/Noto*CJK*")):   # Debian's fonts-noto-cjk
        font_manager.fontManager.addfont(str(path))
        cjk.append(font_manager.FontProperties(fname=str(path)).get_name())
    plt.rcParams["font.family"] = [*dict.fromkeys(cjk), "DejaVu Sans"]
    end = time.time()
    n = len(observability.PANELS)
    fig, axes = plt.subplots((n + 2) // 3, 3, figsize=(21, 3.1 * ((n + 2) // 3)), layout="constrained")
    for ax, (title, _unit, targets, _) in zip(axes.flat, observability.PANELS, strict=False):
        for expr, legend in targets:
            async with http.get(f"{base}/api/v1/query_range",
                                params={"query": observability.resolve(expr), "start": end - 240, "end": end, "step": 2}) as r:
                body = await r.json()
            for series in body["data"]["result"][:8]:
                label = legend
                for k, v in series["metric"].items():
                    label = label.replace("{{" + k + "}}", v)
                xs = [float(t) - end for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=label, linewidth=1.2)
        ax.set_title(title if len(title) < 70 else title[:68] + "…)", fontsize=9)
        ax.set_xlabel("s", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("城市大脑 一网统管 (citybrain) — dashboard panels from a real Prometheus, simulated load", fontsize=12)
    ARTIFACTS.mkdir(exist_ok=True)
    fig.savefig(ARTIFACTS / "dashboard.png", dpi=90)
    plt.close(fig)
