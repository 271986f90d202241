"""The broker's collector pauses beside a latency tail: the pauses are read from the JVM's
own log lines (each written as its pause ends), and a dispatch counts as spanning one when
its path — source time to receipt — overlaps it."""

from datetime import datetime

from citybrain_tools.bench.brokergc import pauses, read_pauses, spanned

LOG = """\
[2026-12-06T11:31:25.169+0000][147.332s] GC(124) Pause Young (Normal) (G1 Evacuation Pause) 295M->209M(339M) 9.956ms
[2026-12-06T11:31:25.200+0000][147.363s] GC(125) Concurrent Mark Cycle 64.249ms
[2026-12-06T11:31:26.434+0000][148.597s] GC(126) Pause Remark 211M->211M(339M) 1.500ms
[2026-12-06T11:31:40.000+0000][162.000s] GC(127) Pause Young (Normal) (G1 Evacuation Pause) 295M->206M(339M) 20.000ms
"""


def at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def test_each_stop_the_world_pause_spans_its_length_before_its_line_and_a_concurrent_phase_is_none():
    t0 = at("2026-12-06T11:31:20.000+0000")
    found = pauses(LOG.splitlines(), t0, t0 + 10)
    assert len(found) == 2   # the young pause and the remark; the concurrent cycle stops nothing; 11:31:40 is out
    (start, end), (remark_start, remark_end) = found
    assert end == at("2026-12-06T11:31:25.169+0000") and round((end - start) * 1000, 3) == 9.956
    assert round((remark_end - remark_start) * 1000, 3) == 1.5


def test_the_tail_dispatches_whose_path_spanned_a_pause_are_counted_apart_from_all():
    pause_end = at("2026-12-06T11:31:25.169+0000")
    paused = [(pause_end - 0.010, pause_end)]
    # (receipt, normalise, fuse, last): 99 quick dispatches well after it, one slow one across it
    quick = [(pause_end + 1 + i * 0.01, 0.002, 0.002, 0.002) for i in range(99)]
    slow = (pause_end + 0.005, 0.010, 0.010, 0.010)   # sent 25 ms before the pause ended
    out = spanned([*quick, slow], paused, pause_end - 1, pause_end + 3)
    assert out["tail_n"] == 1 and out["tail_spanning"] == 1
    assert out["all_n"] == 100 and out["all_spanning"] == 1
    assert out["pauses"]["n"] == 1 and out["pauses"]["max_ms"] == 10.0
    assert out["pauses"]["share_of_time"] == round(0.010 / 4, 4)


def test_a_dispatch_sent_after_a_pause_ended_did_not_span_it():
    pause_end = 1000.0
    out = spanned([(pause_end + 0.010, 0.003, 0.003, 0.003)], [(pause_end - 0.010, pause_end)], 990, 1010)
    assert out["all_spanning"] == 0


def test_no_log_is_no_figure_and_a_rotated_log_is_read_with_the_current(tmp_path):
    log = tmp_path / "gc.log"
    assert read_pauses(log, 0, 2e9) is None
    first, second = LOG.splitlines()[0], LOG.splitlines()[3]
    (tmp_path / "gc.log.0").write_text(first + "\n")
    log.write_text(second + "\n")
    assert len(read_pauses(log, 0, 2e9)) == 2
