"""Topic settings reconciled at start (issue 12): a retention left at the broker's
default (7 days) is brought to the configuration; partitions that differ, or inputs that
are not co-partitioned, stop the start with a clear message."""

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from citybrain.config import Config
from citybrain.kafka.admin import TopicMismatch, create_topics, reconcile_topics
from citybrain.kafka.topics import Topics, TopicSpec
from citybrain.stream.topology import co_partitioned, topic_specs

from .kafka_helpers import PARTITIONS, WorkerProcess, new_prefix

pytestmark = pytest.mark.integration


async def retention_of(bootstrap: str, names: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        return {r[3]: {e[0]: e[1] for e in r[4]}["retention.ms"] for r in response.resources}
    finally:
        await admin.close()


async def test_retention_is_reconciled_and_partitions_are_checked(kafka_bootstrap):
    cfg = Config()
    topics = Topics(new_prefix("topics"))
    specs = topic_specs(cfg, topics, PARTITIONS)
    # Created as an older version did: the broker's default retention everywhere.
    await create_topics(kafka_bootstrap, [TopicSpec(s.name, s.partitions) for s in specs])
    before = await retention_of(kafka_bootstrap, [topics.workorder_events, topics.reports])
    assert before[topics.workorder_events] == str(7 * 86_400_000)

    altered = await reconcile_topics(kafka_bootstrap, specs, co_partitioned(cfg, topics))
    assert any(line.startswith(topics.workorder_events) for line in altered)
    # The controller acknowledges the alter; the broker applies it from the metadata log a
    # moment later (a describe right after once still read 7 days: a clean-clone CI run).
    want = {topics.workorder_events: "-1", topics.reports: str(7 * 86_400_000)}
    deadline = asyncio.get_running_loop().time() + 10
    while (after := await retention_of(kafka_bootstrap, list(want))) != want \
            and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    assert after == want
    assert await reconcile_topics(kafka_bootstrap, specs, co_partitioned(cfg, topics)) == []   # idempotent


async def test_partitions_that_differ_stop_the_start(kafka_bootstrap, tmp_path):
    cfg = Config()
    prefix = new_prefix("copart")
    topics = Topics(prefix)
    specs = topic_specs(cfg, topics, PARTITIONS)
    await create_topics(kafka_bootstrap, [TopicSpec(s.name, 2 if s.name == topics.video else s.partitions, s.config)
                                          for s in specs])
    with pytest.raises(TopicMismatch) as why:
        await reconcile_topics(kafka_bootstrap, specs, co_partitioned(cfg, topics))
    text = str(why.value)
    assert f"{topics.video}: 2 partitions, the configuration says {PARTITIONS}" in text
    assert "not co-partitioned" in text and topics.iot in text

    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path)
    worker.start(wait=False)
    assert worker.proc.wait(timeout=60) == 2
    log = worker.log_path.read_text()
    assert "topic partitions do not match the configuration" in log and topics.video in log


async def test_min_insync_replicas_is_reconciled_and_missing_replicas_stop_the_start(kafka_bootstrap):
    """DESIGN §17: topics.toml [replication] — min.insync.replicas altered like retention;
    a topic with fewer replicas than the factor is a decision for a person (reassignment)."""
    topics = Topics(new_prefix("replicas"))
    specs = [s for s in topic_specs(Config(), topics, PARTITIONS) if s.name in (topics.reports, topics.events)]
    await create_topics(kafka_bootstrap, specs)   # one replica, min.insync.replicas 1
    wanted = [TopicSpec(s.name, s.partitions, {**s.config, "min.insync.replicas": "2"}) for s in specs]
    altered = await reconcile_topics(kafka_bootstrap, wanted)
    assert sorted(altered) == sorted(f"{s.name}: min.insync.replicas 1 → 2" for s in specs)

    async def isr() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.name)
                                                       for s in specs])
            return {r[3]: {e[0]: e[1] for e in r[4]}["min.insync.replicas"] for r in response.resources}
        finally:
            await admin.close()
    deadline = asyncio.get_running_loop().time() + 10
    while set((now := await isr()).values()) != {"2"} and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    assert set(now.values()) == {"2"}

    with pytest.raises(TopicMismatch) as why:
        await reconcile_topics(kafka_bootstrap, wanted, replication=3)
    assert f"{topics.reports}: 1 replica(s), topics.toml [replication] factor is 3" in str(why.value)
