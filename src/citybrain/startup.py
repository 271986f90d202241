"""A worker's start, phase by phase (issue 38): how long from the process's start until
its stages consume.  One log line per phase with its duration and the time since the
process started, so an operator sees where a slow restart spent its seconds.

Imports nothing heavy: the worker's command reads the clock before its big imports.
Phases that end before logging is set up (imports, configuration, topics) are kept and
written once it is (``attach``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("citybrain.startup")

# phase code → its 中文 label (the code is what an operator greps for)
LABELS = {
    "cli": "启动命令",          # the interpreter and the command line's modules
    "imports": "导入模块",      # Faust and the app's
    "config": "读取配置",
    "topics": "核对主题",
    "cluster": "集群标识",
    "app": "构建应用",
    "registry": "设备台账载入",
    "warnings": "区域预警载入",
    "stage": "阶段开始消费",
    "faust": "Faust 启动完成",
    "ready": "就绪",
}


def process_started(proc: Path = Path("/proc"), now: Callable[[], float] = time.time) -> float | None:
    """When this process began (epoch seconds, 10 ms resolution): now less its age — the
    system's uptime (/proc/uptime) less the process's start in clock ticks since boot
    (field 22 of /proc/self/stat).  Not the boot time (btime) plus the ticks: btime is
    whole seconds (measured: 0.7 s early here).  None where /proc does not say."""
    try:
        ticks = int((proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return now() - max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


class StartupPhases:
    """Each phase's end, in order.  ``done(code)`` measures from the previous phase's end
    (phases run one after another) or from ``since`` (phases that run side by side)."""

    def __init__(self, started: float | None = None, now: Callable[[], float] = time.time):
        self.now = now
        self.started = started if started is not None else (process_started() or now())
        self.last = self.started
        self.phases: list[tuple[str, float, float]] = []   # (code, duration s, since the process began s)
        self._attached = False
        self._pending: list[tuple[str, float, float]] = []

    def done(self, code: str, since: float | None = None) -> float:
        """The phase ``code`` (``stage.fuse``: the label of ``stage``) ended now; its duration."""
        at = self.now()
        took = max(0.0, at - (self.last if since is None else since))
        if since is None:
            self.last = at
        entry = (code, took, at - self.started)
        self.phases.append(entry)
        if self._attached:
            self._write(entry)
        else:
            self._pending.append(entry)
        return took

    def attach(self) -> None:
        """Logging is set up: write the phases kept so far, then each as it ends.  The lines
        are written at info even when the worker logs at warn (a start's few lines)."""
        log.setLevel(logging.INFO)
        # The root's handlers drop info at --loglevel warn: these lines get handlers of their
        # own on the same streams, in the same format.
        streams = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        if streams and not log.handlers and all(h.level > logging.INFO for h in streams):
            for h in streams:
                mine = logging.StreamHandler(h.stream)
                mine.setFormatter(h.formatter)
                log.addHandler(mine)
            log.propagate = False
        self._attached = True
        for entry in self._pending:
            self._write(entry)
        self._pending.clear()

    def since_start(self) -> float:
        return self.now() - self.started

    @staticmethod
    def _write(entry: tuple[str, float, float]) -> None:
        code, took, since = entry
        label = LABELS.get(code.split(".", 1)[0], "")
        log.info("启动阶段 startup phase %s %s: %.2f s (进程启动后 %.2f s after the process started)",
                 code, label, took, since)
