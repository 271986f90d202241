"""The working calendar (工作日历): which days are worked, and clocks in working hours.

A day is a working day when it is a listed 调休 working day, else when it is not a
listed holiday and falls Monday–Friday.  Holidays and 调休 days are data
(``config/calendar/cn-<year>.toml``); a year without a file is counted as plain
weekdays and ``covers()`` says so, so a missing file is visible rather than silent.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

_MAX_DAYS = 3 * 366   # a limit never reaches further than this: a guard, not a rule
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class WorkCalendar:
    tz: ZoneInfo
    windows: tuple[tuple[time, time], ...]   # working windows of a working day, local time
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()  # weekend days worked (调休)
    years: frozenset[int] = frozenset()      # years whose holidays are known
    # An order's clocks are computed again at each of its changes from the same starts
    # (created_at, stage_started_at): memoised, bounded like the city map's lookups.
    _memo: dict[tuple[datetime, float], datetime] = field(default_factory=dict, compare=False, hash=False, repr=False)
    MEMO_SIZE = 65_536

    def __post_init__(self) -> None:
        last = time.min
        for start, end in self.windows:
            if not (last <= start < end):
                raise ValueError(f"working windows must be ordered and not overlap: {self.windows}")
            last = end
        if not self.windows:
            raise ValueError("a calendar needs at least one working window")

    @classmethod
    def load(cls, files: Iterable[Path], windows: Iterable[tuple[str, str]], timezone: str) -> WorkCalendar:
        holidays: set[date] = set()
        workdays: set[date] = set()
        years: set[int] = set()
        for path in files:
            with Path(path).open("rb") as f:
                raw = tomllib.load(f)
            year = int(raw["year"])
            for key, into in (("holidays", holidays), ("workdays", workdays)):
                for text in raw.get(key, []):
                    d = date.fromisoformat(text)
                    if d.year != year:
                        raise ValueError(f"{path}: {text} is not in {year}")
                    into.add(d)
            years.add(year)
        both = holidays & workdays
        if both:
            raise ValueError(f"days both holiday and working day: {sorted(both)}")
        return cls(ZoneInfo(timezone), tuple((time.fromisoformat(a), time.fromisoformat(b)) for a, b in windows),
                   frozenset(holidays), frozenset(workdays), frozenset(years))

    @property
    def hours_per_day(self) -> float:
        return sum(_seconds(a, b) for a, b in self.windows) / 3600

    def covers(self, d: date) -> bool:
        return d.year in self.years

    def is_working_day(self, d: date) -> bool:
        if d in self.workdays:
            return True
        if d in self.holidays:
            return False
        return d.weekday() < 5

    def _local(self, t: datetime) -> datetime:
        return t.astimezone(self.tz).replace(tzinfo=None)

    def _aware(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.tz).astimezone(UTC)

    def _spans(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The working spans (naive local datetimes: comparing aware ones costs a
        utcoffset() call each, which made a due time 100 µs) from ``start`` on."""
        local = self._local(start)
        day = local.date()
        for _ in range(_MAX_DAYS):
            if self.is_working_day(day):
                for a, b in self.windows:
                    lo = datetime.combine(day, a)
                    hi = datetime.combine(day, b)
                    if lo < local:
                        lo = local
                    if lo < hi:
                        yield lo, hi
            day += _DAY
        raise ValueError(f"no end within {_MAX_DAYS} days of {start.isoformat()}")

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The moment ``hours`` working hours after ``start`` (UTC).  Starting outside
        working time, the clock starts at the next working window."""
        if hours < 0:
            raise ValueError("hours must not be negative")
        key = (start, hours)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = self._add_working_hours(start, hours)
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = found
        return found

    def _add_working_hours(self, start: datetime, hours: float) -> datetime:
        remaining = hours * 3600
        if remaining == 0:
            return start.astimezone(UTC)
        for lo, hi in self._spans(start):
            span = (hi - lo).total_seconds()
            if remaining <= span:
                return self._aware(lo + timedelta(seconds=remaining))
            remaining -= span
        raise AssertionError("unreachable")

    def working_hours_between(self, a: datetime, b: datetime) -> float:
        """Working hours from ``a`` to ``b`` (0 when b ≤ a)."""
        if b <= a:
            return 0.0
        total = 0.0
        b_local = self._local(b)
        for lo, hi in self._spans(a):
            if lo >= b_local:
                break
            total += (min(hi, b_local) - lo).total_seconds()
        return total / 3600

    def add(self, start: datetime, hours: float, basis: str) -> datetime:
        """``hours`` on the given basis: ``natural`` (自然时) or ``working`` (工作时)."""
        if basis == "natural":
            return (start + timedelta(hours=hours)).astimezone(UTC)
        if basis == "working":
            return self.add_working_hours(start, hours)
        raise ValueError(f"unknown time basis {basis!r}")

    def hours_between(self, a: datetime, b: datetime, basis: str) -> float:
        if basis == "natural":
            return max(0.0, (b - a).total_seconds() / 3600)
        return self.working_hours_between(a, b)


def _seconds(a: time, b: time) -> float:
    return (datetime.combine(date.min, b) - datetime.combine(date.min, a)).total_seconds()
