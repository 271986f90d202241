"""The order `make test` hands whole test files to its pytest-xdist processes: the longest
first (tests/conftest.py sorts the collection by these figures; the Makefile turns off
xdist's own reordering by test count, which put the chaos files, with few tests each,
last — a 4-minute cluster file began when the rest was nearly done and ran alone).

Longest-first keeps the processes' finishing times close: the short unit and functional
files fill in at the end.  The figures are seconds per file from a `make test` run
(`--durations=0`, halved from a run on a loaded box: only their order matters); a file
not listed gets its tier's figure, so a new chaos suite is still started early."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent

SECONDS = {
    "chaos/test_cluster_faults.py": 227,
    "chaos/test_broker_outage.py": 128,
    "chaos/test_sigkills.py": 106,
    "integration/test_console_browser.py": 91,
    "chaos/test_lost_worker.py": 90,
    "integration/test_console_city_volume.py": 81,
    "integration/test_kafka_security.py": 77,
    "chaos/test_backlog_kills.py": 77,
    "integration/test_notifier.py": 64,
    "integration/test_prometheus.py": 62,
    "integration/test_deploy_sasl_ssl.py": 62,
    "integration/test_registry_keys.py": 48,
    "integration/test_scale_out.py": 46,
    "integration/test_lifecycle_clocks.py": 44,
    "integration/test_history.py": 40,
    "integration/test_api.py": 39,
    "integration/test_history_search.py": 36,
    "integration/test_local_store.py": 33,
    "integration/test_device_health.py": 29,
    "integration/test_area_warnings.py": 26,
    "integration/test_closed_state.py": 21,
    "integration/test_report_by_address.py": 20,
    "integration/test_console_analysis.py": 20,
    "unit/domain/test_aggregates.py": 18,
    "unit/tools/simulate/test_history.py": 15,
    "unit/tools/simulate/test_traffic.py": 11,
    "unit/test_fuzz.py": 8,
}

# A file not listed: its tier's figure (tests/<tier>/...).
TIER_SECONDS = {"chaos": 120, "integration": 15, "functional": 2, "unit": 2}


def expected_seconds(path: Path) -> float:
    """About how long the test file at ``path`` runs under `make test`."""
    try:
        rel = Path(path).resolve().relative_to(TESTS)
    except ValueError:
        return 0.0
    return SECONDS.get(rel.as_posix(), TIER_SECONDS.get(rel.parts[0], 0.0))


def longest_first(items: list) -> None:
    """Sorts pytest ``items`` in place by their file's expected seconds, longest first; a
    file's tests stay together and in their order (the sort is stable)."""
    cost: dict[str, float] = {}
    items.sort(key=lambda item: -cost.setdefault(str(item.fspath), expected_seconds(Path(item.fspath))))
