"""``citybrain`` command line.  Every message is for an operator: 中文 + English."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from citybrain.kafka.clients import kafka_consumer
from citybrain.paths import SCHEMAS_DIR, state_dir


def _config():
    from citybrain.config import Config
    return Config()


def _bootstrap() -> str:
    from citybrain.kafka.admin import NoBroker, bootstrap_servers
    try:
        return bootstrap_servers()
    except NoBroker as e:
        sys.exit(f"错误 error: {e}")


# -- kafka ---------------------------------------------------------------------

def cmd_kafka(args) -> int:
    from citybrain.kafka.admin import local_broker
    from citybrain.kafka.local_broker import BrokerError, kafka_version
    broker = local_broker()
    if args.action == "start":
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            print(f"KAFKA_BOOTSTRAP_SERVERS is set ({os.environ['KAFKA_BOOTSTRAP_SERVERS']}); "
                  "not starting a local broker 不启动本地 Kafka")
            return 0
        try:
            address = broker.start(port=args.port)
        except BrokerError as e:
            print(f"错误 Kafka failed to start: {e}", file=sys.stderr)
            return 1
        print(f"Kafka {kafka_version()} 已启动 running at {address} "
              f"(pid {broker.pid()}, log {broker.log_file})")
        return 0
    if args.action == "stop":
        print("Kafka 已停止 stopped" if broker.stop() else "Kafka 未运行 was not running")
        return 0
    running = broker.bootstrap()
    if running:
        print(f"Kafka {kafka_version()} 运行中 running at {running} (pid {broker.pid()})")
        return 0
    print("Kafka 未运行 not running")
    return 3


# -- topics, registry, schemas ---------------------------------------------------

def cmd_topics(args) -> int:
    from citybrain.stream.topology import topic_specs
    cfg = _config()
    specs = topic_specs(cfg)
    created = asyncio.run(_ensure_topics(cfg, _bootstrap(), specs))
    print(f"主题 topics: {len(specs)} in all, created {len(created)}"
          + (": " + ", ".join(created) if created else " (all existed)"))
    return 0


async def _ensure_topics(cfg, bootstrap: str, specs) -> list[str]:
    """Create the missing topics, then reconcile every one with the configuration
    (retention altered; partitions that differ stop here with the reason)."""
    from citybrain.kafka.admin import create_topics, reconcile_topics
    from citybrain.stream.topology import co_partitioned
    created = await create_topics(bootstrap, specs, cfg.settings.kafka.replication_factor)
    for line in await reconcile_topics(bootstrap, specs, co_partitioned(cfg)):
        print(f"主题设置已更新 topic setting reconciled: {line}", flush=True)
    return created


def cmd_registry(args) -> int:
    from citybrain.kafka.admin import publish_registry
    from citybrain.kafka.topics import Topics
    from citybrain.sample.registry_builder import load
    cfg = _config()
    path = Path(args.file) if args.file else cfg.registry_path
    records = load(path)
    topic = Topics(cfg.settings.kafka.topic_prefix).registry
    n = asyncio.run(publish_registry(_bootstrap(), topic, records))
    print(f"设备台账已发布 registry published: {n:,} devices/cameras from {path} → {topic}")
    return 0


def cmd_schemas(args) -> int:
    from citybrain.wire.schemas import drifted, write_all
    if args.write:
        for p in write_all(SCHEMAS_DIR):
            print(f"wrote {p}")
        return 0
    bad = drifted(SCHEMAS_DIR)
    if bad:
        print("schemas/ 与模型不一致 drifted from the models: " + ", ".join(bad)
              + " — run `citybrain schemas --write`", file=sys.stderr)
        return 1
    print("schemas/ 与模型一致 up to date")
    return 0


def cmd_sample(args) -> int:
    from citybrain.sample import city_builder, registry_builder
    cfg = _config()
    if args.what == "build-city":
        n = city_builder.write(cfg.directory / cfg.settings.city.geography)
        print(f"wrote {n} grids")
    else:
        n = registry_builder.write(cfg.registry_path)
        print(f"wrote {n} devices")
    return 0


# -- worker ------------------------------------------------------------------------

def cmd_worker(args) -> int:
    from faust.worker import Worker

    from citybrain import logfilter
    from citybrain.kafka.admin import TopicMismatch, cluster_id
    from citybrain.stream.app import create_app
    from citybrain.stream.topology import topic_specs
    if args.web_port:
        os.environ["CITYBRAIN_WEB_PORT"] = str(args.web_port)
    cfg = _config()
    s = cfg.settings
    bootstrap = _bootstrap()
    try:
        cfg.check_closed_state_days()
        asyncio.run(_ensure_topics(cfg, bootstrap, topic_specs(cfg)))
    except (TopicMismatch, ValueError) as e:
        print(f"错误 error: {e}", file=sys.stderr, flush=True)
        return 2
    # One state directory per consumer group (prefix + app id) and worker port: two
    # groups must never share table files, nor two workers on one machine.
    data_dir = (Path(args.data_dir) if args.data_dir else
                state_dir() / f"worker-{s.kafka.topic_prefix}{s.worker.app_id}-{s.worker.web_port}")
    _claim_state_dir(data_dir, asyncio.run(cluster_id(bootstrap)))
    app = create_app(cfg, bootstrap, data_dir)
    print(f"citybrain worker: Kafka {bootstrap}, group {app.conf.id}, "
          f"http://{s.worker.web_host}:{s.worker.web_port}/metrics, state {data_dir}", flush=True)
    class CitybrainWorker(Worker):
        def on_setup_root_logger(self, logger, level: int) -> None:
            # Faust's terminal spinner sets the root logger to DEBUG so that it spins on
            # every record; then every debug call in the Kafka client builds a LogRecord
            # (measured: ~6 % of the worker's time).  No spinner, root at the asked level.
            self.spinner = None
            super().on_setup_root_logger(logger, level)
            logger.setLevel(level)
            logfilter.install()   # a broker outage: one line per kind of client error, with a count

    worker = CitybrainWorker(app, loglevel=args.loglevel, quiet=not sys.stdout.isatty())
    worker.execute_from_commandline()
    return 0


def _claim_state_dir(data_dir: Path, cluster: str) -> None:
    """Local table state is a cache of changelog topics in *one* cluster.  State left by
    another cluster (a re-created demo broker) would not match its changelogs, so it
    is discarded and rebuilt from the changelogs."""
    import shutil
    marker = data_dir / "kafka-cluster-id"
    owner = marker.read_text().strip() if marker.exists() else None
    if owner != cluster and data_dir.exists() and any(data_dir.iterdir()):
        print(f"注意 notice: {data_dir} holds state of another Kafka cluster ({owner or 'unknown'}); "
              "discarding it — it is rebuilt from the changelog topics", flush=True)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(cluster)


# -- simulate ----------------------------------------------------------------------

def cmd_simulate(args) -> int:
    from citybrain.kafka.topics import Topics
    from citybrain.progress import Progress
    from citybrain.sample.registry_builder import load
    from citybrain.simulate.runner import run, summary_text
    from citybrain.simulate.traffic import CitySimulator
    cfg = _config()
    sim = CitySimulator(load(cfg.registry_path), seed=args.seed, rate=args.rate,
                        duration=args.duration,
                        # unpaced: the whole span lies in the past, so no ts is "future"
                        start=time.time() - (args.duration if args.unpaced else 0),
                        malformed_share=args.malformed, scenarios=not args.no_scenarios,
                        # the gateway's silence is judged on Kafka time: only when paced
                        gateway=not args.no_scenarios and not args.unpaced)
    progress = Progress(f"模拟 simulate {args.rate:g}/s × {args.duration:g}s", total=args.duration)
    topics = Topics(cfg.settings.kafka.topic_prefix)

    async def main() -> tuple[dict, int]:
        if not args.respond:
            return await run(sim, _bootstrap(), topics, paced=not args.unpaced, progress=progress), 0
        from citybrain.simulate.responders import respond
        stop = asyncio.Event()
        people = asyncio.create_task(respond(_bootstrap(), topics, stop, seed=args.seed))
        result = await run(sim, _bootstrap(), topics, paced=not args.unpaced, progress=progress)
        if args.linger:
            print(f"  模拟人员继续处置 simulated departments keep working for {args.linger:g}s …", flush=True)
            await asyncio.sleep(args.linger)
        stop.set()
        return result, await people

    result, commands = asyncio.run(main())
    print(summary_text(result))
    if args.respond:
        print(f"  模拟人员 simulated operator/departments/grid members sent {commands:,} commands")
    return 0


# -- demo --------------------------------------------------------------------------

def cmd_demo(args) -> int:
    """Broker, topics, registry, one worker and the simulator, with where to look."""
    from citybrain.kafka.admin import local_broker
    from citybrain.worker_process import WorkerProcess
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
    port = _config().settings.worker.web_port
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
""", flush=True)
        print(f"④ 模拟城市流量 simulating city traffic: {args.rate:g}/s for {args.duration:g}s "
              "(rainstorm, gas leak, cable fire scripted) …", flush=True)
        subprocess.run([*exe, "simulate", "--rate", str(args.rate), "--duration",
                        str(args.duration), "--seed", str(args.seed), "--respond", "--linger", "60"],
                       env=env, check=True)
        time.sleep(3)
        from citybrain.promtext import outcome_table
        print(outcome_table(worker.metrics()))
        asyncio.run(_print_recent_events(bootstrap))
        subprocess.run([*exe, "kpis"], env=env, check=False)
        if args.keep:
            print("Ctrl-C 结束 to stop the worker and the broker.", flush=True)
            worker.wait()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not args.keep_kafka:
            local_broker().stop()
            print("Kafka 已停止 stopped.")
    return 0


