"""The registry's local copy through real Kafka (stream/registrycopy.py, issue 38): a
second start reads the copy and only the records published since — a tombstone and a new
device among them — and holds what a full read would."""

import asyncio

import orjson
import pytest

from citybrain.stream.registry import RegistryCache
from citybrain.stream.registrycopy import RegistryCopy

from .kafka_helpers import new_prefix, prepare, produce

pytestmark = pytest.mark.integration


async def loaded(cache: RegistryCache) -> asyncio.Task:
    task = asyncio.create_task(cache.run())
    await asyncio.wait_for(cache.loaded.wait(), 30)
    return task


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_restart_reads_the_copy_and_the_tail(kafka_bootstrap, tmp_path):
    topics = await prepare(kafka_bootstrap, new_prefix("regcopy"))
    copy = RegistryCopy(tmp_path)
    first = RegistryCache(kafka_bootstrap, topics.registry, copy=copy)
    task = await loaded(first)
    await first.saving
    await stop(task)
    whole = dict(first.devices)
    assert len(whole) > 100 and copy.load(topics.registry) is not None

    gone = sorted(whole)[0]
    new = {"device_id": "W38-COPY-1", "kind": "sensor", "sensor_type": "water_level", "lon": 117.87,
           "lat": 36.81, "status": "active"}
    await produce(kafka_bootstrap, [(topics.registry, gone.encode(), None),
                                    (topics.registry, b"W38-COPY-1", orjson.dumps(new))])
    second = RegistryCache(kafka_bootstrap, topics.registry, copy=copy)
    task = await loaded(second)
    try:
        assert second.reader.records == 2                 # the tail only, not the registry again
        assert gone not in second.devices and second.get("W38-COPY-1").sensor_type == "water_level"
        assert set(second.devices) == set(whole) - {gone} | {"W38-COPY-1"}
    finally:
        await stop(task)
    full = RegistryCache(kafka_bootstrap, topics.registry)   # no copy: the topic whole
    task = await loaded(full)
    await stop(task)
    assert full.devices == second.devices
