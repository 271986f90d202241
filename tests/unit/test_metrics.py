"""Metric helpers."""

from prometheus_client import CollectorRegistry, Histogram

from citybrain import metrics


def test_a_weighted_observation_equals_as_many_plain_ones():
    reg = CollectorRegistry()
    weighted = Histogram("w", "w", ["stage"], buckets=(0.01, 0.05, 0.1), registry=reg).labels("fuse")
    plain = Histogram("p", "p", ["stage"], buckets=(0.01, 0.05, 0.1), registry=reg).labels("fuse")
    for seconds, n in ((0.004, 3), (0.07, 5), (2.0, 2)):
        metrics.observe_many(weighted, seconds, n)
        for _ in range(n):
            plain.observe(seconds)
    got = {s.name[1:] + str(s.labels.get("le")): s.value for m in reg.collect() if m.name == "w" for s in m.samples if not s.name.endswith("_created")}
    want = {s.name[1:] + str(s.labels.get("le")): s.value for m in reg.collect() if m.name == "p" for s in m.samples if not s.name.endswith("_created")}
    assert got == want and got["_countNone"] == 10


def test_every_collector_pass_is_timed_once():
    import gc
    metrics.watch_gc()
    metrics.watch_gc()                 # a second call adds no second callback
    full = metrics.GC_PAUSE.labels("2")
    before = full._sum.get(), sum(b.get() for b in full._buckets)
    gc.collect()
    assert sum(b.get() for b in full._buckets) == before[1] + 1 and full._sum.get() > before[0]
