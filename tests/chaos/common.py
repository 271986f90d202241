"""What the chaos tests do around a worker: is it ready, did it kill itself, and the
verdict of a run against the reference (printed and kept for the end of the run)."""

import asyncio
import time
import urllib.error
import urllib.request

from ..integration.kafka_helpers import WorkerProcess
from .harness import REPORT, OutputReader, differences, verify


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
    run = await reader.stop()
    verdict = verify(reference, run, records)
    REPORT.append(verdict.line(name, extra))
    print("\n" + verdict.line(name, extra))
    for line in differences(reference, run, records):   # what to look at when it fails
        print("  " + line)
    return verdict
