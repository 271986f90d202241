"""A worker killed with SIGKILL mid-hold and restarted loses no input and keeps the
device's alarm state (RocksDB + changelog): exactly one alarm results."""

import signal
import time

import orjson
import pytest

from citybrain.promtext import outcomes
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, consume, consume_all, decode, new_prefix, prepare, produce, wait_for_metrics

pytestmark = pytest.mark.integration


def gauge(seq: int, ago: float, value: float) -> bytes:
    return orjson.dumps({"device_id": "WLV-UP-02", "sensor_type": "water_level", "value": value,
                         "ts": iso(time.time() - ago), "seq": seq})


async def test_sigkill_mid_hold_then_restart(kafka_bootstrap, tmp_path):
    prefix = new_prefix("restart")
    t = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path).start()
    try:
        # Two readings 40 s apart above 0.15 m: the 60 s hold is running, no alarm yet.
        await produce(kafka_bootstrap, [(t.iot, b"WLV-UP-02", gauge(1, 300, 0.3)),
                                        (t.iot, b"WLV-UP-02", gauge(2, 260, 0.3))])
        await wait_for_metrics(worker, lambda m: outcomes(m)["iot"]["received"] >= 2)
        worker.stop(signal.SIGKILL)
        # While it is down, the reading that completes the hold arrives.
        await produce(kafka_bootstrap, [(t.iot, b"WLV-UP-02", gauge(3, 230, 0.35))])
        worker.start()
        events = decode(await consume(kafka_bootstrap, t.events, want=1, timeout=60, settle=0))
        assert [(e["device_id"], e["kind"], e["value"]) for e in events] == [("WLV-UP-02", "alarm", 0.35)]
        # More readings above the threshold do not raise a second alarm. (Counted before
        # reading 4: what the restarted worker read up to its alarm, replays included.)
        before = outcomes(worker.metrics())["iot"]["received"]
        await produce(kafka_bootstrap, [(t.iot, b"WLV-UP-02", gauge(4, 200, 0.4))])
        await wait_for_metrics(worker, lambda m: outcomes(m)["iot"]["received"] >= before + 1)
        # Reading 4 handled (after 3, one partition): whatever they raised is on the topic now.
        events = decode(await consume_all(kafka_bootstrap, t.events))
        assert len(events) == 1, events
    finally:
        worker.stop()
