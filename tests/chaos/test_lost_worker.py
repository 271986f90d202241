"""Chaos: two workers, one SIGKILLed in the middle of a rebalance and the other lost for
good, under both guarantees; and under exactly_once one frozen past its session that comes
back a zombie — matched against the reference (tests/chaos/conftest.py)."""

import asyncio
import os
import signal

import pytest

from citybrain.promtext import samples

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


FROZEN_SECONDS = 10   # past the 6 s session: the group moves on without it


def handled(worker: WorkerProcess) -> float:
    """Records the worker's normalise stage has handled (its metrics page)."""
    return sum(v for labels, v in samples(worker.metrics(), "citybrain_stage_records_total")
               if labels.get("stage") == "normalise")


async def test_a_worker_frozen_past_its_session_comes_back_a_zombie_and_changes_nothing(
        kafka_bootstrap, tmp_path, records, reference):
    """One transactional id per process (KIP-447): a worker paused mid-work (SIGSTOP: a long
    GC, a stalled VM) loses its partitions to the other after its session; let go, it
    carries on where it was — an open transaction, offsets of a generation the group has
    left — and must change nothing: the survivor ended its transaction and fenced its id,
    the coordinator refuses its generation's offsets.  Then it rejoins and works again."""
    prefix = new_prefix("chaos-zombie-exa")
    t = await prepare(kafka_bootstrap, prefix)
    reader = await OutputReader(kafka_bootstrap, t).start()
    env = {"CITYBRAIN_PROCESSING_GUARANTEE": "exactly_once"}
    w1 = WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w1", env=env).start()
    w2 = WorkerProcess(kafka_bootstrap, prefix, tmp_path, "w2", env=env).start()
    feeding = asyncio.create_task(produce_paced(kafka_bootstrap, t, records, seconds=PRODUCE_SECONDS))
    frozen = False
    try:
        await asyncio.sleep(3)
        os.kill(w2.proc.pid, signal.SIGSTOP)   # mid-work: its transactions open, its offsets in flight
        frozen = True
        await asyncio.sleep(FROZEN_SECONDS)
        os.kill(w2.proc.pid, signal.SIGCONT)   # a zombie: it goes on as if nothing happened
        frozen = False
        await asyncio.sleep(6)                 # it finds itself fenced and rejoins
        rejoined = handled(w2)
        await feeding
        verdict = await settle_and_verify(f"a worker frozen {FROZEN_SECONDS} s and let go (exactly_once)",
                                          reference, reader, records, "frozen=1")
        worked_again = handled(w2) - rejoined
        print(f"CHAOS   the zombie, rejoined, handled {worked_again:.0f} records", flush=True)
    finally:
        feeding.cancel()
        if frozen:
            os.kill(w2.proc.pid, signal.SIGCONT)
        w1.stop()
        w2.stop()
    assert (verdict.lost, verdict.unexpected, verdict.incidents_differ, verdict.version_skips) == (0, 0, 0, 0)
    assert (verdict.duplicate_outcomes, verdict.version_repeats, verdict.duplicate_dispatch) == (0, 0, 0)
    assert worked_again > 0, "the zombie, let go, rejoins the group and takes work again"
