"""Scale-out on the local broker: two workers in one consumer group split the partitions,
each serves /metrics, the orders they make match what one worker makes of the same seeded
input, and each worker's API answers for all of them; so do a normalise worker and a fuse
worker that serve no console (worker.stages: one stage per process; worker.console = false)
beside a console process (no stage), whose API alone answers for every order."""

import asyncio
import time
import urllib.error
import urllib.request

import orjson
import pytest

from citybrain.config import Config
from citybrain_tools.bench.common import outcome_total, series_total
from citybrain_tools.sample.registry_builder import load
from citybrain_tools.simulate.runner import run as run_simulation
from citybrain_tools.simulate.traffic import CitySimulator

from .kafka_helpers import WorkerProcess, consume_all, decode, new_prefix, prepare

pytestmark = pytest.mark.integration
RECORDS_RATE, SECONDS = 100.0, 40.0


def totals(workers) -> tuple[int, int, int]:
    pages = [w.metrics() for w in workers]
    return (outcome_total(pages, "received"), outcome_total(pages, "event"),
            series_total(pages, "citybrain_fusion_outcome_total"))


async def run_city(bootstrap, tmp_path, name: str, n_workers: int, start: float, envs=None):
    """``envs``: per worker, what it hosts (CITYBRAIN_STAGES, CITYBRAIN_CONSOLE; all by default)."""
    prefix = new_prefix(name)
    topics = await prepare(bootstrap, prefix)
    (tmp_path / name).mkdir()
    workers = [WorkerProcess(bootstrap, prefix, tmp_path / name, f"w{i}",
                             env=envs[i] if envs else None)
               for i in range(n_workers)]
    for w in workers:   # all in the group before the input arrives: each is ready once it owns partitions
        super(WorkerProcess, w).start()
    for w in workers:
        await asyncio.to_thread(w.wait_ready, 90)
    sim = CitySimulator(load(Config().registry_path), seed=7, rate=RECORDS_RATE, duration=SECONDS, start=start)
    sent = (await run_simulation(sim, bootstrap, topics, paced=False))["sent"]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            received, events, fused = await asyncio.to_thread(totals, workers)
            if received >= sent and fused >= events:
                break
            await asyncio.sleep(0.5)
        assert received == sent and fused == events, (received, sent, fused, events)
        pages = [w.metrics() for w in workers]
        changes = decode(await consume_all(bootstrap, topics.workorder_events, quiet=1.5))
        consoles = [w for i, w in enumerate(workers) if not envs or envs[i].get("CITYBRAIN_CONSOLE") != "false"]
        served = [await asyncio.to_thread(api_order_ids, w) for w in consoles]
        elsewhere = [await asyncio.to_thread(refusal, w) for w in workers if w not in consoles]
    finally:
        for w in workers:
            w.stop()
    latest: dict[str, dict] = {}
    for c in changes:
        if c["version"] > latest.get(c["work_order_id"], {}).get("version", 0):
            latest[c["work_order_id"]] = c
    orders = {wo: (c["snapshot"]["status"], c["snapshot"]["department"],
                   tuple(sorted(e["event_id"] for e in c["snapshot"]["events"])))
              for wo, c in latest.items()}
    assert served and all(ids == set(latest) for ids in served), "every console's API answers for every order"
    # A stage process answers the API with a JSON 404 that says why, not aiohttp's text page.
    assert all(r == (404, "no_console") for r in elsewhere), elsewhere
    return orders, pages, sent


def refusal(worker) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}/api/v1/workorders",
                                     headers={"Authorization": "Bearer demo-operator"})
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())["error"]["reason"]
    return 200, "answered"


def api_order_ids(worker) -> set[str]:
    ids, cursor = set(), None
    while True:
        url = (f"http://127.0.0.1:{worker.port}/api/v1/workorders?limit=500"
               "&status=registered,dispatched,accepted,handled,closed,cancelled" + (f"&cursor={cursor}" if cursor else ""))
        request = urllib.request.Request(url, headers={"Authorization": "Bearer demo-operator"})
        with urllib.request.urlopen(request, timeout=10) as r:
            body = orjson.loads(r.read())
        ids |= {o["work_order_id"] for o in body["items"]}
        cursor = body["next_cursor"]
        if not cursor:
            return ids


async def test_two_workers_split_the_partitions_and_make_the_same_orders(kafka_bootstrap, tmp_path):
    start = time.time() - 300   # the same seeded traffic, in the past, for both runs
    one, _, sent = await run_city(kafka_bootstrap, tmp_path, "one", 1, start)
    two, pages, sent2 = await run_city(kafka_bootstrap, tmp_path, "two", 2, start)
    assert sent == sent2 and len(one) > 50
    # Both workers took part: each normalised a share of the input …
    shares = [outcome_total([page], "received") for page in pages]
    assert all(s > 0 for s in shares) and sum(shares) == sent, shares
    # … and together they made the orders one worker makes: the same incidents, each with
    # the same events, department and status (一事一单 does not depend on who saw what).
    # The ids are compared apart: an order's id derives from the first of its events to
    # reach fusion, and two events of one incident (a gas detector's alarm and a citizen's
    # report a second apart) may reach it in either order when two workers normalise them.
    assert sorted(two.values()) == sorted(one.values())
    same_id = sum(1 for wo, v in two.items() if one.get(wo) == v)
    assert same_id >= len(one) - 3, (same_id, len(one))

    # One stage per process, the console in a third: the same orders, and the console
    # process's API answers for all of them though it hosts no stage.
    split, pages, sent3 = await run_city(kafka_bootstrap, tmp_path, "split", 3, start, envs=[
        {"CITYBRAIN_STAGES": "normalise", "CITYBRAIN_CONSOLE": "false"},
        {"CITYBRAIN_STAGES": "fuse", "CITYBRAIN_CONSOLE": "false"},
        {"CITYBRAIN_STAGES": "none"}])
    assert sent3 == sent
    shares = [outcome_total([page], "received") for page in pages]
    assert shares == [sent, 0, 0], shares   # neither the fuse worker nor the console reads an ingest topic
    assert sorted(split.values()) == sorted(one.values())
