"""值班表 The roster (``config/roster.toml``): people, their contacts and their duty hours.

A duty names a **desk** — a department code (``water``), a street desk
(``street.<9-digit code>``), ``emergency`` (the emergency roster) or
``supervision.<level>`` (a supervision level's supervisors) — optionally narrowed to a
grid prefix (the person covers only orders whose grid code starts with it), the weekdays
it starts on and a time range in the roster's time zone (Asia/Shanghai by default).  A
range whose end is not after its start runs across midnight into the next day
(``22:00``–``06:00`` on Monday covers Monday 22:00 to Tuesday 06:00); ``00:00``–``00:00``
is the whole day.  Pure: no I/O except ``load`` and ``ReloadingRoster``.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citybrain.reloading import ReloadingFile
from citybrain.wire import enums

log = logging.getLogger("citybrain.notify.roster")

Channel = Literal["sms", "email", "webhook"]
CHANNELS: tuple[Channel, ...] = ("sms", "email", "webhook")
SUPERVISION_LEVELS = enums.SUPERVISION_LEVELS   # the one list (wire/enums.py)
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DESK = re.compile(r"^([a-z][a-z0-9_]{1,31}|street\.\d{9}|emergency|supervision\.(street|district|city))$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MINUTES_A_DAY = 1440
MINUTES_A_WEEK = 7 * MINUTES_A_DAY


def _minutes(hhmm: str) -> int:
    m = _HHMM.match(hhmm)
    if not m:
        raise ValueError(f"{hhmm!r} is not HH:MM (00:00 … 23:59)")
    return int(m.group(1)) * 60 + int(m.group(2))


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(None, pattern=r"^\+?\d{5,15}$")
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    webhook: str | None = Field(None, pattern=r"^https?://\S+$")
    # The channels to use; empty: every channel the person has a contact for.
    channels: list[Channel] = []
    # 免打扰 quiet hours (local time, every day; across midnight when end ≤ start): no SMS
    # then, except for urgent orders and emergency changes (email and webhooks still go).
    quiet_start: str | None = None
    quiet_end: str | None = None

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _quiet_hhmm(cls, v: str | None) -> str | None:
        if v is not None:
            _minutes(v)
        return v

    def quiet_at(self, local: datetime) -> bool:
        """In quiet hours at this local time."""
        return _in_daily_range(self.quiet_start, self.quiet_end, local)

    @model_validator(mode="after")
    def _reachable(self) -> Person:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError(f"person {self.id}: give both quiet_start and quiet_end, or neither")
        if not (self.phone or self.email or self.webhook):
            raise ValueError(f"person {self.id}: give at least one of phone, email, webhook")
        for ch in self.channels:
            if getattr(self, CONTACT_FIELD[ch]) is None:
                raise ValueError(f"person {self.id}: channel {ch} needs {CONTACT_FIELD[ch]}")
        return self

    def reachable_by(self) -> tuple[Channel, ...]:
        chosen = self.channels or [ch for ch in CHANNELS if getattr(self, CONTACT_FIELD[ch])]
        return tuple(ch for ch in CHANNELS if ch in chosen)

    def address(self, channel: Channel) -> str:
        value = getattr(self, CONTACT_FIELD[channel])
        if value is None:
            raise ValueError(f"person {self.id} has no {CONTACT_FIELD[channel]}")
        return str(value)


CONTACT_FIELD: dict[Channel, str] = {"sms": "phone", "email": "email", "webhook": "webhook"}


def _in_daily_range(start: str | None, end: str | None, local: datetime) -> bool:
    if start is None or end is None:
        return False
    begin = _minutes(start)
    span = _minutes(end) - begin
    length = span if span > 0 else span + MINUTES_A_DAY
    return (local.hour * 60 + local.minute - begin) % MINUTES_A_DAY < length


class Duty(BaseModel):
    """One duty of one person: a desk, the weekdays its shift starts on and the shift."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    person: str
    desk: Annotated[str, Field(pattern=DESK.pattern)]
    grid_prefix: str | None = Field(None, pattern=r"^\d{6,15}$")
    days: list[Weekday] = list(WEEKDAYS)
    start: str = "00:00"
    end: str = "00:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        _minutes(v)
        return v

    @property
    def start_minute(self) -> int:
        return _minutes(self.start)

    @property
    def length_minutes(self) -> int:
        """The shift's length: across midnight when the end is not after the start."""
        span = _minutes(self.end) - _minutes(self.start)
        return span if span > 0 else span + MINUTES_A_DAY

    def on_duty_at(self, weekday: int, minute: int) -> bool:
        """``weekday`` 0 = Monday, ``minute`` of that day (local time)."""
        start, length = self.start_minute, self.length_minutes
        for day in {WEEKDAYS.index(d) for d in self.days}:
            if day == weekday and start <= minute < start + length:
                return True
            # yesterday's shift reaching past midnight into today
            if (day + 1) % 7 == weekday and start + length > MINUTES_A_DAY and minute < start + length - MINUTES_A_DAY:
                return True
        return False

    def covers(self, grid_code: str | None) -> bool:
        return self.grid_prefix is None or (grid_code is not None and grid_code.startswith(self.grid_prefix))


