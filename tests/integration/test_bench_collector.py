"""The dispatch benchmark's collector process (issue 13): one consumer per topic, in a
process of its own, reading from each topic's end once it says it is ready."""

import asyncio
import time

import orjson

from citybrain.bench.collector import CollectorProcess
from citybrain.kafka.admin import create_topics
from citybrain.kafka.topics import TopicSpec
from tests.integration.kafka_helpers import new_prefix, produce


async def test_the_collector_reads_every_topic_from_its_end_in_a_process_of_its_own(kafka_bootstrap):
    prefix = new_prefix("collector")
    water, fire = f"{prefix}dispatch.water", f"{prefix}dispatch.fire"
    await create_topics(kafka_bootstrap, [TopicSpec(water, 3), TopicSpec(fire, 3)])
    old = orjson.dumps({"_source_ts": time.time()})
    await produce(kafka_bootstrap, [(water, b"old", old)])     # before it starts: not read
    collector = await CollectorProcess(kafka_bootstrap, [water, fire]).start()
    sent = time.time() - 0.25
    dispatched = orjson.dumps({"type": "dispatched", "snapshot": {"source_ingested_at":
                               time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(sent))}})
    assist = orjson.dumps({"type": "assist_added", "snapshot": {"source_ingested_at": "2026-01-01T00:00:00+00:00"}})
    await produce(kafka_bootstrap, [(water, b"a", dispatched), (fire, b"b", dispatched), (fire, b"c", assist),
                                    (water, b"d", orjson.dumps({"_source_ts": sent}))])
    await asyncio.sleep(1.0)
    got = await collector.finish()
    assert collector.process.exitcode == 0
    latencies = [lat for _, lat in got["samples"]]
    assert len(latencies) == 3                      # the old record and the assist are no samples
    assert all(0.2 < lat < 30 for lat in latencies)
    assert len(got["last_hop"]) == 3 and all(0 <= hop < 30 for _, hop in got["last_hop"])
