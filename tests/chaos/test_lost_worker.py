"""Chaos: two workers, one SIGKILLed in the middle of a rebalance and the other lost for
good, under both guarantees — matched against the reference (tests/chaos/conftest.py)."""

import asyncio
import signal

import pytest

from ..integration.kafka_helpers import WorkerProcess, new_prefix, prepare
from .common import settle_and_verify
from .harness import OutputReader, produce_paced

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

PRODUCE_SECONDS = 24


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_two_workers_one_killed_in_a_rebalance_and_one_lost_for_good(
        kafka_bootstrap, tmp_path, records, reference, guarantee):
    prefix = new_prefix(f"chaos-pair-{guarantee[:3]}")
    t = await prepare(kafka_bootstrap, prefix)
    reader = await OutputReader(kafka_bootstrap, t).start()
    env = {"CITYBRAIN_PROCESSING_GUARANTEE": guarantee}
    w1 = WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w1", env=env).start()
    w2 = WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w2", env=env)
    feeding = asyncio.create_task(produce_paced(kafka_bootstrap, t, records, seconds=PRODUCE_SECONDS))
    try:
        await asyncio.sleep(3)
        w2.start(wait=False)              # joins: the group rebalances …
        await asyncio.sleep(2.5)
        w1.stop(signal.SIGKILL)           # … and w1 dies in the middle of it
        w1.start()
        w2.wait_ready(90)
        await asyncio.sleep(4)
        w2.stop(signal.SIGKILL)           # lost for good: w1 takes its partitions after the session timeout
        await feeding
        verdict = await settle_and_verify(f"two workers, one killed mid-rebalance, one lost ({guarantee})",
                                          reference, reader, records, "kills=2")
    finally:
        feeding.cancel()
        w1.stop()
        w2.stop()
    assert (verdict.lost, verdict.unexpected, verdict.incidents_differ, verdict.version_skips) == (0, 0, 0, 0)
    if guarantee == "exactly_once":
        assert (verdict.duplicate_outcomes, verdict.version_repeats, verdict.duplicate_dispatch) == (0, 0, 0)
