"""The local Kafka (one node or three) and the SAMPLE city data."""

from __future__ import annotations

import os
import sys

from citybrain.cli.common import load_config


def cmd_kafka(args) -> int:
    from citybrain_tools.local_kafka import local_broker, local_cluster
    from citybrain_tools.local_kafka.broker import BrokerError, kafka_version
    broker, cluster = local_broker(), local_cluster()
    if args.action == "start":
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            print(f"KAFKA_BOOTSTRAP_SERVERS is set ({os.environ['KAFKA_BOOTSTRAP_SERVERS']}); "
                  "not starting a local broker 不启动本地 Kafka")
            return 0
        if getattr(args, "nodes", 1) > 1:
            try:
                address = cluster.start()
            except BrokerError as e:
                print(f"错误 Kafka cluster failed to start: {e}", file=sys.stderr)
                return 1
            print(f"Kafka {kafka_version()} 三节点集群已启动 {cluster.count}-node cluster running at {address} "
                  f"(logs {cluster.state_dir}/node-*/broker.log); topics: CITYBRAIN_REPLICATION_FACTOR=3 "
                  "CITYBRAIN_MIN_INSYNC_REPLICAS=2")
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
        stopped = [broker.stop(), cluster.stop()]
        print("Kafka 已停止 stopped" if any(stopped) else "Kafka 未运行 was not running")
        return 0
    running = broker.bootstrap()
    if running:
        print(f"Kafka {kafka_version()} 运行中 running at {running} (pid {broker.pid()})")
        return 0
    running = cluster.bootstrap()
    if running:
        up = [i for i, n in enumerate(cluster.nodes(), 1) if n.pid()]
        print(f"Kafka {kafka_version()} 集群运行中 cluster running at {running} "
              f"(nodes up 运行节点: {', '.join(map(str, up))} of {cluster.count})")
        return 0
    print("Kafka 未运行 not running")
    return 3


def cmd_sample(args) -> int:
    from citybrain_tools.sample import city_builder, registry_builder
    cfg = load_config()
    if args.what == "build-city":
        n = city_builder.write(cfg.directory / cfg.settings.city.geography)
        print(f"wrote {n} grids")
    else:
        n = registry_builder.write(cfg.registry_path)
        print(f"wrote {n} devices")
    return 0


