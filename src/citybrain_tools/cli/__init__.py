"""The tooling's commands on the ``citybrain`` command line: ``kafka``, ``simulate``, ``demo``,
``bench`` and ``sample``.  ``register`` is the ``citybrain.commands`` entry point
(pyproject.toml); each command imports what it runs only when it runs."""

from __future__ import annotations

import argparse

from citybrain_tools.cli.bench import cmd_bench
from citybrain_tools.cli.setup import cmd_kafka, cmd_sample
from citybrain_tools.cli.simulate import cmd_demo, cmd_simulate


def register(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("kafka", help="local Apache Kafka for the demo and tests")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--port", type=int, default=9092, help="preferred port (a free one if taken)")
    k.add_argument("--nodes", type=int, default=1, choices=[1, 3],
                   help="3: a local three-node KRaft cluster (replication 3, min.insync.replicas 2)")
    k.set_defaults(func=cmd_kafka)


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
    b.add_argument("what", choices=["normalize", "dispatch", "history", "console", "normalize-batch-probe", "failover",
                                        "transactions"])
    b.add_argument("--scenarios", default="restart,takeover,handover,rolling,leader",
                   help="failover: faults to run (leader needs `citybrain kafka start --nodes 3`)")
    b.add_argument("--runs", type=int, default=1, help="failover: runs per fault, each reported; transactions: "
                                                        "rounds of each protocol, alternating")
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
                   help="dispatch, failover: processing guarantees to measure in this run, e.g. "
                        "exactly_once,at_least_once (default: the configured one)")
    b.add_argument("--stage-processes", type=int, choices=[1, 2], default=1,
                   help="dispatch: the worker's two stages in one process (1) or one process each (2, "
                        "worker.stages)")
    b.add_argument("--console-apart", action="store_true",
                   help="dispatch, failover: the console's read models and API in a process of their own, "
                        "the stage processes serving none (worker.console = false); failover faults only "
                        "the stage processes")
    b.add_argument("--floor-beside", action="store_true",
                   help="dispatch: also probe the broker's hop (100 records/s) while ours runs — the last "
                        "hop's reference under the same load (the floor alone is measured on an idle box)")
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


    sm = sub.add_parser("sample", help="regenerate the SAMPLE city data")
    sm.add_argument("what", choices=["build-city", "build-registry"])
    sm.set_defaults(func=cmd_sample)
