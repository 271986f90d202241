"""A worker as a child process (`python -m citybrain worker`): start it, wait until
/readyz answers 200, read /metrics, stop it.  Used by the demo, the benchmarks and the
integration tests, so all of them run the worker exactly as an operator does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class WorkerProcess:
    def __init__(self, env: dict[str, str], port: int, log_path: Path, *, loglevel: str = "info",
                 data_dir: Path | None = None):
        self.env, self.port, self.log_path, self.data_dir = env, port, log_path, data_dir
        self.args = [sys.executable, "-m", "citybrain", "worker", "--loglevel", loglevel]
        if data_dir is not None:
            self.args += ["--data-dir", str(data_dir)]
        self.proc: subprocess.Popen | None = None

    def _proc(self) -> subprocess.Popen:
        if self.proc is None:
            raise RuntimeError("the worker process was not started")
        return self.proc

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:   # appended: a restart keeps the earlier run
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 120.0) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc().poll() is not None:
                tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(f"the worker exited with code {self._proc().returncode}; "
                                   f"{self.log_path}:\n" + "\n".join(tail))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the worker was not ready within {timeout:.0f}s; see {self.log_path}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def cpu_seconds(self) -> float:
        """CPU time the process has used (user + system, all its threads)."""
        try:
            fields = Path(f"/proc/{self._proc().pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except FileNotFoundError:
            return 0.0

    def rss_mb(self, field: str = "VmRSS") -> float:
        """Resident memory now (``VmHWM``: the peak since the process started)."""
        try:
            for line in Path(f"/proc/{self._proc().pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
        return 0.0

    def poll(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return self._proc().poll()

    def wait(self) -> int:
        """Until the process ends (its exit code)."""
        return self._proc().wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self._proc().pid, sig)
        try:
            self._proc().wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc().pid, signal.SIGKILL)
            self._proc().wait()
