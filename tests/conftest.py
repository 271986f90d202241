"""Shared fixtures.  The Kafka broker is real Apache Kafka: started once per test
session from the cached jars (see citybrain_tools.local_kafka.broker), or the cluster in
KAFKA_BOOTSTRAP_SERVERS."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

from citybrain.paths import PROJECT_ROOT

from .scheduling import longest_first

# A hung test fails alone, with its tasks' stacks (tests/hang_watchdog.py).
pytest_plugins = ["tests.hang_watchdog"]

# No per-example deadline: on a shared two-core CI box a slow example is noise, not a bug.
# A failing example is printed with its reproduction blob.
settings.register_profile("citybrain", deadline=None, print_blob=True)
settings.load_profile("citybrain")

ARTIFACTS = PROJECT_ROOT / "test-artifacts"


# Under pytest-xdist one broker serves every process: the controller starts it and the
# processes it spawns read its address from this variable (kafka_bootstrap).  A broker per
# process cost ~0.1 core each for the whole run, idle or not — a sixth of the suite's CPU
# on a two-core box — and its start another ~15 CPU-s.  Topics are per test (new_prefix).
SHARED_BROKER = "CITYBRAIN_TEST_SHARED_KAFKA"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    env = (os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
           or os.environ.get(SHARED_BROKER, "").strip())
    if env:
        yield env
        return
    from citybrain_tools.local_kafka.broker import LocalBroker
    broker = LocalBroker(Path(tmp_path_factory.mktemp("kafka")))
    address = broker.start(port=None, die_with_parent=True)
    try:
        yield address
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        if broker.log_file.exists():
            (ARTIFACTS / "kafka-broker.log").write_bytes(broker.log_file.read_bytes())
        broker.stop()


# The tiers, by directory (README "Tiers"): `make check` runs unit and functional.
TIERS = {"unit": "unit", "functional": "functional", "integration": "integration", "chaos": "chaos"}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Each test gets its directory's tier marker; a unit test may not reach the broker; the
    files run longest first."""
    for item in items:
        try:
            tier = TIERS.get(Path(item.fspath).resolve().relative_to(TESTS).parts[0])
        except ValueError:
            tier = None
        if tier is None:
            continue
        item.add_marker(getattr(pytest.mark, tier))
        if tier in ("unit", "functional") and "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid}: a {tier} test uses the Kafka broker (kafka_bootstrap); "
                                    "it belongs in tests/integration/")
    longest_first(items)   # the longest files first (tests/scheduling.py)


# Under pytest-xdist (make test runs files on several worker processes) the chaos figures
# are gathered in the processes that ran the chaos tests; each leaves its lines here for
# the controller to print.
WORKER_REPORTS = ARTIFACTS / "chaos-report.d"


def _xdist_worker(config) -> str | None:
    return getattr(config, "workerinput", {}).get("workerid")


def _needs_broker(config) -> bool:
    """Whether the paths this run was given hold broker-backed tests."""
    tiers = [TESTS / "integration", TESTS / "chaos"]
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if any(path == t or t in path.parents or path in t.parents for t in tiers):
            return True
    return False


_shared: dict = {}


def pytest_configure(config):
    if (_xdist_worker(config) is not None or not getattr(config.option, "numprocesses", None)
            or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or not _needs_broker(config)):
        return
    import tempfile

    from citybrain_tools.local_kafka.broker import LocalBroker
    broker = LocalBroker(Path(tempfile.mkdtemp(prefix="citybrain-test-kafka-")))
    os.environ[SHARED_BROKER] = broker.start(port=None, die_with_parent=True)
    _shared["broker"] = broker


def pytest_unconfigure(config):
    broker = _shared.pop("broker", None)
    if broker is None:
        return
    import shutil
    os.environ.pop(SHARED_BROKER, None)
    ARTIFACTS.mkdir(exist_ok=True)
    if broker.log_file.exists():
        (ARTIFACTS / "kafka-broker.log").write_bytes(broker.log_file.read_bytes())
    broker.stop()
    shutil.rmtree(broker.state_dir, ignore_errors=True)


def pytest_sessionstart(session):
    if _xdist_worker(session.config) is None and WORKER_REPORTS.is_dir():
        for old in WORKER_REPORTS.glob("*.txt"):
            old.unlink()


def pytest_sessionfinish(session):
    worker = _xdist_worker(session.config)
    from tests.chaos.harness import REPORT
    if worker is not None and REPORT:
        WORKER_REPORTS.mkdir(parents=True, exist_ok=True)
        (WORKER_REPORTS / f"{worker}.txt").write_text("\n".join(REPORT) + "\n")


def pytest_terminal_summary(terminalreporter):
    """The chaos suite's figures (kills, records, lost, duplicates), in every run's output."""
    from tests.chaos.harness import REPORT
    lines = list(REPORT)
    if WORKER_REPORTS.is_dir():
        for part in sorted(WORKER_REPORTS.glob("*.txt")):
            lines += part.read_text().splitlines()
    if lines:
        terminalreporter.section("chaos figures")
        for line in lines:
            terminalreporter.write_line(line)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "chaos-report.txt").write_text("\n".join(lines) + "\n")
