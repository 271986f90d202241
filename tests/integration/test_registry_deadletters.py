"""The registry's dead-letter duty through real Kafka rebalances (stream/registry.py): three
duties joining one group while each is mid-batch send every wrong-key record's dead letter
exactly once — a member gives its partitions up only with the batch in hand committed, and
a batch fetched while the group rebalances is read again, not dropped."""

import asyncio

import orjson
import pytest

from citybrain.kafka.admin import create_topics
from citybrain.kafka.topics import TopicSpec
from citybrain.stream.registry import RegistryDeadLetters

from .kafka_helpers import new_prefix, produce

pytestmark = pytest.mark.integration

PARTITIONS = 4


def wrong_key(i: int) -> tuple[bytes, bytes]:
    device = {"device_id": f"DL-{i}", "kind": "sensor", "sensor_type": "water_level", "lon": 117.87, "lat": 36.81}
    return f"OTHER-{i}".encode(), orjson.dumps(device)


async def test_members_joining_mid_batch_send_each_dead_letter_once(kafka_bootstrap):
    topic = new_prefix("regdl") + "registry.devices"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)])
    sent: list[tuple[str, int, int]] = []   # (duty, partition, offset)
    progress = asyncio.Condition()

    def duty(name: str) -> RegistryDeadLetters:
        async def on_dead(msg, entry):
            assert entry.reason == "wrong_key"
            await asyncio.sleep(0.02)   # a slow send: the joins land mid-batch
            async with progress:
                sent.append((name, msg.partition, msg.offset))
                progress.notify_all()
        return RegistryDeadLetters(kafka_bootstrap, topic, f"{topic}-registry-deadletters", on_dead)

    async def until(count: int, timeout: float = 90.0) -> None:
        async with progress:
            await asyncio.wait_for(progress.wait_for(lambda: len(sent) >= count), timeout)

    first_lot = [(topic, *wrong_key(i)) for i in range(400)]
    second_lot = [(topic, *wrong_key(i)) for i in range(400, 700)]
    await produce(kafka_bootstrap, first_lot)
    duties = {name: duty(name) for name in "ABC"}
    tasks = [asyncio.create_task(duties["A"].run())]
    try:
        await until(30)                      # A alone, mid-batch
        tasks.append(asyncio.create_task(duties["B"].run()))
        await until(200)
        await produce(kafka_bootstrap, second_lot)
        tasks.append(asyncio.create_task(duties["C"].run()))   # joins while the second lot is read
        await until(700)
        await asyncio.sleep(5)               # a repeat would arrive in this time
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    by_record: dict[tuple[int, int], list[str]] = {}
    for name, partition, offset in sent:
        by_record.setdefault((partition, offset), []).append(name)
    repeated = {k: v for k, v in by_record.items() if len(v) > 1}
    senders = {name for name, _, _ in sent}
    handed_back = {name: d.handed_back for name, d in duties.items()}
    print(f"\nregistry dead letters through two joins: {len(by_record)} records, {len(sent)} sent, "
          f"repeated {len(repeated)}, senders {sorted(senders)}, batches handed back {handed_back}")
    assert len(by_record) == 700, "a wrong-key record's dead letter was never sent"
    assert repeated == {}, f"dead letters sent twice across a rebalance: {sorted(repeated.items())[:5]}"
    assert len(senders) >= 2, "the joins never moved a partition: the test did not rebalance"
