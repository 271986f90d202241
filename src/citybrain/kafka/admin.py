"""Creating the topics and resolving which cluster to talk to."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence

import orjson
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.offset import OffsetRequest

from citybrain.kafka.announced import local_bootstrap
from citybrain.kafka.clients import kafka_admin, kafka_producer, stop_quietly
from citybrain.kafka.topics import TopicSpec

log = logging.getLogger(__name__)
PARTITIONS_READY_SECONDS = 30.0
PUBLISH_SECONDS = 120.0
STOP_SECONDS = 30.0


class NoBroker(RuntimeError):
    pass


def bootstrap_servers() -> str:
    """``KAFKA_BOOTSTRAP_SERVERS``, else the local broker started by ``citybrain kafka start``."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        return env
    running = local_bootstrap()
    if running:
        return running
    raise NoBroker("没有可用的 Kafka no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS, "
                   "or run `citybrain kafka start` (or `--nodes 3`)")


async def create_topics(bootstrap: str, specs: list[TopicSpec], replication: int = 1) -> list[str]:
    """Create the missing topics; return the names created.  Idempotent."""
    admin = kafka_admin(bootstrap_servers=bootstrap, client_id="citybrain-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        new = [NewTopic(s.name, s.partitions, replication, topic_configs=s.config) for s in missing]
        try:
            await admin.create_topics(new, timeout_ms=30000)
        except TopicAlreadyExistsError:
            pass  # another worker won the race
        # A leader in the metadata is not yet a leader that takes writes: the broker may
        # still be creating the partition's log and answers NotLeaderForPartition to a
        # produce (the demo's registry publish printed a screenful of aiokafka warnings).
        names = [s.name for s in missing]
        await wait_partitions_ready(admin, names, in_sync={
            s.name: min(replication, int(s.config.get("min.insync.replicas", 1))) for s in missing})
        return names
    finally:
        await admin.close()


async def wait_partitions_ready(admin, topics: list[str], timeout: float = PARTITIONS_READY_SECONDS,
                                in_sync: Mapping[str, int] | None = None) -> list[str]:
    """Until every partition of ``topics`` answers a ListOffsets from its leader with no
    error — the same leadership and log checks a produce meets — and has at least
    ``in_sync[topic]`` replicas in sync (its ``min.insync.replicas``: fewer, and an
    ``acks=all`` produce is refused NotEnoughReplicas), or ``timeout`` seconds.
    Returns the partitions still not ready ("topic[p]", "topic[?]" for a topic not yet
    in the metadata), logged as a warning; [] when all are, so a producer started then
    never meets a partition without a working leader."""
    in_sync = in_sync or {}
    deadline = time.monotonic() + timeout
    ready: set[tuple[str, int]] = set()
    while True:
        try:
            described = await admin.describe_topics(topics)
        except Exception:  # noqa: BLE001 - metadata not there yet
            described = []
        known = {t["topic"]: t["partitions"] for t in described if t["error_code"] == 0 and t["partitions"]}
        by_leader: dict[int, dict[str, list[tuple[int, int]]]] = {}
        for topic, partitions in known.items():
            for p in partitions:
                if ((topic, p["partition"]) not in ready and p["leader"] >= 0
                        and len(p.get("isr") or ()) >= in_sync.get(topic, 1)):
                    by_leader.setdefault(p["leader"], {}).setdefault(topic, []).append((p["partition"], -1))
        for leader, asked in by_leader.items():
            try:   # the latest offset (-1) of each partition this leader should have
                response = await admin._send_request_to_node(leader, OffsetRequest(-1, 0, list(asked.items())))
            except Exception:  # noqa: BLE001 - the leader not reachable yet: asked again
                continue
            for topic, parts in response.topics:
                for partition, error_code, *_ in parts:
                    if error_code == 0:
                        ready.add((topic, partition))
        waiting = [f"{t}[?]" for t in topics if t not in known]
        waiting += [f"{t}[{p['partition']}]" for t, partitions in known.items() for p in partitions
                    if (t, p["partition"]) not in ready]
        if not waiting:
            return []
        if time.monotonic() >= deadline:
            log.warning("主题分区未就绪 %d partitions not ready %.0fs after their topics were created "
                        "(no leader answering ListOffsets, or fewer replicas in sync than "
                        "min.insync.replicas, e.g. %s): producers may meet NotLeaderForPartition "
                        "or NotEnoughReplicas and retry", len(waiting), timeout, ", ".join(waiting[:5]))
            return waiting
        await asyncio.sleep(0.1)


async def delete_prefixed(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a benchmark's or a test's
    own, changelogs included).  Measured: a broker left with thousands of partitions from
    earlier runs answered slower for everyone."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = kafka_admin(bootstrap_servers=bootstrap, client_id="citybrain-admin")
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names, timeout_ms=30000)
        return names
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The topic's partition numbers; [] when it does not exist (yet)."""
    admin = kafka_admin(bootstrap_servers=bootstrap, client_id="citybrain-admin")
    await admin.start()
    try:
        return (await _described_partitions(admin, [topic])).get(topic, [])
    except Exception:  # noqa: BLE001 - unknown topic
        return []
    finally:
        await admin.close()


