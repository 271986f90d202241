"""Chaos: the broker stopped for a minute mid-stream and started again on the same data,
the worker left running — matched against the reference (tests/chaos/conftest.py)."""

import asyncio
import time

import pytest

from citybrain_tools.local_kafka.broker import LocalBroker

from ..integration.kafka_helpers import WorkerProcess, new_prefix, prepare
from .common import ready, settle_and_verify
from .harness import OutputReader, produce_paced

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

OUTAGE_SECONDS = 60


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
