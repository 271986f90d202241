"""一事一单 through real Kafka and a real worker: the scripted incidents' orders measured
by the worker's metrics, and a restarted worker carrying on with the same open orders.
Which orders the incidents become, and on which department's topic, is asserted in one
process: tests/functional/test_dispatch_scenarios.py."""

import os

import orjson
import pytest

from citybrain.domain.pseudonym import from_environment
from citybrain.promtext import samples
from citybrain_tools.sample.sites import UNDERPASS

from ..incidents import gas_manhole, report, scripted
from .kafka_helpers import WorkerProcess, consume, decode, new_prefix, prepare, produce

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def city(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("dispatch")
    topics = await prepare(kafka_bootstrap, prefix)
    await produce(kafka_bootstrap, [(topics.registry, b"MHT-GAS-1", orjson.dumps(gas_manhole()))])
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("state")).start()
    t = topics
    await produce(kafka_bootstrap, scripted(t))   # tests/incidents.py
    # flood: created, dispatched, 6 × evidence, escalated (the 5th finder); east: 2; gas manhole: 2; other: 1
    changes = decode(await consume(kafka_bootstrap, t.workorder_events, want=14, timeout=60, settle=3))
    yield kafka_bootstrap, t, worker, changes
    worker.stop()


async def test_dispatch_latency_is_measured_by_department_and_priority(city):
    _, _, worker, _ = city
    text = worker.metrics()
    counts = {(lab["department"], lab["priority"]): v
              for lab, v in samples(text, "citybrain_dispatch_latency_seconds_count")}
    assert counts[("water", "high")] == 2 and counts[("gas_utility", "high")] == 1
    opened = {(lab["category"], lab["department"]): v
              for lab, v in samples(text, "citybrain_workorders_opened_total")}
    assert opened[("waterlogging", "water")] == 2 and opened[("other", "")] == 1
    assert {lab["district"] for lab, _ in samples(text, "citybrain_workorders_opened_total")} == {"370306"}


async def test_restarted_worker_carries_on_with_the_same_open_orders(city):
    bootstrap, t, worker, changes = city
    flood_id = next(c["work_order_id"] for c in changes if "WLV-UP-01" in c["snapshot"]["finders"])
    worker.stop()
    worker.start()
    await produce(bootstrap, [(t.reports, b"GM-0107", report("R-d3", "waterlogging", UNDERPASS, 5, 5, 30))])
    after = decode(await consume(bootstrap, t.workorder_events, want=len(changes) + 1, timeout=60, settle=2))
    assert len(after) == len(changes) + 1            # no second order, nothing replayed twice
    seen = {(c["work_order_id"], c["version"]) for c in changes}
    [last] = [c for c in after if (c["work_order_id"], c["version"]) not in seen]
    assert (last["work_order_id"], last["type"]) == (flood_id, "evidence_added")
    # the grid member as its pseudonym (DESIGN §16), never the clear id
    assert last["snapshot"]["events"][-1]["finder"] == from_environment(os.environ)("GM-0107")
    assert last["version"] == max(c["version"] for c in changes if c["work_order_id"] == flood_id) + 1
