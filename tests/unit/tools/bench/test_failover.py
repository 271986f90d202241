"""bench failover's arithmetic: the dispatch gap after a fault and the reports around it; a
cluster fault is refused where the topics would have one replica (the "gap" would be the
node's whole absence, not a failover)."""

from types import SimpleNamespace

import citybrain_tools.local_kafka as local_kafka
from citybrain_tools.bench import failover
from citybrain_tools.bench.failover import summarize


def test_the_gap_is_the_longest_silence_after_the_fault_and_reports_are_split_at_it():
    fault = 100.0
    # (receipt, latency): steady before, then nothing from 100.2 to 104.0, then a backlog
    samples = [(99.0, 0.01), (99.5, 0.02), (100.2, 0.3), (104.0, 3.9), (104.1, 3.95), (105.0, 0.02)]
    out = summarize(samples, fault, window=10.0)
    assert out["dispatch_gap_s"] == 3.8 and out["gap_began_s_after_fault"] == 0.2
    assert out["first_dispatch_after_fault_s"] == 0.2
    assert out["reports_before"]["n"] == 2 and out["reports_before"]["max_ms"] == 20.0
    # sent at 100.1, 100.15 and 104.98: after the fault; the one sent at 99.9 is not
    assert out["reports_after_fault"]["n"] == 3 and out["reports_after_fault"]["max_ms"] == 3950.0


def test_no_dispatch_after_the_fault_is_no_gap_measured():
    out = summarize([(99.0, 0.01)], 100.0, window=10.0)
    assert out["dispatch_gap_s"] == 0.0 and out["first_dispatch_after_fault_s"] is None
    assert out["reports_after_fault"] == {"n": 0}


def test_a_run_with_the_console_apart_says_so():
    from citybrain_tools.bench.failover import report
    run = {"dispatch_gap_s": 1.2, "gap_began_s_after_fault": 0.1, "window_s": 10.0, "reports_after_fault": {"n": 0},
           "reports_before": {"n": 0}, "marks_s_after_fault": {}}
    result = {"rate": 300.0, "probe_every_s": 0.05, "window_s": 10.0, "scenarios": {"restart": [run]}}
    assert "a process of its own no fault touches" not in report(result)
    assert "a process of its own no fault touches" in report({**result, "console_apart": True})


def test_a_run_overrun_before_its_fault_is_flagged_and_a_steady_one_is_not():
    from citybrain_tools.bench.failover import report
    run = {"dispatch_gap_s": 4.0, "gap_began_s_after_fault": 0.0, "window_s": 10.0, "marks_s_after_fault": {},
           "reports_after_fault": {"n": 300, "p50_ms": 1748.6, "p99_ms": 6332.0, "max_ms": 7068.2}}
    result = {"rate": 300.0, "probe_every_s": 0.05, "window_s": 10.0}
    overrun = report({**result, "scenarios": {"leader": [{**run, "reports_before": {"n": 150, "p99_ms": 2367.7}}]}})
    steady = report({**result, "scenarios": {"leader": [{**run, "reports_before": {"n": 150, "p99_ms": 177.7}}]}})
    assert "overrun before the fault" in overrun and "2367.7 ms" in overrun
    assert "overrun" not in steady


async def test_a_leader_fault_on_topics_of_one_replica_is_skipped_with_the_settings_to_use(monkeypatch, capsys):
    monkeypatch.setattr(local_kafka, "local_cluster", lambda: SimpleNamespace(bootstrap=lambda: "127.0.0.1:1"))
    monkeypatch.delenv("CITYBRAIN_REPLICATION_FACTOR", raising=False)

    async def no_run(*args):
        raise AssertionError("a run must not start")
    monkeypatch.setattr(failover, "one_run", no_run)
    result = await failover.bench("127.0.0.1:1", ["leader", "hang"], 1, 300, 1, 1, 0.05, 10, 7)
    assert result["scenarios"] == {}
    said = capsys.readouterr().out
    assert said.count("CITYBRAIN_REPLICATION_FACTOR=3") == 2 and "跳过 leader" in said and "跳过 hang" in said


async def test_a_leader_fault_runs_where_the_topics_are_replicated(monkeypatch):
    monkeypatch.setattr(local_kafka, "local_cluster", lambda: SimpleNamespace(bootstrap=lambda: "127.0.0.1:1"))
    monkeypatch.setenv("CITYBRAIN_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("CITYBRAIN_MIN_INSYNC_REPLICAS", "2")
    runs = []

    async def one_run(bootstrap, name, *args):
        runs.append(name)
        return {"name": name}

    async def settled(bootstrap):
        runs.append("settle")
        return 3.5, 0
    monkeypatch.setattr(failover, "one_run", one_run)
    monkeypatch.setattr(failover, "settle_cluster", settled)
    result = await failover.bench("127.0.0.1:1", ["leader"], 2, 300, 1, 1, 0.05, 10, 7)
    assert runs == ["settle", "leader", "settle", "leader"] and len(result["scenarios"]["leader"]) == 2
    assert result["scenarios"]["leader"][0]["cluster_settle"] == {"waited_s": 3.5, "unsettled": 0}


def partition(leader: int, replicas: list[int], isr: list[int]) -> dict:
    return {"partition": 0, "leader": leader, "replicas": replicas, "isr": isr}


def test_a_partition_is_unsettled_while_a_replica_is_out_of_sync_or_its_leader_not_the_preferred():
    described = [{"topic": "a", "partitions": [partition(1, [1, 2, 3], [1, 2, 3]),    # healed
                                                partition(1, [1, 2, 3], [1, 2]),       # node 3 catching up
                                                partition(2, [1, 2, 3], [2, 1, 3])]},  # leader not moved back yet
                 {"topic": "b", "partitions": [partition(3, [3, 1, 2], [1, 2, 3])]}]
    assert failover.unsettled(described) == 2


async def test_a_cluster_run_waits_until_the_last_runs_node_has_healed(monkeypatch, capsys):
    states = [[{"topic": "a", "partitions": [partition(2, [1, 2, 3], [2, 3])]}],
              [{"topic": "a", "partitions": [partition(2, [1, 2, 3], [2, 3, 1])]}],
              [{"topic": "a", "partitions": [partition(1, [1, 2, 3], [2, 3, 1])]}]]

    class Admin:
        async def start(self):
            pass

        async def close(self):
            pass

        async def describe_topics(self):
            return states.pop(0)
    monkeypatch.setattr(failover, "kafka_admin", lambda **_: Admin())
    monkeypatch.setattr(failover, "SETTLE_POLL_SECONDS", 0.0)
    waited, left = await failover.settle_cluster("127.0.0.1:1")
    assert left == 0 and states == []
    assert capsys.readouterr().out.count("waiting for the cluster to heal: 1 partitions") == 2


def test_the_report_says_whether_the_cluster_had_healed_before_a_run():
    from citybrain_tools.bench.failover import report
    run = {"dispatch_gap_s": 3.9, "gap_began_s_after_fault": 0.0, "window_s": 10.0, "marks_s_after_fault": {},
           "reports_after_fault": {"n": 0}, "reports_before": {"n": 0}}
    result = {"rate": 100.0, "probe_every_s": 0.05, "window_s": 10.0}
    healed = report({**result, "scenarios": {"leader": [{**run, "cluster_settle": {"waited_s": 12.0, "unsettled": 0}}]}})
    not_healed = report({**result, "scenarios": {"leader": [{**run, "cluster_settle": {"waited_s": 180.0, "unsettled": 7}}]}})
    assert "healed after 12 s" in healed and "had not healed in 180 s: 7 partitions" in not_healed
