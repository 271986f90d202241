"""Which topics a deployment has and with which settings — one place for the worker,
`citybrain topics`, the benchmarks and the tests: the contract's topics, the stages'
changelogs, their retention (config/topics.toml) and which ones must be co-partitioned."""

from __future__ import annotations

from citybrain.config import Config
from citybrain.kafka.topics import Topics, TopicSpec


def group_id(config: Config) -> str:
    s = config.settings
    return f"{s.kafka.topic_prefix}{s.worker.app_id}"


def changelogs(group: str) -> dict[str, str]:
    """State name → its compacted changelog topic (partitioned like the input it follows)."""
    return {"sensor_state": f"{group}-sensor_state-changelog", "device_health": f"{group}-device_health-changelog",
            "work_orders": f"{group}-work_orders-changelog"}


def topic_specs(config: Config, topics: Topics | None = None, partitions: int | None = None) -> list[TopicSpec]:
    s = config.settings
    topics = topics or Topics(s.kafka.topic_prefix)
    group = f"{topics.prefix}{s.worker.app_id}"
    specs = topics.specs(list(config.desks), partitions or s.kafka.partitions,
                         retention=config.topic_retention, changelogs=list(changelogs(group).values()))
    # Every topic, the compacted ones too: reconciled at each start like retention.
    isr = {"min.insync.replicas": str(config.topic_retention.replication.min_insync_replicas)}
    return [TopicSpec(t.name, t.partitions, {**t.config, **isr}) for t in specs]


def co_partitioned(config: Config, topics: Topics | None = None) -> list[list[str]]:
    topics = topics or Topics(config.settings.kafka.topic_prefix)
    return topics.co_partitioned(changelogs(f"{topics.prefix}{config.settings.worker.app_id}"))