async def _read_all(bootstrap: str, topic: str) -> list[dict]:
    """Every record of ``topic`` up to its current end, parsed."""
    import orjson
    out: list[dict] = []
    await _read_to_end(topic, lambda m: out.append(orjson.loads(m.value)), f"读取 reading {topic}", bootstrap)
    return out


async def _print_recent_events(bootstrap: str, limit: int = 12) -> None:
    """What the demo produced: events by category, the scripted alarms, the work orders."""
    from collections import Counter

    from citybrain.kafka.topics import Topics
    from citybrain.sample.sites import SCENARIO_DEVICES
    cfg = _config()
    topics = Topics(cfg.settings.kafka.topic_prefix)
    events = await _read_all(bootstrap, topics.events)
    by_cat = Counter(f"{e['category_name']} {e['category']}" for e in events)
    print(f"\n  事件 events.normalized: {len(events):,} — "
          + ", ".join(f"{k} ×{v}" for k, v in by_cat.most_common(8)))
    scripted = {d[0] for d in SCENARIO_DEVICES}
    alarms = [e for e in events if (e.get("device_id") or e.get("camera_id")) in scripted]
    streets = cfg.city_map.street_names
    if alarms:
        print("  剧本告警 scripted-incident alarms (kind · category · finder · street):")
    for e in alarms[-limit:]:
        finder = e.get("device_id") or e.get("camera_id")
        print(f"    {e['occurred_at'][11:19]}  {e['kind']:<8} {e['category_name']} ({e['category']})"
              f"  {finder}  {streets.get(e['location']['street_code'], '')} {e['location']['grid_code']}")
    changes = await _read_all(bootstrap, topics.workorder_events)
    latest: dict[str, dict] = {}
    for c in changes:
        if c["version"] >= latest.get(c["work_order_id"], {}).get("version", 0):
            latest[c["work_order_id"]] = c
    depts = Counter(c["snapshot"]["department"] or "— 待分拨 triage" for c in latest.values())
    print(f"  工单 work orders: {len(latest):,} from {len(events):,} events — by department: "
          + ", ".join(f"{k} ×{v}" for k, v in depts.most_common()))
    districts = cfg.city_map.district_names
    by_district = Counter(c["snapshot"]["location"]["district_code"] for c in latest.values())
    print(f"  区县 by district ({cfg.city_map.city_name}, one worker): "
          + ", ".join(f"{districts.get(k, k)} {k} ×{v}" for k, v in by_district.most_common()))
    for c in latest.values():
        snap = c["snapshot"]
        if any(f in scripted for f in snap["finders"]):
            assists = ", ".join(f"{a['department']}({a['status']})" for a in snap.get("assists") or ())
            levels = (f"  预警 warning {snap['warning_level'] or '—'}"
                      + (f" · 应急 emergency {snap['emergency_level']}" if snap.get("emergency_level") else ""))
            print(f"    {snap['work_order_id']}  {snap['category_name']} → 主办 lead {snap['department']}"
                  + (f" + 协办 assists {assists}" if assists else "")
                  + f"  {snap['status']}  {len(snap['events'])} events{levels}")
    joint = Counter(c["type"] for c in changes if c["type"] in ("escalated", "deescalated", "assist_added",
                                                                  "assist_handled"))
    if joint:
        print("  联动与升级 joint handling and escalation: "
              f"协办派遣 assists added ×{joint['assist_added']}, 协办处置 handled ×{joint['assist_handled']}, "
              f"升级 escalated ×{joint['escalated']}, 降级 de-escalated ×{joint['deescalated']}; "
              f"应急指挥 command.emergency ×{sum(1 for c in changes if c['snapshot'].get('emergency_level'))}")


