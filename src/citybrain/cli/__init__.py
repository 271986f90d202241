"""``citybrain`` command line.  Every message is for an operator: 中文 + English.
One module per command group; the parser is here."""

from __future__ import annotations

import argparse
import logging

from citybrain.cli.bench import cmd_bench
from citybrain.cli.notifier import cmd_notifier
from citybrain.cli.platforms import cmd_platforms
from citybrain.cli.privacy import cmd_pseudonym
from citybrain.cli.read import cmd_kpis, cmd_tail, cmd_timeline
from citybrain.cli.setup import (
    cmd_dashboard,
    cmd_kafka,
    cmd_layout,
    cmd_registry,
    cmd_sample,
    cmd_schemas,
    cmd_topics,
)
from citybrain.cli.simulate import cmd_demo, cmd_simulate
from citybrain.cli.warnings import cmd_warnings_end, cmd_warnings_list, cmd_warnings_publish
from citybrain.cli.worker import cmd_worker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="citybrain", description="城市大脑事件流处理 city-brain event stream processor")
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kafka", help="local Apache Kafka for the demo and tests")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--port", type=int, default=9092, help="preferred port (a free one if taken)")
    k.add_argument("--nodes", type=int, default=1, choices=[1, 3],
                   help="3: a local three-node KRaft cluster (replication 3, min.insync.replicas 2)")
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
    b.add_argument("what", choices=["normalize", "dispatch", "history", "console", "normalize-batch-probe", "failover"])
    b.add_argument("--scenarios", default="restart,takeover,handover,rolling,leader",
                   help="failover: faults to run (leader needs `citybrain kafka start --nodes 3`)")
    b.add_argument("--runs", type=int, default=1, help="failover: runs per fault, each reported")
    b.add_argument("--rate", type=float, default=300.0, help="failover: background records/s")
    b.add_argument("--before", type=float, default=10.0, help="failover: seconds of traffic before the fault")
    b.add_argument("--after", type=float, default=25.0, help="failover: seconds of traffic after it")
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
    b.add_argument("--stage-processes", type=int, choices=[1, 2], default=1,
                   help="dispatch: the worker's two stages in one process (1) or one process each (2, "
                        "worker.stages)")
    b.add_argument("--state-sizes", default="1000,10000,100000",
                   help="dispatch: open orders held in state for the size test")
    b.add_argument("--days", default="30,365", help="history: days of history to measure, one run each "
                                                    "(console: the first)")
    b.add_argument("--orders-per-day", type=int, default=3000, help="history: orders a day")
    b.add_argument("--open", type=int, default=10_000, help="history: orders still open at the end")
    b.add_argument("--requests", type=int, default=300, help="history: API requests per kind")
    b.add_argument("--load-seconds", type=float, default=60.0, help="console: seconds of live changes in Chromium")
    b.add_argument("--change-rate", type=float, default=100.0, help="console: order changes a second")
    b.add_argument("--cut-seconds", type=float, default=10.0, help="console: how long the connection is cut")
    b.add_argument("--keep", action="store_true", help="console, history: leave a worker serving the history for a person "
                                                               "and a browser (Ctrl-C)")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--out", help="JSON result path (default var/bench/)")
    b.set_defaults(func=cmd_bench)

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

    sm = sub.add_parser("sample", help="regenerate the SAMPLE city data")
    sm.add_argument("what", choices=["build-city", "build-registry"])
    sm.set_defaults(func=cmd_sample)

    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    if args.command != "worker":
        # Tools print their own progress; the Kafka client's group chatter is noise there.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return args.func(args)

