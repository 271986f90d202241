"""Reading what the city did: a topic's records, an order's timeline, the evaluation figures."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from citybrain.cli.common import broker_address, load_config
from citybrain.kafka.reading import read_topic_to_end


def cmd_tail(args) -> int:
    """Print records of a topic (from the beginning), for a look at what flows."""
    prefix = load_config().settings.kafka.topic_prefix
    name = args.topic if args.topic.startswith(prefix) else prefix + args.topic

    shown = [0]

    def show(m) -> None:
        if args.limit <= 0 or shown[0] < args.limit:
            print(m.value.decode("utf-8", "replace") if m.value is not None else "null (tombstone)")
            shown[0] += 1

    # Up to the end the topic has now (not "until a fetch comes back empty"), or the limit.
    n = asyncio.run(read_topic_to_end(broker_address(), name, show, f"读取 {name}", enough=lambda: 0 < args.limit <= shown[0]))
    return 0 if n >= 0 else 1


def cmd_timeline(args) -> int:
    """An order's changes and the commands refused on it, in time order."""
    import orjson

    from citybrain.domain.timeline import timeline
    from citybrain.kafka.topics import Topics

    topics = Topics(load_config().settings.kafka.topic_prefix)
    key = args.work_order_id.encode()
    changes: list[dict] = []
    refusals: list[dict] = []
    def into(found: list[dict]):
        def take(m) -> None:
            if m.key == key:
                found.append(orjson.loads(m.value))
        return take

    if asyncio.run(read_topic_to_end(broker_address(), topics.workorder_events, into(changes), "读取 workorders.events")) < 0:
        return 1
    asyncio.run(read_topic_to_end(broker_address(), topics.rejected, into(refusals), "读取 workorders.rejected"))
    if not changes and not refusals:
        print(f"无此工单 no work order {args.work_order_id}", file=sys.stderr)
        return 1
    for e in timeline(changes, refusals):
        ver = f"v{e['version']}" if e.get("version") else "  —"
        print(f"{e['at'][:19]}  {ver:>4}  {e['label']} {e['type']:<22} {e['actor']:<28} {e.get('status') or ''}"
              + (f"  {e['note']}" if e.get("note") else ""))
    return 0


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


def cmd_kpis(args) -> int:
    """综合评价: the evaluation figures of a period, read from workorders.events."""
    from datetime import UTC, datetime

    import orjson

    from citybrain.kafka.topics import Topics

    cfg = load_config()
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
        elif not evaluation.current(loaded[0]):
            print(f"评价检查点格式较旧 the evaluation checkpoint in {args.data_dir} predates category rows: "
                  "reading the whole log", file=sys.stderr)
        else:
            meta, days, start = loaded
            evaluation.restore(meta, days)
            source = f"checkpoint of {len(days)} days + the log's tail"
        if checkpoint is not None:
            checkpoint.close()
    n = asyncio.run(read_topic_to_end(broker_address(), topic, add, "读取工单日志 reading workorders.events", start=start))
    if n < 0:
        return 1
    figures = evaluation.figures(period)
    names = {d.code: d.name_zh for d in cfg.taxonomy.departments}
    if args.json:
        print(orjson.dumps({"period": period, "figures": figures,
                            "by_district": evaluation.figures(period, by="district"),
                            "by_category": evaluation.figures(period, by="category")}).decode())
        return 0
    print(f"综合评价 evaluation {period} ({source}: {n:,} changes read, {evaluation.orders:,} orders; "
          "orders closed in the period, by closing department)")
    print(kpi_table(figures, names) if figures else "  (no order closed or dispatched in this period)")
    by_district = evaluation.figures(period, by="district")
    if len(by_district) > 2:   # a city of several districts: 市/区县 figures too
        print("按区县 by district (where the order lies):")
        print(kpi_table(by_district, {**cfg.city_map.district_names, "*": "全市"}, "区县 district"))
    # The registry as the workers hold it (domain/registry_records.py): the latest usable
    # record under each key, a device only under its own id.
    from citybrain.domain.registry import Device
    from citybrain.domain.registry_records import apply_entry, read_registry_record
    devices: dict[str, Device] = {}

    def device(m) -> None:
        apply_entry(devices, read_registry_record(m.key, m.value, cfg.settings.ingest.max_record_bytes))
    if asyncio.run(read_topic_to_end(broker_address(), Topics(cfg.settings.kafka.topic_prefix).registry, device,
                                "读取设备台账 reading registry.devices")) >= 0:
        from collections import Counter
        health = evaluation.device_health(Counter((d.owner_department or "", d.kind) for d in devices.values()
                                                  if d.status == "active"))
        print("设备完好率 device health now (registered − devices with an open 设备故障 order) / registered:")
        for key, row in health.items():
            rate = "—" if row["intact_rate"] is None else f"{row['intact_rate']:.1%}"
            who = "全部 all" if key == "*" else f"{names.get(row['owner'], row['owner'] or '无主 unowned')} {row['kind']}"
            print(f"  {who:<28} {row['registered']:>7,} 台 registered  {row['faulty']:>5,} 故障 faulty  {rate}")
    return 0
