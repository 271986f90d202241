"""The dispatch benchmark's collector process (issue 13): one consumer per topic, in a
process of its own, reading from each topic's end once it says it is ready."""

import asyncio
import time

import orjson

from citybrain.kafka.admin import create_topics
from citybrain.kafka.topics import TopicSpec
from citybrain_tools.bench.collector import CollectorProcess
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


async def test_the_collector_splits_a_dispatch_at_the_fusion_inbox(kafka_bootstrap):
    """Traced: the inbox record's Kafka timestamp (when normalise sent it) splits the
    stages' part of a dispatch into the normalise and the fuse hop."""
    prefix = new_prefix("collector-trace")
    desk, inbox = f"{prefix}dispatch.water", f"{prefix}citybrain.fusion.inbox"
    await create_topics(kafka_bootstrap, [TopicSpec(desk, 2), TopicSpec(inbox, 2)])
    collector = await CollectorProcess(kafka_bootstrap, [desk], trace=[inbox]).start()
    now_ms = int(time.time() * 1000)
    source_ms, normalised_ms, dispatched_ms = now_ms - 300, now_ms - 200, now_ms - 50
    change = orjson.dumps({"type": "dispatched", "snapshot": {
        "source_ingested_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(source_ms / 1000))
        + f".{source_ms % 1000:03d}+00:00", "events": [{"event_id": "ev-traced"}]}})
    await produce(kafka_bootstrap, [(inbox, b"flooding", orjson.dumps({"event_id": "ev-traced"}), normalised_ms),
                                    (desk, b"WO-1", change, dispatched_ms)])
    await asyncio.sleep(1.0)
    got = await collector.finish()
    assert collector.process.exitcode == 0
    ((receipt, normalise, fuse, last),) = got["hops"]
    assert round(normalise, 3) == 0.100 and round(fuse, 3) == 0.150
    assert 0 <= last < 30 and abs(receipt - last - dispatched_ms / 1000) < 1e-6
