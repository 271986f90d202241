"""kafka/admin: a partition is ready when its leader answers and, for a replicated topic,
enough of its replicas are in sync for an acks=all produce; a registry publish ends."""

import asyncio
from types import SimpleNamespace

import pytest

from citybrain.kafka import admin
from citybrain.kafka.admin import wait_partitions_ready


class FakeAdmin:
    """Metadata whose in-sync replicas grow one per describe, up to all three; every
    leader answers ListOffsets without error."""

    def __init__(self, isr_after: list[list[int]]):
        self.isr_after, self.describes, self.asked = isr_after, 0, []

    async def describe_topics(self, topics):
        isr = self.isr_after[min(self.describes, len(self.isr_after) - 1)]
        self.describes += 1
        return [{"topic": t, "error_code": 0,
                 "partitions": [{"partition": 0, "leader": 1, "replicas": [1, 2, 3], "isr": isr}]}
                for t in topics]

    async def _send_request_to_node(self, node, request):
        self.asked.append(node)
        return SimpleNamespace(topics=[(t, [(p, 0, -1, -1) for p, _ in parts]) for t, parts in request._topics])


async def test_a_replicated_partition_waits_for_its_replicas_in_sync():
    admin = FakeAdmin([[1], [1], [1, 2], [1, 2, 3]])
    assert await wait_partitions_ready(admin, ["orders"], timeout=5.0, in_sync={"orders": 2}) == []
    assert admin.describes == 3          # ready once two replicas were in sync, not before


async def test_a_partition_short_of_replicas_is_named_after_the_timeout():
    admin = FakeAdmin([[1]])
    assert await wait_partitions_ready(admin, ["orders"], timeout=0.3, in_sync={"orders": 2}) == ["orders[0]"]
    assert admin.asked == []             # no leader asked while the replicas were short


async def test_without_a_requirement_one_replica_in_sync_is_enough():
    admin = FakeAdmin([[1]])
    assert await wait_partitions_ready(admin, ["orders"], timeout=5.0) == []
    assert admin.describes == 1


class NeverAcknowledged:
    """An idempotent producer whose batches no leader takes: acknowledgements never come and
    ``stop`` waits for them (aiokafka#1101)."""

    async def start(self):
        pass

    async def send(self, topic, value, key=None):
        return asyncio.get_running_loop().create_future()

    async def stop(self):
        await asyncio.Event().wait()


async def test_a_registry_publish_no_leader_takes_ends_with_a_reason(monkeypatch):
    monkeypatch.setattr(admin, "kafka_producer", lambda **_: NeverAcknowledged())
    monkeypatch.setattr(admin, "PUBLISH_SECONDS", 0.2)
    monkeypatch.setattr(admin, "STOP_SECONDS", 0.2)
    with pytest.raises(admin.RegistryNotPublished, match="registry.devices"):
        await admin.publish_registry("127.0.0.1:1", "registry.devices", [{"device_id": "SMK-1"}])
