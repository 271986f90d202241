"""Restarts that stay fast (issue 12): a clean stop leaves each stage state's local copy
(RocksDB) with the changelog offset it reflects; a restart reads only the changelog's tail
from there — also from an older copy — and a worker with no copy reads the whole
changelog.  Whichever way, the state is the same: an alarm already raised is not raised
again."""

import asyncio
import re
import shutil
import time

import orjson
import pytest

from citybrain.stream.topology import changelogs
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, consume_all, decode, new_prefix, prepare, produce, wait_for_metrics

pytestmark = pytest.mark.integration
RESTORED = re.compile(r"状态已恢复 sensor_state: (\d+) keys from the local copy \+ (\d+) changelog records")


def reading(device: str, st: str, value: float, ago: float) -> tuple:
    return device.encode(), orjson.dumps({"device_id": device, "sensor_type": st, "value": value,
                                          "ts": iso(time.time() - ago)})


def log_mark(worker: WorkerProcess) -> int:
    return len(worker.log_path.read_text(errors="replace")) if worker.log_path.exists() else 0


async def restored_since(worker: WorkerProcess, mark: int, enough, timeout: float = 30.0) -> tuple[int, int]:
    """(keys from the local copy, changelog records) summed over every restore logged since
    ``mark`` — a start may restore its partitions in more than one go (a rebalance while the
    group settles) — waiting until ``enough`` holds or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        found = RESTORED.findall(worker.log_path.read_text(errors="replace")[mark:])
        got = sum(int(a) for a, _ in found), sum(int(b) for _, b in found)
        if enough(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def alarms(bootstrap: str, t) -> list[str]:
    events = decode(await consume_all(bootstrap, t.events))
    return sorted(e["device_id"] for e in events if e["kind"] == "alarm")


async def test_restart_reads_the_changelog_tail_from_the_local_copy(kafka_bootstrap, tmp_path):
    prefix = new_prefix("store")
    t = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path)
    store = worker.data_dir / "stage-state"
    worker.start()
    try:
        pm = [f"PM25-{i:05d}" for i in range(1, 41)]
        await produce(kafka_bootstrap, [(t.iot, *reading(d, "pm25", 40.0, 300)) for d in pm]
                      + [(t.iot, *reading("SMK-00001", "smoke", 0.3, 200))])
        await wait_for_metrics(worker, lambda m: 'citybrain_ingest_outcome_total{outcome="event",source="iot"} 1.0' in m)
        worker.stop()                                        # clean: the local copy is written
        older = tmp_path / "older-copy"
        shutil.copytree(store, older)

        # Changes while it is down, then a restart: only the tail is read.
        await produce(kafka_bootstrap, [(t.iot, *reading("SMK-00002", "smoke", 0.3, 150))])
        mark = log_mark(worker)
        worker.start()
        await wait_for_metrics(worker, lambda m: 'outcome="event",source="iot"} 1.0' in m)
        local, tail = await restored_since(worker, mark, lambda got: got[0] >= 41)
        assert local >= 41 and tail <= 3, (local, tail)
        worker.stop()

        # From an older copy: it reads on from that copy's offset and knows SMK-00002's alarm.
        shutil.rmtree(store)
        shutil.copytree(older, store)
        mark = log_mark(worker)
        worker.start()
        await produce(kafka_bootstrap, [(t.iot, *reading("SMK-00002", "smoke", 0.35, 100)),
                                        (t.iot, *reading("SMK-00001", "smoke", 0.35, 100))])
        await wait_for_metrics(worker, lambda m: 'outcome="normal",source="iot"} 2.0' in m)
        local_old, tail_old = await restored_since(worker, mark, lambda got: got[0] >= 41 and got[1] >= 1)
        assert local_old >= 41 and tail_old >= 1
        worker.stop()

        # No local copy at all: the whole changelog (every record of every partition — a
        # restore once skipped a partition whole), the same state.
        changelog = len(await consume_all(kafka_bootstrap, changelogs(f"{prefix}citybrain")["sensor_state"],
                                          quiet=0.5))
        shutil.rmtree(store)
        mark = log_mark(worker)
        worker.start()
        await produce(kafka_bootstrap, [(t.iot, *reading("SMK-00002", "smoke", 0.4, 50))])
        await wait_for_metrics(worker, lambda m: 'outcome="normal",source="iot"} 1.0' in m)
        local_none, tail_all = await restored_since(worker, mark, lambda got: got[1] >= changelog)
        assert local_none == 0 and tail_all == changelog, (tail_all, changelog)   # every record of it
        assert await alarms(kafka_bootstrap, t) == ["SMK-00001", "SMK-00002"]   # each alarm once
        print(f"\nrestore: clean restart {local} keys local + {tail} from the tail; older copy {local_old} + "
              f"{tail_old}; no copy 0 + {tail_all} (the changelog held {changelog} records)")
    finally:
        worker.stop()