async def partitions_of_topics(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Each existing topic's partition numbers, in one request (a topic that does not
    exist is left out)."""
    admin = kafka_admin(bootstrap_servers=bootstrap, client_id="citybrain-admin")
    await admin.start()
    try:
        return await _described_partitions(admin, topics)
    finally:
        await admin.close()


async def _described_partitions(admin, topics: list[str]) -> dict[str, list[int]]:
    return {d["topic"]: sorted(p["partition"] for p in d["partitions"])
            for d in await admin.describe_topics(topics) if d["error_code"] == 0}


async def cluster_id(bootstrap: str) -> str:
    admin = kafka_admin(bootstrap_servers=bootstrap, client_id="citybrain-admin")
    await admin.start()
    try:
        return (await admin.describe_cluster())["cluster_id"]
    finally:
        await admin.close()


def registry_key(record: dict) -> bytes:
    """A registry record's Kafka key: its ``device_id`` in UTF-8 — the compacted topic keeps
    one record per key, and the workers register a device only under its own id."""
    device_id = record.get("device_id") if isinstance(record, dict) else None
    if not isinstance(device_id, str) or not device_id:
        raise ValueError(f"a registry record without a device_id cannot be keyed: {str(record)[:200]}")
    return device_id.encode("utf-8")


async def publish_registry(bootstrap: str, topic: str, records: list[dict]) -> int:
    """Every record keyed by its device id; a record that has none fails the publish before
    anything is sent."""
    keyed = [(registry_key(r), orjson.dumps(r)) for r in records]
    # A one-off publish rides out a leader change or a replica catching up (the hot path's
    # 5 s request timeout is for failing over fast): 30 s before a batch is given up.
    producer = kafka_producer(bootstrap_servers=bootstrap, linger_ms=20, acks="all",
                                client_id="citybrain-registry-publisher", request_timeout_ms=30_000)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in keyed]
        try:
            await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_SECONDS)
        except TimeoutError:
            raise RegistryNotPublished(
                f"设备台账发布超时 the registry was not acknowledged within {PUBLISH_SECONDS:.0f} s: "
                f"does every partition of {topic} have a leader and enough replicas in sync?") from None
    finally:
        await stop_quietly(producer, STOP_SECONDS)   # a publish that failed must still end
    return len(records)


class RegistryNotPublished(RuntimeError):
    """The registry's records were not all acknowledged in time."""


class TopicMismatch(RuntimeError):
    """Topics the worker must not start on: partition counts other than configured, or
    inputs a stage reads together that are not co-partitioned."""


async def reconcile_topics(bootstrap: str, specs: list[TopicSpec],
                           co_partitioned: Sequence[Sequence[str]] = (), replication: int = 1) -> list[str]:
    """Bring existing topics' settings to the specs (retention, cleanup policy,
    min.insync.replicas) and check their partition counts and replicas.  Returns what was
    altered; raises ``TopicMismatch`` (every problem in one message) on partitions that
    differ — more partitions would move keys and the state that follows them, so that is a
    decision for a person, not for a start — and on fewer replicas than ``replication``
    (adding replicas is a reassignment that copies whole logs: kafka-reassign-partitions)."""
    admin = kafka_admin(bootstrap_servers=bootstrap, client_id="citybrain-admin")
    await admin.start()
    try:
        wanted = {s.name: s for s in specs}
        topics = [t for t in await admin.describe_topics(list(wanted)) if t["error_code"] == 0]
        described = {t["topic"]: len(t["partitions"]) for t in topics}
        problems = [f"{name}: {described[name]} partitions, the configuration says {spec.partitions}"
                    for name, spec in wanted.items() if name in described and described[name] != spec.partitions]
        for t in topics:
            fewest = min((len(p["replicas"]) for p in t["partitions"]), default=replication)
            if fewest < replication:
                problems.append(f"{t['topic']}: {fewest} replica(s), topics.toml [replication] factor is "
                                f"{replication} (kafka-reassign-partitions adds them)")
        for group in co_partitioned:
            counts = {n: described[n] for n in group if n in described}
            if len(set(counts.values())) > 1:
                problems.append("not co-partitioned (a stage reads these by partition number together): "
                                + ", ".join(f"{n}={c}" for n, c in counts.items()))
        if problems:
            raise TopicMismatch("主题分区与配置不符 topic partitions do not match the configuration — "
                                "fix the topics or [kafka] partitions / topics.toml [replication], "
                                "then start again:\n  "
                                + "\n  ".join(problems))
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in described if wanted[n].config]
        current = {}
        for response in await admin.describe_configs(resources) if resources else []:
            for _err, _msg, _type, name, entries in response.resources:
                current[name] = {e[0]: e[1] for e in entries}
        altered, changes = [], []
        for name, have in current.items():
            want = wanted[name].config
            diff = {k: v for k, v in want.items() if have.get(k) != v}
            if diff:
                # AlterConfigs sets a topic's whole dynamic config: send all of ours.
                changes.append(ConfigResource(ConfigResourceType.TOPIC, name, configs=want))
                altered.append(f"{name}: " + ", ".join(f"{k} {have.get(k)} → {v}" for k, v in diff.items()))
        if changes:
            await admin.alter_configs(changes)
        return altered
    finally:
        await admin.close()
