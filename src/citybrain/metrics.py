"""Prometheus metrics (prefix ``citybrain_``, DESIGN §8)."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

from citybrain.wire.enums import SOURCES

INGESTED = Counter("citybrain_ingested", "Records read from the ingest topics", ["source"])
INGEST_OUTCOME = Counter(
    "citybrain_ingest_outcome",
    "What became of each ingested record: normal | event | suppressed | deadletter "
    "(per source, these add up to citybrain_ingested_total)", ["source", "outcome"])
DEADLETTER = Counter("citybrain_deadletter", "Dead letters by reason code", ["source", "reason"])
SUPPRESSED = Counter("citybrain_suppressed", "Suppressed records by reason", ["source", "reason"])
EVENTS = Counter("citybrain_events", "CityEvents produced", ["source", "kind", "category"])
REGISTRY_DEVICES = Gauge("citybrain_registry_devices", "Devices and cameras known from registry.devices",
                         ["kind", "status"])
REGISTRY_LOADED = Gauge("citybrain_registry_loaded",
                        "1 once this worker has read registry.devices to its end")


_children: dict[tuple, object] = {}


def child(metric, *values: str):
    """``metric.labels(*values)``, cached: ``labels()`` takes a lock and rebuilds the key
    on every call (4 % of the hot path).  Label values here are bounded sets (sources,
    categories, departments, reason codes)."""
    key = (metric._name, values)
    c = _children.get(key)
    if c is None:
        c = _children[key] = metric.labels(*values)
    return c


# Increments gathered while the runner handles a batch, added once at its end (see batched).
_pending: Tally[tuple[object, tuple[str, ...]]] | None = None


@contextmanager
def batched() -> Iterator[None]:
    """Counts made inside are added to their counters once, on leaving: prometheus-client
    takes a lock on every ``inc()``, and two a record were 8 % of the normalise stage's
    CPU (cProfile over a 61k-record backlog).  For synchronous code only (a stage's
    handling of one batch): nothing else runs in between, so nothing counts half."""
    global _pending
    if _pending is not None:   # already inside one
        yield
        return
    _pending = Tally()
    try:
        yield
    finally:
        pending, _pending = _pending, None
        for (metric, values), n in pending.items():
            child(metric, *values).inc(n)


def inc(metric, *values: str) -> None:
    """``child(metric, *values).inc()``, gathered while inside ``batched()``."""
    if _pending is not None:
        _pending[(metric, values)] += 1
    else:
        child(metric, *values).inc()


def count_outcome(source: str, outcome: str, reason: str | None = None) -> None:
    inc(INGESTED, source)
    inc(INGEST_OUTCOME, source, outcome)
    if outcome == "deadletter":
        inc(DEADLETTER, source, reason or "unknown")
    elif outcome == "suppressed":
        inc(SUPPRESSED, source, reason or "unknown")


def count_dead(source: str, reason: str) -> None:
    """A dead letter made by the stage runner (internal_error, output_rejected): for an
    ingest source it is that record's outcome."""
    if source in INGEST_SOURCES:
        count_outcome(source, "deadletter", reason)
    else:
        inc(DEADLETTER, source, reason)


INGEST_SOURCES = SOURCES


def prime(sources=SOURCES) -> None:
    """Create every outcome series at 0 so dashboards and sums see them from the start."""
    for s in sources:
        INGESTED.labels(s)
        for o in ("normal", "event", "suppressed", "deadletter"):
            INGEST_OUTCOME.labels(s, o)

