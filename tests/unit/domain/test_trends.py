"""趋势研判: a day's count against the same weekday of the previous weeks."""

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citybrain.domain.trends import TrendSettings, baseline_days, trend, trends

S = TrendSettings(k=3.0, weeks=8, min_sd=1.0)
DAY = date(2026, 12, 3)   # a Thursday


def test_the_baseline_is_the_same_weekday_of_the_eight_weeks_before():
    days = baseline_days(DAY, 8)
    assert days[0] == date(2026, 10, 8) and days[-1] == date(2026, 11, 26) and len(days) == 8
    assert {d.weekday() for d in days} == {DAY.weekday()}


def test_mean_population_sd_and_z():
    row = trend(30, [10, 12, 8, 10, 11, 9, 10, 10], S)
    assert row["baseline_mean"] == 10.0
    assert row["baseline_sd"] == pytest.approx(1.118, abs=1e-3)
    assert row["z"] == pytest.approx(20 / 1.1180, abs=1e-2)
    assert row["anomaly"] is True
    assert trend(12, [10, 12, 8, 10, 11, 9, 10, 10], S)["anomaly"] is False


def test_a_quiet_row_divides_by_min_sd_not_zero():
    assert trend(1, [0] * 8, S) == {"count": 1, "baseline_mean": 0.0, "baseline_sd": 0.0, "z": 1.0,
                                    "anomaly": False}
    assert trend(4, [0] * 8, S)["anomaly"] is True
    assert trend(4, [0] * 8, TrendSettings(k=5))["anomaly"] is False   # k is the setting


def test_rows_per_category_and_district_largest_departure_first():
    counts = {(d, "waterlogging", "370306"): 2 for d in baseline_days(DAY, 8)}
    counts[(DAY, "waterlogging", "370306")] = 9            # a rainstorm
    counts[(DAY, "manhole_cover", "370303")] = 1           # nothing in its baseline
    counts[(date(2026, 12, 2), "street_vending", "370306")] = 50   # another weekday: not in it
    rows = trends(DAY, counts, S)
    assert [(r["category"], r["district"], r["count"], r["anomaly"]) for r in rows] == [
        ("waterlogging", "370306", 9, True), ("manhole_cover", "370303", 1, False)]
    # a row with a baseline but nothing today: count 0
    counts.pop((DAY, "waterlogging", "370306"))
    assert trends(DAY, counts, S)[0] == {"category": "waterlogging", "district": "370306", "count": 0,
                                         "baseline_mean": 2.0, "baseline_sd": 0.0, "z": -2.0, "anomaly": False}


@given(st.lists(st.integers(0, 50), min_size=8, max_size=8), st.integers(0, 50))
def test_the_anomaly_flag_is_exactly_abs_z_over_k(baseline, count):
    row = trend(count, baseline, S)
    assert row["anomaly"] == (abs(row["z"]) > S.k) or abs(abs(row["z"]) - S.k) < 1e-3
    assert row["baseline_mean"] == pytest.approx(sum(baseline) / 8, abs=1e-4)
