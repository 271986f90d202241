"""`citybrain kafka start|status|stop`: a real broker from the cached jars, with no
Maven needed the second time, and no JVM left behind after stop."""

import os
import shutil
import subprocess
import sys

import pytest

from citybrain_tools.local_kafka.broker import LocalBroker, cache_dir

pytestmark = pytest.mark.integration


def cli(args, env):
    return subprocess.run([sys.executable, "-m", "citybrain", "kafka", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_start_status_stop_from_cache_without_maven(kafka_bootstrap, tmp_path):
    assert (cache_dir() / ".complete").exists()      # the session broker fetched them
    # A PATH with java but no mvn: a cached start must not need Maven or the network.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(shutil.which("java"), bindir / "java")
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(PATH=str(bindir), CITYBRAIN_STATE_DIR=str(tmp_path / "state"))

    started = cli(["start", "--port", "0"], env)
    assert started.returncode == 0, started.stderr
    assert "4.3.1" in started.stdout and "127.0.0.1:" in started.stdout
    broker = LocalBroker(tmp_path / "state" / "kafka")
    pid = broker.pid()
    assert pid is not None

    status = cli(["status"], env)
    assert status.returncode == 0 and broker.bootstrap() in status.stdout

    again = cli(["start"], env)                       # idempotent: same broker
    assert again.returncode == 0 and broker.pid() == pid

    stopped = cli(["stop"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                               # no orphan JVM
    assert cli(["status"], env).returncode == 3