def cmd_bench(args) -> int:
    import json

    from citybrain.bench import dispatch, normalize
    stamp = int(time.time())
    out = Path(args.out) if args.out else state_dir() / "bench" / f"{args.what}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from citybrain.bench.common import drop_bench_topics
    try:
        if args.what == "normalize":
            result = asyncio.run(normalize.bench(_bootstrap(), args.records, seed=args.seed,
                                                 sensors=args.sensors, cameras=args.cameras))
            text = normalize.report(result)
        elif args.what == "history":
            from citybrain.bench import history
            days = [int(d) for d in args.days.split(",") if d]
            result = asyncio.run(history.bench(_bootstrap(), days, args.orders_per_day, args.open,
                                               args.requests, seed=args.seed))
            png = out.with_suffix(".png")
            history.chart(result, png)
            text = history.report(result) + f"\n  图 chart: {png}"
        elif args.what == "normalize-batch-probe":
            from citybrain.bench import batch_probe
            result = asyncio.run(batch_probe.bench(_bootstrap(), args.records, seed=args.seed))
            text = (f"批处理探针 batch-loop probe (our normaliser, no Faust): {result['rate']:,.0f} records/s "
                    f"({result['records']:,} in {result['seconds']}s)")
        else:
            rates = [float(r) for r in args.rates.split(",") if r]
            sizes = [int(n) for n in args.state_sizes.split(",") if n]
            guarantees = [g for g in (args.guarantees or "").split(",") if g] or [
                _config().settings.worker.processing_guarantee]
            result, texts = {}, []
            for g in guarantees:   # one run, one broker: each guarantee beside its own plain loop
                print(f"▶ 处理保证 processing guarantee {g}", flush=True)
                os.environ["CITYBRAIN_PROCESSING_GUARANTEE"] = g   # the bench workers inherit it
                result[g] = asyncio.run(dispatch.bench(_bootstrap(), rates, args.duration, args.records, sizes,
                                                       seed=args.seed, windows_per_load=args.windows,
                                                       throughput_runs=args.throughput_runs,
                                                       warmup=args.warmup))
                png = out.with_name(f"{out.stem}-{g}.png")
                dispatch.chart(result[g], png)
                texts.append(f"== {g}\n" + dispatch.report(result[g]) + f"\n  图 chart: {png}")
            result = result if len(guarantees) > 1 else result[guarantees[0]]
            text = "\n".join(texts)
    finally:
        asyncio.run(drop_bench_topics(_bootstrap()))   # leave the broker as we found it
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(text)
    print(f"  结果 result: {out}")
    return 0


