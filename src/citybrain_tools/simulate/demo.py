"""The demo: a broker, topics, the registry, one worker and the simulated city with its
people, then a summary of what became of it — for a new user's first ten minutes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import orjson

from citybrain.config import Config
from citybrain.display import CLOCK_LABEL, city_time, wrap_items, wrap_words
from citybrain.kafka.reading import read_topic_to_end
from citybrain.kafka.topics import Topics
from citybrain.paths import state_dir
from citybrain_tools.sample.sites import SCENARIO_DEVICES, UNDERPASS


def run_demo(rate: float, duration: float, seed: int, keep: bool, keep_kafka: bool) -> int:
    """Broker, topics, registry, one worker and the simulator, with where to look."""
    from citybrain.worker_process import WorkerProcess
    from citybrain_tools.local_kafka import local_broker
    env = dict(os.environ)
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        print("① 启动 Kafka starting Apache Kafka (first run downloads the jars with Maven) …",
              flush=True)
        address = local_broker().start()
        env["KAFKA_BOOTSTRAP_SERVERS"] = address
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    exe = [sys.executable, "-m", "citybrain"]
    print(f"   Kafka: {bootstrap}", flush=True)
    print("② 创建主题并发布设备台账 creating topics, publishing the device registry …", flush=True)
    subprocess.run([*exe, "topics"], env=env, check=True)
    subprocess.run([*exe, "registry", "publish"], env=env, check=True)
    port = Config().settings.worker.web_port
    log_path = state_dir() / "demo-worker.log"
    print(f"③ 启动工作进程 starting a worker (log: {log_path}) …", flush=True)
    worker = WorkerProcess(env, port, log_path).start()
    try:
        try:
            worker.wait_ready()
        except RuntimeError as e:
            raise SystemExit(f"错误 {e}") from None
        print("   工作进程就绪 worker ready", flush=True)
        print(f"""
   看这里 where to look:
     指标 metrics      http://127.0.0.1:{port}/metrics   (citybrain_ingest_outcome_total …)
     就绪 readiness    http://127.0.0.1:{port}/readyz
     控制台 console    http://127.0.0.1:{port}/   令牌 token: demo-operator  (SAMPLE; department view:
                       http://127.0.0.1:{port}/department with demo-water or demo-city-mgmt)
     事件 events       topic events.normalized   ·   死信 dead letters: topic deadletter
     查看 peek         {sys.executable} -m citybrain tail events.normalized
     评价 evaluation   {sys.executable} -m citybrain kpis
     预警 warnings     {sys.executable} -m citybrain warnings list   (a rainstorm warning a minute in)
