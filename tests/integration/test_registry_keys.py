"""registry.devices obeys its key, through real Kafka and two real workers: a record keyed
other than its device_id registers nothing and is one `wrong_key` dead letter (not one per
worker, not one more per restart); a tombstone under a device's key removes it from every
worker at once and after a restart, and so does a retirement — a mismatched record kept
under another key does not bring the device back."""

import asyncio
import base64
import time

import orjson
import pytest

from citybrain.config import Config
from citybrain.promtext import outcomes, samples
from citybrain_tools.sample.registry_builder import load
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, consume, consume_all, decode, new_prefix, prepare, produce

pytestmark = pytest.mark.integration


def device(device_id: str, **extra) -> bytes:
    return orjson.dumps({"device_id": device_id, "kind": "sensor", "sensor_type": "water_level",
                         "lon": 117.87, "lat": 36.81, "status": "active", **extra})


SEQ = iter(range(1, 10**6))


def reading(device_id: str) -> tuple:
    return device_id.encode(), orjson.dumps({"device_id": device_id, "sensor_type": "water_level", "value": 0.01,
                                             "ts": iso(time.time() - 1), "seq": next(SEQ)})


@pytest.fixture(scope="module")
async def cluster(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("regkeys")
    topics = await prepare(kafka_bootstrap, prefix)
    state = tmp_path_factory.mktemp("state")
    workers = [WorkerProcess(kafka_bootstrap, prefix, state, f"w{i}").start(wait=False) for i in (1, 2)]
    try:
        for w in workers:
            w.wait_ready(120)
        yield kafka_bootstrap, topics, workers
    finally:
        for w in workers:
            w.stop()


async def dead_letters(bootstrap, topics, source: str) -> list[dict]:
    return [d for d in decode(await consume_all(bootstrap, topics.deadletter, quiet=0.3))
            if d["source"] == source]


def original_key(d: dict) -> bytes | None:
    return base64.b64decode(d["original_key_b64"]) if d["original_key_b64"] is not None else None


async def until(probe, timeout: float = 30.0):
    """``await probe()`` until it is truthy (its last value otherwise)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


def metric_sum(workers, name: str, **labels) -> float:
    return sum(v for w in workers for lab, v in samples(w.metrics(), name)
               if all(lab.get(k) == want for k, want in labels.items()))


def iot_totals(workers) -> dict[str, float]:
    total: dict[str, float] = {}
    for w in workers:
        for k, v in outcomes(w.metrics()).get("iot", {}).items():
            total[k] = total.get(k, 0.0) + v
    return total


async def heard_as(bootstrap, topics, workers, device_id: str) -> str:
    """One reading of the device: ``normal``, or the reason it was dead-lettered."""
    before = iot_totals(workers)
    [sent] = await produce(bootstrap, [(topics.iot, *reading(device_id))])

    async def counted():
        return iot_totals(workers).get("received", 0) > before.get("received", 0)
    assert await until(counted), "the reading was not counted"
    after = iot_totals(workers)
    if after.get("normal", 0) > before.get("normal", 0):
        return "normal"

    async def its_dead_letter():
        mine = [d for d in await dead_letters(bootstrap, topics, "iot")
                if (d["source_partition"], d["source_offset"]) == (sent.partition, sent.offset)]
        return mine[0]["reason"] if mine else None
    return await until(its_dead_letter) or "nothing"


async def test_the_publisher_keys_every_record_by_its_device_id(cluster):
    bootstrap, t, _ = cluster
    sample = load(Config().registry_path)
    records = await consume(bootstrap, t.registry, want=len(sample), timeout=30)
    assert len(records) == len(sample)
    assert all(r.key == orjson.loads(r.value)["device_id"].encode("utf-8") for r in records)


async def test_a_record_keyed_other_than_its_device_id_is_one_wrong_key_dead_letter(cluster):
    bootstrap, t, workers = cluster
    await produce(bootstrap, [(t.registry, b"OTHER-GHOST-1", device("GHOST-1"))])

    async def its_letters():
        return [d for d in await dead_letters(bootstrap, t, "registry") if original_key(d) == b"OTHER-GHOST-1"]
    letters = await until(its_letters)
    assert [(d["reason"], d["field"]) for d in letters] == [("wrong_key", "key")], letters
    assert "GHOST-1" in letters[0]["detail"]
    await asyncio.sleep(3)                      # the other worker read it too: no second letter
    assert len(await its_letters()) == 1
    assert metric_sum(workers, "citybrain_deadletter_total", source="registry", reason="wrong_key") == 1.0

    # The device is not registered: its readings are unknown_device on whichever worker.
    assert await heard_as(bootstrap, t, workers, "GHOST-1") == "unknown_device"

    # A restarted worker reads the registry again; the letter is not written again.
    workers[0].stop()
    workers[0].start()
    assert await heard_as(bootstrap, t, workers, "GHOST-1") == "unknown_device"
    await produce(bootstrap, [(t.registry, b"OTHER-GHOST-2", device("GHOST-2"))])

    async def second():
        return [d for d in await dead_letters(bootstrap, t, "registry") if original_key(d) == b"OTHER-GHOST-2"]
    assert len(await until(second)) == 1       # the dead-letter duty runs on after the restart …
    assert len(await its_letters()) == 1       # … and did not send the first letter again


async def test_a_tombstone_or_retirement_under_the_devices_key_holds_on_every_worker_and_after_a_restart(cluster):
    bootstrap, t, workers = cluster

    def registered(w) -> float:
        return sum(v for lab, v in samples(w.metrics(), "citybrain_registry_devices")
                   if lab["kind"] == "sensor" and lab["status"] == "active")

    base = [registered(w) for w in workers]
    # X and Z registered under their own keys, and each again under another key (the case).
    await produce(bootstrap, [(t.registry, b"TOMB-X", device("TOMB-X")), (t.registry, b"OTHER-TOMB-X", device("TOMB-X")),
                              (t.registry, b"RET-Z", device("RET-Z")), (t.registry, b"OTHER-RET-Z", device("RET-Z")),
                              (t.registry, b"KEEP-Y", device("KEEP-Y")),
                              (t.registry, b"OTHER-KEEP-Y", device("KEEP-Y"))])

    async def loaded():
        return [registered(w) for w in workers] == [b + 3 for b in base]
    assert await until(loaded), ([registered(w) for w in workers], base)
    for d in ("TOMB-X", "RET-Z", "KEEP-Y"):
        assert await heard_as(bootstrap, t, workers, d) == "normal"

    # The tombstone of a mismatched key removes nothing.
    await produce(bootstrap, [(t.registry, b"OTHER-KEEP-Y", None)])
    await asyncio.sleep(1.5)
    assert await heard_as(bootstrap, t, workers, "KEEP-Y") == "normal"

    # X's tombstone and Z's retirement, under their own keys: at once, on every worker.
    await produce(bootstrap, [(t.registry, b"TOMB-X", None), (t.registry, b"RET-Z", device("RET-Z", status="retired"))])

    async def gone():
        return [registered(w) for w in workers] == [b + 1 for b in base]
    assert await until(gone), ([registered(w) for w in workers], base)
    assert await heard_as(bootstrap, t, workers, "TOMB-X") == "unknown_device"
    assert await heard_as(bootstrap, t, workers, "RET-Z") == "retired_device"

    # Every worker restarted: the records under OTHER-TOMB-X and OTHER-RET-Z are still on the
    # topic, and bring neither back.
    for w in workers:
        w.stop()
    for w in workers:
        w.start(wait=False)
    for w in workers:
        w.wait_ready(120)
    assert [registered(w) for w in workers] == [b + 1 for b in base]
    assert await heard_as(bootstrap, t, workers, "TOMB-X") == "unknown_device"
    assert await heard_as(bootstrap, t, workers, "RET-Z") == "retired_device"
    assert await heard_as(bootstrap, t, workers, "KEEP-Y") == "normal"
