"""The chaos modules' shared fixtures: the seeded input and its clean run (the reference),
made once per module — each chaos file runs on its own pytest-xdist process."""

import time

import pytest

from ..integration.kafka_helpers import WorkerProcess, new_prefix, prepare
from .harness import DURATION, REPORT, OutputReader, produce_paced, seeded_input


@pytest.fixture(scope="module")
def records():
    return seeded_input(time.time() - DURATION - 900)


@pytest.fixture(scope="module")
async def reference(kafka_bootstrap, tmp_path_factory, records):
    prefix = new_prefix("chaos-ref")
    t = await prepare(kafka_bootstrap, prefix)
    reader = await OutputReader(kafka_bootstrap, t).start()
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("ref"), "ref").start()
    try:
        await produce_paced(kafka_bootstrap, t, records, seconds=6)
        await reader.quiet(8)
    finally:
        worker.stop()
    outcome = await reader.stop()
    events, dead, orders = outcome.size()
    assert events and dead and orders
    REPORT.append(f"CHAOS reference: records={len(records)} events={events} dead_letters={dead} orders={orders}")
    return outcome