""", flush=True)
        print(f"④ 模拟城市流量 simulating city traffic: {rate:g}/s for {duration:g}s "
              "(rainstorm, gas leak, cable fire scripted) …", flush=True)
        warning = threading.Timer(min(60.0, duration / 3), publish_warning, (exe, env))
        warning.daemon = True
        warning.start()
        try:
            subprocess.run([*exe, "simulate", "--rate", str(rate), "--duration",
                            str(duration), "--seed", str(seed), "--respond", "--linger", "60"],
                           env=env, check=True)
        finally:
            warning.cancel()
        time.sleep(3)
        from citybrain.promtext import outcome_table
        print(outcome_table(worker.metrics()))
        asyncio.run(print_recent_events(bootstrap))
        subprocess.run([*exe, "kpis"], env=env, check=False)
        if keep:
            print("Ctrl-C 结束 to stop the worker and the broker.", flush=True)
            worker.wait()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not keep_kafka:
            local_broker().stop()
            print("Kafka 已停止 stopped.")
    return 0


def publish_warning(exe: list[str], env: dict[str, str]) -> None:
    """区域预警 a minute into the run: a yellow rainstorm warning for an hour over the
    district of the scripted underpass, as the bureau's relayer would publish it — its area
    appears on the console's map, and the waterlogging orders opened there after it start at
    yellow (config/warnings.toml)."""
    cfg = Config()
    district = cfg.city_map.locate(UNDERPASS.lon, UNDERPASS.lat).district_code   # type: ignore[union-attr]
    name = cfg.city_map.district_names.get(district, district)
    warning_id = f"DEMO-RS-{time.strftime('%Y%m%d%H%M%S')}"
    print(f"⑤ 区域预警 area warning: 暴雨黄色预警 yellow rainstorm for {name} {district}, 1 h ({warning_id}) — "
          "the console's map shows its area; orders opened there now start at yellow", flush=True)
    done = subprocess.run([*exe, "warnings", "publish", "--id", warning_id, "--issuer", "市气象台 (演示 demo)",
                           "--kind", "rainstorm", "--level", "yellow", "--district", district, "--from", "now",
                           "--to", "+1h"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"   预警未发布 warning not published: {done.stderr.strip()}", flush=True)


async def read_all(bootstrap: str, topic: str) -> list[dict]:
    """Every record of ``topic`` up to its current end, parsed."""
    out: list[dict] = []
    await read_topic_to_end(bootstrap, topic, lambda m: out.append(orjson.loads(m.value)), f"读取 reading {topic}")
    return out


async def print_recent_events(bootstrap: str, limit: int = 12) -> None:
    """What the demo produced: events by category, the scripted alarms, the work orders."""

    cfg = Config()
    topics = Topics(cfg.settings.kafka.topic_prefix)
    events = await read_all(bootstrap, topics.events)
    changes = await read_all(bootstrap, topics.workorder_events)
    for line in summary_lines(cfg, events, changes, limit):
        print(line)


def summary_lines(cfg: Config, events: list[dict], changes: list[dict], limit: int = 12) -> list[str]:
    """The demo's summary of the events (events.normalized) and the order changes
    (workorders.events), times on the city's clock, no line wider than MAX_COLUMNS."""
    out: list[str] = []
    by_cat = Counter(f"{e['category_name']} {e['category']}" for e in events)
    out.append("")
    out.append(wrap_items(f"  事件 events.normalized: {len(events):,} — ",
                          [f"{k} ×{v}" for k, v in by_cat.most_common(8)]))
    scripted = {d[0] for d in SCENARIO_DEVICES}
    alarms = [e for e in events if (e.get("device_id") or e.get("camera_id")) in scripted]
    streets = cfg.city_map.street_names
    if alarms:
        out.append(f"  剧本告警 scripted-incident alarms ({CLOCK_LABEL} · kind · category · finder · street):")
    for e in alarms[-limit:]:
        finder = e.get("device_id") or e.get("camera_id")
        out.append(wrap_words(f"    {city_time(e['occurred_at'])}  {e['kind']:<8} {e['category_name']} "
                              f"({e['category']})  {finder}  {streets.get(e['location']['street_code'], '')} "
                              f"{e['location']['grid_code']}", indent=14))
    latest: dict[str, dict] = {}
    for c in changes:
        if c["version"] >= latest.get(c["work_order_id"], {}).get("version", 0):
            latest[c["work_order_id"]] = c
    depts = Counter(c["snapshot"]["department"] or "— 待分拨 triage" for c in latest.values())
    out.append(wrap_items(f"  工单 work orders: {len(latest):,} from {len(events):,} events — by department: ",
                          [f"{k} ×{v}" for k, v in depts.most_common()]))
    districts = cfg.city_map.district_names
    by_district = Counter(c["snapshot"]["location"]["district_code"] for c in latest.values())
    out.append(wrap_items(f"  区县 by district ({cfg.city_map.city_name}, one worker): ",
                          [f"{districts.get(k, k)} {k} ×{v}" for k, v in by_district.most_common()]))
    for c in latest.values():
        snap = c["snapshot"]
        if any(f in scripted for f in snap["finders"]):
            parts = [snap["work_order_id"], f"{snap['category_name']} → 主办 lead {snap['department']}",
                     snap["status"], f"{len(snap['events'])} events", f"预警 warning {snap['warning_level'] or '—'}"]
            if snap.get("emergency_level"):
                parts.append(f"应急 emergency {snap['emergency_level']}")
            out.append(wrap_items("    ", parts, sep="  ", indent=8))
            assists = [f"{a['department']}({a['status']})" for a in snap.get("assists") or ()]
            if assists:
                out.append(wrap_items("      + 协办 assists ", assists, indent=8))
    raised = Counter(w for c in latest.values() for w in c["snapshot"].get("area_warnings") or {})
    if raised:
        out.append(wrap_items("  区域预警 area warnings — orders raised by each: ",
                              [f"{w} ×{n}" for w, n in raised.most_common()]))
    joint = Counter(c["type"] for c in changes if c["type"] in ("escalated", "deescalated", "assist_added",
                                                                  "assist_handled"))
    if joint:
        out.append(wrap_items("  联动与升级 joint handling and escalation: ", [
            f"协办派遣 assists added ×{joint['assist_added']}", f"协办处置 handled ×{joint['assist_handled']}",
            f"升级 escalated ×{joint['escalated']}", f"降级 de-escalated ×{joint['deescalated']}",
            f"应急指挥 command.emergency ×{sum(1 for c in changes if c['snapshot'].get('emergency_level'))}"]))
    return out