def cmd_dashboard(args) -> int:
    """Check (default) or --write the Grafana dashboard generated from citybrain.observability."""
    from citybrain import observability
    if args.write:
        print(f"wrote {observability.write()}")
        return 0
    current = observability.DASHBOARD_PATH.read_text(encoding="utf-8") if observability.DASHBOARD_PATH.exists() else ""
    if current != observability.render():
        print(f"过期 {observability.DASHBOARD_PATH} differs from citybrain.observability: "
              "run `citybrain dashboard --write`", file=sys.stderr)
        return 1
    print(f"一致 {observability.DASHBOARD_PATH} is up to date ({len(observability.PANELS)} panels)")
    return 0


def cmd_tail(args) -> int:
    """Print records of a topic (from the beginning), for a look at what flows."""
    prefix = _config().settings.kafka.topic_prefix
    name = args.topic if args.topic.startswith(prefix) else prefix + args.topic

    shown = [0]

    def show(m) -> None:
        if args.limit <= 0 or shown[0] < args.limit:
            print(m.value.decode("utf-8", "replace") if m.value is not None else "null (tombstone)")
            shown[0] += 1

    # Up to the end the topic has now (not "until a fetch comes back empty"), or the limit.
    n = asyncio.run(_read_to_end(name, show, f"读取 {name}", enough=lambda: 0 < args.limit <= shown[0]))
    return 0 if n >= 0 else 1


