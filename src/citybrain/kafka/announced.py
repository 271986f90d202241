"""Where a development broker started on this machine says it listens.

``citybrain kafka start`` (the tooling package, ``citybrain_tools.local_kafka``) writes the
address it listens on to ``<state>/kafka/bootstrap`` — ``<state>/kafka-cluster/bootstrap`` for
``--nodes 3`` — beside each node's ``pid`` file.  The product reads that announcement here, so
it finds the demo's broker without importing the tooling that starts it."""

from __future__ import annotations

import os
from pathlib import Path

from citybrain.paths import state_dir

PID_FILE, BOOTSTRAP_FILE = "broker.pid", "bootstrap"


def pid_alive(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` while that process lives, else None."""
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:   # alive, someone else's
        return pid
    return pid


def announced_bootstrap(directory: Path) -> str | None:
    """The bootstrap list a broker (``directory/broker.pid``) or a cluster (``directory/node-*/broker.pid``)
    announced in ``directory/bootstrap`` — while at least one of its processes lives."""
    pid_files = [directory / PID_FILE, *sorted(directory.glob(f"node-*/{PID_FILE}"))]
    if not any(pid_alive(p) for p in pid_files):
        return None
    try:
        return (directory / BOOTSTRAP_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def local_bootstrap() -> str | None:
    """The running local broker's address, else the running local cluster's, else None."""
    return announced_bootstrap(state_dir() / "kafka") or announced_bootstrap(state_dir() / "kafka-cluster")
