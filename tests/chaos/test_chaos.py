"""Chaos: the seeded input processed once cleanly (the reference), then again while
workers are SIGKILLed at random moments and at chosen points (between produce and
commit, right after a commit, while restoring, during a rebalance), with two workers
where one is lost for good, and across a broker stop/start.  Every run must match the
reference: nothing lost, the same incidents in the same final states, no order's
versions skipping — and under exactly_once nothing twice, on any topic."""

import asyncio
import random
import signal
import time
import urllib.error
import urllib.request

import pytest

from citybrain.kafka.local_broker import LocalBroker

from ..integration.kafka_helpers import WorkerProcess, new_prefix, prepare
from .harness import DURATION, REPORT, OutputReader, produce_paced, seeded_input, verify

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

PRODUCE_SECONDS = 24
OUTAGE_SECONDS = 60


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


def ready(worker: WorkerProcess) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/readyz", timeout=3) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


async def until_dead(worker: WorkerProcess, seconds: float) -> bool:
    """Wait for the worker to kill itself (a chaos point); True if it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            return True
        await asyncio.sleep(0.2)
    return False


async def settle_and_verify(name: str, reference, reader: OutputReader, records, extra: str = ""):
    ref_size = reference.size()
    await reader.quiet(6, until=lambda: reader.outcome.size()[0] >= ref_size[0]
                       and reader.outcome.size()[2] >= ref_size[2])
    verdict = verify(reference, await reader.stop(), len(records))
    REPORT.append(verdict.line(name, extra))
    print("\n" + verdict.line(name, extra))
    return verdict


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


async def test_broker_stop_and_start(tmp_path, records, reference):
    """Its own broker (the session's serves the other tests): stopped for a minute
    mid-stream (past the producer's 40 s request timeout: sends fail and the stages
    recover) and started again on the same data.  The worker is not restarted: /readyz goes false
    while the broker is away and true again once it is back."""
    broker = LocalBroker(tmp_path / "kafka")
    bootstrap = broker.start(port=None, die_with_parent=True)
    worker = None
    try:
        prefix = new_prefix("chaos-broker")
        t = await prepare(bootstrap, prefix)
        reader = await OutputReader(bootstrap, t).start()
        worker = WorkerProcess(bootstrap, prefix, tmp_path, "w",
                               env={"CITYBRAIN_PROCESSING_GUARANTEE": "exactly_once"}).start()
        half = len(records) // 2
        await produce_paced(bootstrap, t, records[:half], seconds=6)
        lines_before = len(worker.log_path.read_text(errors="replace").splitlines())
        broker.stop()
        went_unready = time.monotonic()
        while ready(worker) and time.monotonic() - went_unready < 30:
            await asyncio.sleep(0.5)
        unready_after = time.monotonic() - went_unready
        assert not ready(worker), "/readyz stayed true with the broker gone"
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - unready_after))
        assert worker.proc.poll() is None, "the worker exited during the outage"
        outage_lines = len(worker.log_path.read_text(errors="replace").splitlines()) - lines_before
        broker.restart()
        back = time.monotonic()
        worker.wait_ready(120)            # by itself: no restart
        resumed = time.monotonic() - back
        await produce_paced(bootstrap, t, records[half:], seconds=6)
        verdict = await settle_and_verify(f"broker stopped {OUTAGE_SECONDS} s and started (exactly_once)",
                                          reference, reader,
                                          records, f"unready_after={unready_after:.1f}s ready_again_after="
                                                   f"{resumed:.1f}s worker_restarts=0 "
                                                   f"log_lines_during_outage={outage_lines}")
        assert worker.proc.poll() is None
        # One line per kind of client error per 10 s, not one per attempt (~330/s before).
        assert outage_lines < 600, f"{outage_lines} log lines in a {OUTAGE_SECONDS} s outage"
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
    assert (verdict.lost, verdict.unexpected, verdict.incidents_differ, verdict.version_skips) == (0, 0, 0, 0)
    assert (verdict.duplicate_outcomes, verdict.version_repeats, verdict.duplicate_dispatch) == (0, 0, 0)
