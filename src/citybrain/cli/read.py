"""Reading what the city did: a topic's records, an order's timeline, the evaluation figures."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from citybrain.cli.common import broker_address, load_config
from citybrain.display import CLOCK_LABEL, MAX_COLUMNS, city_time, clip, pad, width, wrap_items, wrap_words
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
    print(f"{pad(CLOCK_LABEL, 19)}  版本  变更 change / 拒绝 refusal, 操作人 actor, 状态 status")
    for e in timeline(changes, refusals):
        ver = f"v{e['version']}" if e.get("version") else "  —"
        line = (f"{city_time(e['at'], '%Y-%m-%d %H:%M:%S')}  {ver:>4}  {e['label']} {e['type']:<22} "
                f"{e['actor']:<28} {e.get('status') or ''}").rstrip()
        note = f"  {e['note']}" if e.get("note") else ""
        if width(line + note) <= MAX_COLUMNS:
            print(line + note)
        else:   # the columns kept, the note on lines of its own under the change
            print(wrap_words(line, indent=27))
            print(wrap_words(" " * 27 + note.strip(), indent=27))
    return 0


# The evaluation figures as three tables that fit in MAX_COLUMNS, short headers and a
# legend under each: (title, columns, legend).
KPI_TABLES: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...] = (
    ("结案与比率 closure", (("closed", "结案"), ("on_time_closure_rate", "按期率"), ("rework_rate", "返工率"),
                          ("extension_rate", "延期率"), ("return_rate", "退回率"), ("satisfaction_rate", "满意率")),
     "结案 orders closed · 按期率 closed on time · 返工率 reworked · 延期率 extended (of those closed) · "
     "退回率 returned (of dispatches) · 满意率 satisfied (of visits)"),
    ("各环节用时 time per stage", (("dispatch_hours_p50", "派遣 p50"), ("accept_hours_p50", "签收 p50"),
                                   ("handle_hours_p50", "处置 p50"), ("close_hours_p50", "结案 p50"),
                                   ("close_hours_p90", "结案 p90")),
     "派遣 立案→派遣 created→dispatched · 签收 派遣→签收 →accepted · 处置 签收→处置 →handled · "
     "结案 立案→结案 created→closed; p50 median, p90 of the orders closed"),
    ("协办 joint handling", (("assists", "协办 assists"), ("assists_handled", "处置 handled"),
                           ("assists_returned", "退回 returned")),
     "协办 assists asked of the department · 处置 handled · 退回 returned by it"),
)
KPI_COLUMNS = [col for _, cols, _ in KPI_TABLES for col in cols]


def kpi_cell(key: str, v) -> str:
    if v is None:
        return "—"
    if key.endswith("_rate"):
        return f"{v:.1%}"
    if key.endswith(("_p50", "_p90")):   # hours, shown in the unit an operator reads at a glance
        return f"{v * 3600:.0f}s" if v < 1 / 60 else f"{v * 60:.1f}min" if v < 1 else f"{v:.1f}h"
    return f"{v:,}" if isinstance(v, int) else str(v)


def kpi_table(figures: dict[str, dict], names: dict[str, str], first: str = "部门 department",
              joint: bool = True) -> str:
    """The figures (row key → figures) as tables no wider than MAX_COLUMNS: closure
    rates, stage times and (``joint``) assist counts, each with its legend."""
    def label(d: str) -> str:
        name = names.get(d, "全部" if d == "*" else d)
        return d if name == d else f"{name} {d}"
    out: list[str] = []
    for title, columns, legend in KPI_TABLES if joint else KPI_TABLES[:2]:
        head = [first] + [h for _, h in columns]
        rows = [[label(d)] + [kpi_cell(k, r.get(k)) for k, _ in columns] for d, r in figures.items()]
        widths = [max(width(x) for x in col) for col in zip(head, *rows, strict=True)]
        room = MAX_COLUMNS - 2 - sum(2 + w for w in widths[1:])   # the row label gives way
        widths[0] = max(4, min(widths[0], room))
        out.append(f"{title}:")
        for line in [head, *rows]:
            cells = [pad(clip(line[0], widths[0]), widths[0])]
            cells += [" " * (w - width(c)) + c for c, w in zip(line[1:], widths[1:], strict=True)]
            out.append(("  " + "  ".join(cells)).rstrip())
        out.append(wrap_items("  ", legend.split(" · "), sep=" · ", indent=4))
    return "\n".join(out)


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
    names = cfg.desks   # the departments and the street desks (属地)
    if args.json:
        print(orjson.dumps({"period": period, "figures": figures,
                            "by_district": evaluation.figures(period, by="district"),
                            "by_category": evaluation.figures(period, by="category")}).decode())
        return 0
    print(wrap_words(f"综合评价 evaluation {period} (the month in {evaluation.tz.key}; {source}: "
                     f"{n:,} changes read, {evaluation.orders:,} orders; orders closed in the period, "
                     "by closing department)", indent=2))
    print(kpi_table(figures, names) if figures else "  (no order closed or dispatched in this period)")
    by_district = evaluation.figures(period, by="district")
    if len(by_district) > 2:   # a city of several districts: 市/区县 figures too
        print("按区县 by district (where the order lies):")
        print(kpi_table(by_district, {**cfg.city_map.district_names, "*": "全市"}, "区县 district", joint=False))
    # The registry as the workers hold it (domain/registry_records.py): the latest usable
    # record under each key, a device only under its own id.
    from citybrain.domain.registry import Device
    from citybrain.domain.registry_records import apply_entry, read_registry_record
    devices: dict[str, Device] = {}

    def device(m) -> None:
        apply_entry(devices, read_registry_record(m.key, m.value, cfg.settings.ingest.max_record_bytes))
    topics = Topics(cfg.settings.kafka.topic_prefix)
    if asyncio.run(read_topic_to_end(broker_address(), topics.registry, device,
                                "读取设备台账 reading registry.devices")) < 0:
        return 0
    # 联网率: the devices' liveness as the workers wrote it (domain/device_health.py).
    from citybrain.domain.device_health import Liveness, device_rates, registered_devices
    liveness = Liveness()

    def live(m) -> None:
        if m.value is None:
            if m.key is not None:
                liveness.forget(m.key.decode(errors="replace"))
            return
        try:
            liveness.add(orjson.loads(m.value))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
    asyncio.run(read_topic_to_end(broker_address(), topics.liveness, live, "读取设备联网 reading devices.liveness"))
    rates = device_rates(registered_devices(devices.values(), cfg.city_map.locate),
                         evaluation.faulty_devices(), liveness.heard())
    print(device_table(rates, names, cfg.city_map.district_names))
    return 0


def device_table(rates: dict[str, dict[str, dict]], names: dict[str, str], districts: dict[str, str]) -> str:
    """完好率 and 联网率 by owner and kind, then by district (domain/device_health.py)."""
    lines = ["设备完好率 · 联网率 device health now — 完好率 intact = in service (no open 设备故障 order) / "
             "registered; 联网率 networked = heard within the reporting interval / registered:"]

    def pct(x) -> str:
        return "—" if x is None else f"{x:.1%}"
    for group, label in (("owner", "按权属 by owner · kind"), ("district", "按区县 by district")):
        rows = rates[group]
        if group == "district" and len(rows) <= 2:
            continue    # one district: the same as the city row
        lines.append(f"  {label}:")
        lines.append(f"    {pad('', 28)} {'登记 reg':>9} {'故障 faulty':>11} {'完好率 intact':>13} {'联网率 networked':>16}")
        for key, row in rows.items():
            if key == "*":
                who = "全部 all"
            elif group == "owner":
                who = f"{names.get(row['owner'], row['owner'] or '无主 unowned')} {row['kind']}"
            else:
                who = districts.get(key, key or "城外 outside")
            lines.append(f"    {pad(clip(who, 40), 28)} {row['registered']:>9,} {row['faulty']:>11,} "
                         f"{pct(row['intact_rate']):>13} {pct(row['networked_rate']):>16}")
    return "\n".join(lines)
