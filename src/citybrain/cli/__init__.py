"""``citybrain`` command line.  Every message is for an operator: 中文 + English.
One module per command group; the parser is here."""

from __future__ import annotations

import argparse
import logging
from importlib.metadata import entry_points

from citybrain.cli.notifier import cmd_notifier
from citybrain.cli.platforms import cmd_platforms
from citybrain.cli.privacy import cmd_pseudonym
from citybrain.cli.read import cmd_kpis, cmd_tail, cmd_timeline
from citybrain.cli.setup import (
    cmd_dashboard,
    cmd_layout,
    cmd_registry,
    cmd_schemas,
    cmd_topics,
)
from citybrain.cli.warnings import cmd_warnings_end, cmd_warnings_list, cmd_warnings_publish
from citybrain.cli.worker import cmd_worker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="citybrain", description="城市大脑事件流处理 city-brain event stream processor")
    sub = p.add_subparsers(dest="command", required=True)

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

    nt = sub.add_parser("notifier", help="通知 deliver dispatches to people (SMS, email, webhook); ack a delivery")
    nt.add_argument("action", choices=["run", "ack"])
    nt.add_argument("delivery_id", nargs="?", help="ack: the delivery id (回执号 D-…)")
    nt.add_argument("--by", help="ack: who acknowledges")
    nt.add_argument("--http-port", type=int, help="run: POST /api/v1/notifications/{id}/ack and GET /metrics here")
    nt.add_argument("--http-host", default="127.0.0.1")
    nt.set_defaults(func=cmd_notifier)

    ps = sub.add_parser("pseudonym", help="假名 a reporter's pseudonym (rp_…) under this deployment's key, "
                        "to search their orders")
    ps.add_argument("reporter_id", nargs="+")
    ps.set_defaults(func=cmd_pseudonym)

    pf = sub.add_parser("platforms", help="平台对接 status callbacks to the platforms cases came from (12345, 数字城管)")
    pf.add_argument("action", choices=["run", "check"])
    pf.add_argument("--http-port", type=int, help="run: GET /metrics here (citybrain_platform_callbacks_total)")
    pf.add_argument("--http-host", default="127.0.0.1")
    pf.set_defaults(func=cmd_platforms)

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

    aw = sub.add_parser("warnings", help="区域预警 area warnings of the weather/water bureaus: publish, list, end")
    aws = aw.add_subparsers(dest="action", required=True)
    awp = aws.add_parser("publish", help="publish (or amend, under the same --id) a warning on ingest.warnings")
    awp.add_argument("--id", required=True, help="the bureau's warning id (预警编号); the same id amends it")
    awp.add_argument("--issuer", required=True, help="发布单位, e.g. 淄博市气象台")
    awp.add_argument("--kind", required=True, help="种类: rainstorm 暴雨, flood 洪水, typhoon 台风, … (code or 中文)")
    awp.add_argument("--level", required=True, help="等级: blue 蓝色, yellow 黄色, orange 橙色, red 红色")
    awp.add_argument("--district", action="append", help="区县代码 6 digits (repeat or comma-separate)")
    awp.add_argument("--street", action="append", help="街道代码 9 digits (repeat or comma-separate)")
    awp.add_argument("--polygon", help="a GeoJSON file: Polygon/MultiPolygon, or a Feature holding one")
    awp.add_argument("--from", dest="valid_from", default="now",
                     help="生效 ISO 8601 (no offset: city time CST), now, or +30m/+2h/+1d (default now)")
    awp.add_argument("--to", dest="valid_to", required=True, help="截止 the same forms, e.g. +6h")
    awp.add_argument("--title", help="标题 (default: 暴雨红色预警信号 from kind and level)")
    awp.set_defaults(func=cmd_warnings_publish)
    awl = aws.add_parser("list", help="the warnings holding and upcoming")
    awl.add_argument("--all", action="store_true", help="ended and cancelled ones too")
    awl.set_defaults(func=cmd_warnings_list)
    awe = aws.add_parser("end", help="end a warning now (holding: valid_to now; not begun: cancelled)")
    awe.add_argument("--id", required=True)
    awe.set_defaults(func=cmd_warnings_end)

    db = sub.add_parser("dashboard", help="check (default) or --write deploy/grafana/dashboards/citybrain.json")
    db.add_argument("--write", action="store_true")
    db.set_defaults(func=cmd_dashboard)

    sc = sub.add_parser("schemas", help="check (default) or --write schemas/ from the wire models")
    sc.add_argument("--write", action="store_true")
    sc.set_defaults(func=cmd_schemas)

    ly = sub.add_parser("layout", help="check (default) or --write docs/architecture.md's package picture "
                                       "from the imports")
    ly.add_argument("--write", action="store_true")
    ly.set_defaults(func=cmd_layout)

    # The tooling's commands (kafka, simulate, demo, bench, sample) come from the packages that
    # declare the entry point — citybrain_tools here; the product does not import them.
    for command_group in entry_points(group="citybrain.commands"):
        command_group.load()(sub)

    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    if args.command != "worker":
        # Tools print their own progress; the Kafka client's group chatter is noise there.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return args.func(args)

