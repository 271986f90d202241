"""Working-hour clocks on the Chinese public-holiday calendar, across 国庆 and 春节."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.domain.calendar import WorkCalendar

CN = ZoneInfo("Asia/Shanghai")


def local(y, m, d, hh=0, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=CN)


@pytest.fixture(scope="module")
def cal(config):
    return config.deadlines.calendar


@pytest.mark.parametrize("day, working", [
    (date(2026, 9, 20), True),    # Sunday, 国庆调休上班
    (date(2026, 9, 30), True),    # Wednesday before the holiday
    (date(2026, 10, 1), False),   # 国庆节
    (date(2026, 10, 7), False),
    (date(2026, 10, 8), True),    # first working day after 国庆
    (date(2026, 10, 10), True),   # Saturday, 国庆调休上班
    (date(2026, 10, 11), False),  # an ordinary Sunday
    (date(2026, 2, 14), True),    # Saturday, 春节调休上班
    (date(2026, 2, 16), False),   # 春节 (a Monday)
    (date(2026, 2, 23), False),   # 春节, last day (a Monday)
    (date(2026, 2, 24), True),
    (date(2026, 2, 28), True),    # Saturday, 春节调休上班
    (date(2025, 1, 26), True),    # Sunday, 2025 春节调休上班
    (date(2025, 2, 3), False),    # 2025 春节 (a Monday)
    (date(2025, 10, 8), False),   # 2025 国庆+中秋, eighth day (a Wednesday)
    (date(2025, 10, 11), True),   # Saturday, 2025 国庆调休上班
])
def test_working_days(cal, day, working):
    assert cal.is_working_day(day) is working


def test_eight_working_hours_before_national_day_end_after_it(cal):
    # Wed 30 Sep 16:00: 2 h that day, 1–7 Oct off, then Thu 8 Oct 09-12 + 13-16.
    due = cal.add_working_hours(local(2026, 9, 30, 16), 8)
    assert due == local(2026, 10, 8, 16).astimezone(UTC)
    assert cal.working_hours_between(local(2026, 9, 30, 16), due) == pytest.approx(8)


def test_the_adjusted_saturday_after_national_day_counts(cal):
    # Fri 9 Oct 17:00 + 4 h: 1 h on Friday, then Saturday 10 Oct is a working day (调休).
    assert cal.add_working_hours(local(2026, 10, 9, 17), 4) == local(2026, 10, 10, 12).astimezone(UTC)


def test_spring_festival_with_its_two_working_saturdays(cal):
    # Fri 13 Feb 17:00 + 2 h → Sat 14 Feb (调休上班) 10:00.
    assert cal.add_working_hours(local(2026, 2, 13, 17), 2) == local(2026, 2, 14, 10).astimezone(UTC)
    # Sat 14 Feb 17:00 + 4 h: 1 h on the Saturday, 15–23 Feb off, Tue 24 Feb 09-12.
    assert cal.add_working_hours(local(2026, 2, 14, 17), 4) == local(2026, 2, 24, 12).astimezone(UTC)
    # Fri 27 Feb 17:00 + 2 h → Sat 28 Feb (调休上班) 10:00.
    assert cal.add_working_hours(local(2026, 2, 27, 17), 2) == local(2026, 2, 28, 10).astimezone(UTC)


def test_2025_national_day_and_mid_autumn_run_eight_days(cal):
    assert cal.add_working_hours(local(2025, 9, 30, 17), 2) == local(2025, 10, 9, 10).astimezone(UTC)


def test_clock_starts_at_the_next_window_and_skips_lunch(cal):
    # Saturday night (an ordinary weekend) → Monday 09:00 + 4 h = 14:00 (12-13 is lunch).
    assert cal.add_working_hours(local(2026, 11, 21, 22), 4) == local(2026, 11, 23, 14).astimezone(UTC)
    assert cal.add_working_hours(local(2026, 11, 23, 12, 30), 0.5) == local(2026, 11, 23, 13, 30).astimezone(UTC)


def test_natural_hours_ignore_the_calendar(cal):
    start = local(2026, 9, 30, 16)
    assert cal.add(start, 24, "natural") == (start + timedelta(hours=24)).astimezone(UTC)
    assert cal.hours_between(start, start + timedelta(hours=30), "natural") == 30


def test_calendar_files_are_checked(tmp_path):
    bad = tmp_path / "cn-2030.toml"
    bad.write_text('year = 2030\nholidays = ["2031-01-01"]\n')
    with pytest.raises(ValueError, match="not in 2030"):
        WorkCalendar.load([bad], [("09:00", "17:00")], "Asia/Shanghai")
    both = tmp_path / "cn-2031.toml"
    both.write_text('year = 2031\nholidays = ["2031-01-04"]\nworkdays = ["2031-01-04"]\n')
    with pytest.raises(ValueError, match="both holiday and working day"):
        WorkCalendar.load([both], [("09:00", "17:00")], "Asia/Shanghai")
    with pytest.raises(ValueError, match="ordered"):
        WorkCalendar.load([], [("13:00", "17:00"), ("09:00", "12:00")], "Asia/Shanghai")


def test_years_without_a_file_are_visible(cal):
    assert cal.covers(date(2026, 5, 1)) and not cal.covers(date(2027, 5, 1))


instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 1),
                        timezones=st.just(CN))


@settings(max_examples=300, deadline=None)
@given(start=instants, h1=st.floats(0, 200), h2=st.floats(0, 200))
def test_adding_working_hours_is_monotonic_and_measured_back(cal, start, h1, h2):
    a, b = cal.add_working_hours(start, h1), cal.add_working_hours(start, h2)
    assert (a <= b) == (h1 <= h2) or a == b
    assert cal.working_hours_between(start, a) == pytest.approx(h1, abs=1e-6)
    # A due time always falls inside working time (or is the start itself).
    if h1 > 0:
        t = a.astimezone(CN)
        assert cal.is_working_day(t.date())


@settings(max_examples=100, deadline=None)
@given(start=instants, hours=st.floats(0, 200))
def test_a_remembered_clock_is_the_clock_computed_afresh(cal, start, hours):
    fresh = WorkCalendar(cal.tz, cal.windows, cal.holidays, cal.workdays, cal.years)
    first = cal.add_working_hours(start, hours)
    # The same instant written in UTC is the same key: the same answer, in UTC.
    again = cal.add_working_hours(start.astimezone(UTC), hours)
    assert first == again == fresh.add_working_hours(start, hours)
    assert again.utcoffset() == timedelta(0)


def test_the_memo_stays_bounded(cal, monkeypatch):
    fresh = WorkCalendar(cal.tz, cal.windows, cal.holidays, cal.workdays, cal.years)
    monkeypatch.setattr(WorkCalendar, "MEMO_SIZE", 10)
    start = local(2026, 9, 28, 9)
    for i in range(25):
        fresh.add_working_hours(start + timedelta(minutes=i), 4)
        assert len(fresh._memo) <= 10
    assert fresh.add_working_hours(start, 4) == cal.add_working_hours(start, 4)
