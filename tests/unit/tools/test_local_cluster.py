"""The local three-node cluster's failover settings and its controller lookup (issue 38)."""

import re
from pathlib import Path

import yaml

from citybrain.paths import PROJECT_ROOT
from citybrain_tools.local_kafka.broker import request_threads, server_properties
from citybrain_tools.local_kafka.cluster import _NODE_PROPERTIES, FAILOVER, LocalCluster

LEADER = "[{at}] INFO [RaftManager id={n}] Completed transition to Leader(localVoterNode=VoterNode(...)) from Candidate"
FOLLOWER = "[{at}] INFO [RaftManager id={n}] Completed transition to FollowerState(fetchTimeoutMs=1000, epoch=3, leader=2)"


def write_logs(tmp_path, lines_by_node: dict[int, list[str]]) -> LocalCluster:
    cluster = LocalCluster(tmp_path)
    for node_id, lines in lines_by_node.items():
        d = tmp_path / f"node-{node_id}"
        d.mkdir()
        (d / "broker.log").write_text("\n".join(lines) + "\n")
    return cluster


def test_the_active_controller_is_the_node_that_became_leader_last(tmp_path):
    cluster = write_logs(tmp_path, {
        1: [LEADER.format(at="2026-12-05 05:49:30,066", n=1)],
        2: [FOLLOWER.format(at="2026-12-05 05:49:30,100", n=2),
            LEADER.format(at="2026-12-05 05:50:31,017", n=2)],     # re-elected after node 1 was killed
        3: [FOLLOWER.format(at="2026-12-05 05:50:31,200", n=3)],
    })
    assert cluster.active_controller() == 2


def test_no_controller_when_no_node_logged_a_leadership(tmp_path):
    cluster = write_logs(tmp_path, {1: [FOLLOWER.format(at="2026-12-05 05:49:30,100", n=1)]})
    assert cluster.active_controller() is None


def _parsed(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def _properties() -> dict[str, str]:
    """A cluster node's properties, as LocalCluster writes them (its controller on port 2)."""
    return _parsed(_NODE_PROPERTIES.format(node_id=1, count=3, voters="1@127.0.0.1:2", port=1, controller_port=2,
                                           log_dir="/x", replicas=3, min_isr=2, **FAILOVER,
                                           **request_threads()))


def test_the_single_broker_and_a_cluster_node_differ_only_in_replication_and_failover_timings():
    single = _parsed(server_properties(port=1, controller_port=2, log_dir=Path("/x")))
    node = _properties()
    replication = {k for k in node if "replication.factor" in k or k.endswith("min.isr") or k == "min.insync.replicas"}
    assert {k for k in single if single[k] != node.get(k)} == replication
    assert all(single[k] == "1" for k in replication)
    assert {node[k] for k in replication} == {"3", "2"}
    assert set(node) - set(single) == {"leader.imbalance.check.interval.seconds", "broker.session.timeout.ms",
                                       "broker.heartbeat.interval.ms", "controller.quorum.fetch.timeout.ms",
                                       "controller.quorum.election.timeout.ms",
                                       "controller.quorum.election.backoff.max.ms", "replica.fetch.backoff.ms",
                                       "replica.lag.time.max.ms"}
    assert single["controller.quorum.voters"] == "1@127.0.0.1:2" and single["node.id"] == "1"


def test_production_deploys_carry_the_failover_timings_measured_on_the_local_cluster():
    local = _properties()
    keys = ["broker.session.timeout.ms", "broker.heartbeat.interval.ms", "controller.quorum.fetch.timeout.ms",
            "controller.quorum.election.timeout.ms", "controller.quorum.election.backoff.max.ms",
            "replica.fetch.backoff.ms", "add.partitions.to.txn.retry.backoff.ms"]
    env_name = {k: "KAFKA_" + re.sub(r"[.]", "_", k).upper() for k in keys}
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]["kafka"]["environment"]
    k8s = next(d for d in yaml.safe_load_all((PROJECT_ROOT / "deploy" / "k8s" / "citybrain.yaml").read_text())
               if d and d["kind"] == "StatefulSet" and d["metadata"]["name"] == "kafka")
    k8s_env = {e["name"]: e.get("value") for e in k8s["spec"]["template"]["spec"]["containers"][0]["env"]}
    for key in keys:
        assert str(compose[env_name[key]]) == local[key], key
        assert k8s_env[env_name[key]] == local[key], key
    # Fenced before a report waits 5 s: the session, plus an election when the controller died.
    assert int(local["broker.session.timeout.ms"]) + int(local["controller.quorum.fetch.timeout.ms"]) < 5000


def process_state(pid: int) -> str:
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


def test_a_frozen_node_is_stopped_not_killed_and_thaws(tmp_path):
    """``freeze`` is a hung broker (bench failover ``hang``): the process stays, answering
    nothing, until ``thaw``."""
    import subprocess
    import time

    from citybrain.kafka.announced import PID_FILE
    cluster = LocalCluster(tmp_path)
    (tmp_path / "node-1").mkdir()
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)   # a process group, as a node's
    try:
        (tmp_path / "node-1" / PID_FILE).write_text(str(proc.pid))
        cluster.freeze(1)
        time.sleep(0.2)
        assert process_state(proc.pid) == "T" and proc.poll() is None
        cluster.thaw(1)
        time.sleep(0.2)
        assert process_state(proc.pid) in ("S", "R")
    finally:
        proc.kill()
        proc.wait()


def test_the_brokers_request_threads_are_sized_to_the_machine():
    assert request_threads(2) == {"io_threads": 2, "network_threads": 2}
    assert request_threads(4) == {"io_threads": 4, "network_threads": 2}
    assert request_threads(32) == {"io_threads": 8, "network_threads": 3}   # Kafka's own defaults
    single = _parsed(server_properties(port=1, controller_port=2, log_dir=Path("/x")))
    assert single["num.io.threads"] == str(request_threads()["io_threads"])
