"""A replicated cluster under a fault (issue 38 item 1, DESIGN §17): three KRaft nodes on
127.0.0.1, every topic with three replicas and min.insync.replicas=2, every producer
idempotent with acks=all.  While the seeded input streams in, the node leading most
partitions of the busiest topic is SIGKILLed and, a few seconds later, started again; it is
frozen (SIGSTOP, a hung broker) for 10 s and let go; the same node is stopped for a minute
under exactly_once; and two workers are restarted in
turn (SIGTERM, start): nothing may be lost and no incident may become two orders; the
dispatch gap is reported.

The cluster (three JVMs) is started once for this module only."""

import asyncio
import random
import signal
import time
from datetime import UTC, datetime

import orjson
import pytest

from citybrain.config import Config
from citybrain.kafka.admin import create_topics, publish_registry
from citybrain.kafka.clients import (
    HOT_PATH_CONSUMER_REQUEST_TIMEOUT_MS,
    kafka_admin,
    kafka_consumer,
    kafka_producer,
    stop_quietly,
)
from citybrain.kafka.topics import Topics
from citybrain.stream.commands import command_group
from citybrain.stream.topology import topic_specs
from citybrain_tools.local_kafka.cluster import LocalCluster
from citybrain_tools.sample.registry_builder import load
from citybrain_tools.simulate.source import FieldSource

from ..integration.kafka_helpers import PARTITIONS, WorkerProcess, new_prefix
from .harness import (
    DURATION,
    REPORT,
    Outcome,
    OutputReader,
    Verdict,
    clean_run,
    produce_paced,
    seeded_input,
    verify,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

REPLICATED = {"CITYBRAIN_REPLICATION_FACTOR": "3", "CITYBRAIN_MIN_INSYNC_REPLICAS": "2"}
PRODUCE_SECONDS = 15
STOP_SECONDS = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("cluster"))
    c.start(die_with_parent=True)
    try:
        yield c
    finally:   # scratch: killed at once (a controlled stop of the last nodes waits ~30 s for a lost quorum)
        for node_id in range(1, c.count + 1):
            if c.node(node_id).pid() is not None:
                c.kill(node_id)
        c.stop()


@pytest.fixture(scope="module")
def records():
    return seeded_input(time.time() - DURATION - 900)


async def prepare_replicated(bootstrap: str, prefix: str) -> Topics:
    """Topics with three replicas (as `citybrain topics` makes them from topics.toml) and
    the sample registry."""
    topics = Topics(prefix)
    cfg = Config(env=REPLICATED)
    await create_topics(bootstrap, topic_specs(cfg, topics, PARTITIONS), cfg.topic_retention.replication.factor)
    await publish_registry(bootstrap, topics.registry, load(cfg.registry_path))
    return topics


