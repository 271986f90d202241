"""Chaos: the seeded input processed once cleanly (the reference, tests/chaos/conftest.py),
then again while a worker is SIGKILLed at random moments and at chosen points (between
produce and commit, right after a commit, while restoring, during a rebalance). Every run
must match the reference: nothing lost, the same incidents in the same final states, no
order's versions skipping — and under exactly_once nothing twice, on any topic."""

import asyncio
import random
import signal

import pytest

from ..integration.kafka_helpers import WorkerProcess, new_prefix, prepare
from .common import settle_and_verify, until_dead
from .harness import OutputReader, produce_paced

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

PRODUCE_SECONDS = 24


async def run_with_kills(kafka_bootstrap, tmp_path, records, reference, guarantee: str):
    prefix = new_prefix(f"chaos-kill-{guarantee[:3]}")
    t = await prepare(kafka_bootstrap, prefix)
    reader = await OutputReader(kafka_bootstrap, t).start()
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w", env={"CITYBRAIN_PROCESSING_GUARANTEE": guarantee})
    rnd = random.Random(7)
    feeding = asyncio.create_task(produce_paced(kafka_bootstrap, t, records, seconds=PRODUCE_SECONDS))
    kills: list[str] = []
    # Each life ends in a SIGKILL: by the worker itself at a chaos point, or from outside.
    plan = ["outside:mid-batch", "after_produce:0.15", "outside:while-restoring", "after_commit:0.15",
            "outside:mid-batch", "after_produce:0.15"]
    try:
        for how in plan:
            point = "" if how.startswith("outside") else how
            worker.env["CITYBRAIN_CHAOS"] = point
            worker.start(wait=False)
            if how == "outside:while-restoring":
                await asyncio.sleep(1.5)
            elif how.startswith("outside"):
                worker.wait_ready(90)
                await asyncio.sleep(rnd.uniform(1.0, 3.0))
            elif await until_dead(worker, 25):
                kills.append(how.split(":")[0])
                continue
            worker.stop(signal.SIGKILL)
            kills.append(how.split(":", 1)[-1] if how.startswith("outside") else how.split(":")[0] + "(outside)")
        await feeding
        worker.env["CITYBRAIN_CHAOS"] = ""
        worker.start()
        verdict = await settle_and_verify(f"{len(kills)} SIGKILLs ({guarantee})", reference, reader, records,
                                          f"kills={len(kills)} [{', '.join(kills)}]")
    finally:
        feeding.cancel()
        worker.stop()
    assert len(kills) >= 5
    return verdict


async def test_sigkills_exactly_once(kafka_bootstrap, tmp_path, records, reference):
    v = await run_with_kills(kafka_bootstrap, tmp_path, records, reference, "exactly_once")
    assert (v.lost, v.unexpected, v.incidents_differ, v.version_skips) == (0, 0, 0, 0), v
    assert (v.duplicate_outcomes, v.version_repeats, v.duplicate_dispatch) == (0, 0, 0), v


async def test_sigkills_at_least_once(kafka_bootstrap, tmp_path, records, reference):
    v = await run_with_kills(kafka_bootstrap, tmp_path, records, reference, "at_least_once")
    # Repeats are allowed here (each carries its dedupe key); loss and skips are not.
    assert (v.lost, v.unexpected, v.incidents_differ, v.version_skips) == (0, 0, 0, 0), v
