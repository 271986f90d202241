"""The chaos modules' shared fixtures: the seeded input and its clean run (the reference),
made once per module — each chaos file runs on its own pytest-xdist process."""

import time

import pytest

from ..integration.kafka_helpers import WorkerProcess, new_prefix, prepare
from .harness import DURATION, REPORT, clean_run, seeded_input


@pytest.fixture(scope="module")
def records():
    return seeded_input(time.time() - DURATION - 900)


@pytest.fixture(scope="module")
async def reference(kafka_bootstrap, tmp_path_factory, records):
    prefix = new_prefix("chaos-ref")
    t = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("ref"), "ref")
    outcome = await clean_run(kafka_bootstrap, t, worker, records)
    events, dead, orders = outcome.size()
    assert events and dead and orders
    REPORT.append(f"CHAOS reference: records={len(records)} events={events} dead_letters={dead} orders={orders}")
    return outcome
