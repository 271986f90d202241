"""The registry's local copy (stream/registrycopy.py) and when the registry reader writes
it (stream/registry.py): the devices and offsets back as saved; a copy of another topic,
of another shape of Device or damaged is not used; written once loaded, then throttled."""

import asyncio
import logging

import orjson

from citybrain.domain.registry import Device
from citybrain.stream import registrycopy
from citybrain.stream.registry import RegistryCache
from citybrain.stream.registrycopy import RegistryCopy

from .test_registry import device, msg

TOPIC = "registry.devices"
X = Device("X", "sensor", "water_level", 117.87, 36.81, "城管局", "active", None)
Y = Device("Y", "camera", None, 117.9, 36.8, None, "retired", 30.0)


def test_the_copy_gives_back_the_devices_and_offsets_it_was_saved_with(tmp_path):
    copy = RegistryCopy(tmp_path)
    assert copy.load(TOPIC) is None                       # none yet
    copy.save(TOPIC, {"X": X, "Y": Y}, {0: 12, 1: 3})
    devices, offsets = copy.load(TOPIC)
    assert devices == {"X": X, "Y": Y} and offsets == {0: 12, 1: 3}
    assert [p.name for p in tmp_path.iterdir()] == [RegistryCopy.NAME]   # no temporary file left


def test_a_copy_of_another_topic_or_shape_or_damaged_is_not_used(tmp_path, monkeypatch, caplog):
    copy = RegistryCopy(tmp_path)
    copy.save(TOPIC, {"X": X}, {0: 1})
    assert copy.load("other.registry.devices") is None
    monkeypatch.setattr(registrycopy, "SHAPE", [*registrycopy.SHAPE, "a_new_field"])   # a release changed Device
    assert copy.load(TOPIC) is None
    monkeypatch.undo()
    assert copy.load(TOPIC) is not None
    copy.path.write_bytes(copy.path.read_bytes()[:-20])  # cut short
    with caplog.at_level(logging.WARNING):
        assert copy.load(TOPIC) is None
    assert "unreadable" in caplog.text
    copy.save(TOPIC, {"X": X, "Y": Y}, {0: 1})
    body = orjson.loads(copy.path.read_bytes())
    body["columns"]["lat"].pop()                          # a column short of a device
    copy.path.write_bytes(orjson.dumps(body))
    assert copy.load(TOPIC) is None


def test_the_few_words_are_shared_strings_as_device_of_interns_them(tmp_path):
    copy = RegistryCopy(tmp_path)
    many = {f"D{i}": Device(f"D{i}", "sensor", "water_level", 117.0 + i / 1000, 36.8, None, "active", None)
            for i in range(50)}
    copy.save(TOPIC, many, {0: 50})
    devices, _ = copy.load(TOPIC)
    assert devices == many
    assert len({id(d.kind) for d in devices.values()}) == 1
    assert len({id(d.sensor_type) for d in devices.values()}) == 1
    assert all(d.owner_department is None for d in devices.values())


class Reader:
    def __init__(self, positions):
        self.positions = positions


async def test_the_reader_writes_the_copy_once_loaded_then_at_most_every_save_every(tmp_path):
    copy = RegistryCopy(tmp_path)
    cache = RegistryCache("unused:9092", TOPIC, copy=copy, save_every=3600)
    cache.reader = Reader({0: 2})
    cache._apply_batch([msg(b"X", device("X"), 0), msg(b"Y", device("Y"), 1)])
    await asyncio.sleep(0.05)
    assert copy.load(TOPIC) is None                       # not while loading
    cache._loaded()
    await cache.saving
    devices, offsets = copy.load(TOPIC)
    assert sorted(devices) == ["X", "Y"] and offsets == {0: 2}
    cache.reader.positions = {0: 3}
    cache._apply_batch([msg(b"X", None, 2)])             # X retired for good, within save_every
    await asyncio.sleep(0.05)
    assert sorted(copy.load(TOPIC)[0]) == ["X", "Y"]      # the last copy stands (its offsets replay X's tombstone)
    cache.save_every = 0
    cache._apply_batch([])
    await cache.saving
    devices, offsets = copy.load(TOPIC)
    assert sorted(devices) == ["Y"] and offsets == {0: 3}


async def test_a_start_that_read_nothing_new_does_not_write_the_copy_again(tmp_path):
    copy = RegistryCopy(tmp_path)
    copy.save(TOPIC, {"X": X}, {0: 5})
    written = copy.path.stat().st_mtime_ns
    cache = RegistryCache("unused:9092", TOPIC, copy=copy)
    cache.devices, cache.saved_offsets = copy.load(TOPIC)[0], {0: 5}   # as run() does from the copy
    cache.reader = Reader({0: 5})
    cache._loaded()
    assert cache.saving is None and copy.path.stat().st_mtime_ns == written
    cache.reader.positions = {0: 6}                      # one record more: written
    cache.save_every = 0
    cache._apply_batch([msg(b"Z", device("Z"), 5)])
    await cache.saving
    assert sorted(copy.load(TOPIC)[0]) == ["X", "Z"]
