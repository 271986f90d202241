"""Topics created are topics that take writes (issue 35 item 6): after ``create_topics``
returns, publishing the registry meets no NotLeaderForPartition — the aiokafka producer
logs no warning at all."""

from __future__ import annotations

import asyncio
import logging

from citybrain.config import Config
from citybrain.kafka.admin import create_topics, delete_prefixed, publish_registry, wait_partitions_ready
from citybrain.kafka.clients import kafka_admin
from citybrain.kafka.topics import Topics
from citybrain.stream.topology import topic_specs
from citybrain_tools.sample.registry_builder import load
from tests.integration.kafka_helpers import new_prefix


def test_fresh_topics_take_the_registry_without_a_client_warning(kafka_bootstrap, caplog):
    prefix = new_prefix("ready")
    topics = Topics(prefix)
    cfg = Config()
    specs = topic_specs(cfg, topics)          # every topic, the configured partitions (as `citybrain topics`)
    records = load(cfg.registry_path)

    async def run() -> tuple[list[str], list[str], int]:
        created = await create_topics(kafka_bootstrap, specs)
        admin = kafka_admin(bootstrap_servers=kafka_bootstrap, client_id="citybrain-test")
        await admin.start()
        try:
            left = await wait_partitions_ready(admin, created, timeout=5.0)   # already ready: at once
        finally:
            await admin.close()
        n = await publish_registry(kafka_bootstrap, topics.registry, records)
        return created, left, n

    caplog.set_level(logging.DEBUG, logger="citybrain.kafka.admin")
    with caplog.at_level(logging.WARNING, logger="aiokafka"):
        try:
            created, left, n = asyncio.run(run())
        finally:
            asyncio.run(delete_prefixed(kafka_bootstrap, prefix))
    assert len(created) == len(specs) > 50
    assert left == []
    assert n == len(records) > 1000
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [], "\n".join(r.getMessage()[:200] for r in warnings[:10])