class ReporterContact(BaseModel):
    """A reporter who asked to hear back (反馈) on a channel, by their reporter id."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reporter_id: str = Field(min_length=1, max_length=128)
    name: str = "市民"
    phone: str | None = Field(None, pattern=r"^\+?\d{5,15}$")
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    webhook: str | None = Field(None, pattern=r"^https?://\S+$")
    channels: list[Channel] = []
    quiet_start: str | None = "22:00"    # citizens: no SMS at night unless said otherwise
    quiet_end: str | None = "07:00"

    def as_person(self, pseudonym: Callable[[str], str] | None = None) -> Person:
        # The person's id rides on notifications.deliveries (compacted, kept): the keyed
        # pseudonym, never the clear id nor a plain hash of it (docs/security.md).
        pid = pseudonym(self.reporter_id) if pseudonym is not None else _safe_id(self.reporter_id)
        return Person(id=f"reporter.{pid}", name=self.name, phone=self.phone,
                      email=self.email, webhook=self.webhook, channels=self.channels,
                      quiet_start=self.quiet_start, quiet_end=self.quiet_end)


def _safe_id(raw: str) -> str:
    import hashlib
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class RosterFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sample_data: bool = False
    timezone: str = "Asia/Shanghai"
    person: list[Person] = []
    duty: list[Duty] = []
    reporter: list[ReporterContact] = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        ZoneInfo(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RosterFile:
        ids = [p.id for p in self.person]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"roster: person id given twice: {sorted(dup)}")
        for d in self.duty:
            if d.person not in ids:
                raise ValueError(f"roster: duty of unknown person {d.person!r} (desk {d.desk})")
        rids = [r.reporter_id for r in self.reporter]
        if len(set(rids)) != len(rids):
            raise ValueError("roster: a reporter_id is given twice")
        return self


@dataclass(frozen=True)
class Roster:
    """The validated roster and its questions: who is on duty at a desk, now."""

    file: RosterFile
    # pseudonym → reporter contact (one pseudonym key per process); filled on first use
    _by_pseudonym: dict[str, ReporterContact] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path, desks: Iterable[str] | None = None) -> Roster:
        with path.open("rb") as f:
            roster = cls(RosterFile.model_validate(tomllib.load(f)))
        if desks is not None:
            roster.check_desks(set(desks))
        return roster

    def check_desks(self, desks: set[str]) -> None:
        """Every duty's desk must be a desk of the city (a department or a street desk)."""
        for d in self.file.duty:
            if d.desk == "emergency" or d.desk.startswith("supervision."):
                continue
            if d.desk not in desks:
                raise ValueError(f"roster: duty of {d.person} at unknown desk {d.desk!r}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.file.timezone)

    @property
    def people(self) -> dict[str, Person]:
        return {p.id: p for p in self.file.person}

    def person(self, person_id: str) -> Person | None:
        return self.people.get(person_id)

    def on_duty(self, desk: str, at: datetime, grid_code: str | None = None) -> list[Person]:
        """The people on duty at ``desk`` at the instant ``at`` (aware), in roster order, each once."""
        local = at.astimezone(self.zone)
        weekday, minute = local.weekday(), local.hour * 60 + local.minute
        people, seen = self.people, set()
        out: list[Person] = []
        for d in self.file.duty:
            if d.desk == desk and d.person not in seen and d.covers(grid_code) and d.on_duty_at(weekday, minute):
                seen.add(d.person)
                out.append(people[d.person])
        return out

    def everyone_at(self, desk: str, grid_code: str | None = None) -> list[Person]:
        """Everyone with a duty at ``desk`` (on duty now or not), in roster order."""
        people, seen = self.people, set()
        out: list[Person] = []
        for d in self.file.duty:
            if d.desk == desk and d.person not in seen and d.covers(grid_code):
                seen.add(d.person)
                out.append(people[d.person])
        return out

    def reporter(self, reporter_id: str, pseudonym: Callable[[str], str] | None = None) -> Person | None:
        """The contact of the reporter a ``notifications.reporters`` record names: by its
        pseudonym (``rp_…``: each contact's clear id hashed with the key, once per roster
        load), or by the clear id (records written before pseudonyms)."""
        if pseudonym is not None:
            if not self._by_pseudonym:
                self._by_pseudonym.update({pseudonym(r.reporter_id): r for r in self.file.reporter})
            found = self._by_pseudonym.get(reporter_id)
            if found is not None:
                return found.as_person(pseudonym)
        for r in self.file.reporter:
            if r.reporter_id == reporter_id:
                return r.as_person(pseudonym)
        return None


class ReloadingRoster(ReloadingFile[Roster]):
    """The roster file, read again when it changes (looked at most every ``every`` seconds):
    a new person or shift takes effect without a restart.  A file that no longer loads keeps
    the roster last loaded, with an error in the log (``citybrain.reloading``, as the tokens)."""

    def __init__(self, path: Path, desks: set[str] | None = None, every: float = 1.0):
        super().__init__(path, lambda p: Roster.load(p, desks), every=every, log=log,
                         reloaded=lambda r: f"值班表已重新加载 roster reloaded: {len(r.file.person)} people, "
                                            f"{len(r.file.duty)} duties",
                         refused="值班表无效 roster")
