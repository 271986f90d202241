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
    assert specs["p.workorders.events"].config == {"cleanup.policy": "delete", "retention.ms": "-1"}
    for name in ("p.events.normalized", "p.workorders.rejected", "p.dispatch.water", "p.deadletter",
                 "p.dispatch.supervision.city", "p.workorders.commands"):
        assert specs[name].config == {"cleanup.policy": "delete", "retention.ms": str(400 * DAY_MS)}
    for name in ("p.ingest.iot.readings", "p.ingest.video.alerts", "p.ingest.reports"):
        assert specs[name].config["retention.ms"] == str(7 * DAY_MS)
    assert specs["p.registry.devices"].config["cleanup.policy"] == "compact"
    for name in ("p.citybrain-sensor_state-changelog", "p.citybrain-work_orders-changelog"):
        assert specs[name].config == {"cleanup.policy": "compact"}
    assert {s.partitions for s in specs.values()} == {cfg.settings.kafka.partitions}


def test_co_partitioned_groups_follow_the_stages():
    groups = co_partitioned(Config(), Topics("p."))
    assert groups == [["p.ingest.iot.readings", "p.ingest.video.alerts", "p.ingest.reports",
                       "p.citybrain-sensor_state-changelog"],
                      ["p.citybrain.fusion.inbox", "p.citybrain-work_orders-changelog"]]


def test_retention_must_be_positive_or_forever():
    r = TopicRetention(retention_days={"ingest.reports": 7, "workorders.events": -1, "x": 0})
    assert r.retention_ms("ingest.reports") == str(7 * DAY_MS) and r.retention_ms("workorders.events") == "-1"
    with pytest.raises(ValueError):
        r.retention_ms("x")
