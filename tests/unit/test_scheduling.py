"""The order `make test` runs its files in (tests/scheduling.py): longest first, a file's
tests together and in their order."""

from dataclasses import dataclass
from pathlib import Path

from tests.scheduling import SECONDS, TESTS, TIER_SECONDS, expected_seconds, longest_first


@dataclass
class Item:
    fspath: Path
    name: str


def test_every_file_with_a_figure_exists():
    """A renamed or removed test file must not leave its figure behind."""
    assert [f for f in SECONDS if not (TESTS / f).is_file()] == []


def test_an_unlisted_file_gets_its_tiers_figure_and_a_new_chaos_suite_comes_early():
    assert expected_seconds(TESTS / "chaos" / "test_new_fault.py") == TIER_SECONDS["chaos"]
    assert expected_seconds(TESTS / "unit" / "domain" / "test_new_rule.py") == TIER_SECONDS["unit"]
    assert TIER_SECONDS["chaos"] > max(v for k, v in SECONDS.items() if not k.startswith("chaos/"))


def test_the_longest_files_first_and_each_files_tests_together_in_order():
    unit, functional = TESTS / "unit" / "test_a.py", TESTS / "functional" / "test_b.py"
    cluster, outage = TESTS / "chaos" / "test_cluster_faults.py", TESTS / "chaos" / "test_broker_outage.py"
    items = [Item(unit, "u1"), Item(unit, "u2"), Item(outage, "o1"), Item(functional, "f1"),
             Item(cluster, "c1"), Item(cluster, "c2"), Item(cluster, "c3"), Item(functional, "f2")]
    longest_first(items)
    assert [i.name for i in items] == ["c1", "c2", "c3", "o1", "u1", "u2", "f1", "f2"]


def test_a_path_outside_the_tests_counts_nothing():
    assert expected_seconds(Path("/elsewhere/test_x.py")) == 0.0
