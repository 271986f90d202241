"""Topic settings as configuration (issue 12): the audit log is kept forever, the other
record topics 400 days, the registry and the changelogs compacted."""

import pytest

from citybrain.config import Config, TopicRetention
from citybrain.kafka.topics import Topics
from citybrain.stream.topology import co_partitioned, topic_specs

DAY_MS = 86_400_000


def test_every_topic_has_its_settings():
    cfg = Config()
    specs = {s.name: s for s in topic_specs(cfg, Topics("p."))}
    isr = {"min.insync.replicas": "1"}   # the sample's single broker (topics.toml [replication])
    assert specs["p.workorders.events"].config == {"cleanup.policy": "delete", "retention.ms": "-1", **isr}
    for name in ("p.events.normalized", "p.workorders.rejected", "p.dispatch.water", "p.deadletter",
                 "p.dispatch.supervision.city", "p.workorders.commands"):
        assert specs[name].config == {"cleanup.policy": "delete", "retention.ms": str(400 * DAY_MS), **isr}
    for name in ("p.ingest.iot.readings", "p.ingest.video.alerts", "p.ingest.reports"):
        assert specs[name].config["retention.ms"] == str(7 * DAY_MS)
    assert specs["p.registry.devices"].config["cleanup.policy"] == "compact"
    for name in ("p.citybrain-sensor_state-changelog", "p.citybrain-work_orders-changelog"):
        assert specs[name].config == {"cleanup.policy": "compact", **isr}
    assert {s.partitions for s in specs.values()} == {cfg.settings.kafka.partitions}


def test_replication_from_topics_toml_or_the_environment():
    cfg = Config(env={"CITYBRAIN_REPLICATION_FACTOR": "3", "CITYBRAIN_MIN_INSYNC_REPLICAS": "2"})
    assert cfg.topic_retention.replication.factor == 3
    specs = topic_specs(cfg, Topics("p."))
    assert {s.config["min.insync.replicas"] for s in specs} == {"2"}   # every topic, compacted too
    assert Config(env={}).topic_retention.replication.factor == 1
    with pytest.raises(ValueError, match="cannot exceed factor"):
        _ = Config(env={"CITYBRAIN_MIN_INSYNC_REPLICAS": "2"}).topic_retention


def test_co_partitioned_groups_follow_the_stages():
    groups = co_partitioned(Config(), Topics("p."))
    assert groups == [["p.ingest.iot.readings", "p.ingest.video.alerts", "p.ingest.reports",
                       "p.ingest.device.status", "p.citybrain-sensor_state-changelog",
                       "p.citybrain-device_health-changelog"],
                      ["p.citybrain.fusion.inbox", "p.citybrain-work_orders-changelog"]]


def test_retention_must_be_positive_or_forever():
    r = TopicRetention(retention_days={"ingest.reports": 7, "workorders.events": -1, "x": 0})
    assert r.retention_ms("ingest.reports") == str(7 * DAY_MS) and r.retention_ms("workorders.events") == "-1"
    with pytest.raises(ValueError):
        r.retention_ms("x")


def test_closed_orders_must_outlast_what_fusion_can_replay(tmp_path):
    import shutil

    from citybrain.paths import PROJECT_ROOT
    target = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", target)
    Config(target).check_closed_state_days()                  # 14 days against 7: fine
    text = (target / "citybrain.toml").read_text().replace("closed_state_days = 14", "closed_state_days = 5")
    (target / "citybrain.toml").write_text(text)
    with pytest.raises(ValueError, match="closed_state_days = 5 must be longer"):
        Config(target).check_closed_state_days()


def test_closed_orders_leave_in_the_order_they_closed():
    from citybrain.stream.timers import ClosedOrders
    c = ClosedOrders(keep_seconds=100)
    c.closed(0, "WO-b", 50)
    c.closed(0, "WO-a", 10)
    c.closed(1, "WO-c", 30)
    assert c.due(120) == [(0, "WO-a")]
    assert sorted(c.due(200)) == [(0, "WO-b"), (1, "WO-c")] and c.due(10_000) == []