DISPATCH_LATENCY = Histogram(
    "citybrain_dispatch_latency_seconds",
    "From the source record's Kafka timestamp to the moment its dispatch record is produced",
    ["department", "priority"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
WORKORDERS_OPENED = Counter("citybrain_workorders_opened", "Work orders opened (立案)",
                            ["category", "department", "district"])
EVIDENCE_ATTACHED = Counter("citybrain_evidence_attached",
                            "Events attached to an existing open order (一事一单)", ["category", "kind"])
FUSION_OUTCOME = Counter("citybrain_fusion_outcome",
                         "What fusion did with each event: open | join | recovery | duplicate | "
                         "orphan_recovery", ["action"])
TRANSITIONS = Counter("citybrain_workorder_transitions", "Work-order changes by type", ["action"])
WORKORDERS_OPEN = Gauge("citybrain_workorders_open",
                        "Open work orders held by this worker's partitions", ["status", "department", "district"])
DEVICES = Gauge("citybrain_devices", "Devices heard by this worker's partitions, by state (online, offline, "
                "fault); 完好率 = online / registered", ["district", "kind", "owner", "state"])
DEVICES_REGISTERED = Gauge("citybrain_devices_registered", "Active devices in the registry (every worker "
                           "reports the same: aggregate with max)", ["district", "kind", "owner"])
# 完好率 and 联网率, the one definition (domain/device_health.py ``device_rates``): every
# worker folds the whole picture (workorders.events, devices.liveness, the registry), so
# every worker reports the same values — aggregate with max.  kind × district (and the
# city row kind="*", district="*"): a few dozen series.
DEVICE_INTACT_RATIO = Gauge("citybrain_device_intact_ratio",
                            "设备完好率: active devices with no open 设备故障 order / registered active devices "
                            "(every worker reports the same: aggregate with max)", ["kind", "district"])
DEVICE_NETWORKED_RATIO = Gauge("citybrain_device_networked_ratio",
                               "联网率: active devices heard within their reporting interval (a camera by its "
                               "alerts or its platform's status) / registered active devices (aggregate with max)",
                               ["kind", "district"])
ESCALATED = Counter("citybrain_workorders_escalated",
                    "Escalations (升级) of open work orders, by the level reached: a warning level "
                    "(blue..red), an emergency level (IV..I) or a priority", ["category", "to_level"])
# 区域预警 (stream/area_warnings.py): every worker holds every warning, so the gauge is the
# same on each (aggregate with max); the counter is the partitions' orders (sum).
AREA_WARNINGS_ACTIVE = Gauge("citybrain_area_warnings_active",
                             "Area warnings (区域预警) holding now by kind and level, set at each scrape "
                             "(every worker reports the same: aggregate with max)", ["kind", "level"])
AREA_WARNING_ORDERS = Counter("citybrain_area_warning_orders",
                              "Orders raised by an area warning: new ones that started at its level "
                              "(way=new) and open ones escalated to it (way=open)", ["kind", "way"])
WORKORDERS_EMERGENCY = Gauge("citybrain_workorders_emergency_open",
                             "Open work orders under emergency response (应急响应), by level, held by "
                             "this worker", ["emergency_level"])
ASSISTS_OPEN = Gauge("citybrain_assists_open", "Open assisting parts (协办) by department, held by this worker",
                     ["department"])
COMMANDS_REJECTED = Counter("citybrain_commands_rejected", "Lifecycle commands refused", ["reason"])
WORKORDERS_OVERDUE = Gauge("citybrain_workorders_overdue",
                           "Open work orders past their order or stage due time, held by this worker",
                           ["department"])
SUPERVISION_STEPS = Counter("citybrain_supervision_steps", "Automatic supervision steps (督办)",
                            ["level", "clock"])
EVALUATION_RATE = Gauge("citybrain_evaluation_rate",
                        "综合评价 this month (city time), from workorders.events: on_time_closure | rework | "
                        "return | extension rate per department (* = all); every worker reads the whole log",
                        ["department", "rate"])
EVALUATION_CLOSED = Gauge("citybrain_evaluation_closed", "Orders closed this month per department (* = all)",
                          ["department"])
EVALUATION_ASSISTS = Gauge("citybrain_evaluation_assists",
                           "Assist work (协办) this month per department: parts received, handled, returned",
                           ["department", "work"])
EVALUATION_HOURS = Gauge("citybrain_evaluation_hours",
                         "Hours to dispatch | accept | handle | close, median and p90, orders closed this month",
                         ["department", "stage", "quantile"])
API_REQUESTS = Counter("citybrain_api_requests", "HTTP API requests by route and status code", ["route", "code"])
AUTH_REFUSALS = Counter("citybrain_auth_refusals",
                        "API requests refused: missing_token | bad_token | revoked_token | expired_token | "
                        "forbidden_role | out_of_scope",
                        ["reason"])
CONSUMER_LAG = Gauge("citybrain_consumer_lag",
                     "Records between a stage's processed position and the partition's end (per owned "
                     "partition; a worker drops the series of partitions it gives up, so sums over workers "
                     "are right)", ["stage", "topic", "partition"])
COMMIT_LATENCY = Histogram("citybrain_commit_latency_seconds",
                           "Offset commit round trips per stage (exactly_once: a batch's transactions, "
                           "first send to commit)", ["stage"],
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
# A stage's time and the wait in front of it, on one scale: read side by side.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
STAGE_LATENCY = Histogram("citybrain_stage_latency_seconds",
                          "Per record: from its arrival in the stage's fetch to its outputs' acknowledgement "
                          "(exactly_once: its transaction's commit) — where a dispatch-latency tail sits",
                          ["stage"],
                          buckets=STAGE_BUCKETS)
STAGE_WAIT = Histogram("citybrain_stage_wait_seconds",
                       "How long records waited for their stage to fetch them: fetch time − the record's "
                       "Kafka timestamp (its producer's clock), for the oldest record of each partition in a "
                       "batch — the broker hop in front of each stage; with stage_latency it splits a "
                       "dispatch's latency into hops and stages", ["stage"],
                       buckets=STAGE_BUCKETS)
LOOP_LAG = Histogram("citybrain_event_loop_lag_seconds",
                     "How late a 10 ms timer wakes up: anything that holds the event loop (a long batch, "
                     "a view reading, a collector pass) shows here — every stage waits for it",
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 0.5))
GC_PAUSE = Histogram("citybrain_gc_pause_seconds",
                     "Garbage-collector passes by generation: each one stops the event loop, every "
                     "stage with it", ["generation"],
                     buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
REBALANCES = Counter("citybrain_rebalances", "Partition assignments received per stage", ["stage"])
STAGE_RECORDS = Counter("citybrain_stage_records", "Records handled per stage", ["stage"])
STAGE_FAILURES = Counter("citybrain_stage_failures",
                         "Stage failures (a produce or commit the broker did not take, the broker gone): "
                         "each one rewinds the stage to its committed offsets and retries", ["stage", "kind"])
BROKER_UP = Gauge("citybrain_broker_up", "1 while this worker reaches the Kafka cluster (metadata answered)")
WORKER_READY = Gauge("citybrain_worker_ready",
                     "1 while this worker is ready as /readyz answers it (registry loaded, every stage "
                     "joined, the order view caught up, the broker reachable); set at each scrape")
STATE_DROPPED = Counter("citybrain_state_dropped",
                        "Held state values that encoded past the changelog's record limit and were dropped "
                        "(the key starts afresh; logged)", ["state"])
STATE_EVICTED = Counter("citybrain_state_evicted",
                        "Closed/cancelled orders that left the fuse stage's hot state after closed_state_days "
                        "(a changelog tombstone)")


def observe_many(histogram_child, seconds: float, n: int) -> None:
    """``n`` observations of one value (a batch's records share their arrival and their
    acknowledgement) in one step, not ``n`` calls: prometheus_client's Histogram keeps a
    sum and cumulative-at-read buckets, so a weighted observation is one increment each."""
    try:
        bounds, buckets, total = histogram_child._upper_bounds, histogram_child._buckets, histogram_child._sum
    except AttributeError:   # another client version: the plain way
        for _ in range(n):
            histogram_child.observe(seconds)
        return
    total.inc(seconds * n)
    for bound, bucket in zip(bounds, buckets, strict=True):
        if seconds <= bound:
            bucket.inc(n)
            break


def watch_gc() -> None:
    """Time every collector pass into ``GC_PAUSE`` (gc.callbacks: a start and a stop per
    pass; ~1 µs each)."""
    import gc
    started = [0.0]
    children = {g: GC_PAUSE.labels(str(g)) for g in (0, 1, 2)}

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            children[info["generation"]].observe(time.perf_counter() - started[0])
    global _gc_watched
    if not _gc_watched:
        _gc_watched = True
        gc.callbacks.append(callback)


_gc_watched = False
