"""The dispatch benchmark's windows: every window's own percentiles, none dropped."""

from datetime import datetime

import orjson

from citybrain.bench.dispatch import report, stage_latency, windows


def test_each_window_has_its_own_percentiles_and_the_spread_is_reported():
    start = 1000.0
    samples = [(start + 0.5 + i * 0.01, 0.010) for i in range(100)]          # window 0: 10 ms
    samples += [(start + 10.5 + i * 0.01, 0.030) for i in range(99)] + [(start + 11.9, 0.400)]   # window 1: a tail
    samples += [(start + 25.0, 0.020)]                                        # after the last window: whole run only
    samples += [(start - 3.0, 0.900), (start - 1.0, 0.500)]                   # the warm-up: apart from everything
    got = windows(samples, start, count=2, seconds=10.0)
    assert [w["n"] for w in got["windows"]] == [100, 100]
    assert [w["p99_ms"] for w in got["windows"]] == [10.0, 400.0]
    assert (got["worst_window_p99_ms"], got["best_window_p99_ms"], got["p99_spread_ms"]) == (400.0, 10.0, 390.0)
    assert got["n"] == 201 and got["max_ms"] == 400.0
    assert (got["warmup"]["n"], got["warmup"]["max_ms"]) == (2, 900.0)
    text = report({"windows": 2, "window_s": 10.0, "latency": [
        {"rate": 1000, "ours": {**got, "stage_latency": {}}, "baseline": got, "floor": got, "p99_over_floor": 1.0}]})
    assert "10.0 400.0 | 900.0" in text and "ours p99 / floor p99 = 1.0" in text


def test_stage_latency_from_the_histogram_buckets():
    text = "\n".join([
        "# TYPE citybrain_stage_latency_seconds histogram",
        'citybrain_stage_latency_seconds_bucket{le="0.005",stage="fuse"} 90.0',
        'citybrain_stage_latency_seconds_bucket{le="0.05",stage="fuse"} 99.0',
        'citybrain_stage_latency_seconds_bucket{le="0.1",stage="fuse"} 100.0',
        'citybrain_stage_latency_seconds_bucket{le="+Inf",stage="fuse"} 100.0',
        'citybrain_stage_latency_seconds_count{stage="fuse"} 100.0',
        'citybrain_stage_latency_seconds_sum{stage="fuse"} 0.9',
    ]) + "\n"
    assert stage_latency(text) == {"fuse": {"n": 100, "p50_ms_at_most": 5.0, "p99_ms_at_most": 50.0}}


def test_only_a_dispatched_change_is_a_dispatch_sample():
    from citybrain.bench.collector import dispatch_source_ts
    snap = {"source_ingested_at": "2026-11-24T10:00:00+08:00"}
    dispatched = orjson.dumps({"type": "dispatched", "snapshot": snap})
    # An assist an escalation added later shares dispatch.<department>; it is no dispatch.
    assist = orjson.dumps({"type": "assist_added", "snapshot": snap})
    assert dispatch_source_ts(dispatched) == datetime.fromisoformat(snap["source_ingested_at"]).timestamp()
    assert dispatch_source_ts(assist) is None
    assert dispatch_source_ts(orjson.dumps({"_source_ts": 12.5})) == 12.5   # the plain loop's record


def drain_result(ours_seconds: float, loop_seconds: float) -> dict:
    run = {"ours": {"rate": 20000.0, "seconds": ours_seconds, "cpu_share": 0.9},
           "baseline": {"rate": 60000.0, "seconds": loop_seconds}, "ratio": 0.33}
    return {"windows": 5, "window_s": 20.0, "latency": [], "max_throughput": {"runs": [run], "median_ratio": 0.33}}


def test_a_drain_too_short_to_measure_is_flagged_with_its_error():
    text = report(drain_result(ours_seconds=2.0, loop_seconds=1.0))
    assert "a drain took 1.0 s" in text and "±20%" in text and "--records" in text
    assert "排空过快" not in report(drain_result(ours_seconds=15.0, loop_seconds=5.0))
