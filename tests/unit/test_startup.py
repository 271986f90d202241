"""citybrain/startup.py: a worker's start, phase by phase — durations on a fake clock, the
lines kept until logging is set up, the process's start time read from /proc."""

import io
import logging

from citybrain.startup import StartupPhases, process_started


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_phases_in_turn_measure_from_the_last_end_side_by_side_from_their_own_start():
    clock = Clock(100.0)
    phases = StartupPhases(started=98.5, now=clock)
    assert phases.done("imports") == 1.5          # since the process began
    clock.t = 100.4
    assert round(phases.done("config"), 2) == 0.4   # since the phase before it
    began = clock.t
    clock.t = 101.0
    assert round(phases.done("registry", since=began), 2) == 0.6
    clock.t = 101.3
    assert round(phases.done("stage.fuse", since=began), 2) == 0.9
    clock.t = 101.5
    # A phase measured from its own start leaves the sequence where it was.
    assert round(phases.done("app"), 2) == 1.1
    assert [(c, round(d, 2), round(s, 2)) for c, d, s in phases.phases] == [
        ("imports", 1.5, 1.5), ("config", 0.4, 1.9), ("registry", 0.6, 2.5), ("stage.fuse", 0.9, 2.8),
        ("app", 1.1, 3.0)]


def test_lines_wait_for_logging_then_show_at_warn_level_once_each(monkeypatch):
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)   # --loglevel warn: the root's handler drops info
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    monkeypatch.setattr(root, "handlers", [handler])
    startup_log = logging.getLogger("citybrain.startup")
    monkeypatch.setattr(startup_log, "handlers", [])
    monkeypatch.setattr(startup_log, "propagate", True)
    clock = Clock(10.0)
    phases = StartupPhases(started=9.0, now=clock)
    phases.done("imports")
    assert stream.getvalue() == ""               # no logging yet: kept
    phases.attach()
    clock.t = 10.25
    phases.done("stage.normalise", since=10.0)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "INFO 启动阶段 startup phase imports 导入模块: 1.00 s (进程启动后 1.00 s after the process started)",
        "INFO 启动阶段 startup phase stage.normalise 阶段开始消费: 0.25 s (进程启动后 1.25 s after the process started)",
    ]


def test_process_start_from_proc(tmp_path, monkeypatch):
    (tmp_path / "self").mkdir()
    # comm may hold spaces and parentheses: fields are counted after the last ")".
    fields = ["S"] + ["0"] * 18 + ["250"] + ["0"] * 10   # field 22 (starttime) = 250 ticks after boot
    (tmp_path / "self" / "stat").write_text("4242 (python (x) y) " + " ".join(fields))
    (tmp_path / "uptime").write_text("6.25 11.50\n")   # the system up 6.25 s: the process is 3.75 s old
    monkeypatch.setattr("os.sysconf", lambda name: 100)
    assert process_started(tmp_path, now=lambda: 1000.0) == 1000.0 - 3.75
    assert process_started(tmp_path / "missing") is None


def test_the_real_process_started_before_now():
    import time
    started = process_started()
    assert started is not None and time.time() - 3600 < started <= time.time()