async def leaders(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """partition → [leader, *replicas] of ``topic``."""
    admin = kafka_admin(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return {p["partition"]: [p["leader"], *p["replicas"]] for p in described["partitions"]}
    finally:
        await admin.close()


async def busiest_leader(bootstrap: str, topic: str) -> tuple[int, list[int]]:
    """The node leading most partitions of ``topic``, and each partition's leader."""
    led = [p[0] for p in (await leaders(bootstrap, topic)).values()]
    return max(set(led), key=led.count), led


def replicated_worker(bootstrap: str, prefix: str, tmp, name: str, **env: str) -> WorkerProcess:
    return WorkerProcess(bootstrap, prefix, tmp, name, env={**REPLICATED, **env})


@pytest.fixture(scope="module")
async def reference(cluster, tmp_path_factory, records):
    """The same input, no fault, on the same cluster."""
    bootstrap = cluster.bootstrap()
    ref_topics = await prepare_replicated(bootstrap, new_prefix("cluster-ref"))
    ref_worker = replicated_worker(bootstrap, ref_topics.prefix, tmp_path_factory.mktemp("ref"), "ref")
    outcome = await clean_run(bootstrap, ref_topics, ref_worker, records)
    assert all(outcome.size())
    return outcome


def input_pause(run, since: float) -> float:
    """The input's own longest pause between the source records of orders begun from
    ``since`` on: a dispatch gap no longer than it is the input's shape, not the fault's."""
    begun = sorted(src for _, src in run.dispatch_at if src >= since)
    return max((b - a for a, b in zip(begun, begun[1:], strict=False)), default=0.0)


def longest_gap(run, since: float) -> tuple[float, float]:
    """The longest time after ``since`` with no dispatch received, and when it began."""
    receipts = sorted(at for at, _ in run.dispatch_at if at >= since)
    return max(((b - a, a) for a, b in zip([since, *receipts], receipts, strict=False)), default=(0.0, since))


def dispatch_gap(run, since: float) -> float:
    return longest_gap(run, since)[0]


def gap_note(run, at: float, of: str = "") -> str:
    """The dispatch gap after ``at`` beside the input's own longest pause, as reported."""
    gap, began = longest_gap(run, at)
    return (f"dispatch gap {gap:.2f}s from {began - at:+.1f}s{of} (the input's longest pause between orders "
            f"{input_pause(run, at):.2f}s)")


def led_note(victim: int, led: list[int]) -> str:
    """Which node went, and how many of the busiest topic's partitions it led."""
    return f"node {victim} (led {led.count(victim)}/{len(led)} of ingest.iot.readings"


def waits(run: Outcome, since: float, until: float, inside: bool = True) -> list[float]:
    """The waits (receipt − source record's time) of the orders whose first record was sent
    between ``since`` and ``until`` (or, ``inside=False``, outside it), sorted."""
    return sorted(at - src for at, src in run.dispatch_at if (since <= src <= until) == inside)


def figures(w: list[float]) -> str:
    return f"{len(w)}, wait max {max(w, default=0):.2f}s median {w[len(w) // 2] if w else 0:.2f}s"


async def settled(reader: OutputReader, reference: Outcome) -> None:
    """The outputs quiet for 8 s with at least the reference's events and orders."""
    ref_events, _, ref_orders = reference.size()
    await reader.quiet(8, until=lambda: reader.outcome.size()[0] >= ref_events
                       and reader.outcome.size()[2] >= ref_orders, timeout=240)


def reported(name: str, reference: Outcome, run: Outcome, records, extra: str) -> tuple[Verdict, str]:
    """The run's verdict against the reference, printed and kept for the chaos report."""
    verdict = verify(reference, run, records)
    line = verdict.line(name, extra)
    REPORT.append(line)
    print("\n" + line)
    return verdict, line


async def loaded(cluster, tmp_path, name: str, records) -> tuple[Topics, OutputReader, WorkerProcess, asyncio.Task]:
    """Fresh replicated topics, their outputs read, a worker on them and the seeded input
    streaming in over ``PRODUCE_SECONDS``."""
    bootstrap = cluster.bootstrap()
    topics = await prepare_replicated(bootstrap, new_prefix(name))
    reader = await OutputReader(bootstrap, topics).start()
    worker = replicated_worker(bootstrap, topics.prefix, tmp_path / "run", "run").start()
    producing = asyncio.create_task(produce_paced(bootstrap, topics, records, seconds=PRODUCE_SECONDS))
    return topics, reader, worker, producing


def judged_after(name: str, run: Outcome, at: float, what: str, reference: Outcome, records) -> None:
    """The verdict of a run faulted at ``at`` — with the wait of the orders whose first
    record was sent in the 10 s after it, beside the rest (an order's wait includes what its
    category waits for: a sensor's repeats) — reported, then asserted: nothing lost, no
    incident become two orders, no version skipped."""
    around = waits(run, at - 1, at + 10)
    calm = waits(run, at - 1, at + 10, inside=False)
    extra = (f"{what}; {gap_note(run, at)}; orders begun in the 10 s after it: {figures(around)}; the others "
             f"median {calm[len(calm) // 2] if calm else 0:.2f}s max {max(calm, default=0):.2f}s")
    verdict, line = reported(name, reference, run, records, extra)
    assert verdict.lost == 0 and verdict.incidents_differ == 0, line
    assert len(run.snapshots) == len(reference.snapshots), line   # no incident became two orders
    assert verdict.version_skips == 0, line


async def test_the_leader_of_the_busiest_partitions_is_killed_and_comes_back(cluster, tmp_path, records, reference):
    topics, reader, worker, producing = await loaded(cluster, tmp_path, "cluster-leader", records)
    placement = await leaders(cluster.bootstrap(), topics.iot)
    assert all(len(p) == 4 for p in placement.values()), placement   # a leader and three replicas
    try:
        await asyncio.sleep(PRODUCE_SECONDS / 3)
        victim, led = await busiest_leader(cluster.bootstrap(), topics.iot)
        controller = cluster.active_controller()
        killed_at = time.time()
        cluster.kill(victim)
        await asyncio.sleep(5)
        # The node comes back while the input ends and the outputs settle (its start took
        # up to a minute on a loaded box: not waited for apart).
        restarting = asyncio.create_task(asyncio.to_thread(cluster.restart, victim, die_with_parent=True))
        await producing
        await settled(reader, reference)
        await restarting
        back_at = time.time()
        assert worker.poll() is None, "the worker must ride the fault out, not exit"
    finally:
        worker.stop()
    run = await reader.stop()
    judged_after("cluster-leader-kill", run, killed_at,
                 f"{led_note(victim, led)}{', the active controller' if victim == controller else ''}) SIGKILLed, "
                 f"up again ≤ {back_at - killed_at:.1f}s after", reference, records)


HANG_SECONDS = 10


async def test_the_leader_of_the_busiest_partitions_hangs_and_is_let_go(cluster, tmp_path, records, reference):
    """A hung broker (SIGSTOP: a long pause, a stalled disk) keeps its connections open and
    answers nothing; the controller fences it after its session and the clients must find the
    new leaders by themselves (kafka/clients.py: metadata every 2 s, a produce retried after
    5 s).  Then it is let go (SIGCONT) and finds itself fenced."""
    topics, reader, worker, producing = await loaded(cluster, tmp_path, "cluster-hang", records)
    try:
        await asyncio.sleep(PRODUCE_SECONDS / 3)
        victim, led = await busiest_leader(cluster.bootstrap(), topics.iot)
        frozen_at = time.time()
        cluster.freeze(victim)
        try:
            await asyncio.sleep(HANG_SECONDS)
        finally:
            cluster.thaw(victim)
        await producing
        await settled(reader, reference)
        assert worker.poll() is None, "the worker must ride the fault out, not exit"
    finally:
        worker.stop()
    run = await reader.stop()
    judged_after("cluster-leader-hang", run, frozen_at,
                 f"{led_note(victim, led)}) frozen (SIGSTOP) for {HANG_SECONDS}s, then let go", reference, records)


async def test_the_broker_watch_counts_a_cluster_with_one_hung_node_as_reachable(cluster):
    """/readyz (stream/brokerwatch.py): one node of three hung is not the cluster gone — a
    console pod would otherwise leave its Service for the hang."""
    from citybrain.stream.brokerwatch import BrokerWatch
    watch = BrokerWatch(cluster.bootstrap(), every=0.3, timeout=1.0)
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(2)
        assert watch.up, "the watch must see the running cluster"
        seen = []
        cluster.freeze(1)
        try:
            for _ in range(20):
                await asyncio.sleep(0.5)
                seen.append(watch.up)
        finally:
            cluster.thaw(1)
        print(f"\nbroker watch with node 1 frozen 10 s: up in {sum(seen)} of {len(seen)} looks")
        assert all(seen)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_rolling_restart_of_two_workers_loses_nothing(cluster, tmp_path, records, reference):
    """Each of two workers stopped with SIGTERM (it commits and leaves its groups) and started
    again, one after the other, while the input streams in."""
    bootstrap = cluster.bootstrap()
    topics = await prepare_replicated(bootstrap, new_prefix("cluster-rolling"))
    reader = await OutputReader(bootstrap, topics).start()
    workers = [replicated_worker(bootstrap, topics.prefix, tmp_path / name, name) for name in ("w1", "w2")]
    for w in workers:
        w.start(wait=False)
    for w in workers:
        await asyncio.to_thread(w.wait_ready, 120)
    try:
        producing = asyncio.create_task(produce_paced(bootstrap, topics, records, seconds=PRODUCE_SECONDS))
        await asyncio.sleep(2)
        began = time.time()
        for w in workers:
            await asyncio.to_thread(w.stop, signal.SIGTERM)
            assert w.proc.returncode == 0, "a SIGTERMed worker exits cleanly"
            await asyncio.to_thread(w.start)
        done = time.time()
        await producing
        await settled(reader, reference)
    finally:
        for w in workers:
            w.stop()
    run = await reader.stop()
    extra = (f"two workers restarted in turn in {done - began:.1f}s; dispatch gap {dispatch_gap(run, began):.2f}s; "
             f"orders begun meanwhile: {figures(waits(run, began, done))}")
    verdict, line = reported("cluster-rolling-restart", reference, run, records, extra)
    assert verdict.lost == 0 and verdict.incidents_differ == 0, line
    assert len(run.snapshots) == len(reference.snapshots), line
    assert verdict.version_skips == 0, line


async def test_a_broker_stopped_for_a_minute_under_exactly_once(cluster, tmp_path, records, reference):
    """The node leading most of the busiest topic's partitions is stopped (SIGTERM: its
    leadership handed over, the process gone) for a minute while the input streams in under
    exactly_once, then started again on its data to catch up.  Two of three stay in sync
    (min.insync.replicas 2): nothing may be lost, and a read_committed reader may see no
    incident as two orders, no order change and no dispatch twice."""
    bootstrap = cluster.bootstrap()
    topics = await prepare_replicated(bootstrap, new_prefix("cluster-stop"))
    reader = await OutputReader(bootstrap, topics).start()
    worker = replicated_worker(bootstrap, topics.prefix, tmp_path / "run", "run",
                               CITYBRAIN_PROCESSING_GUARANTEE="exactly_once").start()
    try:
        # The input spans the outage: load flows before, during and after it.
        producing = asyncio.create_task(produce_paced(bootstrap, topics, records, seconds=STOP_SECONDS + 10))
        await asyncio.sleep(5)
        victim, led = await busiest_leader(bootstrap, topics.iot)
        stopped_at = time.time()
        await asyncio.to_thread(cluster.node(victim).stop)        # off the loop: the reader keeps reading
        stop_took = time.time() - stopped_at
        await asyncio.sleep(max(0.0, STOP_SECONDS - stop_took))
        restarted_at = time.time()
        restarting = asyncio.create_task(asyncio.to_thread(cluster.restart, victim, die_with_parent=True))
        await producing
        await settled(reader, reference)
        await restarting
        back_after = time.time() - restarted_at
        assert worker.poll() is None, "the worker must ride the outage out, not exit"
    finally:
        worker.stop()
    run = await reader.stop()
    extra = (f"exactly_once; {led_note(victim, led)}) stopped (SIGTERM, {stop_took:.1f}s) for "
             f"{restarted_at - stopped_at:.0f}s, up again {back_after:.1f}s after its start; "
             f"{gap_note(run, stopped_at, ' of the stop')}; orders begun "
             f"while it was down: {figures(waits(run, stopped_at, restarted_at))}, after it was started again: "
             f"{figures(waits(run, restarted_at, restarted_at + back_after))}")
    verdict, line = reported("cluster-broker-stopped-a-minute", reference, run, records, extra)
    assert (verdict.lost, verdict.unexpected, verdict.incidents_differ, verdict.version_skips) == (0, 0, 0, 0), line
    assert len(run.snapshots) == len(reference.snapshots), line        # no incident became two orders
    assert (verdict.duplicate_outcomes, verdict.version_repeats, verdict.duplicate_dispatch) == (0, 0, 0), line


COMMAND_EVERY = 0.1   # s: an operator desk's clicks, and a platform's cases, at a busy hour


async def test_operator_commands_while_the_command_routings_coordinator_hangs(cluster, tmp_path, records):
    """Operator commands while the node coordinating the command routing's group hangs
    (SIGSTOP) for ``HANG_SECONDS``: each command sent before, during and after is applied
    exactly once — none lost, none twice — and how long each waited is reported (not
    asserted: a figure).  A command whose hops meet a partition the frozen node led waits
    a request timeout there, each such hop (docs/performance.md, "The command routing
    made a stage")."""
    topics, reader, worker, producing = await loaded(cluster, tmp_path, "cluster-commands", records)
    bootstrap = cluster.bootstrap()
    applied: dict[str, float] = {}                        # command id → when its change first came
    versions: dict[str, set[tuple[str, int]]] = {}        # command id → the changes it made
    seen_orders: list[str] = []
    # Read as a department's client reads (bench/collector.py): a fetch from the frozen node is
    # given up after 5 s, not aiokafka's 40 — else the waits measured were this reader's own.
    changes = kafka_consumer(topics.workorder_events, bootstrap_servers=bootstrap, group_id=None,
                             request_timeout_ms=HOT_PATH_CONSUMER_REQUEST_TIMEOUT_MS)
    await changes.start()

    async def follow() -> None:
        async for m in changes:
            change = orjson.loads(m.value)
            if change["type"] == "created":
                seen_orders.append(change["work_order_id"])
            elif change["type"] == "commented":
                # the change's own command: the last one its snapshot applied; a change sent
                # again by a replay (at_least_once) is the same (order, version), not twice
                cid = change["snapshot"]["applied_commands"][-1]
                applied.setdefault(cid, time.time())
                versions.setdefault(cid, set()).add((change["work_order_id"], change["version"]))
    following = asyncio.create_task(follow())
    sent: dict[str, float] = {}
    rng = random.Random(7)
    try:
        for _ in range(240):
            if len(seen_orders) >= 10:
                break
            await asyncio.sleep(0.5)
        assert len(seen_orders) >= 10, "orders to comment on"
        group = command_group(f"{topics.prefix}{Config().settings.worker.app_id}")
        admin = kafka_admin(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            victim = await admin.find_coordinator(group)
        finally:
            await admin.close()
        # A field source's producer: a command whose batch meets the frozen leader and expires
        # is sent again, so "lost" is the worker's, never the test's own sending.
        source = await FieldSource(lambda: kafka_producer(bootstrap_servers=bootstrap)).start()
        start, frozen_at, thawed_at = time.time(), None, None
        try:
            while time.time() - start < 5 + HANG_SECONDS + 10:
                if frozen_at is None and time.time() - start >= 5:
                    cluster.freeze(victim)
                    frozen_at = time.time()
                if frozen_at and thawed_at is None and time.time() - frozen_at >= HANG_SECONDS:
                    cluster.thaw(victim)
                    thawed_at = time.time()
                wo = rng.choice(seen_orders)
                cid = f"cmd-hang-{len(sent)}"
                command = {"command_id": cid, "work_order_id": wo, "action": "comment", "note": cid,
                           "actor": {"id": "op-night-1", "role": "operator"},
                           "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
                sent[cid] = time.time()
                await source.send(topics.commands, orjson.dumps(command), wo.encode())
                await asyncio.sleep(COMMAND_EVERY)
            await source.settle()
        finally:
            if thawed_at is None:
                cluster.thaw(victim)
            await stop_quietly(source)
        await producing
        deadline = time.time() + 180
        while time.time() < deadline and not set(sent) <= set(applied):
            await asyncio.sleep(1)
        assert worker.poll() is None, "the worker must ride the fault out, not exit"
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await changes.stop()
        worker.stop()
        await reader.stop()
    assert frozen_at is not None and thawed_at is not None
    lost = sorted(set(sent) - set(applied))
    twice = sorted(cid for cid, made in versions.items() if len(made) > 1)
    waits_in = sorted(applied[c] - sent[c] for c in sent if c in applied and frozen_at <= sent[c] < thawed_at)
    waits_out = sorted(applied[c] - sent[c] for c in sent if c in applied and not frozen_at <= sent[c] < thawed_at)
    line = (f"cluster-commands-hang: node {victim} (the command routing's group coordinator) frozen "
            f"{HANG_SECONDS}s; {len(sent)} commands, lost {len(lost)}, applied twice {len(twice)}; sent while frozen: "
            f"{figures(waits_in)}; the others: {figures(waits_out)}")
    REPORT.append(line)
    print("\n" + line)
    assert not lost and not twice, line