KPI_COLUMNS = [("closed", "结案 closed"), ("on_time_closure_rate", "按期结案率 on-time"),
               ("rework_rate", "返工率 rework"), ("return_rate", "退回率 return"),
               ("extension_rate", "延期率 extension"), ("dispatch_hours_p50", "派遣 p50"),
               ("accept_hours_p50", "签收 p50"), ("handle_hours_p50", "处置 p50"),
               ("close_hours_p50", "结案 p50"), ("close_hours_p90", "结案 p90"),
               ("assists", "协办 assists"), ("assists_handled", "协办处置 handled"),
               ("assists_returned", "协办退回 returned"), ("satisfaction_rate", "满意率 satisfied")]


def kpi_table(figures: dict[str, dict], names: dict[str, str], first: str = "部门 department") -> str:
    def cell(key: str, v) -> str:
        if v is None:
            return "—"
        if key.endswith("_rate"):
            return f"{v:.1%}"
        if key.endswith(("_p50", "_p90")):   # hours, shown in the unit an operator reads at a glance
            return f"{v * 3600:.0f}s" if v < 1 / 60 else f"{v * 60:.1f}min" if v < 1 else f"{v:.1f}h"
        return str(v)
    head = [first] + [title for _, title in KPI_COLUMNS]
    rows = [[f"{names.get(d, '全部' if d == '*' else d)} {d}"] + [cell(k, r[k]) for k, _ in KPI_COLUMNS]
            for d, r in figures.items()]
    widths = [max(_width(x) for x in col) for col in zip(head, *rows, strict=True)]
    return "\n".join("  ".join(c + " " * (w - _width(c)) for c, w in zip(line, widths, strict=True)) for line in [head, *rows])


def _width(s: str) -> int:
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in s)   # CJK takes two columns


async def _read_to_end(topic: str, on_record, title: str, bootstrap: str | None = None,
                       start: dict[int, int] | None = None, enough=None) -> int:
    """Read every partition of ``topic`` up to its current end, with progress; -1 when
    the topic does not exist.  ``start``: the offset to begin at per partition (else the
    beginning); ``enough()``: stop early once it says so."""
    from aiokafka import TopicPartition

    from citybrain.kafka.admin import partitions_of
    from citybrain.kafka.reading import read_until, remaining, seek_to_first
    from citybrain.progress import Progress

    bootstrap = bootstrap or _bootstrap()
    tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    if not tps:
        print(f"主题不存在 topic {topic} does not exist yet (run the demo or `citybrain topics`)", file=sys.stderr)
        return -1
    consumer = kafka_consumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        first = await seek_to_first(consumer, tps)
        for tp in tps:
            if start and start.get(tp.partition, 0) > first[tp]:
                consumer.seek(tp, start[tp.partition])
        end = await consumer.end_offsets(tps)
        total = await remaining(consumer, end)
        progress = Progress(title, total=max(total, 1))

        def each(_tp, records) -> None:
            for m in records:
                on_record(m)

        n = await read_until(consumer, end, each, timeout_ms=1000, enough=enough,
                             after_batch=lambda n: progress.update(n, f"{n:,}/{total:,}"))
        progress.close()
        return n
    finally:
        await consumer.stop()


def cmd_timeline(args) -> int:
    """An order's changes and the commands refused on it, in time order."""
    import orjson

    from citybrain.domain.timeline import timeline
    from citybrain.kafka.topics import Topics

    topics = Topics(_config().settings.kafka.topic_prefix)
    key = args.work_order_id.encode()
    changes: list[dict] = []
    refusals: list[dict] = []
    def into(found: list[dict]):
        def take(m) -> None:
            if m.key == key:
                found.append(orjson.loads(m.value))
        return take

    if asyncio.run(_read_to_end(topics.workorder_events, into(changes), "读取 workorders.events")) < 0:
        return 1
    asyncio.run(_read_to_end(topics.rejected, into(refusals), "读取 workorders.rejected"))
    if not changes and not refusals:
        print(f"无此工单 no work order {args.work_order_id}", file=sys.stderr)
        return 1
    for e in timeline(changes, refusals):
        ver = f"v{e['version']}" if e.get("version") else "  —"
        print(f"{e['at'][:19]}  {ver:>4}  {e['label']} {e['type']:<22} {e['actor']:<28} {e.get('status') or ''}"
              + (f"  {e['note']}" if e.get("note") else ""))
    return 0


