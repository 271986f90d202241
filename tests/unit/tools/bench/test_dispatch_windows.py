"""The dispatch benchmark's windows: every window's own percentiles, none dropped."""

from datetime import datetime

import orjson

from citybrain_tools.bench.dispatch import report, stage_latency, windows


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
    commits = {"fuse": {"n": 120, "p50_ms_at_most": 2.5, "p99_ms_at_most": 25.0}}
    text = report({"windows": 2, "window_s": 10.0, "latency": [
        {"rate": 1000, "ours": {**got, "stage_latency": {}, "commits": commits}, "baseline": got, "floor": got,
         "p99_over_floor": 1.0}]})
    assert "10.0 400.0 | 900.0" in text and "ours p99 / floor p99 = 1.0" in text
    assert "at_least_once: an offset commit): fuse n 120 p50≤2.5 p99≤25.0 ms" in text


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
    from citybrain_tools.bench.collector import dispatch_source_ts
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
    text = report(drain_result(ours_seconds=8.0, loop_seconds=4.0))
    assert "a drain took 8.0 s" in text and "±12%" in text and "--records" in text
    # The loop's rate is timed by its own first and last record, not polled: a short one is exact.
    assert "排空过快" not in report(drain_result(ours_seconds=25.0, loop_seconds=4.0))


async def test_a_drains_rate_counts_neither_the_start_nor_the_idle_poll_after(monkeypatch):
    """Polled once a second (a worker's /metrics page is not free); the rate is taken
    between the first poll that saw records and the last that saw the drain under way."""
    from citybrain_tools.bench import dispatch
    clock = [100.0]
    monkeypatch.setattr(dispatch.time, "monotonic", lambda: clock[0])

    async def tick(seconds: float) -> None:
        clock[0] += seconds
    monkeypatch.setattr(dispatch.asyncio, "sleep", tick)
    # 0 while starting, then 1,000 records a second, done half-way between two polls.
    counts = iter([0, 0, 500, 1500, 2500, 3500, 4000])
    polls: list[float] = []

    def count() -> int:
        polls.append(clock[0])
        return next(counts)
    got = await dispatch._drain(count, total=4000, title="t")
    assert polls == [100.0 + i * dispatch.DRAIN_POLL_SECONDS for i in range(7)]
    assert (got["records"], got["seconds"], got["rate"]) == (3000, 3.0, 1000.0)


def test_each_dispatch_is_split_into_its_hops_and_the_tail_says_which_hop_it_is():
    from citybrain_tools.bench.collector import hops, opener_event_id
    from citybrain_tools.bench.dispatch import split_by_hop
    change = orjson.dumps({"type": "dispatched", "snapshot": {"events": [{"event_id": "ev-1"}, {"event_id": "ev-2"}]}})
    assert opener_event_id(change) == "ev-1"
    assert opener_event_id(orjson.dumps({"_source_ts": 1.0})) is None
    # (receipt, source ts, dispatch's Kafka ts, opener); the inbox: event → its Kafka ts.
    got = hops([(10.050, 10.000, 10.030, "ev-1"), (11.0, 10.9, 10.95, "unseen"), (12.0, 11.9, 11.95, None)],
               {"ev-1": 10.010})
    assert len(got) == 1
    receipt, normalise, fuse, last = got[0]
    assert (receipt, round(normalise, 3), round(fuse, 3), round(last, 3)) == (10.050, 0.010, 0.020, 0.020)
    # 99 quick dispatches (2 + 3 + 1 ms) and one whose fuse hop took 90 ms.
    rows = [(float(i), 0.002, 0.003, 0.001) for i in range(99)] + [(99.0, 0.004, 0.090, 0.002)]
    split = split_by_hop(rows)
    assert (split["n"], split["tail_n"], split["tail_from_ms"]) == (100, 1, 96.0)
    assert split["fuse"]["tail_p50_ms"] == 90.0 and split["fuse"]["tail_largest"] == 1
    assert split["normalise"]["tail_largest"] == split["last"]["tail_largest"] == 0
    assert split["normalise"]["p50_ms"] == 2.0
    assert split_by_hop([]) == {"n": 0}
    text = report({"windows": 1, "window_s": 10.0, "latency": [
        {"rate": 1000, "ours": {"n": 0, "stage_latency": {}, "hops": split}, "baseline": {}, "floor": {},
         "p99_over_floor": None}]})
    assert "fuse p50 3.0 p99 90.0, in the tail p50 90.0 and largest in 1" in text


def test_the_last_hop_is_set_beside_the_floors_hop_measured_in_the_same_run():
    beside = {"rate": 100.0, "p50_ms": 1.5, "p99_ms": 4.0, "windows": [{"p99_ms": 3.0}, {"p99_ms": 5.0}]}
    text = report({"windows": 2, "window_s": 10.0, "latency": [
        {"rate": 1000, "ours": {"n": 0, "stage_latency": {}, "last_hop": {"p50_ms": 2.0, "p99_ms": 10.0},
                                "floor_beside": beside},
         "baseline": {}, "floor": {"p99_ms": 2.0}, "p99_over_floor": None}]})
    assert ("the floor's hop beside ours (a probe at 100/s while ours ran): p50 1.5 p99 4.0 ms "
            "(every window's p99: 3.0 5.0); last hop p99 / this p99 = 2.5, / the floor alone's = 5.0") in text
