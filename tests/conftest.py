"""Shared fixtures.  The Kafka broker is real Apache Kafka: started once per test
session from the cached jars (see citybrain.kafka.local_broker), or the cluster in
KAFKA_BOOTSTRAP_SERVERS."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

from citybrain.paths import PROJECT_ROOT

# No per-example deadline: on a shared two-core CI box a slow example is noise, not a bug.
# A failing example is printed with its reproduction blob.
settings.register_profile("citybrain", deadline=None, print_blob=True)
settings.load_profile("citybrain")

ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        yield env
        return
    from citybrain.kafka.local_broker import LocalBroker
    broker = LocalBroker(Path(tmp_path_factory.mktemp("kafka")))
    address = broker.start(port=None, die_with_parent=True)
    try:
        yield address
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        if broker.log_file.exists():
            (ARTIFACTS / "kafka-broker.log").write_bytes(broker.log_file.read_bytes())
        broker.stop()


def pytest_terminal_summary(terminalreporter):
    """The chaos suite's figures (kills, records, lost, duplicates), in every run's output."""
    from tests.chaos.harness import REPORT
    if REPORT:
        terminalreporter.section("chaos figures")
        for line in REPORT:
            terminalreporter.write_line(line)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "chaos-report.txt").write_text("\n".join(REPORT) + "\n")