def cmd_kpis(args) -> int:
    """综合评价: the evaluation figures of a period, read from workorders.events."""
    from datetime import UTC, datetime

    import orjson

    from citybrain.kafka.topics import Topics

    cfg = _config()
    topic = Topics(cfg.settings.kafka.topic_prefix).workorder_events
    evaluation = cfg.new_evaluation()
    period = args.period or evaluation.period_of(datetime.now(UTC))
    try:
        evaluation.period_range(period)   # a bad period fails before any reading
    except ValueError as e:
        print(f"时段无效 bad --period: {e}", file=sys.stderr)
        return 2

    def add(m) -> None:
        evaluation.add(orjson.loads(m.value))

    start, source = None, "the whole log"
    if args.data_dir:   # a worker's checkpoint, then the log's tail: seconds, not a replay of years
        from citybrain.stream.evalcheckpoint import EvaluationCheckpoint
        checkpoint = EvaluationCheckpoint.open_read_only(Path(args.data_dir))
        loaded = checkpoint.load(topic) if checkpoint is not None else None
        if loaded is None:
            print(f"无评价检查点 no evaluation checkpoint in {args.data_dir}: reading the whole log", file=sys.stderr)
        else:
            meta, days, start = loaded
            evaluation.restore(meta, days)
            source = f"checkpoint of {len(days)} days + the log's tail"
        if checkpoint is not None:
            checkpoint.close()
    n = asyncio.run(_read_to_end(topic, add, "读取工单日志 reading workorders.events", start=start))
    if n < 0:
        return 1
    figures = evaluation.figures(period)
    names = {d.code: d.name_zh for d in cfg.taxonomy.departments}
    if args.json:
        print(orjson.dumps({"period": period, "figures": figures,
                            "by_district": evaluation.figures(period, by="district")}).decode())
        return 0
    print(f"综合评价 evaluation {period} ({source}: {n:,} changes read, {evaluation.orders:,} orders; "
          "orders closed in the period, by closing department)")
    print(kpi_table(figures, names) if figures else "  (no order closed or dispatched in this period)")
    by_district = evaluation.figures(period, by="district")
    if len(by_district) > 2:   # a city of several districts: 市/区县 figures too
        print("按区县 by district (where the order lies):")
        print(kpi_table(by_district, {**cfg.city_map.district_names, "*": "全市"}, "区县 district"))
    registry: dict[str, tuple[str, str] | None] = {}

    def device(m) -> None:
        doc = orjson.loads(m.value) if m.value else None
        registry[m.key.decode()] = ((doc.get("owner_department") or "", doc["kind"])
                                    if doc and doc.get("status", "active") == "active" else None)
    if asyncio.run(_read_to_end(Topics(cfg.settings.kafka.topic_prefix).registry, device,
                                "读取设备台账 reading registry.devices")) >= 0:
        from collections import Counter
        health = evaluation.device_health(Counter(v for v in registry.values() if v))
        print("设备完好率 device health now (registered − devices with an open 设备故障 order) / registered:")
        for key, row in health.items():
            rate = "—" if row["intact_rate"] is None else f"{row['intact_rate']:.1%}"
            who = "全部 all" if key == "*" else f"{names.get(row['owner'], row['owner'] or '无主 unowned')} {row['kind']}"
            print(f"  {who:<28} {row['registered']:>7,} 台 registered  {row['faulty']:>5,} 故障 faulty  {rate}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="citybrain", description="城市大脑事件流处理 city-brain event stream processor")
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kafka", help="local Apache Kafka for the demo and tests")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--port", type=int, default=9092, help="preferred port (a free one if taken)")
    k.set_defaults(func=cmd_kafka)

    t = sub.add_parser("topics", help="create the contract's topics (idempotent)")
    t.set_defaults(func=cmd_topics)

    r = sub.add_parser("registry", help="publish the device registry to registry.devices")
    r.add_argument("action", choices=["publish"])
    r.add_argument("--file", help="JSON-lines registry (default: config's sample registry)")
    r.set_defaults(func=cmd_registry)

    w = sub.add_parser("worker", help="run a stream worker (Faust)")
    w.add_argument("--web-port", type=int)
    w.add_argument("--data-dir")
    w.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("simulate", help="produce simulated city traffic")
    s.add_argument("--rate", type=float, default=200.0, help="records per second")
    s.add_argument("--duration", type=float, default=60.0, help="seconds")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--malformed", type=float, default=0.01, help="share of malformed records")
    s.add_argument("--no-scenarios", action="store_true")
    s.add_argument("--unpaced", action="store_true", help="send as fast as possible")
    s.add_argument("--respond", action="store_true",
                   help="simulated departments accept/handle, an operator triages, grid members verify")
    s.add_argument("--linger", type=float, default=0.0, help="with --respond: keep responding this long after")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="broker + worker + simulated traffic")
    d.add_argument("--rate", type=float, default=200.0)
    d.add_argument("--duration", type=float, default=180.0)
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--keep", action="store_true", help="keep running after the simulation")
    d.add_argument("--keep-kafka", action="store_true", help="leave the broker running")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="measure throughput (beside a plain aiokafka loop)")
    b.add_argument("what", choices=["normalize", "dispatch", "history", "normalize-batch-probe"])
    b.add_argument("--records", type=int, default=60_000, help="backlog size for max throughput")
    b.add_argument("--rates", default="250,500,1000,2000", help="dispatch: offered loads, records/s")
    b.add_argument("--duration", type=float, default=30.0, help="dispatch: seconds per window")
    b.add_argument("--windows", type=int, default=5, help="dispatch: windows per load, each with its own percentiles")
    b.add_argument("--warmup", type=float, default=10.0,
                   help="dispatch: seconds of the same traffic before the windows (reported apart)")
    b.add_argument("--throughput-runs", type=int, default=3, help="dispatch: max-throughput runs (median ratio)")
    b.add_argument("--sensors", type=int, default=0, help="normalize: generated sensors added to the registry "
                                                          "(city scale: 110000), each heard once")
    b.add_argument("--cameras", type=int, default=0, help="normalize: generated cameras added to the registry "
                                                          "(city scale: 50000)")
    b.add_argument("--guarantees", default="",
                   help="dispatch: processing guarantees to measure in this run, e.g. "
                        "exactly_once,at_least_once (default: the configured one)")
    b.add_argument("--state-sizes", default="1000,10000,100000",
                   help="dispatch: open orders held in state for the size test")
    b.add_argument("--days", default="30,365", help="history: days of history to measure, one run each")
    b.add_argument("--orders-per-day", type=int, default=3000, help="history: orders a day")
    b.add_argument("--open", type=int, default=10_000, help="history: orders still open at the end")
    b.add_argument("--requests", type=int, default=300, help="history: API requests per kind")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--out", help="JSON result path (default var/bench/)")
    b.set_defaults(func=cmd_bench)

    tl = sub.add_parser("tail", help="print a topic's records")
    tl.add_argument("topic")
    tl.add_argument("--limit", type=int, default=20)
    tl.set_defaults(func=cmd_tail)

    tm = sub.add_parser("timeline", help="an order's changes and refused commands, in time order")
    tm.add_argument("work_order_id")
    tm.set_defaults(func=cmd_timeline)

    kp = sub.add_parser("kpis", help="综合评价: evaluation figures of a month (YYYY-MM) or day")
    kp.add_argument("--period", help="YYYY-MM or YYYY-MM-DD, city time (default: this month)")
    kp.add_argument("--data-dir", help="a worker's data directory: start from its evaluation checkpoint "
                                       "and read only the log's tail (default: replay the whole log)")
    kp.add_argument("--json", action="store_true", help="the figures as JSON")
    kp.set_defaults(func=cmd_kpis)

    db = sub.add_parser("dashboard", help="check (default) or --write deploy/grafana/dashboards/citybrain.json")
    db.add_argument("--write", action="store_true")
    db.set_defaults(func=cmd_dashboard)

    sc = sub.add_parser("schemas", help="check (default) or --write schemas/ from the wire models")
    sc.add_argument("--write", action="store_true")
    sc.set_defaults(func=cmd_schemas)

    sm = sub.add_parser("sample", help="regenerate the SAMPLE city data")
    sm.add_argument("what", choices=["build-city", "build-registry"])
    sm.set_defaults(func=cmd_sample)

    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    if args.command != "worker":
        # Tools print their own progress; the Kafka client's group chatter is noise there.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return args.func(args)
